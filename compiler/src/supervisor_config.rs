//! `[supervisors.ID]` of `ivr.toml`: the quality desk's logins for `/supervisor` (recordings,
//! live calls, listen / whisper / barge). A supervisor has a display name and, like an agent,
//! the `ha1` of its password: MD5(ID:realm:password) in 32 hex digits, which
//! `ivr agent-password ID` prints.

use indexmap::IndexMap;
use ivr_dsl::{Diagnostic, FileId, Span};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `[supervisors.ID]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SupervisorConfig {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// MD5(id:realm:password), hex.
    #[serde(default)]
    pub ha1: String,
}

impl SupervisorConfig {
    /// Whether `ha1` is 32 hex digits (else nobody can log in as this supervisor).
    pub fn has_valid_ha1(&self) -> bool {
        self.ha1.len() == 32 && self.ha1.chars().all(|c| c.is_ascii_hexdigit())
    }
}

/// The keys `[supervisors.ID]` takes.
pub const SUPERVISOR_KEYS: &[&str] = &["name", "ha1"];

/// Checks `[supervisors.*]`: an id is the user part of an HTTP Basic login (no `:`, no
/// blanks: an error); an `ha1` that is missing or not 32 hex digits is a warning at the
/// supervisor's table, as for agents (the specification's own example writes `ha1 = "..."`;
/// flows do not depend on it): that supervisor cannot log in until `ivr agent-password ID`
/// gives it one.
pub(crate) fn validate(
    file: FileId,
    raw: IndexMap<String, Spanned<SupervisorConfig>>,
    diags: &mut Vec<Diagnostic>,
) -> IndexMap<String, SupervisorConfig> {
    let mut out = IndexMap::new();
    for (id, s) in raw {
        let r = s.span();
        let span = Span::new(r.start, r.end);
        let s = s.into_inner();
        if id.is_empty() || id.contains(':') || id.chars().any(char::is_whitespace) {
            diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span,
                    format!("`{id}` cannot be a supervisor id: it is the user name of a login"),
                )
                .with_hint(
                    "use digits or letters without `:` or blanks, e.g. `[supervisors.3001]`",
                ),
            );
            continue;
        }
        if s.ha1.is_empty() {
            diags.push(
                Diagnostic::warning(
                    "config",
                    file,
                    span,
                    format!("supervisor `{id}` has no `ha1`: it cannot log in until it has one"),
                )
                .with_hint(format!("`ivr agent-password {id}` prints it")),
            );
        } else if !s.has_valid_ha1() {
            diags.push(
                Diagnostic::warning(
                    "config",
                    file,
                    span,
                    format!(
                        "supervisor `{id}` has an `ha1` of {} characters, not 32 hex digits of \
                         MD5(id:realm:password): it cannot log in until it has one",
                        s.ha1.chars().count()
                    ),
                )
                .with_hint(format!("`ivr agent-password {id}` prints it")),
            );
        }
        out.insert(id, s);
    }
    out
}
