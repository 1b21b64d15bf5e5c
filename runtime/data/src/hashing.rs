//! Hashed query arguments (`hash = ["password"]` in the data catalog): the platform binds
//! `hex(HMAC-SHA256(secret, value))` instead of the value, so service passwords are never stored
//! or sent to the database in plain text.
//!
//! The secret is, in order: the `IVR_SECRET` environment variable, `[database] secret`, and,
//! for the embedded demo database only, [`DEMO_SECRET`]. Any other database without a secret
//! is refused at startup when a query hashes an argument.

use super::DataError;
use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use ivr_compiler::config::{DatabaseConfig, QueryDef};
use sha2::Sha256;

/// The secret of the embedded demo database (documented in docs/data.md; never for real data).
pub const DEMO_SECRET: &str = "ivr-demo-secret-change-me";

/// The key of `hash` arguments.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Secret {
    /// A secret from its text.
    pub fn new(text: &str) -> Secret {
        Secret(text.as_bytes().to_vec())
    }

    /// The secret of a deployment: `IVR_SECRET`, else `[database] secret`, else the demo secret
    /// when `demo` (the embedded default database). `None` when there is none; that is an error
    /// (naming the query) only if some query hashes an argument.
    pub fn resolve(
        db: &DatabaseConfig,
        demo: bool,
        queries: &IndexMap<String, QueryDef>,
    ) -> Result<Option<Secret>, DataError> {
        if let Ok(s) = std::env::var("IVR_SECRET")
            && !s.is_empty()
        {
            return Ok(Some(Secret::new(&s)));
        }
        if let Some(s) = db.secret.as_deref().filter(|s| !s.is_empty()) {
            return Ok(Some(Secret::new(s)));
        }
        if demo {
            return Ok(Some(Secret::new(DEMO_SECRET)));
        }
        match queries.iter().find(|(_, q)| !q.hash.is_empty()) {
            Some((name, q)) => Err(DataError::Config(format!(
                "query `{name}` hashes `{}`, but no secret is set for database {}: set the IVR_SECRET \
                 environment variable or `secret` in [database]",
                q.hash.join("`, `"),
                super::connect::redact_url(&db.url)
            ))),
            None => Ok(None),
        }
    }

    /// Lowercase hex of HMAC-SHA256(secret, value).
    pub fn hash(&self, value: &str) -> String {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(value.as_bytes());
        let bytes = mac.finalize().into_bytes();
        let mut out = String::with_capacity(64);
        for b in bytes {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe".
        let s = Secret::new("Jefe");
        assert_eq!(
            s.hash("what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
