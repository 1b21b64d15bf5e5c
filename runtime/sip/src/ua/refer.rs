//! REFER (RFC 3515) from the callee of a leg we placed (an agent's phone passing the caller
//! on): `202 Accepted` with its implicit subscription, a first `NOTIFY` (`message/sipfrag`
//! `SIP/2.0 100 Trying`), [`LegEvent::Refer`] for the application, and the final `NOTIFY`
//! when the application says how it went ([`Command::ReferDone`](super::Command::ReferDone)),
//! which ends the subscription. A REFER in a caller's dialog is refused (403): callers do not
//! transfer.

use super::core::TxKey;
use super::{Core, Host, LegEvent};
use crate::message::{self, ALLOW, Extra, Facts};
use crate::peer::Peer;
use ivr_sansio::Millis;
use rsip::{Method, Request};
use std::sync::Arc;

/// Most characters of a Refer-To header we read.
const MAX_REFER_TO: usize = 1024;

/// Where a REFER asks the caller to go: the parts of its `Refer-To` URI the application
/// decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refer {
    /// The user part of the URI (`queue.billing`, `2002`, `13800000001`), percent-decoded.
    pub user: String,
    /// The host part as written (`ivr.example.com`, `127.0.0.1:5060`).
    pub host: String,
    /// The `Replaces` header embedded in the URI (attended transfer, RFC 3891), decoded.
    pub replaces: Option<String>,
}

/// Reads a `Refer-To` value: `<sip:queue.billing@host>`, `sip:2002@host`, with an embedded
/// `?Replaces=...`. `None` when it is no SIP URI with a user part.
pub fn parse_refer_to(value: &str) -> Option<Refer> {
    if value.len() > MAX_REFER_TO {
        return None;
    }
    let uri = message::uri_of(value.trim());
    let (uri, headers) = match uri.split_once('?') {
        Some((u, h)) => (u, Some(h)),
        None => (uri, None),
    };
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, host) = rest.split_once('@')?;
    let user = user.split(';').next().unwrap_or(user);
    let host = host.split(';').next().unwrap_or(host);
    let user = decode(user)?;
    if user.is_empty() || host.is_empty() {
        return None;
    }
    // A `Replaces` that does not decode makes the whole Refer-To unusable (400): taken as
    // absent, it would turn an attended transfer into a blind one.
    let replaces = match headers.and_then(|h| {
        h.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.eq_ignore_ascii_case("replaces").then_some(v)
        })
    }) {
        Some(v) => Some(decode(v)?),
        None => None,
    };
    Some(Refer {
        user,
        host: host.to_string(),
        replaces,
    })
}

/// The dialog a `Replaces` value names (RFC 3891): `CALLID;to-tag=X;from-tag=Y`. In a REFER's
/// `Refer-To` for an attended transfer, the tags are as the transferring phone sent its
/// consultation INVITE: `to-tag` is the tag of whoever answered it, `from-tag` the phone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaces {
    /// The Call-ID.
    pub call_id: String,
    /// The `to-tag` parameter.
    pub to_tag: String,
    /// The `from-tag` parameter.
    pub from_tag: String,
    /// `early-only` was given.
    pub early_only: bool,
}

/// Reads a decoded `Replaces` value; `None` without a Call-ID or either tag.
pub fn parse_replaces(value: &str) -> Option<Replaces> {
    if value.len() > MAX_REFER_TO {
        return None;
    }
    let mut parts = value.split(';').map(str::trim);
    let call_id = parts.next().filter(|c| !c.is_empty())?.to_string();
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        match k.trim().to_ascii_lowercase().as_str() {
            "to-tag" => to_tag = Some(v.trim().to_string()),
            "from-tag" => from_tag = Some(v.trim().to_string()),
            "early-only" => early_only = true,
            _ => {}
        }
    }
    Some(Replaces {
        call_id,
        to_tag: to_tag.filter(|t| !t.is_empty())?,
        from_tag: from_tag.filter(|t| !t.is_empty())?,
        early_only,
    })
}

/// Percent-decoding (`%40` → `@`); `None` for a broken escape or bytes that are no UTF-8.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl<H: Host> Core<H> {
    pub(super) fn on_refer(
        &mut self,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        let tag = f.to_tag.clone().unwrap_or_default();
        if !self.leg_matches(&tag, f) {
            let code = if self.dialogs.get(&tag).is_some_and(|e| e.dialog.matches(f)) {
                403
            } else {
                481
            };
            self.answer(req, peer, code);
            return;
        }
        let Some(mut bucket) = self.legs.get(&tag).map(|l| l.bucket) else {
            return;
        };
        let ok = self.in_dialog_rate(&mut bucket, req, peer, now);
        let Some(l) = self.legs.get_mut(&tag) else {
            return;
        };
        l.bucket = bucket;
        if !ok {
            return;
        }
        if let Some(d) = l.dialog.as_mut() {
            if f.cseq <= d.remote_cseq {
                self.answer_on_tx(req, peer, &key, 500, now);
                return;
            }
            d.remote_cseq = f.cseq;
        }
        if l.refer {
            // One transfer at a time (RFC 3515 2.4.2 lets us refuse).
            self.answer_on_tx(req, peer, &key, 491, now);
            return;
        }
        let refer_to =
            message::value(&req.headers, "Refer-To").or_else(|| message::value(&req.headers, "r"));
        let Some(refer) = refer_to.and_then(parse_refer_to) else {
            tracing::info!(tag, "REFER without a usable Refer-To");
            self.answer_on_tx(req, peer, &key, 400, now);
            return;
        };
        l.refer = true;
        let local_ip = l.local_ip;
        let contact = self.contact(local_ip, peer.proto);
        self.respond(
            req,
            peer,
            &key,
            202,
            &Extra {
                to_tag: Some(&tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW)],
                body: None,
            },
            now,
        );
        tracing::info!(tag, target = %refer.user, attended = refer.replaces.is_some(), "REFER accepted");
        self.send_refer_notify(&tag, 100, now);
        self.leg_event(&tag, LegEvent::Refer(refer));
    }

    /// The final NOTIFY of leg `tag`'s REFER: the status of the transfer (`200`, or why it
    /// was refused); the subscription ends.
    pub(super) fn refer_done(&mut self, tag: &str, code: u16, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if !std::mem::replace(&mut l.refer, false) {
            return;
        }
        self.send_refer_notify(tag, code, now);
    }

    /// A NOTIFY of the REFER's implicit subscription (RFC 3515 2.4.4) with a `message/sipfrag`
    /// status line; a final status ends the subscription.
    fn send_refer_notify(&mut self, tag: &str, code: u16, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        let (peer, local_ip) = (l.peer, l.local_ip);
        let via = self.sent_by(peer.proto, local_ip);
        let contact = self.contact(local_ip, peer.proto);
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        let Some(d) = l.dialog.as_mut() else { return };
        let frag = format!("SIP/2.0 {code} {}\r\n", message::reason(code));
        let state = if code < 200 {
            "active;expires=60"
        } else {
            "terminated;reason=noresource"
        };
        let contact = format!("<{contact}>");
        let branch = message::new_branch();
        let bytes: Arc<[u8]> = Arc::from(d.request_with(
            Method::Notify,
            &via,
            &branch,
            &[
                ("Event", "refer"),
                ("Subscription-State", state),
                ("Contact", &contact),
            ],
            Some(("message/sipfrag;version=2.0", frag.as_bytes())),
        ));
        self.start_client(branch, bytes, peer, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refer_to_names_a_queue_an_agent_or_a_replacement() {
        let r = parse_refer_to("<sip:queue.billing@127.0.0.1:5060>").expect("queue");
        assert_eq!(r.user, "queue.billing");
        assert_eq!(r.host, "127.0.0.1:5060");
        assert_eq!(r.replaces, None);
        let r = parse_refer_to("sip:2002@ivr.example.com;transport=udp").expect("agent");
        assert_eq!(
            (r.user.as_str(), r.host.as_str()),
            ("2002", "ivr.example.com")
        );
        let r =
            parse_refer_to("<sip:2002@10.0.0.1?Replaces=abc%40host%3Bto-tag%3D1%3Bfrom-tag%3D2>")
                .expect("attended");
        assert_eq!(r.replaces.as_deref(), Some("abc@host;to-tag=1;from-tag=2"));
        let rep = parse_replaces(r.replaces.as_deref().unwrap_or_default()).expect("replaces");
        assert_eq!(
            (
                rep.call_id.as_str(),
                rep.to_tag.as_str(),
                rep.from_tag.as_str()
            ),
            ("abc@host", "1", "2")
        );
        assert!(!rep.early_only);
        assert_eq!(parse_replaces("abc;to-tag=1"), None);
        assert_eq!(parse_replaces(";to-tag=1;from-tag=2"), None);
        assert!(
            parse_replaces("x;from-tag=2;to-tag=1;early-only")
                .expect("early")
                .early_only
        );
        assert_eq!(parse_refer_to("<tel:+8613800000001>"), None);
        assert_eq!(parse_refer_to("<sip:host.only>"), None);
        assert_eq!(parse_refer_to("<sip:%zz@h>"), None);
        // A Replaces that does not decode is no blind transfer to the user part.
        assert_eq!(
            parse_refer_to("<sip:2002@h?Replaces=%00%ff%3Bto-tag%3D1>"),
            None
        );
        assert_eq!(parse_refer_to("<sip:2002@h?Replaces=a%zz>"), None);
    }
}
