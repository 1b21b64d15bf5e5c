//! Calls we place (as the UAC): the INVITE to an agent's phone or a `transfer to` number, its
//! CANCEL, and the ACK of a final error response (RFC 3261 17.1.1.3). The ACK of a 2xx and
//! the BYE belong to the dialog ([`super::dialog::Dialog`]); the transaction's timers are
//! [`super::transaction::InviteClientTx`]. Sans-IO: these build bytes, the core sends them.

use super::message::{self, AGENT};
use rsip::headers::UntypedHeader;
use rsip::{Header, Headers, Method, Request};

/// The headers of an INVITE we sent, kept to build its CANCEL and the ACK of an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingInvite {
    /// The Request-URI.
    pub uri: String,
    /// The whole Via value (with our branch).
    pub via: String,
    /// Our branch.
    pub branch: String,
    /// From, with our tag.
    pub from: String,
    /// To, without a tag.
    pub to: String,
    /// Call-ID.
    pub call_id: String,
    /// The CSeq number.
    pub cseq: u32,
}

/// What an INVITE of ours says, apart from the transaction's parts.
#[derive(Debug, Clone, Default)]
pub struct InviteParts<'a> {
    /// Who we call (a SIP URI).
    pub target: &'a str,
    /// Our sent-by for Via (`SIP/2.0/UDP host:port`).
    pub sent_by: &'a str,
    /// From: the caller's number as the callee should see it, at our host.
    pub from: &'a str,
    /// Our tag (the dialog's key).
    pub tag: &'a str,
    /// Call-ID (new for each leg).
    pub call_id: &'a str,
    /// Our Contact URI.
    pub contact: &'a str,
    /// Extra headers (`X-IVR-*` screen pop).
    pub headers: &'a [(String, String)],
    /// Our SDP offer.
    pub sdp: &'a str,
    /// The CSeq number (0 is taken as 1; the INVITE sent again after a challenge has the
    /// next).
    pub cseq: u32,
    /// `Authorization` or `Proxy-Authorization` with its value (after a challenge).
    pub authorization: Option<(&'a str, &'a str)>,
}

/// A transfer target that is not a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a SIP URI")]
pub struct NotSipUri(pub String);

impl OutgoingInvite {
    /// Builds the INVITE; `Err` when the target is not a SIP URI.
    pub fn build(p: &InviteParts<'_>) -> Result<(OutgoingInvite, Vec<u8>), NotSipUri> {
        let lower = p.target.to_ascii_lowercase();
        let uri = message::request_uri(p.target)
            .filter(|_| {
                (lower.starts_with("sip:") || lower.starts_with("sips:"))
                    && !p.target.contains(char::is_whitespace)
            })
            .ok_or_else(|| NotSipUri(p.target.to_string()))?;
        let branch = message::new_branch();
        let via = format!("{};branch={branch};rport", p.sent_by);
        let from = format!("{};tag={}", p.from, p.tag);
        let to = format!("<{}>", p.target);
        let mut headers = Headers::default();
        headers.push(Header::Via(rsip::headers::Via::new(via.clone())));
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        headers.push(Header::From(rsip::headers::From::new(from.clone())));
        headers.push(Header::To(rsip::headers::To::new(to.clone())));
        headers.push(Header::CallId(rsip::headers::CallId::new(p.call_id)));
        let cseq = p.cseq.max(1);
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{cseq} INVITE"
        ))));
        if let Some((name, value)) = p.authorization {
            headers.push(Header::Other(
                name.to_string(),
                value.replace(['\r', '\n'], ""),
            ));
        }
        headers.push(Header::Contact(rsip::headers::Contact::new(format!(
            "<{}>",
            p.contact
        ))));
        headers.push(Header::Allow(rsip::headers::Allow::new(message::ALLOW)));
        headers.push(Header::UserAgent(rsip::headers::UserAgent::new(AGENT)));
        for (n, v) in p.headers {
            headers.push(Header::Other(n.clone(), header_safe(v)));
        }
        headers.push(Header::ContentType(rsip::headers::ContentType::new(
            "application/sdp",
        )));
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            p.sdp.len().to_string(),
        )));
        let req = Request {
            method: Method::Invite,
            uri,
            version: rsip::Version::V2,
            headers,
            body: p.sdp.as_bytes().to_vec(),
        };
        Ok((
            OutgoingInvite {
                uri: p.target.to_string(),
                via,
                branch,
                from,
                to,
                call_id: p.call_id.to_string(),
                cseq,
            },
            req.to_string().into_bytes(),
        ))
    }

    /// Its CANCEL (same Request-URI, Via, From, To, Call-ID; CSeq number; RFC 3261 9.1).
    pub fn cancel(&self) -> Vec<u8> {
        self.request(Method::Cancel, &self.to)
    }

    /// The ACK of a final error response, whose To (with the callee's tag) is `to`.
    pub fn ack_error(&self, to: &str) -> Vec<u8> {
        self.request(Method::Ack, to)
    }

    fn request(&self, method: Method, to: &str) -> Vec<u8> {
        let mut headers = Headers::default();
        headers.push(Header::Via(rsip::headers::Via::new(self.via.clone())));
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        headers.push(Header::From(rsip::headers::From::new(self.from.clone())));
        headers.push(Header::To(rsip::headers::To::new(to)));
        headers.push(Header::CallId(rsip::headers::CallId::new(
            self.call_id.clone(),
        )));
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{} {method}",
            self.cseq
        ))));
        headers.push(Header::UserAgent(rsip::headers::UserAgent::new(AGENT)));
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            "0",
        )));
        Request {
            method,
            uri: message::request_uri(&self.uri).unwrap_or_default(),
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        }
        .to_string()
        .into_bytes()
    }
}

/// A header value as it may go on the wire: no line breaks or control characters, at most
/// 256 bytes (cut at a character boundary).
pub fn header_safe(v: &str) -> String {
    let mut out = String::with_capacity(v.len().min(256));
    for c in v.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > 256 {
            break;
        }
        out.push(c);
    }
    out.trim().to_string()
}

/// `customer.id` → `Customer-Id`: a name from the flow as the tail of an `X-IVR-` header.
pub fn header_name(name: &str) -> String {
    name.split(['.', '_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let word: String = p.chars().filter(char::is_ascii_alphanumeric).collect();
            let mut cs = word.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &cs.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::SipMessage;

    fn parts<'a>(headers: &'a [(String, String)]) -> InviteParts<'a> {
        InviteParts {
            target: "sip:2001@127.0.0.1:5091",
            sent_by: "SIP/2.0/UDP 127.0.0.1:5060",
            from: "<sip:13800000001@127.0.0.1>",
            tag: "t1",
            call_id: "leg-1",
            contact: "sip:ivr@127.0.0.1:5060",
            headers,
            sdp: "v=0\r\n",
            ..InviteParts::default()
        }
    }

    #[test]
    fn invite_cancel_and_ack_share_the_transaction() {
        let headers = vec![
            ("X-IVR-Caller".to_string(), "13800000001".to_string()),
            (
                "X-IVR-Customer-Name".to_string(),
                "王芳\r\nEvil: 1".to_string(),
            ),
        ];
        let (inv, bytes) = OutgoingInvite::build(&parts(&headers)).expect("invite");
        let text = String::from_utf8(bytes.clone()).expect("utf8");
        assert!(
            text.starts_with("INVITE sip:2001@127.0.0.1:5091 SIP/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("X-IVR-Caller: 13800000001\r\n"), "{text}");
        assert!(
            text.contains("X-IVR-Customer-Name: 王芳  Evil: 1\r\n"),
            "{text}"
        );
        assert!(!text.contains("\r\nEvil"), "{text}");
        assert!(text.contains("CSeq: 1 INVITE\r\n"), "{text}");
        let SipMessage::Request(req) = message::parse(&bytes).expect("parse") else {
            panic!("request")
        };
        assert_eq!(req.body, b"v=0\r\n");
        let cancel = String::from_utf8(inv.cancel()).expect("utf8");
        assert!(
            cancel.starts_with("CANCEL sip:2001@127.0.0.1:5091 SIP/2.0\r\n"),
            "{cancel}"
        );
        assert!(
            cancel.contains(&format!("branch={}", inv.branch)),
            "{cancel}"
        );
        assert!(cancel.contains("CSeq: 1 CANCEL\r\n"), "{cancel}");
        let ack =
            String::from_utf8(inv.ack_error("<sip:2001@127.0.0.1:5091>;tag=x")).expect("utf8");
        assert!(ack.contains("CSeq: 1 ACK\r\n"), "{ack}");
        assert!(ack.contains(";tag=x\r\n"), "{ack}");
        assert!(message::parse(ack.as_bytes()).is_ok());
    }

    #[test]
    fn a_target_that_is_not_a_uri_is_refused() {
        let headers = Vec::new();
        let mut p = parts(&headers);
        p.target = "not a uri";
        assert!(OutgoingInvite::build(&p).is_err());
    }

    #[test]
    fn flow_names_become_header_names() {
        assert_eq!(header_name("customer.id"), "Customer-Id");
        assert_eq!(header_name("plan_name"), "Plan-Name");
        assert_eq!(header_name("x"), "X");
    }
}
