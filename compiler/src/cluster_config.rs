//! `[cluster]` of `ivr.toml`: this node's name, the PostgreSQL database every node of the
//! cluster shares, and the SIP proxy in front of the nodes (docs/cluster.md).

use ivr_dsl::{Diagnostic, FileId, Span};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The most characters a node's name may have.
pub const NODE_NAME_MAX: usize = 32;

/// The validated `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (letters, digits, `-`, `_`).
    pub node: String,
    /// The PostgreSQL database every node shares (`postgres://...`): call records, the nodes'
    /// heartbeats, the ACD's leadership.
    pub database: String,
    /// The SIP proxy in front of the nodes (`sip:HOST:PORT`), if any.
    pub sip_via: Option<String>,
}

/// Why a `[cluster]` value (from `ivr.toml` or the command line) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The node's name is empty, too long or has other characters.
    #[error("the node name `{0}` is not 1 to {NODE_NAME_MAX} letters, digits, `-` or `_`")]
    Node(String),
    /// The database is not PostgreSQL.
    #[error(
        "the cluster's database must be PostgreSQL (`postgres://...`): `{0}` cannot be shared \
         by several nodes"
    )]
    Database(String),
    /// `sip_via` is not a SIP URI.
    #[error("`sip_via = \"{0}\"` is not a SIP URI like \"sip:127.0.0.1:5060\"")]
    SipVia(String),
    /// A value is missing.
    #[error("a cluster node needs `{0}`")]
    Missing(&'static str),
}

/// Checks a node's name.
pub fn check_node(name: &str) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.chars().count() <= NODE_NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Node(name.to_string()))
    }
}

/// Checks that a database URL is PostgreSQL's.
pub fn check_database(url: &str) -> Result<(), ClusterError> {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        Ok(())
    } else {
        // The URL may hold a password: only its scheme is repeated.
        let scheme = url.split(':').next().unwrap_or_default();
        Err(ClusterError::Database(format!("{scheme}:...")))
    }
}

/// Checks `sip_via`.
pub fn check_sip_via(uri: &str) -> Result<(), ClusterError> {
    let lower = uri.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("sip:")
        .or_else(|| lower.strip_prefix("sips:"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(ClusterError::SipVia(uri.to_string())),
    }
}

impl ClusterConfig {
    /// A cluster configuration from its parts (the command line over `ivr.toml`), checked.
    pub fn new(
        node: Option<String>,
        database: Option<String>,
        sip_via: Option<String>,
    ) -> Result<ClusterConfig, ClusterError> {
        let node = node.ok_or(ClusterError::Missing("node"))?;
        let database = database.ok_or(ClusterError::Missing("database"))?;
        check_node(&node)?;
        check_database(&database)?;
        if let Some(v) = &sip_via {
            check_sip_via(v)?;
        }
        Ok(ClusterConfig {
            node,
            database,
            sip_via,
        })
    }
}

/// `[cluster]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCluster {
    node: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    sip_via: Option<Spanned<String>>,
}

/// The keys `[cluster]` takes.
pub(crate) const CLUSTER_KEYS: &[&str] = &["node", "database", "sip_via"];

fn span_of<T>(s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(r.start, r.end)
}

/// Validates `[cluster]` (`None` when the file has none); mistakes are errors at their value,
/// a missing key at the table's header (`header`).
pub(crate) fn validate(
    file: FileId,
    raw: Option<Spanned<RawCluster>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<ClusterConfig> {
    let raw = raw?;
    let header = span_of(&raw);
    let raw = raw.into_inner();
    let mut ok = true;
    let mut error = |span: Span, message: String, hint: &str| {
        diags.push(Diagnostic::error("config", file, span, message).with_hint(hint.to_string()));
    };
    match &raw.node {
        None => {
            ok = false;
            error(
                header,
                "`[cluster]` has no `node`".into(),
                "this node's name, unique in the cluster, e.g. `node = \"a\"` (`ivr serve --node` \
                 sets it per node when the nodes share this file)",
            );
        }
        Some(n) => {
            if let Err(e) = check_node(n.get_ref()) {
                ok = false;
                error(
                    span_of(n),
                    e.to_string(),
                    "e.g. `node = \"a\"` or `node = \"ivr-2\"`",
                );
            }
        }
    }
    match &raw.database {
        None => {
            ok = false;
            error(
                header,
                "`[cluster]` has no `database`".into(),
                "the PostgreSQL database every node shares, e.g. `database = \
                 \"postgres://ivr:secret@10.0.0.9/ivr\"`",
            );
        }
        Some(d) => {
            if let Err(e) = check_database(d.get_ref()) {
                ok = false;
                let sqlite = d
                    .get_ref()
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("sqlite");
                error(
                    span_of(d),
                    e.to_string(),
                    if sqlite {
                        "SQLite is a file on one machine: the nodes of a cluster share a \
                         PostgreSQL database, e.g. `database = \"postgres://ivr@10.0.0.9/ivr\"`"
                    } else {
                        "e.g. `database = \"postgres://ivr@10.0.0.9/ivr\"`"
                    },
                );
            }
        }
    }
    if let Some(v) = &raw.sip_via
        && let Err(e) = check_sip_via(v.get_ref())
    {
        ok = false;
        error(
            span_of(v),
            e.to_string(),
            "the SIP proxy in front of the nodes, e.g. `sip_via = \"sip:10.0.0.5:5060\"`",
        );
    }
    if !ok {
        return None;
    }
    Some(ClusterConfig {
        node: raw.node.map(Spanned::into_inner).unwrap_or_default(),
        database: raw.database.map(Spanned::into_inner).unwrap_or_default(),
        sip_via: raw.sip_via.map(Spanned::into_inner),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_databases_and_proxies() {
        assert!(check_node("a").is_ok());
        assert!(check_node("ivr-2_b").is_ok());
        assert!(check_node("").is_err());
        assert!(check_node("a b").is_err());
        assert!(check_node(&"x".repeat(NODE_NAME_MAX + 1)).is_err());
        assert!(check_database("postgres://u@h/db").is_ok());
        assert!(check_database("postgresql://u@h/db").is_ok());
        let e = check_database("sqlite://ivr-data/ivr.db").unwrap_err();
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
        assert!(
            !check_database("mysql://u:pw@h")
                .unwrap_err()
                .to_string()
                .contains("pw")
        );
        assert!(check_sip_via("sip:127.0.0.1:5060").is_ok());
        assert!(check_sip_via("127.0.0.1:5060").is_err());
        assert_eq!(
            ClusterConfig::new(Some("a".into()), None, None),
            Err(ClusterError::Missing("database"))
        );
    }
}
