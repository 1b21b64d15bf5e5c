//! Digest credentials of calls we place (RFC 2617, RFC 3261 22.2): a gateway that answers an
//! INVITE with 401 (`WWW-Authenticate`) or 407 (`Proxy-Authenticate`) gets it again with
//! `Authorization` or `Proxy-Authorization` computed from the trunk's `username` and
//! `password`. MD5, `qop=auth` or none.

use crate::registrar::md5_hex;

/// A gateway's challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed.
    pub opaque: Option<String>,
    /// Whether `qop` offers `auth`.
    pub qop_auth: bool,
}

/// The parameters of a `Digest ...` header value, names in lower case.
fn params(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim();
    let (scheme, rest) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut out = Vec::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let (name, after) = s.split_once('=')?;
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.push((name.trim().to_ascii_lowercase(), val.to_string()));
        s = tail.trim_start().trim_start_matches(',').trim_start();
        if out.len() > 16 {
            return None;
        }
    }
    Some(out)
}

/// Reads a `WWW-Authenticate` / `Proxy-Authenticate` value: `None` when it is not an MD5
/// digest challenge with a realm and a nonce.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let p = params(value)?;
    let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if let Some(a) = get("algorithm")
        && !a.eq_ignore_ascii_case("md5")
    {
        return None;
    }
    Some(Challenge {
        realm: get("realm")?,
        nonce: get("nonce")?,
        opaque: get("opaque"),
        qop_auth: get("qop").is_some_and(|q| q.split(',').any(|x| x.trim() == "auth")),
    })
}

/// The `Authorization` value answering `challenge` for `method` on `uri` (`cnonce` fresh for
/// each answer; the nonce count is 1: each challenge is answered once).
pub fn authorization(
    challenge: &Challenge,
    username: &str,
    password: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&[username, &challenge.realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    let q = |s: &str| s.replace(['"', '\\', '\r', '\n'], "");
    let mut v = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", algorithm=MD5",
        q(username),
        q(&challenge.realm),
        q(&challenge.nonce),
        q(uri)
    );
    if challenge.qop_auth {
        let nc = "00000001";
        let response = md5_hex(&[&ha1, &challenge.nonce, nc, cnonce, "auth", &ha2]);
        v.push_str(&format!(
            ", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{}\"",
            q(cnonce)
        ));
    } else {
        let response = md5_hex(&[&ha1, &challenge.nonce, &ha2]);
        v.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(o) = &challenge.opaque {
        v.push_str(&format!(", opaque=\"{}\"", q(o)));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_2617_example() {
        let c = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .expect("a challenge");
        assert!(c.qop_auth);
        let a = authorization(
            &c,
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn without_qop_and_what_is_not_a_digest_challenge() {
        let c = parse_challenge("Digest realm=\"carrier\",nonce=abc").expect("a challenge");
        assert!(!c.qop_auth);
        let a = authorization(&c, "u", "p", "INVITE", "sip:1@gw", "x");
        let ha1 = md5_hex(&["u", "carrier", "p"]);
        let ha2 = md5_hex(&["INVITE", "sip:1@gw"]);
        assert!(a.contains(&md5_hex(&[&ha1, "abc", &ha2])));
        assert!(parse_challenge("Basic realm=\"x\"").is_none());
        assert!(parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-256").is_none());
        assert!(parse_challenge("Digest nonce=\"n\"").is_none());
    }
}
