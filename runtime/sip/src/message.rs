//! Message helpers on rsip: parsing that never panics, the facts the transaction and dialog
//! layers key on ([`Facts`]), responses built from requests (Via with `received`/`rport`,
//! To-tag, Content-Length), and a fallback 400/501 for requests rsip cannot read.
//!
//! rsip keeps headers as text and parses them on demand; the helpers here read the few
//! parameters we need (tags, branch, rport) straight from that text, and understand the
//! compact header names (`v`, `i`, `f`, `t`, `l`, `c`, `m`) that rsip leaves as `Other`.

use rsip::headers::UntypedHeader;
use rsip::message::HasHeaders;
use rsip::{Header, Headers, Request, SipMessage};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest SIP message we read (bigger ones are dropped; on TCP the connection closes).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// The methods we answer, for `Allow`.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REGISTER, REFER";

/// Our `Server`/`User-Agent`.
pub const AGENT: &str = concat!("ivr/", env!("CARGO_PKG_VERSION"));

/// A SIP message that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Longer than [`MAX_MESSAGE`].
    #[error("message too large")]
    TooLarge,
    /// rsip cannot read it (its words).
    #[error("{0}")]
    Syntax(String),
    /// rsip panicked on it.
    #[error("unparseable message")]
    Unparseable,
}

/// A request or response without the headers every transaction needs, or with one broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    /// No (or an empty) Call-ID.
    #[error("no Call-ID")]
    NoCallId,
    /// No CSeq.
    #[error("no CSeq")]
    NoCseq,
    /// A CSeq whose number is not one.
    #[error("bad CSeq number")]
    BadCseqNumber,
    /// A CSeq without its method.
    #[error("no CSeq method")]
    NoCseqMethod,
    /// No From.
    #[error("no From")]
    NoFrom,
    /// No To.
    #[error("no To")]
    NoTo,
    /// No Via.
    #[error("no Via")]
    NoVia,
    /// A Max-Forwards that is not a number.
    #[error("bad Max-Forwards")]
    BadMaxForwards,
}

/// Parses a message; rsip errors and panics alike become `Err`, and so does a message with a
/// CR or an LF inside a header value or the Request-URI (see [`line_break_inside`]).
pub fn parse(data: &[u8]) -> Result<SipMessage, ParseError> {
    if data.len() > MAX_MESSAGE {
        return Err(ParseError::TooLarge);
    }
    let msg = match std::panic::catch_unwind(|| SipMessage::try_from(data)) {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(ParseError::Syntax(e.to_string())),
        Err(_) => return Err(ParseError::Unparseable),
    };
    if line_break_inside(&msg) {
        return Err(ParseError::Syntax(
            "a CR or LF inside a header value or the Request-URI".into(),
        ));
    }
    Ok(msg)
}

/// Whether a header value or the Request-URI of `msg` has a CR or an LF in it. RFC 3261 (7.3.1,
/// 25.1) allows neither, but rsip ends header lines only at CRLF (keeping a lone LF in the value)
/// and reads CR and LF inside a Request-URI's host; we echo header values (Via, From, To,
/// Call-ID, CSeq) in our responses and keep them for our BYE, where a reader that also ends
/// lines at a lone LF would see header lines the peer slipped in.
fn line_break_inside(msg: &SipMessage) -> bool {
    let breaks = |t: &str| t.contains(['\r', '\n']);
    if let SipMessage::Request(r) = msg
        && breaks(&r.uri.to_string())
    {
        return true;
    }
    msg.headers().iter().any(|h| breaks(&h.to_string()))
}

/// A fresh random number (tags, branches, SSRCs, session ids).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.finish()
}

/// A new tag for From/To.
pub fn new_tag() -> String {
    format!("{:016x}", random_u64())
}

/// A new RFC 3261 branch.
pub fn new_branch() -> String {
    format!("z9hG4bK{:016x}", random_u64())
}

fn is(name: &str, long: &str, compact: &str) -> bool {
    name.eq_ignore_ascii_case(long) || name.eq_ignore_ascii_case(compact)
}

/// The value of every header called `long` (or its compact form), in order.
pub fn values<'a>(headers: &'a Headers, long: &str) -> impl Iterator<Item = &'a str> {
    let compact = match long {
        "Via" => "v",
        "Call-ID" => "i",
        "From" => "f",
        "To" => "t",
        "Content-Length" => "l",
        "Content-Type" => "c",
        "Contact" => "m",
        "Supported" => "k",
        _ => "\0",
    };
    let long = long.to_string();
    headers.iter().filter_map(move |h| {
        let (name, value) = match h {
            Header::Via(v) => ("Via", v.value()),
            Header::CallId(v) => ("Call-ID", v.value()),
            Header::From(v) => ("From", v.value()),
            Header::To(v) => ("To", v.value()),
            Header::CSeq(v) => ("CSeq", v.value()),
            Header::ContentLength(v) => ("Content-Length", v.value()),
            Header::ContentType(v) => ("Content-Type", v.value()),
            Header::Contact(v) => ("Contact", v.value()),
            Header::MaxForwards(v) => ("Max-Forwards", v.value()),
            Header::RecordRoute(v) => ("Record-Route", v.value()),
            Header::Supported(v) => ("Supported", v.value()),
            Header::Expires(v) => ("Expires", v.value()),
            Header::Authorization(v) => ("Authorization", v.value()),
            Header::WwwAuthenticate(v) => ("WWW-Authenticate", v.value()),
            Header::ProxyAuthenticate(v) => ("Proxy-Authenticate", v.value()),
            Header::Other(n, v) => (n.as_str(), v.as_str()),
            _ => return None,
        };
        (is(name, &long, compact)).then_some(value)
    })
}

/// The first value of a header.
pub fn value<'a>(headers: &'a Headers, long: &str) -> Option<&'a str> {
    values(headers, long).next()
}

/// A `;name=value` parameter of a header value; for name-addr values (`"A" <sip:a@b>;tag=x`)
/// only the parameters after the `>` count. `Some("")` for a parameter without a value.
pub fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let p = p.trim();
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `text` as the Request-URI of a request of ours: a SIP or SIPS URI that rsip reads and that,
/// printed by rsip, reads again as the same URI. `None` otherwise: rsip also reads a URI
/// without a scheme (a Contact `<10010@host>`), but prints it into a request line that nobody,
/// rsip included, can read.
pub fn request_uri(text: &str) -> Option<rsip::Uri> {
    let uri = rsip::Uri::try_from(text.trim()).ok()?;
    if !matches!(uri.scheme, Some(rsip::Scheme::Sip | rsip::Scheme::Sips)) {
        return None;
    }
    let printed = uri.to_string();
    if printed.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return None;
    }
    (rsip::Uri::try_from(printed.as_str()).ok()? == uri).then_some(uri)
}

/// The first element of a possibly comma-separated header value (the top Via).
pub fn first_element(value: &str) -> &str {
    value.split(',').next().unwrap_or(value).trim()
}

/// The URI of a name-addr or addr-spec (`"A" <sip:a@b>;tag=x` → `sip:a@b`).
pub fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The user part of a SIP URI (`sip:10010@host;x` → `10010`), empty when there is none.
pub fn user_of(uri: &str) -> &str {
    let rest = uri
        .trim()
        .strip_prefix("sips:")
        .or_else(|| uri.trim().strip_prefix("sip:"))
        .or_else(|| uri.trim().strip_prefix("tel:"))
        .unwrap_or(uri);
    match rest.split_once('@') {
        Some((user, _)) => user
            .split(';')
            .next()
            .unwrap_or(user)
            .split(':')
            .next()
            .unwrap_or(user),
        None if uri.trim().starts_with("tel:") => rest.split(';').next().unwrap_or(rest),
        None => "",
    }
}

/// What the layers above key on, read once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: String,
    /// From tag.
    pub from_tag: Option<String>,
    /// To tag.
    pub to_tag: Option<String>,
    /// The top Via's branch.
    pub branch: Option<String>,
    /// The top Via's transport (`UDP`, `TCP`).
    pub via_transport: String,
    /// Max-Forwards, when present.
    pub max_forwards: Option<u32>,
}

/// Reads the mandatory headers; `Err` names what is missing or broken.
pub fn facts(headers: &Headers) -> Result<Facts, FactsError> {
    let call_id = value(headers, "Call-ID")
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(FactsError::NoCallId)?;
    let cseq = value(headers, "CSeq").ok_or(FactsError::NoCseq)?;
    let mut cs = cseq.split_whitespace();
    let num: u32 = cs
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or(FactsError::BadCseqNumber)?;
    let cseq_method = cs
        .next()
        .ok_or(FactsError::NoCseqMethod)?
        .to_ascii_uppercase();
    let from = value(headers, "From").ok_or(FactsError::NoFrom)?;
    let to = value(headers, "To").ok_or(FactsError::NoTo)?;
    let via = first_element(value(headers, "Via").ok_or(FactsError::NoVia)?);
    let via_transport = via
        .split_whitespace()
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("UDP")
        .to_ascii_uppercase();
    let max_forwards = match value(headers, "Max-Forwards") {
        Some(v) => Some(v.trim().parse().map_err(|_| FactsError::BadMaxForwards)?),
        None => None,
    };
    let tag = |v: &str| param(v, "tag").filter(|t| !t.is_empty()).map(String::from);
    Ok(Facts {
        call_id: call_id.to_string(),
        cseq: num,
        cseq_method,
        from_tag: tag(from),
        to_tag: tag(to),
        branch: param(via, "branch").map(String::from),
        via_transport,
        max_forwards,
    })
}

/// The reason phrase of a status code we send.
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        513 => "Message Too Large",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// The top Via as we return it: `rport` filled in and `received` added (RFC 3581, RFC 3261
/// 18.2.1).
fn answered_via(via: &str, source: SocketAddr) -> String {
    let top = first_element(via);
    let rest = via[via.find(top).map_or(via.len(), |i| i + top.len())..]
        .trim_start_matches(',')
        .trim();
    let mut out = String::with_capacity(top.len() + 40);
    let mut has_received = false;
    for (i, part) in top.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let p = part.trim();
        if i > 0 && p.eq_ignore_ascii_case("rport") {
            let _ = write!(out, "rport={}", source.port());
        } else {
            if i > 0 && p.to_ascii_lowercase().starts_with("received=") {
                has_received = true;
            }
            out.push_str(p);
        }
    }
    if !has_received {
        let _ = write!(out, ";received={}", source.ip());
    }
    if !rest.is_empty() {
        out.push_str(", ");
        out.push_str(rest);
    }
    out
}

/// Where a response over UDP goes (RFC 3261 18.2.2, RFC 3581): the source address when the
/// top Via asks for `rport`, else the source IP and the Via's port (5060 by default).
pub fn response_target(req_headers: &Headers, source: SocketAddr) -> SocketAddr {
    let Some(via) = value(req_headers, "Via").map(first_element) else {
        return source;
    };
    if param(via, "rport").is_some() {
        return source;
    }
    let sent_by = via
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default();
    let port = sent_by
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(']') || sent_by.starts_with('['))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(5060);
    SocketAddr::new(source.ip(), port)
}

/// Extra parts of a response.
#[derive(Debug, Default, Clone)]
pub struct Extra<'a> {
    /// The To tag to add when the request's To has none (not for 100).
    pub to_tag: Option<&'a str>,
    /// Our Contact URI (dialog-creating responses).
    pub contact: Option<&'a str>,
    /// Headers as `Name: value` lines.
    pub headers: &'a [(&'a str, &'a str)],
    /// Content type and body.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// A response to `req`, received from `source`, built with rsip.
pub fn response(req: &Request, source: SocketAddr, code: u16, extra: &Extra<'_>) -> Vec<u8> {
    let mut headers = Headers::default();
    let mut first_via = true;
    for h in req.headers.iter() {
        match h {
            Header::Via(v) => {
                if first_via {
                    headers.push(Header::Via(rsip::headers::Via::new(answered_via(
                        v.value(),
                        source,
                    ))));
                    first_via = false;
                } else {
                    headers.push(h.clone());
                }
            }
            Header::Other(n, v) if n.eq_ignore_ascii_case("v") => {
                let v = if first_via {
                    first_via = false;
                    answered_via(v, source)
                } else {
                    v.clone()
                };
                headers.push(Header::Via(rsip::headers::Via::new(v)));
            }
            _ => {}
        }
    }
    if let Some(v) = value(&req.headers, "From") {
        headers.push(Header::From(rsip::headers::From::new(v)));
    }
    if let Some(v) = value(&req.headers, "To") {
        let to = match extra.to_tag {
            Some(tag) if code != 100 && param(v, "tag").is_none() => format!("{v};tag={tag}"),
            _ => v.to_string(),
        };
        headers.push(Header::To(rsip::headers::To::new(to)));
    }
    if let Some(v) = value(&req.headers, "Call-ID") {
        headers.push(Header::CallId(rsip::headers::CallId::new(v)));
    }
    if let Some(v) = value(&req.headers, "CSeq") {
        headers.push(Header::CSeq(rsip::headers::CSeq::new(v)));
    }
    // RFC 3261 12.1.1: a response that makes a dialog (an INVITE's, with a To-tag) carries
    // the request's Record-Route values, in order, so that the caller routes its ACK, BYE and
    // re-INVITEs through the same proxies (Kamailio in front of a cluster).
    if req.method == rsip::Method::Invite && extra.to_tag.is_some() && (101..300).contains(&code) {
        for h in req.headers.iter() {
            match h {
                Header::RecordRoute(_) => headers.push(h.clone()),
                Header::Other(n, v) if n.eq_ignore_ascii_case("Record-Route") => headers.push(
                    Header::RecordRoute(rsip::headers::RecordRoute::new(v.clone())),
                ),
                _ => {}
            }
        }
    }
    if let Some(c) = extra.contact {
        headers.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<{c}>"
        ))));
    }
    for (n, v) in extra.headers {
        headers.push(Header::Other((*n).to_string(), (*v).to_string()));
    }
    headers.push(Header::Server(rsip::headers::Server::new(AGENT)));
    let body = match extra.body {
        Some((ctype, body)) => {
            headers.push(Header::ContentType(rsip::headers::ContentType::new(ctype)));
            body.to_vec()
        }
        None => Vec::new(),
    };
    headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
        body.len().to_string(),
    )));
    // Our reason phrases, as RFC 3261 writes them ("Not Found"; rsip would write "NotFound").
    let status = match reason(code) {
        "Unknown" => rsip::StatusCode::from(code),
        phrase => rsip::StatusCode::Other(code, phrase.into()),
    };
    let resp = rsip::Response {
        status_code: status,
        version: rsip::Version::V2,
        headers,
        body,
    };
    resp.to_string().into_bytes()
}

/// For a request rsip could not read (or whose method it does not know): a `code` response
/// built from its raw Via, From, To, Call-ID and CSeq lines, if it has them. Never for ACK,
/// never for responses.
pub fn raw_error_response(data: &[u8], code: u16) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data.get(..data.len().min(MAX_MESSAGE))?).ok()?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next()?.trim();
    let mut parts = first.split_whitespace();
    let method = parts.next()?;
    let _uri = parts.next()?;
    if parts.next()? != "SIP/2.0" || method.eq_ignore_ascii_case("ACK") {
        return None;
    }
    let mut out = format!("SIP/2.0 {code} {}\r\n", reason(code));
    let mut have = (false, false, false);
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some((name, v)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let keep = if is(name, "Via", "v") {
            have.0 = true;
            true
        } else if is(name, "Call-ID", "i") {
            have.1 = true;
            true
        } else if name.eq_ignore_ascii_case("CSeq") {
            have.2 = true;
            true
        } else {
            is(name, "From", "f") || is(name, "To", "t")
        };
        if keep && !line.contains('\r') && v.len() < 1024 {
            let _ = write!(out, "{name}: {}\r\n", v.trim());
        }
    }
    if !(have.0 && have.1 && have.2) {
        return None;
    }
    if code == 405 || code == 501 {
        let _ = write!(out, "Allow: {ALLOW}\r\n");
    }
    let _ = write!(out, "Server: {AGENT}\r\nContent-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// The method token of a request's first line, if it looks like one.
pub fn raw_method(data: &[u8]) -> Option<&str> {
    let end = data.iter().position(|&b| b == b'\r' || b == b'\n')?;
    let line = std::str::from_utf8(&data[..end]).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?;
    parts.next()?;
    (parts.next()? == "SIP/2.0"
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)))
    .then_some(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:10010@127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-1;rport\r\n\
        Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-0\r\n\
        Max-Forwards: 70\r\n\
        From: \"Alice\" <sip:13800000001@10.0.0.5>;tag=abc\r\n\
        To: <sip:10010@127.0.0.1>\r\n\
        Call-ID: 1-2@10.0.0.5\r\n\
        CSeq: 1 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn responses_that_make_a_dialog_carry_the_record_route() {
        let invite = INVITE.replace(
            "Max-Forwards: 70\r\n",
            "Record-Route: <sip:10.0.0.1;lr;r2=on>\r\nRecord-Route: <sip:10.0.0.2;lr>\r\nMax-Forwards: 70\r\n",
        );
        let SipMessage::Request(req) = parse(invite.as_bytes()).expect("parse") else {
            panic!("request");
        };
        let src: SocketAddr = "10.0.0.1:5060".parse().expect("addr");
        let with_tag = Extra {
            to_tag: Some("t1"),
            ..Extra::default()
        };
        let ok = String::from_utf8(response(&req, src, 200, &with_tag)).expect("utf8");
        let first = ok.find("Record-Route: <sip:10.0.0.1;lr;r2=on>\r\n");
        let second = ok.find("Record-Route: <sip:10.0.0.2;lr>\r\n");
        assert!(
            first.is_some() && second.is_some() && first < second,
            "{ok}"
        );
        // Not in a 100 Trying (no dialog) nor in a refusal.
        for code in [100, 486] {
            let r = String::from_utf8(response(&req, src, code, &with_tag)).expect("utf8");
            assert!(!r.contains("Record-Route"), "{r}");
        }
    }

    #[test]
    fn facts_and_response() {
        let SipMessage::Request(req) = parse(INVITE.as_bytes()).expect("parse") else {
            panic!("request");
        };
        let f = facts(&req.headers).expect("facts");
        assert_eq!(f.call_id, "1-2@10.0.0.5");
        assert_eq!(f.cseq, 1);
        assert_eq!(f.cseq_method, "INVITE");
        assert_eq!(f.from_tag.as_deref(), Some("abc"));
        assert_eq!(f.to_tag, None);
        assert_eq!(f.branch.as_deref(), Some("z9hG4bK-1"));
        assert_eq!(f.max_forwards, Some(70));
        let src: SocketAddr = "192.168.1.2:40000".parse().expect("addr");
        assert_eq!(response_target(&req.headers, src), src);
        let r = response(
            &req,
            src,
            180,
            &Extra {
                to_tag: Some("t1"),
                ..Extra::default()
            },
        );
        let r = String::from_utf8(r).expect("utf8");
        assert!(r.starts_with("SIP/2.0 180 Ringing\r\n"), "{r}");
        assert!(
            r.contains("Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-1;rport=40000;received=192.168.1.2\r\n"),
            "{r}"
        );
        assert!(
            r.contains("Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-0\r\n"),
            "{r}"
        );
        assert!(r.contains("To: <sip:10010@127.0.0.1>;tag=t1\r\n"), "{r}");
        assert!(r.contains("Content-Length: 0\r\n\r\n"), "{r}");
        assert_eq!(
            user_of(uri_of(value(&req.headers, "From").expect("from"))),
            "13800000001"
        );
        // Reason phrases as RFC 3261 writes them.
        for (code, line) in [
            (404, "SIP/2.0 404 Not Found\r\n"),
            (481, "SIP/2.0 481 Call/Transaction Does Not Exist\r\n"),
            (488, "SIP/2.0 488 Not Acceptable Here\r\n"),
            (503, "SIP/2.0 503 Service Unavailable\r\n"),
        ] {
            let r = String::from_utf8(response(&req, src, code, &Extra::default())).expect("utf8");
            assert!(r.starts_with(line), "{r}");
        }
    }

    #[test]
    fn via_without_rport() {
        let text = INVITE.replace(";rport", "");
        let SipMessage::Request(req) = parse(text.as_bytes()).expect("parse") else {
            panic!("request");
        };
        let src: SocketAddr = "192.168.1.2:40000".parse().expect("addr");
        assert_eq!(
            response_target(&req.headers, src),
            "192.168.1.2:5070".parse::<SocketAddr>().expect("addr")
        );
    }

    #[test]
    fn broken_requests_get_raw_answers() {
        let unknown = INVITE.replacen("INVITE sip", "FROBNICATE sip", 1);
        assert!(parse(unknown.as_bytes()).is_err());
        assert_eq!(raw_method(unknown.as_bytes()), Some("FROBNICATE"));
        let r = String::from_utf8(raw_error_response(unknown.as_bytes(), 501).expect("501"))
            .expect("utf8");
        assert!(r.starts_with("SIP/2.0 501 Not Implemented\r\n"), "{r}");
        assert!(r.contains("Call-ID: 1-2@10.0.0.5\r\n"), "{r}");
        assert!(raw_error_response(b"garbage", 400).is_none());
        assert!(parse(&[0xff; 100]).is_err());
    }

    /// Found by the `sip_core` fuzz target: the Via value `2\nr` (and the same in any echoed
    /// header) went back in our 400 as `Via: 2\nr;received=...`, a line break the peer chose.
    #[test]
    fn a_bare_line_break_in_the_head_is_refused() {
        assert!(matches!(
            parse(b"INVITE s SIP/2.0\r\nV:2\nr\r\n"),
            Err(ParseError::Syntax(_))
        ));
        for (from, to) in [
            (
                "Call-ID: 1-2@10.0.0.5\r\n",
                "Call-ID: 1-2@10.0.0.5\t\nCSeq: 9 BYE\r\n",
            ),
            (
                "To: <sip:10010@127.0.0.1>",
                "To: <sip:10010@127.0.0.1>\nContact: <sip:x@evil>",
            ),
            ("Max-Forwards: 70", "Max-Forwards: 70\r"),
            ("Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n\n"),
        ] {
            let bad = INVITE.replacen(from, to, 1);
            assert_ne!(bad, INVITE);
            assert!(
                matches!(parse(bad.as_bytes()), Err(ParseError::Syntax(_))),
                "{bad:?}"
            );
            // The transport's raw 400 keeps whole lines only.
            if let Some(r) = raw_error_response(bad.as_bytes(), 400) {
                let r = String::from_utf8(r).expect("utf8");
                let head = r.split("\r\n\r\n").next().expect("head");
                assert!(
                    head.split("\r\n").all(|l| !l.contains(['\r', '\n'])),
                    "{r:?}"
                );
            }
        }
        // Found by the `sip_message` fuzz target: rsip reads CRLFs inside the Request-URI's
        // host, so the head does not end at the first blank line; a lone LF after it was kept.
        let split = INVITE
            .replacen("sip:10010@127.0.0.1:5060", "sip\r\n\r\n.0.0.2:5060", 1)
            .replacen("Max-Forwards: 70", "Max-Forwards: 70\nTo: x", 1);
        assert!(
            matches!(parse(split.as_bytes()), Err(ParseError::Syntax(_))),
            "{split:?}"
        );
        // Line breaks in the body are the body's business.
        let body = INVITE.replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Length: 7\r\n\r\nv=0\nx\r",
        );
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn uris() {
        assert_eq!(user_of("sip:10010@1.2.3.4;user=phone"), "10010");
        assert_eq!(user_of("sip:1.2.3.4"), "");
        assert_eq!(user_of("tel:+8610010"), "+8610010");
        assert_eq!(uri_of("\"A\" <sip:a@b>;tag=x"), "sip:a@b");
        assert_eq!(param("<sip:a@b;tag=no>;tag=yes", "tag"), Some("yes"));
    }
}
