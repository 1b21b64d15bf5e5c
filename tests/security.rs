//! Attacks on `ivr serve` from the network, each shown to fail (docs/security.md lists every
//! protection with its test). The calls here are placed by hand over raw UDP on loopback, so
//! that the test controls every byte and every source address.

use ivr_media::{dtmf, rtp};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod common;

use common::*;

const FLOW: &str = r##"
flow t {
    title    "security test"
    language zh-CN
    entry    choose
}

menu choose {
    prompt   options
    timeout  10s
    attempts 3 -> bye
    key 1 -> bye
}

step bye {
    play bye
    hangup
}
"##;

fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    let mut catalog = String::new();
    for (id, hz, ms) in [("options", 600.0, 2_000), ("bye", 1_200.0, 300)] {
        ivr_media::audio::write_wav(&dir.join(format!("prompts/zh-CN/{id}.wav")), &tone(hz, ms))
            .expect("wav");
        catalog.push_str(&format!("{id} = {{ text = \"{id}\" }}\n"));
    }
    fs::write(dir.join("prompts/zh-CN/prompts.toml"), catalog).expect("catalog");
    fs::write(
        dir.join("ivr.toml"),
        format!("{}[routes]\ndefault = \"t\"\n", config_head(rtp_range(10))),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// A caller placing one call over raw UDP: its SIP socket and its RTP socket.
struct RawCall {
    sip: UdpSocket,
    rtp: UdpSocket,
    server: SocketAddr,
    /// Where the server's RTP for this call is (from its SDP answer).
    media: SocketAddr,
    to_tag: String,
    seq: u16,
    ts: u32,
}

impl RawCall {
    fn request(&self, method: &str, branch: &str, cseq: u32, body: &str) -> String {
        let me = self.sip.local_addr().expect("addr");
        let to = self.server;
        let to_tag = if self.to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={}", self.to_tag)
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\n\
             From: <sip:{CALLER}@{me}>;tag=caller1\r\nTo: <sip:100@{to}>{to_tag}\r\n\
             Call-ID: security-inv1@test\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{CALLER}@{me}>\r\nMax-Forwards: 70\r\n{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Calls the server and ACKs its 200; the server's media address comes from its answer.
    fn place(server: SocketAddr) -> RawCall {
        let sip = UdpSocket::bind("127.0.0.1:0").expect("sip");
        sip.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
        rtp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let port = rtp.local_addr().expect("addr").port();
        let mut call = RawCall {
            sip,
            rtp,
            server,
            media: server,
            to_tag: String::new(),
            seq: 1,
            ts: 1_000,
        };
        let sdp = format!(
            "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        );
        let invite = call.request("INVITE", "inv1", 1, &sdp);
        call.sip.send_to(invite.as_bytes(), server).expect("send");
        let ok = call
            .wait_for(
                |m| m.starts_with("SIP/2.0 200") && m.contains("INVITE"),
                5_000,
            )
            .expect("the call is answered");
        call.to_tag = ok
            .lines()
            .find(|l| l.starts_with("To:"))
            .and_then(|l| l.split("tag=").nth(1))
            .map(|t| t.trim().to_string())
            .expect("To tag");
        let media_port: u16 = ok
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .expect("m=audio port");
        call.media = SocketAddr::new(server.ip(), media_port);
        let ack = call.request("ACK", "ack1", 1, "");
        call.sip.send_to(ack.as_bytes(), server).expect("send");
        call
    }

    /// The first SIP message matching `pred` within `ms`.
    fn wait_for(&self, pred: impl Fn(&str) -> bool, ms: u64) -> Option<String> {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_millis(ms) {
            if let Ok((n, _)) = self.sip.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if pred(&m) {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Sends `n` frames of voice (PCMU) from the caller's own RTP socket, in sequence.
    fn voice(&mut self, n: usize) {
        for _ in 0..n {
            let pkt = packet(0, self.seq, self.ts, 7, &[0xff; 160]);
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(160);
            self.rtp.send_to(&pkt, self.media).expect("rtp");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Packets the caller's RTP socket got within `ms`.
    fn heard(&self, ms: u64) -> usize {
        count_packets(&self.rtp, ms)
    }

    fn hang_up(&self) {
        let bye = self.request("BYE", "bye1", 2, "");
        let _ = self.sip.send_to(bye.as_bytes(), self.server);
    }
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut head = [0u8; rtp::HEADER_LEN];
    rtp::Header {
        payload_type: pt,
        marker: false,
        seq,
        timestamp: ts,
        ssrc,
    }
    .write(&mut head);
    let mut pkt = head.to_vec();
    pkt.extend_from_slice(payload);
    pkt
}

/// RFC 4733 packets of one key press (3 packets, then the end packet 3 times).
fn key_packets(key: char, first_seq: u16, ts: u32, ssrc: u32) -> Vec<Vec<u8>> {
    let ev = dtmf::event_of_key(key).expect("key");
    (0..6u16)
        .map(|i| {
            let end = i >= 3;
            packet(
                101,
                first_seq.wrapping_add(i),
                ts,
                ssrc,
                &dtmf::event_payload(ev, end, 160 * (i.min(3) + 1)),
            )
        })
        .collect()
}

fn count_packets(sock: &UdpSocket, ms: u64) -> usize {
    let started = Instant::now();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(ms) {
        if sock.recv_from(&mut buf).is_ok() {
            n += 1;
        }
    }
    n
}

/// RTP hijack: a stranger who knows (or guesses) a call's RTP port sends well-formed RTP in
/// sequence, keys included. It gets no audio (the call stays locked to its caller), its keys
/// are not taken, and its packets are counted; the caller's own key still works.
#[test]
fn a_stranger_cannot_take_over_a_calls_media_or_press_its_keys() {
    let config = deployment("rtp-hijack");
    let server = Server::start_release(&config, &[]);
    let mut call = RawCall::place(server.addr);
    // The caller's media locks the call to the caller's address (its SDP address).
    call.voice(5);
    assert!(
        call.heard(300) > 5,
        "the caller hears the menu\n{}",
        server.log()
    );

    let stranger = UdpSocket::bind("127.0.0.1:0").expect("stranger");
    stranger
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // Far more than any probation, in sequence, one SSRC; then a key press.
    for i in 0..50u16 {
        let pkt = packet(0, 5_000 + i, 90_000 + u32::from(i) * 160, 99, &[0x7f; 160]);
        stranger.send_to(&pkt, call.media).expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    for pkt in key_packets('1', 5_050, 99_000, 99) {
        stranger.send_to(&pkt, call.media).expect("send");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        count_packets(&stranger, 1_000),
        0,
        "the stranger received the call's audio\n{}",
        server.log()
    );
    assert!(
        call.wait_for(|m| m.starts_with("BYE"), 1_500).is_none(),
        "the stranger's key 1 was taken (the flow hung up)\n{}",
        server.log()
    );
    assert!(call.heard(300) > 5, "the caller still hears the menu");
    let (_, _, metrics) = http_get(server.http(), "/metrics");
    let foreign: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ivr_rtp_foreign_packets_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        foreign >= 50,
        "foreign packets counted: {foreign}\n{metrics}"
    );

    // The caller's own key is taken: the flow says bye and hangs up.
    let (seq, ts) = (call.seq, call.ts.wrapping_add(8_000));
    for pkt in key_packets('1', seq, ts, 7) {
        call.rtp.send_to(&pkt, call.media).expect("send");
        std::thread::sleep(Duration::from_millis(5));
    }
    call.seq = seq.wrapping_add(6);
    assert!(
        call.wait_for(|m| m.starts_with("BYE"), 5_000).is_some(),
        "the caller's key 1 was not taken\n{}",
        server.log()
    );
    call.hang_up();
}

/// A forged INVITE aims our audio at a third party (its SDP names the victim's address). No
/// media goes anywhere before the ACK, so without one the victim gets nothing; and a call whose
/// caller never sends RTP ends after `rtp_timeout`, so even with an ACK the victim gets at most
/// that much.
#[test]
fn a_forged_invite_cannot_aim_prompt_audio_at_a_third_party() {
    let config = deployment("forged-invite");
    let server = Server::start_release(&config, &["--rtp-timeout", "2s"]);
    let victim = UdpSocket::bind("127.0.0.1:0").expect("victim");
    victim
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let victim_port = victim.local_addr().expect("addr").port();
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("attacker");
    attacker
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let me = attacker.local_addr().expect("addr");
    let invite = |call_id: &str| {
        let sdp = format!(
            "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {victim_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
        );
        format!(
            "INVITE sip:100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id};rport\r\n\
             From: <sip:{CALLER}@{me}>;tag=forger\r\nTo: <sip:100@{to}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:{CALLER}@{me}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            to = server.addr,
        )
    };
    let wait_200 = |call_id: &str| {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok((n, _)) = attacker.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if m.starts_with("SIP/2.0 200") && m.contains(&format!("Call-ID: {call_id}")) {
                    return m;
                }
            }
        }
        panic!("no 200 OK\n{}", server.log());
    };
    // 1. No ACK: the 200 goes out (and comes again), but no RTP reaches the victim.
    attacker
        .send_to(invite("forged-1").as_bytes(), server.addr)
        .expect("send");
    wait_200("forged-1");
    let got = count_packets(&victim, 2_000);
    assert_eq!(got, 0, "RTP sent before any ACK\n{}", server.log());
    // 2. With an ACK but no RTP from the "caller": the victim hears at most rtp_timeout.
    attacker
        .send_to(invite("forged-2").as_bytes(), server.addr)
        .expect("send");
    let ok = wait_200("forged-2");
    let tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split("tag=").nth(1))
        .map(|t| t.trim().to_string())
        .expect("To tag");
    let ack = format!(
        "ACK sip:100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKforged-ack;rport\r\n\
         From: <sip:{CALLER}@{me}>;tag=forger\r\nTo: <sip:100@{to}>;tag={tag}\r\n\
         Call-ID: forged-2\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        to = server.addr
    );
    attacker.send_to(ack.as_bytes(), server.addr).expect("ack");
    let started = Instant::now();
    let mut heard = 0;
    let mut last = started;
    let mut buf = [0u8; 2048];
    while started.elapsed() < Duration::from_secs(6) {
        if victim.recv_from(&mut buf).is_ok() {
            heard += 1;
            last = Instant::now();
        }
    }
    assert!(heard > 0, "the acknowledged call plays (the test can tell)");
    assert!(
        last - started < Duration::from_millis(3_500),
        "audio went on for {:?} without the caller's RTP\n{}",
        last - started,
        server.log()
    );
}

/// The outcome of `call_id` in the deployment's `calls` (waiting up to `ms` for the row), and
/// how many rows of `calls_in_progress` there are.
fn outcome_of(config: &std::path::Path, call_id: &str, ms: u64) -> (Option<String>, i64) {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let outcome: Option<Option<String>> =
                sqlx::query_scalar("SELECT outcome FROM calls WHERE call_id = ?")
                    .bind(call_id)
                    .fetch_optional(&pool)
                    .await
                    .expect("calls");
            let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM calls_in_progress")
                .fetch_one(&pool)
                .await
                .expect("calls_in_progress");
            if outcome.is_some() || started.elapsed() > Duration::from_millis(ms) {
                return (outcome.flatten(), open);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// After `kill -9` calls in progress leave a row: the next start records them as `failed`.
#[test]
fn calls_cut_by_kill_9_are_recorded_as_failed_at_the_next_start() {
    let config = deployment("kill-9");
    let mut server = Server::start_release(&config, &[]);
    let mut call = RawCall::place(server.addr);
    call.voice(10);
    server.wait_calls_in_progress(1);
    // The call's start is on disk (the writer batches for 100 ms at most).
    let (outcome, open) = outcome_of(&config, "security-inv1@test", 800);
    assert_eq!(
        (outcome, open),
        (None, 1),
        "the call is in progress, not ended"
    );
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();
    drop(server);
    let server = Server::start_release(&config, &[]);
    let (outcome, open) = outcome_of(&config, "security-inv1@test", 5_000);
    assert_eq!(
        (outcome.as_deref(), open),
        (Some("failed"), 0),
        "{}",
        server.log()
    );
}
