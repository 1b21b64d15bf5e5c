//! The user-agent core in memory: a UAC core placing legs and a UAS core admitting calls,
//! the bytes of one moved into the other (lost or duplicated at will), virtual time advanced
//! from deadline to deadline. The SIPp tests of `ivr serve` check the same behaviours over
//! sockets; these run in milliseconds.

mod harness;

use harness::*;
use ivr_sip::peer::Proto;
use ivr_sip::registrar::{Registration, ha1};
use ivr_sip::sdp::{Direction, Law, Negotiated};
use ivr_sip::ua::{Command, DialogEvent, LegEvent, Output};
use md5::{Digest, Md5};

const T1: i64 = 500;
const T2: i64 = 4_000;

/// A call from the UAC core to the UAS core, answered and acknowledged; the leg's tag and
/// the UAS's To-tag.
fn established(net: &mut Net) -> (String, String) {
    let leg = net.dial("10010");
    net.advance(10);
    assert!(
        net.outputs(Side::Uac).iter().any(|o| matches!(
            o,
            Output::Leg {
                event: LegEvent::Answered(_),
                ..
            }
        )),
        "{:#?}",
        net.outputs(Side::Uac)
    );
    (leg, net.uas_tag())
}

/// The times of the packets, relative to the first.
fn gaps(packets: &[&Packet]) -> Vec<i64> {
    packets.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[test]
fn invite_rings_is_answered_and_acknowledged_with_the_call_events_on_both_sides() {
    let mut net = Net::new(2_000);
    let start = net.now;
    let leg = net.dial("10010");
    let invite = net.one(UAC, |p| p.is_request("INVITE")).text.clone();
    assert!(
        invite.starts_with(&format!("INVITE sip:10010@{UAS} SIP/2.0\r\n")),
        "{invite}"
    );
    assert_eq!(header(&invite, "From").and_then(tag), Some(leg.as_str()));
    assert!(header(&invite, "From").is_some_and(|f| f.starts_with("<sip:13800000001@127.0.0.1>")));
    assert_eq!(header(&invite, "X-IVR-Caller"), Some("13800000001"));
    assert_eq!(header(&invite, "Contact"), Some("<sip:ivr@127.0.0.1:5060>"));
    assert!(body(&invite).contains(&format!("m=audio {UAC_RTP} RTP/AVP 0 8 101")));

    // 100 and 180 at once; the UAS admitted the call but it does not start before the 200.
    let tag = net.uas_tag();
    assert_eq!(net.sent(UAS, |p| p.is_response(100, "INVITE")).len(), 1);
    let ringing = net.one(UAS, |p| p.is_response(180, "INVITE")).text.clone();
    assert_eq!(
        header(&ringing, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_eq!(
        net.take(Side::Uac),
        [Output::Leg {
            tag: leg.clone(),
            event: LegEvent::Ringing
        }]
    );
    assert_eq!(net.take(Side::Uas), []);
    assert_eq!(net.uas.active(), 1);
    assert_eq!(net.uas.answered(), 0);

    // The 200 after `answer_after`, with our answer; the ACK; the call starts on both sides.
    net.advance(2_000);
    let ok = net.one(UAS, |p| p.is_response(200, "INVITE"));
    assert_eq!(ok.at, start + 2_000);
    let ok = ok.text.clone();
    assert_eq!(header(&ok, "To").and_then(harness::tag), Some(tag.as_str()));
    assert_eq!(
        header(&ok, "From").and_then(harness::tag),
        Some(leg.as_str())
    );
    assert_eq!(header(&ok, "Contact"), Some("<sip:ivr@127.0.0.2:5060>"));
    assert!(
        body(&ok).contains(&format!("m=audio {UAS_RTP} RTP/AVP 0 101")),
        "{ok}"
    );
    let ack = net.one(UAC, |p| p.is_request("ACK")).text.clone();
    assert!(
        ack.starts_with("ACK sip:ivr@127.0.0.2:5060 SIP/2.0\r\n"),
        "{ack}"
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(
        header(&ack, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_ne!(
        branch(&ack),
        branch(&invite),
        "the ACK of a 2xx is a transaction of its own"
    );
    let mut uac = net.take(Side::Uac);
    // The leg's dialog follows its answer (a cluster's checkpoint keeps it).
    let dialog = match uac.pop() {
        Some(Output::Leg {
            event: LegEvent::Dialog(d),
            ..
        }) => d,
        other => panic!("the leg's dialog after its answer: {other:?}"),
    };
    assert_eq!(dialog.local_tag, leg);
    assert_eq!(dialog.remote_tag, tag);
    assert_eq!(dialog.remote_target, "sip:ivr@127.0.0.2:5060");
    assert_eq!(dialog.local_cseq, 1);
    assert_eq!(
        uac,
        [Output::Leg {
            tag: leg.clone(),
            event: LegEvent::Answered(Negotiated {
                index: 0,
                law: Law::Ulaw,
                pt: 0,
                event_pt: Some(101),
                remote: Some(std::net::SocketAddr::new(UAS.ip(), UAS_RTP)),
                direction: Direction::SendRecv,
                srtp: None,
            })
        }]
    );
    assert_eq!(
        net.take(Side::Uas),
        [Output::Start {
            tag: tag.clone(),
            media: Negotiated {
                index: 0,
                law: Law::Ulaw,
                pt: 0,
                event_pt: Some(101),
                remote: Some(std::net::SocketAddr::new(UAC.ip(), UAC_RTP)),
                direction: Direction::SendRecv,
                srtp: None,
            }
        }]
    );
    assert_eq!((net.uas.active(), net.uas.answered()), (1, 1));

    // Acknowledged: nothing is sent again, however long we wait.
    let before = net.wire.len();
    net.advance(60_000);
    assert_eq!(net.wire.len(), before, "{:#?}", &net.wire[before..]);
}

#[test]
fn cancel_before_the_answer_gets_487_and_the_487_its_ack() {
    let mut net = Net::new(10_000);
    let leg = net.dial("10010");
    let tag = net.uas_tag();
    net.take(Side::Uac);
    net.advance(1_000);
    net.command(Side::Uac, Command::EndLeg { tag: leg.clone() });

    let invite = net.one(UAC, |p| p.is_request("INVITE")).text.clone();
    let cancel = net.one(UAC, |p| p.is_request("CANCEL")).text.clone();
    assert_eq!(
        branch(&cancel),
        branch(&invite),
        "a CANCEL shares its INVITE's branch"
    );
    assert_eq!(header(&cancel, "CSeq"), Some("1 CANCEL"));
    assert_eq!(header(&cancel, "To").and_then(harness::tag), None);
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "CANCEL")).len(), 1);
    let terminated = net.one(UAS, |p| p.is_response(487, "INVITE")).text.clone();
    assert_eq!(
        header(&terminated, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    let ack = net.one(UAC, |p| p.is_request("ACK")).text.clone();
    assert_eq!(
        branch(&ack),
        branch(&invite),
        "the ACK of an error shares the INVITE's branch"
    );
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(
        header(&ack, "To").and_then(harness::tag),
        Some(tag.as_str())
    );

    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag.clone(),
                outcome: "abandoned"
            },
            Output::DialogClosed { tag: tag.clone() }
        ]
    );
    assert_eq!(
        net.take(Side::Uac),
        [Output::Leg {
            tag: leg.clone(),
            event: LegEvent::Failed(487)
        }]
    );
    assert_eq!(net.uas.active(), 0);

    // The ACK stopped the 487's retransmissions; the ringing timer no longer answers; the
    // leg is forgotten after it lingered for the 487's retransmissions (64·T1).
    net.advance(64 * T1);
    assert_eq!(net.sent(UAS, |p| p.is_response(487, "INVITE")).len(), 1);
    assert!(net.sent(UAS, |p| p.is_response(200, "INVITE")).is_empty());
    assert_eq!(net.take(Side::Uac), [Output::LegClosed { tag: leg }]);
    assert_eq!(net.uac.legs(), 0);
}

#[test]
fn a_bye_from_our_leg_ends_the_callers_dialog() {
    let mut net = Net::new(0);
    let (leg, tag) = established(&mut net);
    net.take(Side::Uac);
    net.take(Side::Uas);
    net.command(Side::Uac, Command::EndLeg { tag: leg.clone() });
    let bye = net.one(UAC, |p| p.is_request("BYE")).text.clone();
    assert!(
        bye.starts_with("BYE sip:ivr@127.0.0.2:5060 SIP/2.0\r\n"),
        "{bye}"
    );
    assert_eq!(
        header(&bye, "From").and_then(harness::tag),
        Some(leg.as_str())
    );
    assert_eq!(
        header(&bye, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_eq!(header(&bye, "CSeq"), Some("2 BYE"));
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "BYE")).len(), 1);
    assert_eq!(net.take(Side::Uac), [Output::LegClosed { tag: leg }]);
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Dialog {
                tag: tag.clone(),
                event: DialogEvent::Bye
            },
            Output::DialogClosed { tag }
        ]
    );
    // The 200 ended the BYE's transaction: it is not sent again.
    net.advance(64 * T1);
    assert_eq!(net.sent(UAC, |p| p.is_request("BYE")).len(), 1);
    assert_eq!((net.uac.legs(), net.uas.active()), (0, 0));
}

/// A leg another node has taken over (this node was taken for dead, docs/cluster.md,
/// "Fencing") is let go without a BYE: its callee talks with the other node now.
#[test]
fn a_leg_dropped_after_a_takeover_is_forgotten_without_a_bye() {
    let mut net = Net::new(0);
    let (leg, _tag) = established(&mut net);
    net.take(Side::Uac);
    net.take(Side::Uas);
    net.command(Side::Uac, Command::DropLeg { tag: leg.clone() });
    assert_eq!(net.take(Side::Uac), [Output::LegClosed { tag: leg }]);
    net.advance(64 * T1);
    assert!(net.sent(UAC, |p| p.is_request("BYE")).is_empty());
    assert_eq!(net.uac.legs(), 0);
    // The callee's side of the dialog is still up: nobody told it anything.
    assert_eq!(net.uas.active(), 1);
}

#[test]
fn a_bye_from_the_answering_side_ends_the_leg() {
    let mut net = Net::new(0);
    let (leg, tag) = established(&mut net);
    net.take(Side::Uac);
    net.take(Side::Uas);
    net.command(
        Side::Uas,
        Command::Ended {
            tag: tag.clone(),
            bye: true,
        },
    );
    let bye = net.one(UAS, |p| p.is_request("BYE")).text.clone();
    assert!(
        bye.starts_with("BYE sip:ivr@127.0.0.1:5060 SIP/2.0\r\n"),
        "{bye}"
    );
    assert_eq!(
        header(&bye, "From").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_eq!(
        header(&bye, "To").and_then(harness::tag),
        Some(leg.as_str())
    );
    assert_eq!(header(&bye, "CSeq"), Some("1 BYE"));
    assert_eq!(net.sent(UAC, |p| p.is_response(200, "BYE")).len(), 1);
    assert_eq!(net.take(Side::Uas), [Output::DialogClosed { tag }]);
    assert_eq!(
        net.take(Side::Uac),
        [
            Output::Leg {
                tag: leg.clone(),
                event: LegEvent::Bye
            },
            Output::LegClosed { tag: leg }
        ]
    );
    // A BYE for a dialog nobody knows any more: 481.
    net.inject(
        Side::Uac,
        UAS,
        &bye.replace("branch=", "branch=z9hG4bKagain"),
    );
    assert_eq!(net.sent(UAC, |p| p.is_response(481, "BYE")).len(), 1);
}

/// The identifiers of the established call's dialog as its caller (the UAC) writes them:
/// From (with the leg's tag), To (with the UAS's tag), Call-ID.
fn caller_ids(net: &Net) -> (String, String, String) {
    let ok = &net.one(UAS, |p| p.is_response(200, "INVITE")).text;
    (
        header(ok, "From").expect("From").to_string(),
        header(ok, "To").expect("To").to_string(),
        header(ok, "Call-ID").expect("Call-ID").to_string(),
    )
}

#[test]
fn re_invites_put_the_call_on_hold_and_back_with_new_media() {
    let mut net = Net::new(0);
    let (_, tag) = established(&mut net);
    net.take(Side::Uas);
    let (from, to, call_id) = caller_ids(&net);
    let mut cseq = 1;
    for (direction, answered) in [
        ("sendonly", "recvonly"),
        ("inactive", "inactive"),
        ("sendrecv", "sendrecv"),
    ] {
        cseq += 1;
        let branch = format!("z9hG4bK-re{cseq}");
        let reinvite = request(
            &format!(
                "INVITE sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
                 Contact: <sip:caller@{PHONE}>\r\nMax-Forwards: 70"
            ),
            "application/sdp",
            &phone_sdp(direction),
        );
        net.inject(Side::Uas, PHONE, &reinvite);
        let ok = net
            .one(UAS, |p| {
                p.to == PHONE && p.is_response(200, "INVITE") && p.text.contains(&branch)
            })
            .text
            .clone();
        assert_eq!(header(&ok, "To").and_then(harness::tag), Some(tag.as_str()));
        assert!(
            body(&ok).contains(&format!("m=audio {UAS_RTP} RTP/AVP 8 101\r\n")),
            "{ok}"
        );
        assert!(body(&ok).contains(&format!("a={answered}\r\n")), "{ok}");
        // The answer's version goes up with each one (RFC 3264 8).
        let origin = body(&ok)
            .lines()
            .find(|l| l.starts_with("o=ivr "))
            .expect("o=");
        assert_eq!(
            origin.split(' ').nth(2),
            Some(cseq.to_string().as_str()),
            "{ok}"
        );
        let direction = match direction {
            "sendonly" => Direction::SendOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        };
        assert_eq!(
            net.take(Side::Uas),
            [Output::Dialog {
                tag: tag.clone(),
                event: DialogEvent::Media(Negotiated {
                    index: 0,
                    law: Law::Alaw,
                    pt: 8,
                    event_pt: Some(101),
                    remote: Some("127.0.0.3:50000".parse().expect("addr")),
                    direction,
                    srtp: None,
                })
            }]
        );
        // Until its ACK the 200 is sent again on T1; the ACK stops it.
        net.advance(T1);
        assert_eq!(
            net.sent(UAS, |p| p.is_response(200, "INVITE")
                && p.text.contains(&branch))
                .len(),
            2
        );
        let ack = request(
            &format!(
                "ACK sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-ack{cseq};rport\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nMax-Forwards: 70"
            ),
            "",
            "",
        );
        net.inject(Side::Uas, PHONE, &ack);
        net.advance(10 * T1);
        assert_eq!(
            net.sent(UAS, |p| p.is_response(200, "INVITE")
                && p.text.contains(&branch))
                .len(),
            2
        );
    }
    // An old CSeq is refused; an unknown dialog is 481.
    let stale = request(
        &format!(
            "INVITE sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-old;rport\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70"
        ),
        "application/sdp",
        &phone_sdp("sendrecv"),
    );
    net.inject(Side::Uas, PHONE, &stale);
    assert_eq!(net.sent(UAS, |p| p.is_response(500, "INVITE")).len(), 1);
    let unknown = stale
        .replace(&tag, "nosuchtag")
        .replace("CSeq: 2 ", "CSeq: 9 ")
        .replace("z9hG4bK-old", "z9hG4bK-unknown");
    net.inject(Side::Uas, PHONE, &unknown);
    assert_eq!(net.sent(UAS, |p| p.is_response(481, "INVITE")).len(), 1);
}

#[test]
fn the_callee_of_a_leg_puts_it_on_hold_by_re_invite() {
    let mut net = Net::new(0);
    let (leg, tag) = established(&mut net);
    net.take(Side::Uac);
    let (from, to, call_id) = caller_ids(&net);
    // The callee's request: From and To the other way round.
    let reinvite = request(
        &format!(
            "INVITE sip:ivr@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-hold;rport\r\n\
             From: {to}\r\nTo: {from}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70"
        ),
        "application/sdp",
        &phone_sdp("sendonly"),
    );
    net.inject(Side::Uac, PHONE, &reinvite);
    let ok = net
        .one(UAC, |p| p.to == PHONE && p.is_response(200, "INVITE"))
        .text
        .clone();
    assert_eq!(header(&ok, "To").and_then(harness::tag), Some(leg.as_str()));
    assert!(
        body(&ok).contains(&format!("m=audio {UAC_RTP} RTP/AVP 8 101\r\n")),
        "{ok}"
    );
    assert!(body(&ok).contains("a=recvonly\r\n"), "{ok}");
    assert!(matches!(
        net.take(Side::Uac).as_slice(),
        [Output::Leg { tag: t, event: LegEvent::Media(n) }]
            if *t == leg && n.direction == Direction::SendOnly && n.law == Law::Alaw
    ));
    let _ = tag;
}

#[test]
fn info_with_a_key_is_a_key_event() {
    let mut net = Net::new(0);
    let (_, tag) = established(&mut net);
    net.take(Side::Uas);
    let (from, to, call_id) = caller_ids(&net);
    for (n, (ctype, body, key)) in [
        (
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
            Some('5'),
        ),
        ("application/dtmf", "11", Some('#')),
        ("text/plain", "7", None),
    ]
    .into_iter()
    .enumerate()
    {
        let cseq = n + 2;
        let info = request(
            &format!(
                "INFO sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-info{cseq};rport\r\n\
                 From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INFO\r\nMax-Forwards: 70"
            ),
            ctype,
            body,
        );
        net.inject(Side::Uas, PHONE, &info);
        assert_eq!(net.sent(UAS, |p| p.is_response(200, "INFO")).len(), n + 1);
        let expected: Vec<Output> = key
            .map(|k| Output::Dialog {
                tag: tag.clone(),
                event: DialogEvent::Key(k),
            })
            .into_iter()
            .collect();
        assert_eq!(net.take(Side::Uas), expected, "{ctype}");
    }
    // Outside any dialog: 481.
    let stray = request(
        &format!(
            "INFO sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-stray;rport\r\n\
             From: <sip:x@127.0.0.3>;tag=x\r\nTo: <sip:ivr@127.0.0.2>;tag=y\r\nCall-ID: nope\r\nCSeq: 1 INFO\r\nMax-Forwards: 70"
        ),
        "application/dtmf",
        "1",
    );
    net.inject(Side::Uas, PHONE, &stray);
    assert_eq!(net.sent(UAS, |p| p.is_response(481, "INFO")).len(), 1);
    assert_eq!(net.take(Side::Uas), []);
}

#[test]
fn a_lost_200_is_sent_again_on_t1_doubling_up_to_t2_until_the_ack() {
    let mut net = Net::new(0);
    let mut lost = 0;
    net.rule(move |p| {
        if p.from == UAS && p.is_response(200, "INVITE") && lost < 6 {
            lost += 1;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let leg = net.dial("10010");
    net.advance(60_000);
    let oks = net.sent(UAS, |p| p.is_response(200, "INVITE"));
    assert_eq!(gaps(&oks), [T1, 2 * T1, 4 * T1, T2, T2, T2]);
    assert!(
        oks.iter().all(|p| p.text == oks[0].text),
        "the same bytes each time"
    );
    assert_eq!(oks.iter().filter(|p| p.fate == Fate::Deliver).count(), 1);
    // The seventh arrived: the ACK, and no more 200s; the call goes on.
    let acks = net.sent(UAC, |p| p.is_request("ACK"));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].at, oks[6].at);
    assert!(net.outputs(Side::Uac).contains(&Output::Leg {
        tag: leg,
        event: LegEvent::Answered(Negotiated {
            index: 0,
            law: Law::Ulaw,
            pt: 0,
            event_pt: Some(101),
            remote: Some(std::net::SocketAddr::new(UAS.ip(), UAS_RTP)),
            direction: Direction::SendRecv,
            srtp: None,
        })
    }));
    assert!(
        !net.outputs(Side::Uas)
            .iter()
            .any(|o| matches!(o, Output::Dialog { .. } | Output::DialogClosed { .. })),
        "{:#?}",
        net.outputs(Side::Uas)
    );
    assert_eq!(net.uas.active(), 1);
}

#[test]
fn a_lost_invite_is_sent_again_on_timer_a() {
    let mut net = Net::new(0);
    let mut lost = 0;
    net.rule(move |p| {
        if p.is_request("INVITE") && lost < 2 {
            lost += 1;
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let leg = net.dial("10010");
    net.advance(10_000);
    let invites = net.sent(UAC, |p| p.is_request("INVITE"));
    assert_eq!(gaps(&invites), [T1, 2 * T1]);
    assert!(invites.iter().all(|p| p.text == invites[0].text));
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "INVITE")).len(), 1);
    assert!(
        net.outputs(Side::Uac)
            .iter()
            .any(|o| matches!(o, Output::Leg { tag, event: LegEvent::Answered(_) } if *tag == leg))
    );
    assert_eq!(net.uas.host().admitted.len(), 1);
}

#[test]
fn an_unanswered_invite_times_out_on_timer_b_and_the_leg_fails() {
    let mut net = Net::new(0);
    net.rule(|p| {
        if p.from == UAC {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let start = net.now;
    let leg = net.dial("10010");
    net.advance(64 * T1 - 1);
    assert_eq!(net.take(Side::Uac), []);
    net.advance(1);
    let invites = net.sent(UAC, |p| p.is_request("INVITE"));
    assert_eq!(
        invites.iter().map(|p| p.at - start).collect::<Vec<_>>(),
        [0, 500, 1_500, 3_500, 7_500, 15_500, 31_500]
    );
    assert_eq!(
        net.take(Side::Uac),
        [
            Output::Leg {
                tag: leg.clone(),
                event: LegEvent::Failed(408)
            },
            Output::LegClosed { tag: leg }
        ]
    );
    assert_eq!(net.uac.legs(), 0);
    assert!(net.sent(UAC, |p| p.is_request("CANCEL")).is_empty());
}

#[test]
fn a_200_never_acknowledged_ends_the_call_after_64_t1() {
    let mut net = Net::new(0);
    net.rule(|p| {
        if p.is_request("ACK") {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    let start = net.now;
    let leg = net.dial("10010");
    let tag = net.uas_tag();
    net.advance(64 * T1 - 1);
    assert!(
        !net.outputs(Side::Uas)
            .iter()
            .any(|o| matches!(o, Output::Dialog { .. })),
        "{:#?}",
        net.outputs(Side::Uas)
    );
    net.advance(1);
    let oks = net.sent(UAS, |p| p.is_response(200, "INVITE"));
    assert_eq!(
        oks.iter().map(|p| p.at - start).collect::<Vec<_>>(),
        [
            0, 500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    // Each 200 that came again got our ACK again.
    assert_eq!(net.sent(UAC, |p| p.is_request("ACK")).len(), oks.len());
    // Without its ACK the call never started (no media went anywhere): it is recorded as
    // failed, and the core ends the dialog with a BYE itself.
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag.clone(),
                outcome: "failed"
            },
            Output::DialogClosed { tag }
        ]
    );
    assert_eq!(net.sent(UAS, |p| p.is_request("BYE")).len(), 1);
    assert!(net.outputs(Side::Uac).contains(&Output::Leg {
        tag: leg,
        event: LegEvent::Bye
    }));
}

/// The call starts when the ACK arrives, not when we send the 200: until then nothing
/// (no prompt, no RTP) goes to the address of an INVITE that may be forged.
#[test]
fn a_call_starts_at_the_ack_not_at_the_200() {
    let mut net = Net::new(0);
    // The first two ACKs are lost: the 200 comes again and the third ACK gets through.
    let mut acks = 0;
    net.rule(move |p| {
        if p.is_request("ACK") {
            acks += 1;
            if acks <= 2 {
                return Fate::Drop;
            }
        }
        Fate::Deliver
    });
    let _leg = net.dial("10010");
    let tag = net.uas_tag();
    assert!(
        !net.outputs(Side::Uas)
            .iter()
            .any(|o| matches!(o, Output::Start { .. })),
        "started before its ACK: {:#?}",
        net.outputs(Side::Uas)
    );
    net.advance(2_000);
    assert!(
        net.outputs(Side::Uas)
            .iter()
            .any(|o| matches!(o, Output::Start { tag: t, .. } if *t == tag)),
        "not started after the ACK: {:#?}",
        net.outputs(Side::Uas)
    );
}

/// A REGISTER of [`AGENT`]'s phone, with `extra` header lines.
fn register(cseq: u32, extra: &str) -> String {
    request(
        &format!(
            "REGISTER sip:127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-reg{cseq};rport\r\n\
             From: <sip:{AGENT}@127.0.0.2>;tag=ph1\r\nTo: <sip:{AGENT}@127.0.0.2>\r\nCall-ID: reg-1\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{AGENT}@{PHONE}>\r\nMax-Forwards: 70{extra}"
        ),
        "",
        "",
    )
}

fn md5_hex(parts: &[&str]) -> String {
    let digest = Md5::digest(parts.join(":").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Authorization of [`AGENT`]'s phone for `nonce` with `password`.
fn authorization(nonce: &str, password: &str) -> String {
    let uri = "sip:127.0.0.2:5060";
    let h1 = ha1(AGENT, REALM, password);
    let h2 = md5_hex(&["REGISTER", uri]);
    let response = md5_hex(&[&h1, nonce, "00000001", "c0ffee", "auth", &h2]);
    format!(
        "\r\nAuthorization: Digest username=\"{AGENT}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
    )
}

/// The nonce of the last 401.
fn nonce(net: &Net) -> String {
    let challenge = net.sent(UAS, |p| p.is_response(401, "REGISTER"));
    let www = header(&challenge.last().expect("a 401").text, "WWW-Authenticate")
        .expect("WWW-Authenticate")
        .to_string();
    assert!(
        www.starts_with(&format!("Digest realm=\"{REALM}\"")),
        "{www}"
    );
    assert!(www.contains("qop=\"auth\""), "{www}");
    let start = www.find("nonce=\"").expect("nonce") + 7;
    www[start..].split('"').next().expect("nonce").to_string()
}

#[test]
fn register_is_challenged_then_bound_and_a_wrong_password_is_refused() {
    let mut net = Net::new(0);
    net.inject(Side::Uas, PHONE, &register(1, ""));
    let first = nonce(&net);
    assert_eq!(net.take(Side::Uas), []);

    net.inject(
        Side::Uas,
        PHONE,
        &register(2, &authorization(&first, PASSWORD)),
    );
    let ok = net
        .one(UAS, |p| p.is_response(200, "REGISTER"))
        .text
        .clone();
    assert_eq!(ok.split("\r\n").next(), Some("SIP/2.0 200 OK"));
    assert_eq!(
        header(&ok, "Contact"),
        Some(format!("<sip:{AGENT}@{PHONE}>;expires=3600").as_str())
    );
    assert_eq!(header(&ok, "Expires"), Some("3600"));
    assert_eq!(
        net.take(Side::Uas),
        [Output::Registration(Registration {
            agent: AGENT.into(),
            contact: format!("sip:{AGENT}@{PHONE}"),
            peer: udp(PHONE),
            expires: 3_600_000,
        })]
    );
    assert_eq!(udp(PHONE).proto, Proto::Udp);

    // Another challenge, answered with the wrong password: 403 and no binding change.
    net.inject(Side::Uas, PHONE, &register(3, ""));
    let second = nonce(&net);
    net.inject(
        Side::Uas,
        PHONE,
        &register(4, &authorization(&second, "guess")),
    );
    let refused = net
        .one(UAS, |p| p.is_response(403, "REGISTER"))
        .text
        .clone();
    assert_eq!(header(&refused, "CSeq"), Some("4 REGISTER"));
    assert_eq!(net.take(Side::Uas), []);
    // A retransmitted REGISTER gets the same answer again.
    net.inject(
        Side::Uas,
        PHONE,
        &register(4, &authorization(&second, "guess")),
    );
    let answers = net.sent(UAS, |p| p.is_response(403, "REGISTER"));
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].text, answers[1].text);
}

#[test]
fn a_leg_refused_with_486_fails_with_the_status_and_the_error_is_acknowledged() {
    let mut net = Net::new(0);
    let leg = net.dial("busy");
    let invite = net.one(UAC, |p| p.is_request("INVITE")).text.clone();
    let busy = net.one(UAS, |p| p.is_response(486, "INVITE")).text.clone();
    let ack = net.one(UAC, |p| p.is_request("ACK")).text.clone();
    assert!(
        ack.starts_with(&format!("ACK sip:busy@{UAS} SIP/2.0\r\n")),
        "{ack}"
    );
    assert_eq!(branch(&ack), branch(&invite));
    assert_eq!(header(&ack, "CSeq"), Some("1 ACK"));
    assert_eq!(header(&ack, "To"), header(&busy, "To"));
    assert!(header(&ack, "To").and_then(harness::tag).is_some());
    assert_eq!(
        net.take(Side::Uac),
        [Output::Leg {
            tag: leg.clone(),
            event: LegEvent::Failed(486)
        }]
    );
    assert_eq!((net.uas.refused(), net.uas.active()), (1, 0));
    assert_eq!(net.take(Side::Uas), []);
    // Acknowledged: the 486 is not sent again; the leg lingers 64·T1, then is forgotten.
    net.advance(64 * T1);
    assert_eq!(net.sent(UAS, |p| p.is_response(486, "INVITE")).len(), 1);
    assert_eq!(net.take(Side::Uac), [Output::LegClosed { tag: leg }]);
}

#[test]
fn a_late_offer_gets_our_offer_in_the_200_and_the_call_starts_with_the_acks_answer() {
    let mut net = Net::new(0);
    let head = |method: &str, cseq: u32, branch: &str, to_tag: &str| {
        format!(
            "{method} sip:10010@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
             From: <sip:13900000002@127.0.0.3>;tag=late1\r\nTo: <sip:10010@127.0.0.2>{to_tag}\r\n\
             Call-ID: late-offer-1\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@{PHONE}>\r\nMax-Forwards: 70"
        )
    };
    net.inject(
        Side::Uas,
        PHONE,
        &request(&head("INVITE", 1, "z9hG4bK-late", ""), "", ""),
    );
    let tag = net.uas_tag();
    let ok = net.one(UAS, |p| p.is_response(200, "INVITE")).text.clone();
    assert_eq!(ok.split("\r\n").next(), Some("SIP/2.0 200 OK"));
    assert_eq!(header(&ok, "Content-Type"), Some("application/sdp"));
    assert!(
        body(&ok).contains(&format!("m=audio {UAS_RTP} RTP/AVP 0 8 101\r\n")),
        "{ok}"
    );
    assert_eq!(net.take(Side::Uas), [], "no start before the answer");
    // The ACK answers with PCMA: the call starts with it.
    let to_tag = format!(";tag={tag}");
    let ack = request(
        &head("ACK", 1, "z9hG4bK-lateack", &to_tag),
        "application/sdp",
        &phone_sdp("sendrecv"),
    );
    net.inject(Side::Uas, PHONE, &ack);
    assert_eq!(
        net.take(Side::Uas),
        [Output::Start {
            tag: tag.clone(),
            media: Negotiated {
                index: 0,
                law: Law::Alaw,
                pt: 8,
                event_pt: Some(101),
                remote: Some("127.0.0.3:50000".parse().expect("addr")),
                direction: Direction::SendRecv,
                srtp: None,
            }
        }]
    );
    net.advance(10 * T1);
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "INVITE")).len(), 1);

    // Another late offer whose ACK has no usable answer: unserved, and a BYE.
    let head2 = |method: &str, branch: &str, to_tag: &str| {
        head(method, 1, branch, to_tag).replace("late-offer-1", "late-offer-2")
    };
    net.inject(
        Side::Uas,
        PHONE,
        &request(&head2("INVITE", "z9hG4bK-late2", ""), "", ""),
    );
    let tag2 = net.uas_tag();
    assert_ne!(tag2, tag);
    let ack = request(
        &head2("ACK", "z9hG4bK-late2ack", &format!(";tag={tag2}")),
        "",
        "",
    );
    net.inject(Side::Uas, PHONE, &ack);
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag2.clone(),
                outcome: "failed"
            },
            Output::DialogClosed { tag: tag2 }
        ]
    );
    let bye = net.one(UAS, |p| p.is_request("BYE")).text.clone();
    assert!(
        bye.starts_with(&format!("BYE sip:caller@{PHONE} SIP/2.0\r\n")),
        "{bye}"
    );
    assert_eq!(header(&bye, "Call-ID"), Some("late-offer-2"));
}

#[test]
fn duplicated_packets_are_absorbed() {
    let mut net = Net::new(0);
    net.rule(|_| Fate::Duplicate);
    let leg = net.dial("10010");
    net.advance(10);
    let tag = net.uas_tag();
    // One admission, one answer, one start; the second INVITE got the last response again,
    // and each 200 that arrived (two sent, each twice) our ACK.
    assert_eq!(net.uas.host().admitted.len(), 1);
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "INVITE")).len(), 2);
    assert_eq!(net.sent(UAC, |p| p.is_request("ACK")).len(), 4);
    assert_eq!(
        net.take(Side::Uac)
            .into_iter()
            .filter(|o| matches!(
                o,
                Output::Leg {
                    event: LegEvent::Answered(_),
                    ..
                }
            ))
            .count(),
        1
    );
    assert!(matches!(net.take(Side::Uas).as_slice(), [Output::Start { tag: t, .. }] if *t == tag));
    net.command(Side::Uac, Command::EndLeg { tag: leg.clone() });
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Dialog {
                tag: tag.clone(),
                event: DialogEvent::Bye
            },
            Output::DialogClosed { tag }
        ]
    );
    // The second BYE is a retransmission: the same 200 again, no 481.
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "BYE")).len(), 2);
    assert!(net.sent(UAS, |p| p.is_response(481, "BYE")).is_empty());
    assert_eq!(net.take(Side::Uac), [Output::LegClosed { tag: leg }]);
}

#[test]
fn limits_drain_and_requests_we_do_not_take() {
    let mut net = Net::new(0);
    net.command(Side::Uas, Command::Drain);
    let leg = net.dial("10010");
    let refused = net.one(UAS, |p| p.is_response(503, "INVITE")).text.clone();
    assert_eq!(header(&refused, "Retry-After"), Some("5"));
    assert_eq!(
        net.take(Side::Uac),
        [Output::Leg {
            tag: leg,
            event: LegEvent::Failed(503)
        }]
    );
    let options = request(
        &format!(
            "OPTIONS sip:127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-opt;rport\r\n\
             From: <sip:probe@127.0.0.3>;tag=o1\r\nTo: <sip:127.0.0.2>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70"
        ),
        "",
        "",
    );
    net.inject(Side::Uas, PHONE, &options);
    let ok = net.one(UAS, |p| p.is_response(200, "OPTIONS")).text.clone();
    assert!(
        header(&ok, "Allow").is_some_and(|a| a.contains("INVITE")),
        "{ok}"
    );
    let subscribe = options
        .replace("OPTIONS", "SUBSCRIBE")
        .replace("z9hG4bK-opt", "z9hG4bK-sub");
    net.inject(Side::Uas, PHONE, &subscribe);
    assert_eq!(net.sent(UAS, |p| p.is_response(405, "SUBSCRIBE")).len(), 1);
    let hop = options
        .replace("Max-Forwards: 70", "Max-Forwards: 0")
        .replace("OPTIONS", "INFO")
        .replace("z9hG4bK-opt", "z9hG4bK-hop");
    net.inject(Side::Uas, PHONE, &hop);
    assert_eq!(net.sent(UAS, |p| p.is_response(483, "INFO")).len(), 1);
}

/// An INVITE of the phone to the UAS core, with an offer.
fn phone_invite(call_id: &str, branch: &str) -> String {
    request(
        &format!(
            "INVITE sip:10010@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
             From: <sip:13800000001@127.0.0.3>;tag=ph1\r\nTo: <sip:10010@127.0.0.2>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:caller@{PHONE}>\r\nMax-Forwards: 70"
        ),
        "application/sdp",
        &phone_sdp("sendrecv"),
    )
}

/// Whether a core holds nothing any more: no dialog, leg, server or client transaction (as
/// its `Debug` counts them), no timer.
fn forgot_everything(core: &ivr_sip::ua::Core<TestHost>) -> bool {
    use ivr_sansio::Machine;
    let d = format!("{core:?}");
    core.active() == 0
        && core.legs() == 0
        && d.contains("server: 0,")
        && d.contains("client: 0,")
        && core.poll_timeout().is_none()
}

/// Found by the `sip_core` fuzz target: a call removed while it rang (`answer_after`) left its
/// INVITE without a final response, so the caller kept ringing and the INVITE's server
/// transaction stayed, without a timer, for as long as the core ran.
#[test]
fn a_bye_while_ringing_gets_its_200_and_the_invite_a_487_and_nothing_is_left() {
    let mut net = Net::new(10_000);
    net.inject(
        Side::Uas,
        PHONE,
        &phone_invite("ringing-1", "z9hG4bK-ring1"),
    );
    let tag = net.uas_tag();
    assert_eq!(net.sent(UAS, |p| p.is_response(180, "INVITE")).len(), 1);
    // RFC 3261 15: the caller may hang up an early dialog with a BYE.
    let ids = format!(
        "From: <sip:13800000001@127.0.0.3>;tag=ph1\r\nTo: <sip:10010@127.0.0.2>;tag={tag}\r\nCall-ID: ringing-1"
    );
    let bye = request(
        &format!(
            "BYE sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-rbye;rport\r\n\
             {ids}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70"
        ),
        "",
        "",
    );
    net.inject(Side::Uas, PHONE, &bye);
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "BYE")).len(), 1);
    let terminated = net.one(UAS, |p| p.is_response(487, "INVITE")).text.clone();
    assert_eq!(
        header(&terminated, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_eq!(branch(&terminated), Some("z9hG4bK-ring1"));
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag.clone(),
                outcome: "abandoned"
            },
            Output::DialogClosed { tag: tag.clone() }
        ]
    );
    // The phone acknowledges the 487; the ringing timer no longer answers.
    let ack = request(
        &format!(
            "ACK sip:10010@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-ring1;rport\r\n\
             {ids}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70"
        ),
        "",
        "",
    );
    net.inject(Side::Uas, PHONE, &ack);
    net.advance(64 * T1);
    assert!(net.sent(UAS, |p| p.is_response(200, "INVITE")).is_empty());
    assert_eq!(net.sent(UAS, |p| p.is_response(487, "INVITE")).len(), 1);
    assert_eq!(net.take(Side::Uas), []);
    assert!(forgot_everything(&net.uas), "{:?}", net.uas);
}

/// The same when the application ends a ringing call (here with the input the fuzzer found,
/// shrunk: a late offer with empty Via, From and To), or a shutdown does: the INVITE gets 480
/// or 503 instead of a BYE in a dialog that was never confirmed.
#[test]
fn a_ringing_call_ended_by_the_application_or_a_shutdown_gets_a_final_answer() {
    let mut net = Net::new(1_000);
    net.inject(
        Side::Uas,
        PHONE,
        "INVITE s SIP/2.0\r\nV:\r\nF:\r\nT:\r\nCall-ID:-\r\nCSeq:1 :\r\n\r\n",
    );
    let tag = net.uas_tag();
    net.command(
        Side::Uas,
        Command::Ended {
            tag: tag.clone(),
            bye: true,
        },
    );
    assert_eq!(net.take(Side::Uas), [Output::DialogClosed { tag }]);
    assert_eq!(
        net.sent(UAS, |p| p.text.starts_with("SIP/2.0 480 ")).len(),
        1
    );
    assert!(net.sent(UAS, |p| p.is_request("BYE")).is_empty());
    // Unacknowledged, the 480 is sent again until timer H, then forgotten.
    net.advance(64 * T1);
    assert!(net.sent(UAS, |p| p.text.starts_with("SIP/2.0 480 ")).len() > 1);
    assert!(forgot_everything(&net.uas), "{:?}", net.uas);

    net.inject(
        Side::Uas,
        PHONE,
        &phone_invite("ringing-2", "z9hG4bK-ring2"),
    );
    let tag = net.uas_tag();
    net.command(Side::Uas, Command::TerminateAll);
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag.clone(),
                outcome: "failed"
            },
            Output::DialogClosed { tag }
        ]
    );
    assert_eq!(net.sent(UAS, |p| p.is_response(503, "INVITE")).len(), 1);
    assert!(net.sent(UAS, |p| p.is_request("BYE")).is_empty());
    net.advance(64 * T1);
    assert!(net.sent(UAS, |p| p.is_response(200, "INVITE")).is_empty());
    assert!(forgot_everything(&net.uas), "{:?}", net.uas);
}

/// A REFER from the callee of a leg (an agent's phone transferring the caller): 202, a NOTIFY
/// `100 Trying` with an active subscription, the application hears the target; its verdict
/// is the final NOTIFY, which ends the subscription. A REFER in a caller's dialog gets 403.
#[test]
fn a_refer_on_a_leg_is_accepted_and_its_outcome_notified() {
    let mut net = Net::new(0);
    let (leg, _tag) = established(&mut net);
    net.take(Side::Uac);
    let (leg_from, uas_to, call_id) = caller_ids(&net);
    let refer = request(
        &format!(
            "REFER sip:ivr@127.0.0.1:5060 SIP/2.0\n\
             Via: SIP/2.0/UDP {UAS};branch=z9hG4bKrefer1\n\
             From: {uas_to}\nTo: {leg_from}\nCall-ID: {call_id}\nCSeq: 5 REFER\n\
             Contact: <sip:agent@{UAS}>\n\
             Refer-To: <sip:queue.billing@127.0.0.1:5060>\nMax-Forwards: 70"
        ),
        "",
        "",
    );
    net.inject(Side::Uac, UAS, &refer);
    assert_eq!(net.sent(UAC, |p| p.is_response(202, "REFER")).len(), 1);
    let trying = net.one(UAC, |p| p.is_request("NOTIFY")).text.clone();
    assert_eq!(header(&trying, "Event"), Some("refer"));
    assert!(
        header(&trying, "Subscription-State").is_some_and(|s| s.starts_with("active")),
        "{trying}"
    );
    assert!(
        header(&trying, "Content-Type").is_some_and(|c| c.starts_with("message/sipfrag")),
        "{trying}"
    );
    assert_eq!(body(&trying), "SIP/2.0 100 Trying\r\n");
    let heard = net.take(Side::Uac);
    assert!(
        heard.iter().any(|o| matches!(
            o,
            Output::Leg { tag, event: LegEvent::Refer(r) }
                if *tag == leg && r.user == "queue.billing" && r.replaces.is_none()
        )),
        "{heard:#?}"
    );
    // A second REFER while the first is decided: 491.
    net.inject(
        Side::Uac,
        UAS,
        &refer
            .replace("z9hG4bKrefer1", "z9hG4bKrefer2")
            .replace("5 REFER", "6 REFER"),
    );
    assert_eq!(net.sent(UAC, |p| p.is_response(491, "REFER")).len(), 1);
    net.command(
        Side::Uac,
        Command::ReferDone {
            tag: leg.clone(),
            code: 480,
        },
    );
    let notifies = net.sent(UAC, |p| p.is_request("NOTIFY"));
    let last = &notifies.last().expect("final NOTIFY").text;
    assert_eq!(body(last), "SIP/2.0 480 Temporarily Unavailable\r\n");
    assert!(
        header(last, "Subscription-State").is_some_and(|s| s.starts_with("terminated")),
        "{last}"
    );
    // The caller's side may not transfer: 403 in a dialog the core answered.
    let (caller_from, caller_to, caller_call) = caller_ids(&net);
    let from_caller = request(
        &format!(
            "REFER sip:10010@127.0.0.1:5070 SIP/2.0\n\
             Via: SIP/2.0/UDP {UAC};branch=z9hG4bKrefer3\n\
             From: {caller_from}\nTo: {caller_to}\nCall-ID: {caller_call}\nCSeq: 9 REFER\n\
             Refer-To: <sip:queue.billing@127.0.0.1>\nMax-Forwards: 70"
        ),
        "",
        "",
    );
    net.inject(Side::Uas, UAC, &from_caller);
    assert_eq!(net.sent(UAS, |p| p.is_response(403, "REFER")).len(), 1);
}

/// A call taken over from a node that died: a new core at the node's address has the
/// caller's dialog only as the dead node knew it. It re-INVITEs the caller (same Call-ID and
/// tags, a CSeq above the old one, its Contact, one codec), acknowledges the 200, and the
/// dialog is then its own: the caller's BYE reaches it as for any call.
#[test]
fn a_call_taken_over_reinvites_the_caller_and_its_dialog_goes_on() {
    let mut net = Net::new(0);
    let (leg, tag) = established(&mut net);
    net.take(Side::Uac);
    net.take(Side::Uas);
    let invite = net.one(UAC, |p| p.is_request("INVITE")).text.clone();
    let Ok(rsip::SipMessage::Request(req)) = ivr_sip::message::parse(invite.as_bytes()) else {
        panic!("{invite}")
    };
    let facts = ivr_sip::message::facts(&req.headers).expect("facts");
    let mut dialog = ivr_sip::dialog::Dialog::from_invite(&req, &facts, &tag);
    dialog.local_cseq = 1_000;
    // The node dies; another core takes the dialog over at the same address.
    net.uas = ivr_sip::ua::Core::new(harness::TestHost::default(), harness::options(UAS, 0));
    net.command(
        Side::Uas,
        Command::Resume(Box::new(ivr_sip::ua::Resume {
            dialog,
            peer: harness::udp(UAC),
            port: 41_000,
            codec: (Law::Alaw, 8, Some(101)),
        })),
    );
    net.advance(10);
    let reinvite = net
        .sent(UAS, |p| p.is_request("INVITE"))
        .last()
        .expect("re-INVITE")
        .text
        .clone();
    assert_eq!(header(&reinvite, "Call-ID"), header(&invite, "Call-ID"));
    assert_eq!(
        header(&reinvite, "From").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert_eq!(
        header(&reinvite, "To").and_then(harness::tag),
        Some(leg.as_str())
    );
    assert_eq!(header(&reinvite, "CSeq"), Some("1001 INVITE"));
    assert_eq!(
        header(&reinvite, "Contact"),
        Some("<sip:ivr@127.0.0.2:5060>")
    );
    assert!(
        body(&reinvite).contains("m=audio 41000 RTP/AVP 8 101"),
        "{reinvite}"
    );
    assert!(
        body(&reinvite).contains("a=rtpmap:8 PCMA/8000"),
        "{reinvite}"
    );
    // The caller answered; the new core acknowledged it and the call starts there.
    assert_eq!(net.sent(UAC, |p| p.is_response(200, "INVITE")).len(), 1);
    assert_eq!(net.sent(UAS, |p| p.is_request("ACK")).len(), 1);
    let out = net.take(Side::Uas);
    assert!(
        matches!(out.as_slice(), [Output::Start { tag: t, media }] if *t == tag && media.law == Law::Alaw),
        "{out:#?}"
    );
    assert!(net.take(Side::Uac).iter().any(|o| matches!(
        o,
        Output::Leg {
            event: LegEvent::Media(_),
            ..
        }
    )));
    // The caller hangs up: the new core answers and tells the call.
    net.command(Side::Uac, Command::EndLeg { tag: leg });
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "BYE")).len(), 1);
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Dialog {
                tag: tag.clone(),
                event: DialogEvent::Bye
            },
            Output::DialogClosed { tag }
        ]
    );
}

/// A caller that refuses the re-INVITE (481: it knows the dialog no more): the call is given
/// up as failed.
#[test]
fn a_refused_takeover_is_a_failed_call() {
    let mut net = Net::new(0);
    let (_leg, tag) = established(&mut net);
    net.take(Side::Uas);
    let invite = net.one(UAC, |p| p.is_request("INVITE")).text.clone();
    let Ok(rsip::SipMessage::Request(req)) = ivr_sip::message::parse(invite.as_bytes()) else {
        panic!("{invite}")
    };
    let facts = ivr_sip::message::facts(&req.headers).expect("facts");
    let mut dialog = ivr_sip::dialog::Dialog::from_invite(&req, &facts, &tag);
    dialog.call_id = "not-the-callers".into();
    net.uas = ivr_sip::ua::Core::new(harness::TestHost::default(), harness::options(UAS, 0));
    net.command(
        Side::Uas,
        Command::Resume(Box::new(ivr_sip::ua::Resume {
            dialog,
            peer: harness::udp(UAC),
            port: 41_000,
            codec: (Law::Ulaw, 0, None),
        })),
    );
    net.advance(10);
    assert_eq!(net.sent(UAC, |p| p.is_response(481, "INVITE")).len(), 1);
    assert_eq!(
        net.take(Side::Uas),
        [
            Output::Unserved {
                tag: tag.clone(),
                outcome: "failed"
            },
            Output::DialogClosed { tag }
        ]
    );
}

/// An agent's leg taken over from a node that died (we were its UAC): a new core at the
/// node's address has the leg's dialog as the dead node was told it ([`LegEvent::Dialog`]).
/// It re-INVITEs the agent (same Call-ID and tags, a CSeq above the old one, one codec),
/// acknowledges the 200, tells the answer and the dialog, and the leg is then its own: the
/// agent's BYE reaches it as for any leg. A refused re-INVITE fails the leg.
#[test]
fn an_agents_leg_taken_over_is_reinvited_and_goes_on() {
    let mut net = Net::new(0);
    let (leg, tag) = established(&mut net);
    let dialog = net
        .take(Side::Uac)
        .into_iter()
        .find_map(|o| match o {
            Output::Leg {
                event: LegEvent::Dialog(d),
                ..
            } => Some(*d),
            _ => None,
        })
        .expect("the leg's dialog");
    net.take(Side::Uas);
    let mut dialog = dialog;
    dialog.local_cseq += 1_000;
    // The UAC's node dies; another core takes the leg over at the same address.
    net.uac = ivr_sip::ua::Core::new(harness::TestHost::default(), harness::options(UAC, 0));
    net.command(
        Side::Uac,
        Command::ResumeLeg(Box::new(ivr_sip::ua::Resume {
            dialog: dialog.clone(),
            peer: harness::udp(UAS),
            port: 42_000,
            codec: (Law::Ulaw, 0, Some(101)),
        })),
    );
    net.advance(10);
    let reinvite = net
        .sent(UAC, |p| p.is_request("INVITE"))
        .last()
        .expect("re-INVITE")
        .text
        .clone();
    assert_eq!(header(&reinvite, "CSeq"), Some("1002 INVITE"));
    assert_eq!(
        header(&reinvite, "From").and_then(harness::tag),
        Some(leg.as_str())
    );
    assert_eq!(
        header(&reinvite, "To").and_then(harness::tag),
        Some(tag.as_str())
    );
    assert!(
        body(&reinvite).contains("m=audio 42000 RTP/AVP 0 101"),
        "{reinvite}"
    );
    assert_eq!(net.sent(UAS, |p| p.is_response(200, "INVITE")).len(), 2);
    let out = net.take(Side::Uac);
    assert!(
        matches!(out.as_slice(), [
            Output::Leg { event: LegEvent::Answered(n), .. },
            Output::Leg { event: LegEvent::Dialog(d), .. },
        ] if n.law == Law::Ulaw && d.call_id == dialog.call_id),
        "{out:#?}"
    );
    // The agent's side hangs up: the new core's leg hears it.
    net.take(Side::Uas);
    net.command(
        Side::Uas,
        Command::Ended {
            tag: tag.clone(),
            bye: true,
        },
    );
    net.advance(10);
    assert_eq!(net.sent(UAC, |p| p.is_response(200, "BYE")).len(), 1);
    assert_eq!(
        net.take(Side::Uac),
        [
            Output::Leg {
                tag: leg.clone(),
                event: LegEvent::Bye
            },
            Output::LegClosed { tag: leg.clone() }
        ]
    );
    // Taken over again now: the agent's side knows the dialog no more (481).
    net.uac = ivr_sip::ua::Core::new(harness::TestHost::default(), harness::options(UAC, 0));
    net.command(
        Side::Uac,
        Command::ResumeLeg(Box::new(ivr_sip::ua::Resume {
            dialog,
            peer: harness::udp(UAS),
            port: 42_000,
            codec: (Law::Ulaw, 0, None),
        })),
    );
    net.advance(10);
    assert_eq!(net.sent(UAS, |p| p.is_response(481, "INVITE")).len(), 1);
    assert_eq!(
        net.take(Side::Uac),
        [
            Output::Leg {
                tag: leg.clone(),
                event: LegEvent::Failed(481)
            },
            Output::LegClosed { tag: leg }
        ]
    );
}
