//! The user-agent core under attack, in memory and virtual time (the harness of `ua.rs`):
//! INVITE floods from untrusted addresses, brute force on the registrar, and the bounds of
//! every table. docs/security.md lists each protection with its test; tests/security.rs
//! attacks the release build over sockets.

mod harness;

use harness::*;
use ivr_sansio::Millis;
use ivr_sip::edge::Network;
use ivr_sip::registrar::{
    ADDRESS_LOCK_FAILURES, AGENT_LOCK_FAILURES, LOCK_WINDOW, Registrar, Registration, ha1,
};
use ivr_sip::ua::{Bounds, Command, Core, CoreOptions, DialogEvent, EdgePolicy, LegEvent, Output};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const T1: Millis = 500;

/// An address of the pretend network outside the cores (loopback: trusted by default).
fn addr(last: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 5070)
}

/// Only the UAC core (127.0.0.1) is trusted; `rate` INVITEs a second for everyone else.
fn only_uac_trusted(rate: u32) -> EdgePolicy {
    EdgePolicy {
        trusted: vec![Network::host(UAC.ip())],
        invite_rate: rate,
    }
}

/// A new dialog's INVITE from `from` to `user`, the `n`th of its Call-ID and branch.
fn invite(from: SocketAddr, user: &str, n: u32) -> String {
    request(
        &format!(
            "INVITE sip:{user}@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-flood{n};rport\r\n\
             From: <sip:13900000002@{ip}>;tag=flood{n}\r\nTo: <sip:{user}@127.0.0.2>\r\n\
             Call-ID: flood-{n}@{ip}\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{from}>\r\nMax-Forwards: 70",
            ip = from.ip()
        ),
        "application/sdp",
        &phone_sdp("sendrecv"),
    )
}

/// An in-dialog request of `method` from `from` on the call that [`invite`] `n` set up.
fn in_dialog(from: SocketAddr, n: u32, to_tag: &str, method: &str, cseq: u32) -> String {
    let (ctype, body) = match method {
        "INFO" => (
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n".to_string(),
        ),
        "INVITE" => ("application/sdp", phone_sdp("sendonly")),
        _ => ("", String::new()),
    };
    request(
        &format!(
            "{method} sip:ivr@127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-in{n}-{cseq};rport\r\n\
             From: <sip:13900000002@{ip}>;tag=flood{n}\r\nTo: <sip:10010@127.0.0.2>;tag={to_tag}\r\n\
             Call-ID: flood-{n}@{ip}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@{from}>\r\nMax-Forwards: 70",
            ip = from.ip()
        ),
        ctype,
        &body,
    )
}

/// The responses of the UAS to `to` with `code` for `method`.
fn answers(net: &Net, to: SocketAddr, code: u16, method: &str) -> Vec<String> {
    net.sent(UAS, |p| p.to == to && p.is_response(code, method))
        .into_iter()
        .map(|p| p.text.clone())
        .collect()
}

#[test]
fn invites_beyond_the_rate_of_an_untrusted_address_get_one_stateless_503_with_retry_after() {
    let mut net = Net::new(0);
    net.command(Side::Uas, Command::Edge(only_uac_trusted(5)));
    let flooder = addr(9);
    // 12 new calls at once (to a number that is busy, so that each admitted one ends at once).
    for n in 0..12 {
        net.inject(Side::Uas, flooder, &invite(flooder, "busy", n));
    }
    assert_eq!(answers(&net, flooder, 486, "INVITE").len(), 5, "the burst");
    let refused = answers(&net, flooder, 503, "INVITE");
    assert_eq!(refused.len(), 7);
    for r in &refused {
        assert_eq!(header(r, "Retry-After"), Some("1"), "{r}");
        assert!(header(r, "To").and_then(tag).is_some(), "{r}");
    }
    // Nothing is kept for a refused INVITE: the 486s have their transactions, the 503s none.
    assert_eq!(net.uas.server_transactions(), 5);
    assert_eq!(net.uas.counters().invites_rate_limited, 7);
    assert_eq!(net.uas.refused(), 12);
    // Nobody ACKs: the 486s are sent again (their transactions), the 503s never.
    net.advance(64 * T1);
    assert!(answers(&net, flooder, 486, "INVITE").len() > 5 * 5);
    assert_eq!(answers(&net, flooder, 503, "INVITE").len(), 7);
    // A refused INVITE sent again is a new one: refused again, still nothing kept ...
    net.inject(Side::Uas, flooder, &invite(flooder, "busy", 100));
    for n in 101..106 {
        net.inject(Side::Uas, flooder, &invite(flooder, "busy", n));
    }
    assert_eq!(
        answers(&net, flooder, 503, "INVITE").len(),
        8,
        "32 s refilled 5"
    );
    // ... and the bucket refills at the rate: 200 ms for one more.
    net.advance(199);
    net.inject(Side::Uas, flooder, &invite(flooder, "busy", 200));
    assert_eq!(answers(&net, flooder, 503, "INVITE").len(), 9);
    net.advance(1);
    net.inject(Side::Uas, flooder, &invite(flooder, "busy", 201));
    assert_eq!(answers(&net, flooder, 503, "INVITE").len(), 9);

    // Another untrusted address has its own bucket.
    let other = addr(10);
    net.inject(Side::Uas, other, &invite(other, "busy", 300));
    assert_eq!(answers(&net, other, 486, "INVITE").len(), 1);
}

#[test]
fn re_invites_and_requests_within_a_call_are_not_counted_as_new_invites() {
    let mut net = Net::new(0);
    net.command(Side::Uas, Command::Edge(only_uac_trusted(1)));
    let caller = addr(9);
    net.inject(Side::Uas, caller, &invite(caller, "10010", 1));
    let tag = net.uas_tag();
    assert_eq!(answers(&net, caller, 200, "INVITE").len(), 1);
    net.inject(Side::Uas, caller, &invite(caller, "10010", 2));
    assert_eq!(
        answers(&net, caller, 503, "INVITE").len(),
        1,
        "the rate is 1"
    );
    // Hold and resume by re-INVITE: no 503.
    for cseq in 2..6 {
        net.inject(
            Side::Uas,
            caller,
            &in_dialog(caller, 1, &tag, "INVITE", cseq),
        );
    }
    assert_eq!(answers(&net, caller, 200, "INVITE").len(), 5);
    assert_eq!(answers(&net, caller, 503, "INVITE").len(), 1);
    assert_eq!(net.uas.counters().invites_rate_limited, 1);
}

#[test]
fn a_trusted_address_is_never_limited_and_an_empty_list_trusts_nobody() {
    let mut net = Net::new(0);
    net.command(Side::Uas, Command::Edge(only_uac_trusted(1)));
    for _ in 0..30 {
        net.dial("busy");
    }
    assert_eq!(net.sent(UAS, |p| p.is_response(486, "INVITE")).len(), 30);
    assert!(net.sent(UAS, |p| p.is_response(503, "INVITE")).is_empty());
    // By default loopback is trusted: the phone (127.0.0.3) too.
    let mut net = Net::new(0);
    for n in 0..30 {
        net.inject(Side::Uas, PHONE, &invite(PHONE, "busy", n));
    }
    assert_eq!(answers(&net, PHONE, 486, "INVITE").len(), 30);
    // `trusted = []`: the UAC core is limited like anyone.
    let mut net = Net::new(0);
    net.command(
        Side::Uas,
        Command::Edge(EdgePolicy {
            trusted: Vec::new(),
            invite_rate: 1,
        }),
    );
    let (first, second) = (net.dial("busy"), net.dial("busy"));
    let failed = |leg: &str, code| Output::Leg {
        tag: leg.to_string(),
        event: LegEvent::Failed(code),
    };
    let out = net.take(Side::Uac);
    assert!(out.contains(&failed(&first, 486)), "{out:#?}");
    assert!(out.contains(&failed(&second, 503)), "{out:#?}");
}

fn md5_hex(parts: &[&str]) -> String {
    let digest = Md5::digest(parts.join(":").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A REGISTER of `agent` from `from` (`n` makes its branch), with `password` for `nonce`
/// when given.
fn register(from: SocketAddr, agent: &str, n: u32, creds: Option<(&str, &str)>) -> String {
    let uri = "sip:127.0.0.2:5060";
    let auth = creds.map_or(String::new(), |(nonce, password)| {
        let h1 = ha1(agent, REALM, password);
        let h2 = md5_hex(&["REGISTER", uri]);
        let response = md5_hex(&[&h1, nonce, "00000001", "c0ffee", "auth", &h2]);
        format!(
            "\r\nAuthorization: Digest username=\"{agent}\", realm=\"{REALM}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"c0ffee\", qop=auth, nc=00000001"
        )
    });
    request(
        &format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-r{n};rport\r\n\
             From: <sip:{agent}@127.0.0.2>;tag=r{n}\r\nTo: <sip:{agent}@127.0.0.2>\r\nCall-ID: reg-{n}@{ip}\r\n\
             CSeq: {n} REGISTER\r\nContact: <sip:{agent}@{from}>\r\nMax-Forwards: 70{auth}",
            ip = from.ip()
        ),
        "",
        "",
    )
}

/// The nonce of the last 401 to `to`.
fn nonce(net: &Net, to: SocketAddr) -> String {
    let challenge = answers(net, to, 401, "REGISTER");
    let www = header(challenge.last().expect("a 401"), "WWW-Authenticate")
        .expect("WWW-Authenticate")
        .to_string();
    let start = www.find("nonce=\"").expect("nonce") + 7;
    www[start..].split('"').next().expect("nonce").to_string()
}

/// Challenges `from` for `agent`: a fresh nonce.
fn challenge(net: &mut Net, from: SocketAddr, agent: &str, n: u32) -> String {
    net.inject(Side::Uas, from, &register(from, agent, n, None));
    nonce(net, from)
}

fn registrations(net: &mut Net) -> Vec<Registration> {
    net.take(Side::Uas)
        .into_iter()
        .filter_map(|o| match o {
            Output::Registration(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[test]
fn ten_wrong_passwords_lock_the_address_even_for_the_right_one_until_the_window_passes() {
    let mut net = Net::new(0);
    let attacker = addr(20);
    let nonce = challenge(&mut net, attacker, AGENT, 1);
    for n in 0..ADDRESS_LOCK_FAILURES {
        net.inject(
            Side::Uas,
            attacker,
            &register(attacker, AGENT, 10 + n, Some((&nonce, "guess"))),
        );
    }
    // The first three are answered at once, the others are held back (1 s, 2 s, ... 16 s).
    assert_eq!(answers(&net, attacker, 403, "REGISTER").len(), 3);
    // The right password now: refused at once, unchecked, and nothing is bound.
    let right = register(attacker, AGENT, 100, Some((&nonce, PASSWORD)));
    net.inject(Side::Uas, attacker, &right);
    let refused = answers(&net, attacker, 403, "REGISTER");
    assert_eq!(refused.len(), 4);
    assert_eq!(
        header(refused.last().expect("403"), "CSeq"),
        Some("100 REGISTER")
    );
    assert_eq!(registrations(&mut net), []);
    let c = net.uas.counters().registers_refused;
    assert_eq!(
        (c.failed, c.address_locked),
        (u64::from(ADDRESS_LOCK_FAILURES), 1)
    );
    // The held answers go out in their time: 403s.
    net.advance(20_000);
    assert_eq!(answers(&net, attacker, 403, "REGISTER").len(), 4 + 7);
    // Still locked just before the window has passed, even for a challenge ...
    net.advance(LOCK_WINDOW - 20_000 - 2);
    net.inject(Side::Uas, attacker, &register(attacker, AGENT, 200, None));
    assert_eq!(answers(&net, attacker, 403, "REGISTER").len(), 12);
    // ... and checked again once it has: the right password binds.
    net.advance(2);
    let fresh = challenge(&mut net, attacker, AGENT, 201);
    net.inject(
        Side::Uas,
        attacker,
        &register(attacker, AGENT, 202, Some((&fresh, PASSWORD))),
    );
    assert_eq!(answers(&net, attacker, 200, "REGISTER").len(), 1);
    assert_eq!(registrations(&mut net).len(), 1);
}

#[test]
fn twenty_failures_for_an_agent_lock_it_for_new_addresses_but_not_for_its_phone() {
    let mut net = Net::new(0);
    // The agent's phone registers before the attack.
    let phone = addr(30);
    let n1 = challenge(&mut net, phone, AGENT, 1);
    net.inject(
        Side::Uas,
        phone,
        &register(phone, AGENT, 2, Some((&n1, PASSWORD))),
    );
    assert_eq!(registrations(&mut net).len(), 1);
    // 20 guesses from 4 addresses, 5 each: no address is locked, the agent is.
    for i in 0..AGENT_LOCK_FAILURES {
        let from = addr(40 + (i % 4) as u8);
        let nonce = challenge(&mut net, from, AGENT, 100 + 2 * i);
        net.inject(
            Side::Uas,
            from,
            &register(from, AGENT, 101 + 2 * i, Some((&nonce, "guess"))),
        );
        net.advance(20_000);
    }
    // The right password from a new address: refused unchecked.
    let newcomer = addr(50);
    let nonce = challenge(&mut net, newcomer, "2002", 300);
    net.inject(
        Side::Uas,
        newcomer,
        &register(newcomer, AGENT, 301, Some((&nonce, PASSWORD))),
    );
    assert_eq!(answers(&net, newcomer, 403, "REGISTER").len(), 1);
    assert_eq!(net.uas.counters().registers_refused.agent_locked, 1);
    // The phone refreshes its registration as before.
    let n2 = challenge(&mut net, phone, AGENT, 3);
    net.inject(
        Side::Uas,
        phone,
        &register(phone, AGENT, 4, Some((&n2, PASSWORD))),
    );
    assert_eq!(answers(&net, phone, 200, "REGISTER").len(), 2);
    // Once the window has passed, the newcomer is checked.
    net.advance(LOCK_WINDOW);
    let nonce = challenge(&mut net, newcomer, AGENT, 302);
    net.inject(
        Side::Uas,
        newcomer,
        &register(newcomer, AGENT, 303, Some((&nonce, PASSWORD))),
    );
    assert_eq!(answers(&net, newcomer, 200, "REGISTER").len(), 1);
}

#[test]
fn held_answers_are_bounded_per_address_so_others_still_register() {
    let mut net = Net::new(0);
    let attacker = addr(60);
    let nonce = challenge(&mut net, attacker, AGENT, 1);
    for n in 0..3 {
        net.inject(
            Side::Uas,
            attacker,
            &register(attacker, AGENT, 10 + n, Some((&nonce, "guess"))),
        );
    }
    // Slowed down: 12 more REGISTERs are held back, 8 at most; the others are dropped.
    for n in 0..12 {
        net.inject(
            Side::Uas,
            attacker,
            &register(attacker, AGENT, 20 + n, None),
        );
    }
    assert_eq!(net.uas.held_registers(), 8);
    assert_eq!(net.uas.counters().registers_dropped, 4);
    // Another address registers at once meanwhile.
    let phone = addr(61);
    let n1 = challenge(&mut net, phone, AGENT, 50);
    net.inject(
        Side::Uas,
        phone,
        &register(phone, AGENT, 51, Some((&n1, PASSWORD))),
    );
    assert_eq!(answers(&net, phone, 200, "REGISTER").len(), 1);
    // The held ones are answered in their time, the dropped ones never.
    net.advance(2_000);
    assert_eq!(net.uas.held_registers(), 0);
    assert_eq!(answers(&net, attacker, 401, "REGISTER").len(), 1 + 8);
}

/// A core at the UAS's address with `bounds` (and the UAS's registrar), for the table tests.
fn uas_with(net: &mut Net, bounds: Bounds) {
    let mut creds = HashMap::new();
    creds.insert(AGENT.to_string(), ha1(AGENT, REALM, PASSWORD));
    let mut host = TestHost::default();
    host.refuse.insert("busy".into(), 486);
    net.uas = Core::new(
        host,
        CoreOptions {
            bounds,
            ..options(UAS, 0)
        },
    )
    .with_registrar(Registrar::new(REALM, creds));
}

fn options_request(from: SocketAddr, n: u32) -> String {
    request(
        &format!(
            "OPTIONS sip:127.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK-opt{n};rport\r\n\
             From: <sip:probe@{ip}>;tag=o{n}\r\nTo: <sip:127.0.0.2>\r\nCall-ID: opt-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70",
            ip = from.ip()
        ),
        "",
        "",
    )
}

#[test]
fn server_transactions_are_bounded_with_room_kept_for_trusted_sources() {
    let mut net = Net::new(0);
    uas_with(
        &mut net,
        Bounds {
            server_transactions: 8,
            ..Bounds::for_calls(10)
        },
    );
    net.command(Side::Uas, Command::Edge(only_uac_trusted(100)));
    let stranger = addr(70);
    for n in 0..10 {
        net.inject(Side::Uas, stranger, &options_request(stranger, n));
    }
    // Untrusted sources fill three quarters: 6 answered, 4 refused (statelessly).
    assert_eq!(answers(&net, stranger, 200, "OPTIONS").len(), 6);
    let shed = answers(&net, stranger, 503, "OPTIONS");
    assert_eq!(shed.len(), 4);
    assert_eq!(header(&shed[0], "Retry-After"), Some("5"));
    assert_eq!(net.uas.server_transactions(), 6);
    // A trusted trunk still gets through, up to the bound.
    net.dial("busy");
    net.dial("busy");
    assert_eq!(net.sent(UAS, |p| p.is_response(486, "INVITE")).len(), 2);
    net.dial("busy");
    assert_eq!(net.sent(UAS, |p| p.is_response(503, "INVITE")).len(), 1);
    assert_eq!(net.uas.counters().shed_server_transactions, 5);
    // Transactions end (timer J): room again.
    net.advance(64 * T1);
    net.inject(Side::Uas, stranger, &options_request(stranger, 99));
    assert_eq!(answers(&net, stranger, 200, "OPTIONS").len(), 7);
}

#[test]
fn dialogs_are_bounded_by_max_calls_with_a_stateless_503() {
    let mut net = Net::new(60_000);
    let caller = addr(80);
    for n in 0..10 {
        net.inject(Side::Uas, caller, &invite(caller, "10010", n));
    }
    assert_eq!(net.uas.active(), 10);
    let before = net.uas.server_transactions();
    net.inject(Side::Uas, caller, &invite(caller, "10010", 10));
    let refused = answers(&net, caller, 503, "INVITE");
    assert_eq!(refused.len(), 1);
    assert_eq!(header(&refused[0], "Retry-After"), Some("5"));
    assert_eq!(net.uas.server_transactions(), before, "nothing kept");
    assert_eq!(net.uas.counters().shed_dialogs, 1);
    net.advance(64 * T1);
    assert_eq!(
        answers(&net, caller, 503, "INVITE").len(),
        1,
        "never sent again"
    );
}

#[test]
fn legs_and_client_transactions_are_bounded() {
    let mut net = Net::new(0);
    net.uac = Core::new(
        TestHost::default(),
        CoreOptions {
            bounds: Bounds {
                legs: 2,
                client_transactions: 1,
                ..Bounds::for_calls(10)
            },
            ..options(UAC, 0)
        },
    );
    let (a, b) = (net.dial("10010"), net.dial("10010"));
    let third = net.dial("10010");
    let out = net.take(Side::Uac);
    assert!(
        out.ends_with(&[
            Output::Leg {
                tag: third.clone(),
                event: LegEvent::Failed(503)
            },
            Output::LegClosed { tag: third }
        ]),
        "{out:#?}"
    );
    assert_eq!(net.uac.counters().shed_legs, 1);
    assert_eq!(net.uac.legs(), 2);
    // Two BYEs while nobody answers them: the first on its transaction (sent again), the
    // second sent once, without one.
    net.rule(|p| {
        if p.is_request("BYE") {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    });
    net.command(Side::Uac, Command::EndLeg { tag: a });
    net.command(Side::Uac, Command::EndLeg { tag: b });
    assert_eq!(net.uac.client_transactions(), 1);
    assert_eq!(net.uac.counters().shed_client_transactions, 1);
    net.advance(64 * T1);
    let byes = net.sent(UAC, |p| p.is_request("BYE"));
    let by_call = |n: usize| {
        let id = header(&byes[n].text, "Call-ID")
            .unwrap_or_default()
            .to_string();
        byes.iter()
            .filter(|p| header(&p.text, "Call-ID") == Some(id.as_str()))
            .count()
    };
    assert!(by_call(0) > 5, "the first BYE is retransmitted");
    assert_eq!(by_call(1), 1, "the second is sent once");
}

#[test]
fn requests_within_a_call_are_limited_per_dialog() {
    let mut net = Net::new(0);
    let caller = addr(90);
    net.inject(Side::Uas, caller, &invite(caller, "10010", 1));
    let tag = net.uas_tag();
    net.take(Side::Uas);
    let ack = in_dialog(caller, 1, &tag, "ACK", 1);
    net.inject(Side::Uas, caller, &ack);
    for cseq in 2..62 {
        net.inject(Side::Uas, caller, &in_dialog(caller, 1, &tag, "INFO", cseq));
    }
    let keys = net
        .take(Side::Uas)
        .into_iter()
        .filter(|o| {
            matches!(
                o,
                Output::Dialog {
                    event: DialogEvent::Key('5'),
                    ..
                }
            )
        })
        .count();
    assert_eq!(keys, 40, "the burst");
    assert_eq!(answers(&net, caller, 200, "INFO").len(), 40);
    assert_eq!(answers(&net, caller, 503, "INFO").len(), 20);
    assert_eq!(net.uas.counters().shed_in_dialog, 20);
    // 20 a second after that.
    net.advance(1_000);
    for cseq in 62..90 {
        net.inject(Side::Uas, caller, &in_dialog(caller, 1, &tag, "INFO", cseq));
    }
    assert_eq!(answers(&net, caller, 200, "INFO").len(), 60);
}
