//! What the HTTP interface of `ivr serve` refuses, in one place: the time a client has to send
//! a request's head and body, the connections it may hold, the size of bodies and of WebSocket
//! messages, which `Origin` may open a WebSocket or change something, and the counters of
//! what was refused (`/metrics`). [`crate::http`] enforces the connection and request limits
//! and the pages' WebSocket handlers take [`ws_limits`]; docs/security.md lists each
//! protection with its test.

use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderMap, Method, header};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A client has this long to send a request's head (request line and headers) from the moment
/// the server starts waiting for it: after the connection opens, and again after each response
/// on a kept-alive connection (so an idle connection is closed after it too). Slowloris.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and this long to send the body once the head is in.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most a connection buffers; a request head larger than this is answered 431.
pub const MAX_HEAD: usize = 32 * 1024;
/// The largest body of `POST /calls/ROUTE` (an SDP offer, a few kB from a browser).
pub const MAX_OFFER: usize = 64 * 1024;
/// The largest body of every other request (`POST /agents/ID/state` takes a word or a small
/// JSON object; `POST /agent/login` none).
pub const MAX_BODY: usize = 4 * 1024;
/// The largest WebSocket message (and frame) taken from a page; an SDP offer is a few kB.
pub const WS_MAX_MESSAGE: usize = 64 * 1024;

/// The largest body a request may carry: [`MAX_OFFER`] for `POST /calls/ROUTE`, [`MAX_BODY`]
/// for anything else (a new route that needs more must say so here).
pub fn body_limit(method: &Method, path: &str) -> usize {
    let offer = method == Method::POST
        && path
            .strip_prefix("/calls/")
            .is_some_and(|route| !route.is_empty() && !route.contains('/'));
    if offer { MAX_OFFER } else { MAX_BODY }
}

/// A WebSocket upgrade with the limits of every socket the pages open: messages and frames
/// of at most [`WS_MAX_MESSAGE`] (a larger one ends the socket).
pub fn ws_limits(up: WebSocketUpgrade) -> WebSocketUpgrade {
    up.max_message_size(WS_MAX_MESSAGE)
        .max_frame_size(WS_MAX_MESSAGE)
}

/// Whether a request is a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a request that opens a WebSocket or changes something (any method but GET, HEAD
/// and OPTIONS) may go on as far as its `Origin` goes: it has none (not a browser, or a
/// browser's same-origin GET), or the origin is the one the request was sent to — the same
/// scheme, host and port. The host is `X-Forwarded-Host` or else `Host`; the scheme
/// `X-Forwarded-Proto` (or `Forwarded: proto=`) or else `https` when the server itself serves
/// TLS (`over_tls`, `[server] https`) and `http` otherwise, so that a TLS proxy in front
/// works when it says so. A page cannot set these headers on a WebSocket or a simple request,
/// so a page of another site cannot pass for the server's own. `Origin: null` (sandboxed
/// frames, `file:` pages) is refused.
pub fn origin_allowed(headers: &HeaderMap, over_tls: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(host) = first("x-forwarded-host").or_else(|| first(header::HOST.as_str())) else {
        return false;
    };
    let scheme = first("x-forwarded-proto")
        .or_else(|| forwarded_proto(headers))
        .unwrap_or(if over_tls { "https" } else { "http" });
    same_origin(origin, scheme, host)
}

/// The `proto=` of the first element of a `Forwarded` header (RFC 7239).
fn forwarded_proto(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::FORWARDED)?.to_str().ok()?;
    let first = value.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("proto")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Whether `origin` (`scheme://host[:port]`, as browsers send it) is `scheme://host` where
/// `host` is a `Host` header (`host[:port]`); a scheme's default port may be left out on
/// either side, and host names compare without regard to case.
pub fn same_origin(origin: &str, scheme: &str, host: &str) -> bool {
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let Some((origin_scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    if !origin_scheme.eq_ignore_ascii_case(&scheme) || authority.is_empty() {
        return false;
    }
    let normal = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => a,
        }
    };
    normal(authority) == normal(host)
}

/// Counters of what the HTTP interface refused (`/metrics`).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Connections open now (WebSockets included).
    pub open: AtomicUsize,
    /// Connections closed at once because [`crate::http`]'s cap on all connections was
    /// reached.
    pub refused_total_cap: AtomicU64,
    /// ... because the address already held its most.
    pub refused_address_cap: AtomicU64,
    /// Connections closed because a request head did not arrive within [`HEADER_TIMEOUT`].
    pub header_timeouts: AtomicU64,
    /// Requests whose head or body was too large (431, 413).
    pub too_large: AtomicU64,
    /// Requests whose body did not arrive within [`BODY_TIMEOUT`] (408).
    pub body_timeouts: AtomicU64,
    /// WebSocket upgrades and changes refused for a cross-site `Origin` (403).
    pub origin_refused: AtomicU64,
    /// Agents' logins refused unchecked because of the address's failures (429).
    pub logins_refused: AtomicU64,
    /// HTTPS connections closed because the TLS handshake failed (plain HTTP, not TLS, no
    /// common cipher); a handshake not done within [`HEADER_TIMEOUT`] counts as a header
    /// timeout.
    pub tls_failed: AtomicU64,
}

impl HttpStats {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The series of the HTTP interface, in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP ivr_http_connections_open HTTP connections open now (WebSockets included).\n\
             # TYPE ivr_http_connections_open gauge\n\
             ivr_http_connections_open {}\n\
             # HELP ivr_http_connections_refused_total HTTP connections closed at once, by the limit they met.\n\
             # TYPE ivr_http_connections_refused_total counter\n\
             ivr_http_connections_refused_total{{limit=\"total\"}} {}\n\
             ivr_http_connections_refused_total{{limit=\"address\"}} {}\n\
             # HELP ivr_http_header_timeouts_total HTTP connections closed because a request head was not sent in time.\n\
             # TYPE ivr_http_header_timeouts_total counter\n\
             ivr_http_header_timeouts_total {}\n\
             # HELP ivr_http_requests_too_large_total HTTP requests refused for a head or body too large (431, 413).\n\
             # TYPE ivr_http_requests_too_large_total counter\n\
             ivr_http_requests_too_large_total {}\n\
             # HELP ivr_http_body_timeouts_total HTTP requests whose body was not sent in time (408).\n\
             # TYPE ivr_http_body_timeouts_total counter\n\
             ivr_http_body_timeouts_total {}\n\
             # HELP ivr_http_origin_refused_total WebSocket upgrades and changes refused for a cross-site Origin (403).\n\
             # TYPE ivr_http_origin_refused_total counter\n\
             ivr_http_origin_refused_total {}\n\
             # HELP ivr_http_logins_refused_total Agent logins refused unchecked after repeated failures from the address (429).\n\
             # TYPE ivr_http_logins_refused_total counter\n\
             ivr_http_logins_refused_total {}\n\
             # HELP ivr_http_tls_handshakes_failed_total HTTPS connections closed because the TLS handshake failed.\n\
             # TYPE ivr_http_tls_handshakes_failed_total counter\n\
             ivr_http_tls_handshakes_failed_total {}\n",
            self.open.load(Ordering::Relaxed),
            n(&self.refused_total_cap),
            n(&self.refused_address_cap),
            n(&self.header_timeouts),
            n(&self.too_large),
            n(&self.body_timeouts),
            n(&self.origin_refused),
            n(&self.logins_refused),
            n(&self.tls_failed),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn origin_allowed_plain(h: &HeaderMap) -> bool {
        origin_allowed(h, false)
    }

    #[test]
    fn over_tls_the_own_origin_is_https() {
        let h = headers(&[
            ("host", "ivr.example:8443"),
            ("origin", "https://ivr.example:8443"),
        ]);
        assert!(origin_allowed(&h, true));
        assert!(!origin_allowed(&h, false));
        let h = headers(&[
            ("host", "ivr.example:8443"),
            ("origin", "http://ivr.example:8443"),
        ]);
        assert!(!origin_allowed(&h, true));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_origin_is_allowed_only_when_it_is_the_servers_own() {
        // No Origin: not a browser (or a browser's same-origin GET).
        assert!(origin_allowed_plain(&headers(&[(
            "host",
            "ivr.example:8080"
        )])));
        // The page's own origin.
        assert!(origin_allowed_plain(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(origin_allowed_plain(&headers(&[
            ("host", "IVR.example"),
            ("origin", "http://ivr.example:80")
        ])));
        // Another site, another port, another scheme, or a look-alike.
        for origin in [
            "https://evil.example",
            "http://127.0.0.1:8081",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8080.evil.example",
            "http://127.0.0.1",
            "null",
            "",
        ] {
            let mut h = headers(&[("host", "127.0.0.1:8080")]);
            h.insert("origin", HeaderValue::from_str(origin).expect("value"));
            assert!(!origin_allowed_plain(&h), "{origin}");
        }
        // An Origin and no Host.
        assert!(!origin_allowed_plain(&headers(&[("origin", "http://a")])));
        // Behind a TLS proxy that says so.
        assert!(origin_allowed_plain(&headers(&[
            ("host", "ivr.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://ivr.example")
        ])));
        assert!(origin_allowed_plain(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "ivr.example:443"),
            ("forwarded", "for=192.0.2.1;proto=https, proto=http"),
            ("origin", "https://ivr.example")
        ])));
        assert!(!origin_allowed_plain(&headers(&[
            ("host", "ivr.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://evil.example")
        ])));
        // IPv6 literals.
        assert!(same_origin("http://[::1]:8080", "http", "[::1]:8080"));
        assert!(same_origin("http://[::1]", "http", "[::1]:80"));
        assert!(!same_origin("http://[::1]:8080", "http", "[::1]:80"));
    }

    #[test]
    fn only_the_offer_may_be_large() {
        assert_eq!(body_limit(&Method::POST, "/calls/hotline"), MAX_OFFER);
        assert_eq!(body_limit(&Method::DELETE, "/calls/hotline"), MAX_BODY);
        assert_eq!(body_limit(&Method::POST, "/calls/"), MAX_BODY);
        assert_eq!(body_limit(&Method::POST, "/calls/x/events"), MAX_BODY);
        assert_eq!(body_limit(&Method::POST, "/agent/login"), MAX_BODY);
        assert_eq!(body_limit(&Method::POST, "/agents/2001/state"), MAX_BODY);
    }
}
