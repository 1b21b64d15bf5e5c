//! `[trunks.*]` and `[campaigns.*]` of `ivr.toml`: where calls to outside numbers go, and the
//! campaigns that dial lists of numbers from a query (docs/outbound.md).
//!
//! Read with spans like the rest of the configuration (`config.rs` holds the raw tables and
//! calls [`validate`] once the queries and calendars are known, so dangling names point at
//! their line).

use indexmap::IndexMap;
use ivr_dsl::{Diagnostic, FileId, Span};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `[trunks.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawTrunk {
    uri: Option<Spanned<String>>,
    caller_id: Option<Spanned<String>>,
    max_calls: Option<Spanned<i64>>,
    username: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
}

/// `[campaigns.NAME]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCampaign {
    flow: Option<Spanned<String>>,
    list: Option<Spanned<String>>,
    trunk: Option<Spanned<String>>,
    calendar: Option<Spanned<String>>,
    max_calls: Option<Spanned<i64>>,
    rate: Option<Spanned<f64>>,
    attempts: Option<Spanned<i64>>,
    retry_after: Option<Spanned<String>>,
    ring_timeout: Option<Spanned<String>>,
}

/// The keys of `[trunks.*]`, for "did you mean".
pub(crate) const TRUNK_KEYS: &[&str] = &["uri", "caller_id", "max_calls", "username", "password"];
/// The keys of `[campaigns.*]`, for "did you mean".
pub(crate) const CAMPAIGN_KEYS: &[&str] = &[
    "flow",
    "list",
    "trunk",
    "calendar",
    "max_calls",
    "rate",
    "attempts",
    "retry_after",
    "ring_timeout",
];

/// Where a trunk sends calls: `sip:HOST[:PORT][;transport=tcp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkTarget {
    /// The gateway's host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Its port (5060 when the URI has none).
    pub port: u16,
    /// `;transport=tcp`: over TCP instead of UDP.
    pub tcp: bool,
}

impl TrunkTarget {
    /// The Request-URI that dials `number` through this gateway: `sip:NUMBER@HOST:PORT`.
    pub fn uri_for(&self, number: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let transport = if self.tcp { ";transport=tcp" } else { "" };
        format!("sip:{number}@{host}:{}{transport}", self.port)
    }
}

/// `[trunks.NAME]`: a SIP gateway that places calls to outside numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrunkConfig {
    /// `uri` as written (`sip:192.0.2.1:5060`).
    pub uri: String,
    /// `uri` read.
    pub target: TrunkTarget,
    /// `caller_id`: the From user of the calls placed through the trunk.
    pub caller_id: String,
    /// `max_calls`: outbound channels at most on this trunk at once.
    pub max_calls: u32,
    /// `username` for digest authentication when the gateway challenges (401/407).
    pub username: Option<String>,
    /// `password` for digest authentication.
    pub password: Option<String>,
    /// Where the trunk is declared.
    #[serde(skip)]
    pub span: Span,
}

impl TrunkConfig {
    /// `caller_id` when the trunk does not say.
    pub const DEFAULT_CALLER_ID: &'static str = "ivr";
    /// `max_calls` when the trunk does not say.
    pub const DEFAULT_MAX_CALLS: u32 = 30;
}

/// `[campaigns.NAME]`: numbers of a list query dialled through a trunk, the flow run when one
/// answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignConfig {
    /// `flow`: the flow run once the callee answers.
    pub flow: String,
    /// Where `flow`'s value is written.
    #[serde(skip)]
    pub flow_span: Span,
    /// `list`: a `[queries.*]` with no args whose rows have a `phone` field.
    pub list: String,
    /// Where `list`'s value is written.
    #[serde(skip)]
    pub list_span: Span,
    /// `trunk`: the `[trunks.*]` the calls go through.
    pub trunk: String,
    /// `calendar`: dial only while this `[calendars.*]` is open (always when `None`).
    pub calendar: Option<String>,
    /// `max_calls`: at most this many of the campaign's calls at once.
    pub max_calls: u32,
    /// `rate`: new calls per second at most (more than 0).
    pub rate: f64,
    /// `attempts`: per number, counting no answer, busy and failures (at least 1).
    pub attempts: u32,
    /// `retry_after`: milliseconds before the next attempt at a number.
    pub retry_after_ms: u64,
    /// `ring_timeout`: milliseconds a callee's phone rings before the attempt is `no_answer`.
    pub ring_timeout_ms: u64,
    /// Where the campaign is declared.
    #[serde(skip)]
    pub span: Span,
}

impl CampaignConfig {
    /// The campaign whose `flow` is `flow`, first in the file, with its name.
    pub fn of_flow<'a>(
        campaigns: &'a IndexMap<String, CampaignConfig>,
        flow: &str,
    ) -> Option<(&'a str, &'a CampaignConfig)> {
        campaigns
            .iter()
            .find(|(_, c)| c.flow == flow)
            .map(|(n, c)| (n.as_str(), c))
    }

    /// `max_calls` when the campaign does not say.
    pub const DEFAULT_MAX_CALLS: u32 = 10;
    /// `rate` when the campaign does not say.
    pub const DEFAULT_RATE: f64 = 1.0;
    /// `attempts` when the campaign does not say.
    pub const DEFAULT_ATTEMPTS: u32 = 3;
    /// `retry_after` when the campaign does not say: 30 minutes.
    pub const DEFAULT_RETRY_AFTER_MS: u64 = 30 * 60_000;
    /// `ring_timeout` when the campaign does not say: 30 seconds.
    pub const DEFAULT_RING_TIMEOUT_MS: u64 = 30_000;
    /// The most `attempts` accepted.
    pub const MAX_ATTEMPTS: u32 = 20;
    /// The highest `rate` accepted, calls a second.
    pub const MAX_RATE: f64 = 1000.0;
}

/// Why a trunk's `uri` does not read (the end of a sentence about it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrunkUriError {
    /// Not `sip:...`.
    #[error("does not start with `sip:`")]
    NotSip,
    /// A parameter other than `transport`.
    #[error("has a parameter `{0}` the dialler does not know")]
    Parameter(String),
    /// `sip:user@host`.
    #[error("names a user; the number dialled takes its place")]
    User,
    /// `[v6` without `]`.
    #[error("has an IPv6 address without its `]`")]
    Bracket,
    /// No host.
    #[error("has no host name or address")]
    NoHost,
    /// A port that is not 1..65535.
    #[error("has a port `{0}` that is not 1-65535")]
    Port(String),
}

/// Reads a trunk's `uri`: `sip:HOST[:PORT][;transport=tcp|udp]`.
pub fn parse_trunk_uri(text: &str) -> Result<TrunkTarget, TrunkUriError> {
    let rest = text
        .trim()
        .strip_prefix("sip:")
        .ok_or(TrunkUriError::NotSip)?;
    let (hostport, params) = rest.split_once(';').unwrap_or((rest, ""));
    let mut tcp = false;
    for p in params.split(';').filter(|p| !p.is_empty()) {
        match p.to_ascii_lowercase().as_str() {
            "transport=tcp" => tcp = true,
            "transport=udp" => tcp = false,
            other => return Err(TrunkUriError::Parameter(other.to_string())),
        }
    }
    if hostport.contains('@') {
        return Err(TrunkUriError::User);
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(TrunkUriError::Bracket)?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
    {
        return Err(TrunkUriError::NoHost);
    }
    let port = match port {
        None => 5060,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| TrunkUriError::Port(p.to_string()))?,
    };
    Ok(TrunkTarget { host, port, tcp })
}

fn span_of<T>(s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(r.start, r.end)
}

/// What a campaign's list needs to know of a `[queries.*]`.
pub(crate) struct QueryFacts {
    /// It has `args` or is a `transaction`.
    pub not_a_plain_read: bool,
    /// Its declared fields.
    pub fields: Vec<String>,
}

/// The tables of `ivr.toml` that trunks and campaigns refer to (given by `config.rs`).
pub(crate) struct Known {
    /// `[queries.*]`
    pub queries: IndexMap<String, QueryFacts>,
    /// The names of `[calendars.*]`.
    pub calendars: Vec<String>,
    /// How durations read (`config::parse_duration_text`).
    pub duration: fn(&str) -> Option<u64>,
}

/// What `validate` keeps of `[trunks.*]` and `[campaigns.*]`.
pub(crate) struct Outbound {
    /// The trunks that can work.
    pub trunks: IndexMap<String, TrunkConfig>,
    /// The campaigns that can work.
    pub campaigns: IndexMap<String, CampaignConfig>,
    /// The `flow` of each campaign left out for its errors (already reported).
    pub refused_flows: Vec<String>,
}

/// Validates `[trunks.*]` and `[campaigns.*]`: bad values and dangling names are reported at
/// their place; a trunk or campaign that cannot work is left out.
pub(crate) fn validate(
    file: FileId,
    raw_trunks: IndexMap<String, Spanned<RawTrunk>>,
    raw_campaigns: IndexMap<String, Spanned<RawCampaign>>,
    known: &Known,
    diags: &mut Vec<Diagnostic>,
) -> Outbound {
    let mut trunks = IndexMap::new();
    for (name, raw) in raw_trunks {
        if let Some(t) = validate_trunk(file, &name, raw, diags) {
            trunks.insert(name, t);
        }
    }
    let mut campaigns = IndexMap::new();
    let mut refused_flows = Vec::new();
    for (name, raw) in raw_campaigns {
        let flow = raw.get_ref().flow.as_ref().map(|f| f.get_ref().clone());
        match validate_campaign(file, &name, raw, &trunks, known, diags) {
            Some(c) => {
                campaigns.insert(name, c);
            }
            None => refused_flows.extend(flow),
        }
    }
    Outbound {
        trunks,
        campaigns,
        refused_flows,
    }
}

fn validate_trunk(
    file: FileId,
    name: &str,
    raw: Spanned<RawTrunk>,
    diags: &mut Vec<Diagnostic>,
) -> Option<TrunkConfig> {
    let span = span_of(&raw);
    let raw = raw.into_inner();
    let mut ok = true;
    let Some(uri) = raw.uri else {
        diags.push(
            Diagnostic::error("config", file, span, format!("trunk `{name}` has no `uri`"))
                .with_hint("the gateway, e.g. `uri = \"sip:192.0.2.1:5060\"`"),
        );
        return None;
    };
    let target = match parse_trunk_uri(uri.get_ref()) {
        Ok(t) => Some(t),
        Err(why) => {
            diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&uri),
                    format!("trunk `{name}`'s uri `{}` {why}", uri.get_ref()),
                )
                .with_hint("write `sip:HOST:PORT`, with `;transport=tcp` for TCP"),
            );
            None
        }
    };
    let caller_id = match raw.caller_id {
        None => TrunkConfig::DEFAULT_CALLER_ID.to_string(),
        Some(c) => {
            let v = c.get_ref().trim();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '-' | '.' | '_'))
            {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&c),
                        format!(
                            "trunk `{name}`'s caller_id `{}` is not a SIP user",
                            c.get_ref()
                        ),
                    )
                    .with_hint(
                        "digits, letters, `+`, `-`, `.` or `_`, e.g. `caller_id = \"10010\"`",
                    ),
                );
                ok = false;
            }
            v.to_string()
        }
    };
    let max_calls = match raw.max_calls {
        None => TrunkConfig::DEFAULT_MAX_CALLS,
        Some(m) => match u32::try_from(*m.get_ref()) {
            Ok(v) if v > 0 => v,
            _ => {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&m),
                        format!(
                            "trunk `{name}` has max_calls {}: it could place no call",
                            m.get_ref()
                        ),
                    )
                    .with_hint("the outbound channels the carrier allows, e.g. `max_calls = 60`"),
                );
                ok = false;
                TrunkConfig::DEFAULT_MAX_CALLS
            }
        },
    };
    if raw.username.is_some() != raw.password.is_some() {
        let at = raw
            .username
            .as_ref()
            .or(raw.password.as_ref())
            .map_or(span, span_of);
        diags.push(
            Diagnostic::error(
                "config",
                file,
                at,
                format!("trunk `{name}` has only one of `username` and `password`"),
            )
            .with_hint("give both when the gateway asks for digest credentials, or neither"),
        );
        ok = false;
    }
    let target = target?;
    ok.then(|| TrunkConfig {
        uri: uri.into_inner(),
        target,
        caller_id,
        max_calls,
        username: raw.username.map(Spanned::into_inner),
        password: raw.password.map(Spanned::into_inner),
        span,
    })
}

fn validate_campaign(
    file: FileId,
    name: &str,
    raw: Spanned<RawCampaign>,
    trunks: &IndexMap<String, TrunkConfig>,
    known: &Known,
    diags: &mut Vec<Diagnostic>,
) -> Option<CampaignConfig> {
    let span = span_of(&raw);
    let raw = raw.into_inner();
    let mut ok = true;
    let mut missing = |key: &str, example: &str| {
        diags.push(
            Diagnostic::error(
                "config",
                file,
                span,
                format!("campaign `{name}` has no `{key}`"),
            )
            .with_hint(format!("e.g. `{key} = {example}`")),
        );
    };
    if raw.flow.is_none() {
        missing(
            "flow",
            "\"arrears_notice\" (the flow run once the callee answers)",
        );
    }
    if raw.list.is_none() {
        missing(
            "list",
            "\"arrears_due\" (a query with no args returning `phone`)",
        );
    }
    if raw.trunk.is_none() {
        missing("trunk", "\"carrier\" (a `[trunks.*]`)");
    }
    let (Some(flow), Some(list), Some(trunk)) = (raw.flow, raw.list, raw.trunk) else {
        return None;
    };
    // The list: a query with no args that returns a `phone` field (when it declares fields).
    match known.queries.get(list.get_ref()) {
        None => {
            let hint = crate::suggest::did_you_mean(
                list.get_ref(),
                known.queries.keys().map(String::as_str),
            )
            .unwrap_or_else(|| "a `[queries.NAME]` with no args returning `phone`".into());
            diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&list),
                    format!(
                        "campaign `{name}`'s list `{}` is not a query of `[queries]`",
                        list.get_ref()
                    ),
                )
                .with_hint(hint),
            );
            ok = false;
        }
        Some(q) => {
            if q.not_a_plain_read {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&list),
                        format!(
                            "campaign `{name}`'s list `{}` takes arguments or is a transaction; a list is a read with no args",
                            list.get_ref()
                        ),
                    )
                    .with_hint("`sql = \"SELECT phone, ... FROM ...\"` with no `args`"),
                );
                ok = false;
            }
            if !q.fields.is_empty() && !q.fields.iter().any(|f| f == "phone") {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&list),
                        format!(
                            "campaign `{name}`'s list `{}` returns no `phone` field",
                            list.get_ref()
                        ),
                    )
                    .with_hint("the number to dial is the row's `phone`: add `phone = \"text\"` to its fields"),
                );
                ok = false;
            }
        }
    }
    if !trunks.contains_key(trunk.get_ref()) {
        let hint = crate::suggest::did_you_mean(trunk.get_ref(), trunks.keys().map(String::as_str))
            .unwrap_or_else(|| "declare it as `[trunks.NAME]` with a `uri`".into());
        diags.push(
            Diagnostic::error(
                "config",
                file,
                span_of(&trunk),
                format!(
                    "campaign `{name}`'s trunk `{}` is not a working `[trunks.*]`",
                    trunk.get_ref()
                ),
            )
            .with_hint(hint),
        );
        ok = false;
    }
    let calendar = match raw.calendar {
        None => None,
        Some(c) => {
            if !known.calendars.iter().any(|k| k == c.get_ref()) {
                let hint = crate::suggest::did_you_mean(
                    c.get_ref(),
                    known.calendars.iter().map(String::as_str),
                )
                .unwrap_or_else(|| "declare it as `[calendars.NAME]`".into());
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&c),
                        format!(
                            "campaign `{name}`'s calendar `{}` is not in `[calendars]`",
                            c.get_ref()
                        ),
                    )
                    .with_hint(hint),
                );
                ok = false;
            }
            Some(c.into_inner())
        }
    };
    let mut count = |key: &str, value: Option<Spanned<i64>>, default: u32, max: u32| match value {
        None => default,
        Some(v) => match u32::try_from(*v.get_ref()) {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&v),
                        format!(
                            "campaign `{name}` has {key} {}; it goes from 1 to {max}",
                            v.get_ref()
                        ),
                    )
                    .with_hint(format!("without `{key}` the campaign uses {default}")),
                );
                ok = false;
                default
            }
        },
    };
    let max_calls = count(
        "max_calls",
        raw.max_calls,
        CampaignConfig::DEFAULT_MAX_CALLS,
        100_000,
    );
    let attempts = count(
        "attempts",
        raw.attempts,
        CampaignConfig::DEFAULT_ATTEMPTS,
        CampaignConfig::MAX_ATTEMPTS,
    );
    let rate = match raw.rate {
        None => CampaignConfig::DEFAULT_RATE,
        Some(r) => {
            let v = *r.get_ref();
            if v.is_finite() && v > 0.0 && v <= CampaignConfig::MAX_RATE {
                v
            } else {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&r),
                        format!(
                            "campaign `{name}` has rate {v}; new calls a second go from more than 0 to {}",
                            CampaignConfig::MAX_RATE
                        ),
                    )
                    .with_hint("e.g. `rate = 5`, or `rate = 0.5` for one call every two seconds"),
                );
                ok = false;
                CampaignConfig::DEFAULT_RATE
            }
        }
    };
    let mut duration = |key: &str, value: Option<Spanned<String>>, default: u64| match value {
        None => default,
        Some(v) => match (known.duration)(v.get_ref()) {
            Some(ms) if ms > 0 => ms,
            _ => {
                diags.push(
                    Diagnostic::error(
                        "config",
                        file,
                        span_of(&v),
                        format!(
                            "campaign `{name}` has a bad {key} `{}`; write e.g. \"30s\" or \"30m\"",
                            v.get_ref()
                        ),
                    )
                    .with_hint("durations are a whole number (more than 0) with ms, s, m or h"),
                );
                ok = false;
                default
            }
        },
    };
    let retry_after_ms = duration(
        "retry_after",
        raw.retry_after,
        CampaignConfig::DEFAULT_RETRY_AFTER_MS,
    );
    let ring_timeout_ms = duration(
        "ring_timeout",
        raw.ring_timeout,
        CampaignConfig::DEFAULT_RING_TIMEOUT_MS,
    );
    ok.then(|| CampaignConfig {
        flow_span: span_of(&flow),
        flow: flow.into_inner(),
        list_span: span_of(&list),
        list: list.into_inner(),
        trunk: trunk.into_inner(),
        calendar,
        max_calls,
        rate,
        attempts,
        retry_after_ms,
        ring_timeout_ms,
        span,
    })
}
