//! Dialogs (RFC 3261 12): the state an INVITE creates — as UAS for callers, as UAC for the
//! legs we place to agents — Call-ID, both tags, the peer's Contact and route set, both CSeq
//! counters — and the in-dialog requests we send (BYE, the ACK of a 2xx).

use super::message::{self, AGENT, Facts};
use rsip::headers::UntypedHeader;
use rsip::{Header, Headers, Request};

/// One dialog, as the UAS of its INVITE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (the To tag of our responses).
    pub local_tag: String,
    /// The caller's tag (From).
    pub remote_tag: String,
    /// Our address as the caller wrote it (To, without tag).
    pub local: String,
    /// The caller's address (From, with its tag).
    pub remote: String,
    /// Where in-dialog requests go: the caller's Contact URI.
    pub remote_target: String,
    /// Record-Route values, in order (our Route headers).
    pub route_set: Vec<String>,
    /// Our CSeq for requests we send.
    pub local_cseq: u32,
    /// The highest CSeq the caller used.
    pub remote_cseq: u32,
}

impl Dialog {
    /// The dialog of an INVITE we answer with `local_tag`.
    pub fn from_invite(req: &Request, facts: &Facts, local_tag: &str) -> Dialog {
        let h = &req.headers;
        let remote = message::value(h, "From").unwrap_or_default().to_string();
        let local = message::value(h, "To").unwrap_or_default().to_string();
        let remote_target = message::value(h, "Contact")
            .map(message::first_element)
            .map(message::uri_of)
            .filter(|u| !u.is_empty())
            .map_or_else(|| message::uri_of(&remote).to_string(), String::from);
        let route_set = message::values(h, "Record-Route")
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        Dialog {
            call_id: facts.call_id.clone(),
            local_tag: local_tag.to_string(),
            remote_tag: facts.from_tag.clone().unwrap_or_default(),
            local,
            remote,
            remote_target,
            route_set,
            local_cseq: 0,
            remote_cseq: facts.cseq,
        }
    }

    /// Whether an in-dialog request belongs here (Call-ID and both tags).
    pub fn matches(&self, facts: &Facts) -> bool {
        facts.call_id == self.call_id
            && facts.to_tag.as_deref() == Some(self.local_tag.as_str())
            && facts.from_tag.as_deref().unwrap_or_default() == self.remote_tag
    }

    /// The dialog a 2xx to our INVITE created (RFC 3261 12.1.2): we are the UAC; `local` is
    /// our From (with its tag), the route set is the 2xx's Record-Route in reverse.
    pub fn from_uac_response(
        call_id: &str,
        local: &str,
        local_tag: &str,
        cseq: u32,
        resp: &rsip::Response,
    ) -> Dialog {
        let h = &resp.headers;
        let remote = message::value(h, "To").unwrap_or_default().to_string();
        let remote_tag = message::param(&remote, "tag")
            .unwrap_or_default()
            .to_string();
        let remote_target = message::value(h, "Contact")
            .map(message::first_element)
            .map(message::uri_of)
            .filter(|u| !u.is_empty())
            .map_or_else(|| message::uri_of(&remote).to_string(), String::from);
        let mut route_set: Vec<String> = message::values(h, "Record-Route")
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        route_set.reverse();
        Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.to_string(),
            remote_tag,
            local: local.to_string(),
            remote,
            remote_target,
            route_set,
            local_cseq: cseq,
            remote_cseq: 0,
        }
    }

    /// An in-dialog request of ours (`BYE`): `via` is our sent-by (`SIP/2.0/UDP host:port`).
    pub fn request(&mut self, method: rsip::Method, via: &str, branch: &str) -> Vec<u8> {
        self.local_cseq += 1;
        self.build(method, self.local_cseq, via, branch)
    }

    /// An in-dialog request of ours with extra headers and a body (`NOTIFY` of a REFER's
    /// progress): `body` is its content type and bytes.
    pub fn request_with(
        &mut self,
        method: rsip::Method,
        via: &str,
        branch: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        self.local_cseq += 1;
        self.build_with(method, self.local_cseq, via, branch, extra, body)
    }

    /// The ACK of a 2xx to our INVITE: a request of its own with the INVITE's CSeq number.
    pub fn ack(&self, via: &str, branch: &str) -> Vec<u8> {
        self.build(rsip::Method::Ack, self.local_cseq, via, branch)
    }

    fn build(&self, method: rsip::Method, cseq: u32, via: &str, branch: &str) -> Vec<u8> {
        self.build_with(method, cseq, via, branch, &[], None)
    }

    fn build_with(
        &self,
        method: rsip::Method,
        cseq: u32,
        via: &str,
        branch: &str,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        let mut headers = Headers::default();
        headers.push(Header::Via(rsip::headers::Via::new(format!(
            "{via};branch={branch};rport"
        ))));
        headers.push(Header::MaxForwards(rsip::headers::MaxForwards::new("70")));
        let local = if message::param(&self.local, "tag").is_some() {
            self.local.clone()
        } else {
            format!("{};tag={}", self.local, self.local_tag)
        };
        headers.push(Header::From(rsip::headers::From::new(local)));
        headers.push(Header::To(rsip::headers::To::new(self.remote.clone())));
        headers.push(Header::CallId(rsip::headers::CallId::new(
            self.call_id.clone(),
        )));
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{cseq} {method}"
        ))));
        for r in &self.route_set {
            headers.push(Header::Route(rsip::headers::Route::new(r.clone())));
        }
        headers.push(Header::UserAgent(rsip::headers::UserAgent::new(AGENT)));
        for (name, value) in extra {
            headers.push(Header::Other((*name).to_string(), (*value).to_string()));
        }
        if let Some((ctype, _)) = body {
            headers.push(Header::ContentType(rsip::headers::ContentType::new(
                ctype.to_string(),
            )));
        }
        let len = body.map_or(0, |(_, b)| b.len());
        headers.push(Header::ContentLength(rsip::headers::ContentLength::new(
            len.to_string(),
        )));
        // The peer's Contact, else its From URI; with neither usable, a placeholder that is
        // valid SIP (the request goes to the peer's address all the same, and the dialog is
        // matched by Call-ID and tags, not by the Request-URI).
        let uri = message::request_uri(&self.remote_target)
            .or_else(|| message::request_uri(message::uri_of(&self.remote)))
            .or_else(|| message::request_uri("sip:anonymous.invalid"))
            .unwrap_or_default();
        Request {
            method,
            uri,
            version: rsip::Version::V2,
            headers,
            body: body.map(|(_, b)| b.to_vec()).unwrap_or_default(),
        }
        .to_string()
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsip::SipMessage;

    #[test]
    fn bye_swaps_from_and_to() {
        let invite = "INVITE sip:10010@127.0.0.1 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bK-1\r\n\
            From: <sip:alice@10.0.0.5>;tag=abc\r\nTo: <sip:10010@127.0.0.1>\r\n\
            Call-ID: c1\r\nCSeq: 7 INVITE\r\nContact: <sip:alice@10.0.0.5:5070>\r\n\
            Record-Route: <sip:proxy;lr>\r\nContent-Length: 0\r\n\r\n";
        let SipMessage::Request(req) = message::parse(invite.as_bytes()).expect("parse") else {
            panic!("request")
        };
        let f = message::facts(&req.headers).expect("facts");
        let mut d = Dialog::from_invite(&req, &f, "mytag");
        assert_eq!(d.remote_target, "sip:alice@10.0.0.5:5070");
        let bye = String::from_utf8(d.request(
            rsip::Method::Bye,
            "SIP/2.0/UDP 127.0.0.1:5060",
            "z9hG4bKx",
        ))
        .expect("utf8");
        assert!(
            bye.starts_with("BYE sip:alice@10.0.0.5:5070 SIP/2.0\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("From: <sip:10010@127.0.0.1>;tag=mytag\r\n"),
            "{bye}"
        );
        assert!(
            bye.contains("To: <sip:alice@10.0.0.5>;tag=abc\r\n"),
            "{bye}"
        );
        assert!(bye.contains("CSeq: 1 BYE\r\n"), "{bye}");
        assert!(bye.contains("Route: <sip:proxy;lr>\r\n"), "{bye}");
        let back = message::parse(bye.as_bytes()).expect("reparse");
        assert!(back.is_request());
    }

    /// Found by the `sip_message` fuzz target: with an empty From and no Contact, the BYE's
    /// Request-URI was rsip's default, printed `127.0.0.1` without a scheme; with a Contact
    /// without a scheme, rsip read it but printed it the same way. Neither request line reads.
    #[test]
    fn a_bye_without_a_usable_contact_or_from_still_reads() {
        for invite in [
            "INVITE sip:5 SIP/2.0\r\nV:\r\nF:\r\nT:\r\nCall-ID:\u{6}\r\nCSeq:1 >\r\nRecord-Route:://\r\n\r\n",
            "INVITE sip:10010@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5\r\n\
             From: <alice@10.0.0.5>;tag=abc\r\nTo: <sip:10010@127.0.0.1>\r\nCall-ID: c1\r\n\
             CSeq: 7 INVITE\r\nContact: <si010@127.0.0.2>\r\n\r\n",
        ] {
            let SipMessage::Request(req) = message::parse(invite.as_bytes()).expect("parse") else {
                panic!("request")
            };
            let f = message::facts(&req.headers).expect("facts");
            let mut d = Dialog::from_invite(&req, &f, "mytag");
            let bye = d.request(rsip::Method::Bye, "SIP/2.0/UDP 127.0.0.1:5060", "z9hG4bKx");
            let text = String::from_utf8_lossy(&bye).into_owned();
            assert!(
                text.starts_with("BYE sip:anonymous.invalid SIP/2.0\r\n"),
                "{text}"
            );
            assert!(message::parse(&bye).is_ok(), "{text}");
            let ack = d.ack("SIP/2.0/UDP 127.0.0.1:5060", "z9hG4bKy");
            assert!(message::parse(&ack).is_ok());
        }
        assert!(message::request_uri("10010@127.0.0.2").is_none());
        assert!(message::request_uri("sip:10010@127.0.0.2;transport=tcp").is_some());
    }
}
