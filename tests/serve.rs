//! End-to-end tests of `ivr serve` with real peers: SIPp (Debian package sip-tester) places
//! the calls with the scenarios of tests/sipp/, and a small RTP endpoint here stands in for
//! the caller's media: it records every packet it receives (so the test can check that the
//! caller heard the right prompts, in order, frame for frame, as paced G.711) and sends RFC
//! 4733 keys and voice back. Call records are read from the deployment's SQLite database.
//!
//! Every server listens on 127.0.0.1 only, every run is bounded (`-m`, `-timeout`), and the
//! tests skip themselves (with a message) when `sipp` is not installed.

use ivr_media::audio::{Frame, Law};
use ivr_server::deploy::Deployment;
use std::fs;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::*;

const TEST_FLOW: &str = r##"
flow t {
    title    "serve test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto choose
}

menu choose {
    prompt   options
    timeout  3s
    attempts 2 -> bye
    key 1 -> one
    key 2 -> two
    key 3 -> rec
    key 4 -> who
}

step one {
    play one
    served "one"
    goto choose
}

step two {
    play two
    served "two"
    hangup
}

record rec {
    beep
    max        4s
    silence    1s
    terminator "#"
    save       messages
    next       bye
}

lookup who {
    query   customer_by_phone(caller) into c
    timeout 2s
    found   -> known
    missing -> bye
    error   -> bye
}

step known {
    say money c.balance
    served "balance"
    goto bye
}

step bye {
    play bye
    hangup
}
"##;

/// Prompt lengths of the test deployment (ms) and tones that tell them apart.
const PROMPTS: [(&str, f32, usize); 5] = [
    ("hello", 400.0, 400),
    ("options", 600.0, 600),
    ("one", 800.0, 400),
    ("two", 1000.0, 300),
    ("bye", 1200.0, 300),
];

/// A deployment of the test flow in a temporary folder: prompts made here, the demo database.
fn test_deployment(name: &str, rtp: (u16, u16)) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), TEST_FLOW).expect("flow");
    let mut catalog = String::new();
    for (id, hz, ms) in PROMPTS {
        ivr_media::audio::write_wav(&dir.join(format!("prompts/zh-CN/{id}.wav")), &tone(hz, ms))
            .expect("wav");
        catalog.push_str(&format!("{id} = {{ text = \"{id}\" }}\n"));
    }
    fs::write(dir.join("prompts/zh-CN/prompts.toml"), catalog).expect("catalog");
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[queries.customer_by_phone]
args   = ["phone"]
sql    = "SELECT id, name, vip, balance FROM customers WHERE phone = $1"
fields = {{ id = "number", name = "text", vip = "bool", balance = "money" }}

[routes]
default = "t"
"#,
            config_head(rtp)
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// The reference deployment (ivr.toml, flows/, prompts/ of the repository) with its own
/// demo database, recordings folder and RTP ports.
fn reference_deployment(name: &str, rtp: (u16, u16)) -> PathBuf {
    let dir = temp_dir(name);
    let text = fs::read_to_string(repo().join("ivr.toml")).expect("ivr.toml");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        let line = match key {
            "flows" => format!("flows = {:?}", repo().join("flows").display().to_string()),
            "prompts" => format!(
                "prompts = {:?}",
                repo().join("prompts").display().to_string()
            ),
            "recordings" => "recordings = \"recordings\"".to_string(),
            "rtp_ports" => format!("rtp_ports = \"{}-{}\"", rtp.0, rtp.1),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    fs::write(dir.join("ivr.toml"), out).expect("config");
    dir.join("ivr.toml")
}

/// Received packets split where the marker bit starts a talkspurt.
fn talkspurts(pkts: &[Pkt]) -> Vec<Vec<Pkt>> {
    let mut out: Vec<Vec<Pkt>> = Vec::new();
    for p in pkts {
        if p.marker || out.is_empty() {
            out.push(Vec::new());
        }
        if let Some(last) = out.last_mut() {
            last.push(p.clone());
        }
    }
    out
}

fn frames(d: &Deployment, id: &str) -> Vec<Frame> {
    d.prompts
        .get("zh-CN", id)
        .unwrap_or_else(|| panic!("prompt {id}"))
        .frames(Law::Ulaw)
        .to_vec()
}

fn payloads(spurt: &[Pkt]) -> Vec<Vec<u8>> {
    spurt.iter().map(|p| p.payload.clone()).collect()
}

fn concat(parts: &[Vec<Frame>]) -> Vec<Vec<u8>> {
    parts.iter().flatten().map(|f| f.to_vec()).collect()
}

/// Sequence numbers go up by one per packet; timestamps by 160 per packet within a talkspurt
/// and by whole frames of elapsed time across pauses; packets are paced at 20 ms.
fn check_rtp_stream(pkts: &[Pkt]) {
    for w in pkts.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence numbers");
        let dts = w[1].ts.wrapping_sub(w[0].ts);
        assert!(dts % 160 == 0 && dts >= 160, "timestamp step {dts}");
        if !w[1].marker {
            assert_eq!(dts, 160, "timestamps within a talkspurt");
            let gap = w[1].at - w[0].at;
            assert!(gap < Duration::from_millis(120), "packet gap {gap:?}");
        }
    }
    for s in talkspurts(pkts) {
        if s.len() > 10 {
            let span = s[s.len() - 1].at - s[0].at;
            let expected = Duration::from_millis(20 * (s.len() as u64 - 1));
            let diff = span.as_millis().abs_diff(expected.as_millis());
            assert!(
                diff < 100,
                "a talkspurt of {} packets took {span:?}",
                s.len()
            );
        }
    }
}

type Visit = (String, Option<String>);
/// call_id, flow, outcome, channel, caller.
type CallRow = (String, String, Option<String>, String, String);

/// The call rows (call_id, flow, outcome, channel, caller) and the node visits of the last
/// call, once `calls` has `n` rows (waits for the batching writer).
fn records(config: &Path, n: usize) -> (Vec<CallRow>, Vec<Visit>) {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let calls: Vec<CallRow> = sqlx::query_as(
                "SELECT call_id, flow, outcome, channel, caller FROM calls ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .expect("calls");
            if calls.len() >= n || started.elapsed() > Duration::from_secs(8) {
                let last = calls.last().map(|c| c.0.clone()).unwrap_or_default();
                let visits: Vec<Visit> = sqlx::query_as(
                    "SELECT node, exit FROM node_visits WHERE call_id = ? ORDER BY seq",
                )
                .bind(last)
                .fetch_all(&pool)
                .await
                .expect("visits");
                return (calls, visits);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn visit(node: &str, exit: &str) -> Visit {
    (node.to_string(), Some(exit.to_string()))
}

#[test]
fn keys_by_sip_info_and_the_flow_hangs_up() {
    need_sipp!();
    let config = test_deployment("info", rtp_range(20));
    let d = Deployment::load(Some(&config), None).expect("deployment");
    let server = Server::start(&config, &[]);
    let media = Endpoint::start(Vec::new());
    let port = media.port.to_string();
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "keys_info.xml",
        &["-m", "1", "-key", "rtpport", &port],
    );
    let (pkts, _) = media.finish();
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    // What the caller heard: welcome and menu, then (key 1) one and the menu again, then
    // (key 2) two before the flow hung up: three talkspurts, frame for frame.
    let spurts = talkspurts(&pkts);
    assert_eq!(
        spurts.len(),
        3,
        "talkspurts: {:?}",
        spurts.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(
        payloads(&spurts[0]),
        concat(&[frames(&d, "hello"), frames(&d, "options")])
    );
    assert_eq!(
        payloads(&spurts[1]),
        concat(&[frames(&d, "one"), frames(&d, "options")])
    );
    assert_eq!(payloads(&spurts[2]), concat(&[frames(&d, "two")]));
    check_rtp_stream(&pkts);
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, "t");
    assert_eq!(calls[0].2.as_deref(), Some("self_service"));
    assert_eq!(calls[0].3, "sip");
    assert_eq!(calls[0].4, CALLER);
    let nodes: Vec<Visit> = visits.into_iter().collect();
    assert_eq!(
        nodes,
        vec![
            visit("hello", "goto"),
            visit("choose", "key 1"),
            visit("one", "goto"),
            visit("choose", "key 2"),
            visit("two", "hangup"),
        ]
    );
}

#[test]
fn rfc4733_key_barges_in_and_the_caller_hangs_up() {
    need_sipp!();
    let config = test_deployment("barge", rtp_range(20));
    let d = Deployment::load(Some(&config), None).expect("deployment");
    let server = Server::start(&config, &[]);
    // Key 1 while the menu prompt plays (hello 400 ms, menu from 400 ms to 1000 ms).
    let media = Endpoint::start(vec![(700, Act::Key('1'))]);
    let port = media.port.to_string();
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "2500", "-key", "rtpport", &port],
    );
    let (pkts, keys) = media.finish();
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    check_rtp_stream(&pkts);
    let heard = payloads(&pkts);
    let (hello, menu, one) = (
        frames(&d, "hello"),
        frames(&d, "options"),
        frames(&d, "one"),
    );
    assert_eq!(
        heard[..hello.len()],
        concat(std::slice::from_ref(&hello))[..]
    );
    // The menu was cut by the key; `one` follows at once, then the menu from its start.
    let cut = heard[hello.len()..]
        .iter()
        .position(|f| f[..] == one[0][..])
        .expect("`one` was played");
    assert!(
        cut > 3 && cut < menu.len() - 3,
        "menu frames before the key: {cut}"
    );
    assert_eq!(
        heard[hello.len()..hello.len() + cut],
        concat(std::slice::from_ref(&menu))[..cut]
    );
    let rest = &heard[hello.len() + cut..];
    assert_eq!(
        rest,
        &concat(&[one.clone(), menu.clone()])[..],
        "one key, one `one`"
    );
    // DTMF to audio: the first frame of `one` arrived soon after the key was sent (the next
    // tick on a quiet machine; the bound leaves room for a busy 2-core CI, and is far below
    // the rest of the menu prompt it cut).
    let first_one = pkts[hello.len() + cut].at;
    let latency = first_one.saturating_duration_since(keys[0]);
    assert!(
        latency < Duration::from_millis(150),
        "key to audio {latency:?}"
    );
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls[0].2.as_deref(), Some("self_service"));
    assert_eq!(
        visits,
        vec![
            visit("hello", "goto"),
            visit("choose", "key 1"),
            visit("one", "goto"),
            visit("choose", "caller_hangup"),
        ]
    );
}

#[test]
fn cancel_before_the_answer_releases_everything() {
    need_sipp!();
    // One RTP port only: the second call works only if the cancelled one gave it back.
    let (lo, _) = rtp_range(2);
    let config = test_deployment("cancel", (lo, lo + 1));
    let server = Server::start(&config, &["--answer-after", "1s"]);
    let dir = config.parent().expect("dir");
    let (ok, out) = sipp(
        dir,
        server.addr,
        "cancel.xml",
        &["-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "cancel failed:\n{out}\n{}", server.log());
    let (ok, out) = sipp(
        dir,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "300", "-key", "rtpport", "9"],
    );
    assert!(ok, "call after the cancel failed:\n{out}\n{}", server.log());
    // Every call leaves its record: the cancelled one too (abandoned, never answered, no
    // node visits), then the answered one.
    let (calls, _) = records(&config, 2);
    assert_eq!(calls.len(), 2, "a record for each call: {calls:?}");
    assert_eq!(calls[0].1, "t");
    assert_eq!(calls[0].2.as_deref(), Some("abandoned"));
    assert_eq!(calls[0].3, "sip");
    assert_eq!(calls[0].4, CALLER);
    assert_eq!(calls[1].2.as_deref(), Some("not_served"), "no task done");
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let (called, answered, ended, visits): (String, Option<String>, Option<String>, i64) =
        block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .expect("db");
            sqlx::query_as(
                "SELECT called, CAST(answered_at AS TEXT), CAST(ended_at AS TEXT), \
                 (SELECT COUNT(*) FROM node_visits v WHERE v.call_id = c.call_id) \
                 FROM calls c WHERE c.call_id = ?",
            )
            .bind(&calls[0].0)
            .fetch_one(&pool)
            .await
            .expect("cancelled call")
        });
    assert!(!called.is_empty(), "called number");
    assert_eq!(answered, None, "never answered");
    assert!(ended.is_some(), "ended");
    assert_eq!(visits, 0, "no node visits");
}

#[test]
fn late_offer_is_answered_with_our_offer_and_the_ack_answers() {
    need_sipp!();
    let config = test_deployment("late", rtp_range(20));
    let server = Server::start(&config, &[]);
    let media = Endpoint::start(Vec::new());
    let port = media.port.to_string();
    // The scenario checks the 200 OK's SDP offer (PCMU, PCMA, telephone-event) and answers it
    // in the ACK, with `media` as where the caller's audio goes.
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "uac_late_offer.xml",
        &["-m", "1", "-d", "1500", "-key", "rtpport", &port],
    );
    let (pkts, _) = media.finish();
    assert!(ok, "late offer failed:\n{out}\n{}", server.log());
    // Media started with the ACK's answer: the caller heard the flow, in PCMU.
    assert!(!pkts.is_empty(), "no RTP after the ACK:\n{}", server.log());
    check_rtp_stream(&pkts);
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1, "t");
    assert_eq!(calls[0].2.as_deref(), Some("not_served"), "no task done");
    assert_eq!(calls[0].3, "sip");
    assert_eq!(calls[0].4, CALLER);
    assert!(!visits.is_empty(), "the flow ran");
}

#[test]
fn protocol_answers_and_a_flood_of_malformed_messages() {
    need_sipp!();
    let config = test_deployment("malformed", rtp_range(20));
    let mut server = Server::start(&config, &[]);
    let dir = config.parent().expect("dir");
    let (ok, out) = sipp(
        dir,
        server.addr,
        "misc.xml",
        &["-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "misc failed:\n{out}\n{}", server.log());
    let (ok, out) = sipp(
        dir,
        server.addr,
        "malformed.xml",
        &[
            "-m", "300", "-r", "300", "-l", "100", "-key", "rtpport", "9",
        ],
    );
    assert!(ok, "malformed flood failed:\n{out}\n{}", server.log());
    // Raw junk: garbage, truncated requests, absurd headers, oversized datagrams.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let junk: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02garbage".to_vec(),
        b"INVITE sip:x SIP/2.0\r\n".to_vec(),
        b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKa\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
        b"OPTIONS sip:x SIP/2.0\r\nVia: \r\nCSeq: 99999999999999999999 OPTIONS\r\n\r\n".to_vec(),
        vec![b'A'; 60_000],
        b"BYE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKb\r\nCall-ID: \xff\xfe\r\nCSeq: 1 BYE\r\n\r\n".to_vec(),
        b"ACK sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKc\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n\r\n".to_vec(),
    ];
    for round in 0..200 {
        for j in &junk {
            let _ = sock.send_to(j, server.addr);
        }
        if round % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Over TCP: junk, then an oversized message (the connection is closed).
    if let Ok(mut t) = TcpStream::connect(server.addr) {
        let _ = t.write_all(b"\r\n\r\nNOT SIP AT ALL\r\n\r\n");
        let _ = t.write_all(&vec![b'x'; 40_000]);
        let _ = t.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = Vec::new();
        let _ = t.read_to_end(&mut buf);
    }
    assert!(server.running(), "ivr serve died:\n{}", server.log());
    // Still answering: OPTIONS over TCP, then a call.
    let mut t = TcpStream::connect(server.addr).expect("tcp");
    t.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let opt = format!(
        "OPTIONS sip:100@{a} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bKopt\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:100@{a}>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        a = server.addr
    );
    t.write_all(opt.as_bytes()).expect("send");
    let mut line = String::new();
    std::io::BufReader::new(&t)
        .read_line(&mut line)
        .expect("answer");
    assert_eq!(line.trim(), "SIP/2.0 200 OK");
    let (ok, out) = sipp(
        dir,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "200", "-key", "rtpport", "9"],
    );
    assert!(
        ok,
        "a call after the flood failed:\n{out}\n{}",
        server.log()
    );
    assert!(server.running());
}

/// A call whose caller does `acts` on its media and that the flow hangs up (BYE from ivr):
/// what the caller heard.
fn call_until_the_flow_hangs_up(config: &Path, server: &Server, acts: Vec<(u64, Act)>) -> Vec<Pkt> {
    let media = Endpoint::start(acts);
    let port = media.port.to_string();
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "flow_hangs_up.xml",
        &["-m", "1", "-key", "rtpport", &port],
    );
    let (pkts, _) = media.finish();
    assert!(ok, "no BYE from ivr:\n{out}\n{}", server.log());
    pkts
}

/// node, save_table, file, length_ms, queue of a `recordings` row.
type RecordingCols = (String, String, Option<String>, i64, Option<String>);

#[test]
fn recording_writes_the_callers_audio() {
    need_sipp!();
    let config = test_deployment("record", rtp_range(20));
    let server = Server::start(&config, &[]);
    // Key 3 once the menu waits (after 1 s); speak 1 s, starting half a second after the
    // 400 ms beep; 1 s of silence ends the recording; the flow says goodbye and hangs up.
    let acts = vec![(1100, Act::Key('3')), (2000, Act::Voice(1000))];
    call_until_the_flow_hangs_up(&config, &server, acts);
    let (_, visits) = records(&config, 1);
    assert_eq!(
        visits,
        vec![
            visit("hello", "goto"),
            visit("choose", "key 3"),
            visit("rec", "next"),
            visit("bye", "hangup"),
        ]
    );
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let rows: Vec<RecordingCols> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        sqlx::query_as("SELECT node, save_table, file, length_ms, queue FROM recordings")
            .fetch_all(&pool)
            .await
            .expect("recordings")
    });
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (node, save, file, length, queue) = &rows[0];
    assert_eq!((node.as_str(), save.as_str()), ("rec", "messages"));
    assert_eq!(
        queue, &None,
        "a flow without a queue transfer: every agent's message"
    );
    assert!((900..=4000).contains(length), "length {length}");
    let file = PathBuf::from(file.clone().expect("file"));
    assert!(file.starts_with(config.parent().expect("dir").join("recordings/messages")));
    let mut wav = Vec::new();
    fs::File::open(&file)
        .expect("wav")
        .read_to_end(&mut wav)
        .expect("read");
    // 1 s of voice at 8 kHz, 16 bits is 16,000 bytes: at least 600 ms of it is there.
    assert!(wav.len() > 44 + 9_600, "wav of {} bytes", wav.len());
    // The file is as long as its record says (silence where no audio came).
    let file_ms = (wav.len() as i64 - 44) / 16;
    assert!(
        (file_ms - length).abs() <= 40,
        "file {file_ms} ms, record {length} ms"
    );
}

#[test]
fn lookups_and_hold_on_the_reference_hotline() {
    need_sipp!();
    let config = reference_deployment("hotline", rtp_range(20));
    let server = Server::start(&config, &[]);
    let dir = config.parent().expect("dir");
    let (ok, out) = sipp(
        dir,
        server.addr,
        "hold.xml",
        &["-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "hold failed:\n{out}\n{}", server.log());
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls[0].1, "hotline");
    assert_eq!(calls[0].2.as_deref(), Some("not_served"), "no task done");
    let exits: Vec<&str> = visits
        .iter()
        .map(|(n, e)| if e.is_some() { n.as_str() } else { "" })
        .collect();
    assert!(
        visits.starts_with(&[visit("start", "goto"), visit("identify", "found")]),
        "{visits:?}"
    );
    assert!(exits.contains(&"known_caller"), "{visits:?}");
    assert_eq!(
        visits.last().and_then(|v| v.1.as_deref()),
        Some("caller_hangup")
    );
}

/// RFC 4733 keys as SIPp plays them from the captures it ships (`play_pcap_audio`: a raw
/// socket, UDP source port 0, so the call latches to that source after its probation). The
/// keys land in the main menu's prompt (after the 3.8 s welcome): `*` repeats the menu, then
/// `3` takes the plan branch. Each capture replays one fixed RTP timestamp, so the two keys
/// come from two different captures (the same one twice would be one event by RFC 4733).
#[test]
fn rfc4733_from_a_sipp_pcap_on_the_reference_hotline() {
    need_sipp!();
    let captures = Path::new("/usr/share/sip-tester");
    let (star, three) = (
        captures.join("dtmf_2833_star.pcap"),
        captures.join("dtmf_2833_3.pcap"),
    );
    for pcap in [&star, &three] {
        if !pcap.exists() {
            skip(&format!("{} is missing: test skipped", pcap.display()));
            return;
        }
    }
    let config = reference_deployment("pcap", rtp_range(20));
    let server = Server::start(&config, &[]);
    let dir = config.parent().expect("dir");
    fs::copy(&star, dir.join("first.pcap")).expect("pcap");
    fs::copy(&three, dir.join("second.pcap")).expect("pcap");
    let (ok, out) = sipp(
        dir,
        server.addr,
        "pcap_dtmf.xml",
        &["-m", "1", "-d", "1500", "-key", "rtpport", "6000"],
    );
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    let (_, visits) = records(&config, 1);
    let menu: Vec<_> = visits.iter().filter(|v| v.0 == "main_menu").collect();
    assert_eq!(
        menu,
        [&visit("main_menu", "key *"), &visit("main_menu", "key 3")],
        "keys * then 3 from the two pcaps: {visits:?}"
    );
    assert!(visits.contains(&visit("plan", "found")), "{visits:?}");
}

#[test]
fn limits_refuse_with_503_and_488() {
    need_sipp!();
    let config = test_deployment("limits", rtp_range(20));
    let server = Server::start(&config, &["--max-calls", "1"]);
    let dir = config.parent().expect("dir").to_path_buf();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "no_codec.xml",
        &["-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "488 expected:\n{out}\n{}", server.log());
    let addr = server.addr;
    let d2 = dir.join("long");
    fs::create_dir_all(&d2).expect("dir");
    let long = std::thread::spawn(move || {
        sipp(
            &d2,
            addr,
            "call_bye.xml",
            &["-m", "1", "-d", "2500", "-key", "rtpport", "9"],
        )
    });
    server.wait_calls_in_progress(1);
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "busy.xml",
        &["-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "503 expected:\n{out}\n{}", server.log());
    let (ok, out) = long.join().expect("thread");
    assert!(ok, "the admitted call failed:\n{out}\n{}", server.log());
}

#[test]
fn tcp_calls_and_graceful_shutdown() {
    need_sipp!();
    let config = test_deployment("shutdown", rtp_range(20));
    let mut server = Server::start(&config, &["--drain", "1s"]);
    let dir = config.parent().expect("dir").to_path_buf();
    // A call over TCP steered by INFO keys.
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "keys_info.xml",
        &["-t", "t1", "-m", "1", "-key", "rtpport", "9"],
    );
    assert!(ok, "tcp call failed:\n{out}\n{}", server.log());
    // A call in progress when the server is told to stop: after the drain time ivr ends it
    // with a BYE, writes its record and exits cleanly.
    let addr = server.addr;
    let d2 = dir.join("drain");
    fs::create_dir_all(&d2).expect("dir");
    let call = std::thread::spawn(move || {
        sipp(
            &d2,
            addr,
            "flow_hangs_up.xml",
            &["-m", "1", "-key", "rtpport", "9"],
        )
    });
    server.wait_calls_in_progress(1);
    let status = server.stop(Duration::from_secs(15));
    let (ok, out) = call.join().expect("thread");
    assert!(
        ok,
        "the call was not ended with a BYE:\n{out}\n{}",
        server.log()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "exit: {status:?}\n{}",
        server.log()
    );
    let (calls, visits) = records(&config, 2);
    assert_eq!(calls.len(), 2, "{calls:?}");
    // The shutdown ended the call: the platform left the node, not the caller.
    assert_eq!(visits.last().and_then(|v| v.1.as_deref()), Some("system"));
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let ended_by = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let rows: Vec<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT outcome, ended_by FROM calls ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("calls");
        rows
    });
    assert_eq!(
        ended_by.last(),
        Some(&(Some("not_served".to_string()), Some("system".to_string()))),
        "{ended_by:?}"
    );
}

/// A real softphone, headless: baresip (Debian package) dials the test flow with a WAV file
/// as its microphone and dumps what it hears (sndfile); it hangs up when it quits.
#[test]
fn a_baresip_softphone_hears_the_flow() {
    if Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        skip("baresip is not installed: test skipped");
        return;
    }
    let config = test_deployment("baresip", rtp_range(20));
    let server = Server::start(&config, &[]);
    let dir = config.parent().expect("dir").join("baresip");
    fs::create_dir_all(&dir).expect("dir");
    ivr_media::audio::write_wav(&dir.join("mic.wav"), &tone(300.0, 6000)).expect("mic");
    // baresip also binds TLS on the next port: take a free pair.
    let port = (0..50)
        .map(|i| 41_000 + (std::process::id() % 500) as u16 * 20 + i * 2)
        .find(|p| {
            UdpSocket::bind(("127.0.0.1", *p)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .expect("free port");
    fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\naudio_player aubridge,x\n\
             audio_source aufile,{mic}\naudio_alert aubridge,y\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module aubridge.so\nmodule sndfile.so\nmodule_app account.so\nmodule_app menu.so\n\
             snd_path {dump}\n",
            mic = dir.join("mic.wav").display(),
            dump = dir.display()
        ),
    )
    .expect("config");
    fs::write(
        dir.join("accounts"),
        format!("<sip:{CALLER}@127.0.0.1>;regint=0;audio_codecs=PCMU\n"),
    )
    .expect("accounts");
    let out = Command::new("timeout")
        .args(["20", "baresip", "-f"])
        .arg(&dir)
        .args(["-e", &format!("/dial sip:100@{}", server.addr), "-t", "4"])
        .output()
        .expect("baresip");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("Call established"),
        "baresip:\n{said}\n{}",
        server.log()
    );
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls[0].4, CALLER);
    assert_eq!(visits.first(), Some(&visit("hello", "goto")), "{visits:?}");
    assert_eq!(
        visits.last().and_then(|v| v.1.as_deref()),
        Some("caller_hangup")
    );
    // What baresip decoded: the prompts (tones), not silence.
    let dump = fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip's dump of what it heard");
    let mut r = hound::WavReader::open(&dump).expect("wav");
    let rate = r.spec().sample_rate as usize;
    let samples: Vec<i16> = r.samples::<i16>().map_while(Result::ok).collect();
    // ivr sends audio only while something plays (hello and the menu prompt: 1 s), then
    // waits for a key in silence; baresip's dump holds what arrived.
    assert!(
        samples.len() >= rate * 8 / 10,
        "{} samples at {rate} Hz",
        samples.len()
    );
    let loud = samples.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(
        loud > rate / 2,
        "the prompts were heard: {loud} loud samples"
    );
}

/// A plain HTTP/1.1 GET (bounded): the status code, the content type and the body.
fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, kind, body) = http_get(addr, "/status");
    assert_eq!(code, 200, "{body}");
    assert!(kind.starts_with("application/json"), "{kind}");
    serde_json::from_str(&body).expect("status JSON")
}

/// Polls `GET /status` until `done` holds (at most `within`); the status and how long it took.
fn status_until(
    addr: SocketAddr,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Option<(serde_json::Value, Duration)> {
    let started = Instant::now();
    while started.elapsed() < within {
        let s = status(addr);
        if done(&s) {
            return Some((s, started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn failed_reloads(s: &serde_json::Value) -> u64 {
    s["reloads"]["failed"].as_u64().expect("reloads.failed")
}

/// The ACK of the 2xx to a caller's re-INVITE ends that 2xx's retransmissions (RFC 3261
/// 13.3.1.4), over UDP, as for the first INVITE. A plain UDP caller: SIPp would absorb them.
#[test]
fn the_ack_of_a_re_invite_stops_its_200_retransmissions() {
    let config = test_deployment("reinvite-ack", rtp_range(20));
    let server = Server::start(&config, &[]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let to = server.addr;
    let sdp = |dir: &str| {
        format!(
            "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n"
        )
    };
    let request = |method: &str, branch: &str, cseq: u32, to_tag: &str, body: &str| {
        let to_tag = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{branch};rport\r\n\
             From: <sip:13800000001@{me}>;tag=caller1\r\nTo: <sip:100@{to}>{to_tag}\r\n\
             Call-ID: reinvite-ack-1\r\nCSeq: {cseq} {}\r\nContact: <sip:13800000001@{me}>\r\n\
             Max-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            method,
            body.len()
        )
    };
    let send = |text: &str| {
        sock.send_to(text.as_bytes(), to).expect("send");
    };
    // The 200 of CSeq `cseq`, waiting at most `within`; every message read is returned too.
    let final_200 = |cseq: u32, within: Duration| -> Option<String> {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        while started.elapsed() < within {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if m.starts_with("SIP/2.0 200") && m.contains(&format!("CSeq: {cseq} INVITE")) {
                    return Some(m);
                }
            }
        }
        None
    };
    send(&request("INVITE", "inv1", 1, "", &sdp("sendrecv")));
    let ok = final_200(1, Duration::from_secs(5)).expect("the call is answered");
    let tag = ok
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split("tag=").nth(1))
        .map(|t| t.trim().to_string())
        .expect("To tag");
    send(&request("ACK", "ack1", 1, &tag, ""));
    send(&request("INVITE", "inv2", 2, &tag, &sdp("sendonly")));
    final_200(2, Duration::from_secs(5)).expect("the re-INVITE is answered");
    send(&request("ACK", "ack2", 2, &tag, ""));
    // T1 is 500 ms: an unacknowledged 200 comes again at 0.5, 1.5, 3.5 s ... One already on
    // its way when the ACK arrived (a busy machine) is let pass; the one at 1.5 s must not come.
    let _ = final_200(2, Duration::from_millis(600));
    assert!(
        final_200(2, Duration::from_millis(1_600)).is_none(),
        "the 200 to the re-INVITE came again after its ACK\n{}",
        server.log()
    );
    send(&request("BYE", "bye1", 3, &tag, ""));
}

/// A caller whose media stops is hung up after `--rtp-timeout`, and so is one that never sent
/// any (a forged INVITE's call is bounded by it too).
#[test]
fn calls_end_when_the_callers_media_stops() {
    need_sipp!();
    let config = test_deployment("rtp-timeout", rtp_range(20));
    let server = Server::start(&config, &["--rtp-timeout", "1s"]);
    // Media for 300 ms, then none: BYE from ivr about a second later, long before the flow
    // would hang up by itself (two 3 s menu timeouts).
    let started = Instant::now();
    call_until_the_flow_hangs_up(&config, &server, vec![(100, Act::Voice(300))]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(server.log().contains("no RTP for 1 s"), "{}", server.log());
    // No media at all: ended after the same second, not after the flow's own 6 s.
    let started = Instant::now();
    call_until_the_flow_hangs_up(&config, &server, Vec::new());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not cut off: {:?}\n{}",
        started.elapsed(),
        server.log()
    );
    assert_eq!(
        server.log().matches("no RTP for").count(),
        2,
        "{}",
        server.log()
    );
    // A media failure: `failed`, ended by the system, the node left by `system`.
    let (calls, visits) = records(&config, 2);
    assert!(
        calls.iter().all(|c| c.2.as_deref() == Some("failed")),
        "{calls:?}"
    );
    assert_eq!(visits.last().and_then(|v| v.1.as_deref()), Some("system"));
}

#[test]
fn a_withheld_number_is_the_empty_caller() {
    need_sipp!();
    let config = test_deployment("anonymous", rtp_range(20));
    let server = Server::start(&config, &[]);
    // RFC 3323's anonymous From, and an ordinary number after it.
    for (from, want) in [("anonymous", ""), ("13700000007", "13700000007")] {
        let (ok, out) = sipp(
            config.parent().expect("dir"),
            server.addr,
            "flow_hangs_up.xml",
            &["-m", "1", "-key", "rtpport", "9", "-key", "caller", from],
        );
        assert!(ok, "sipp failed:\n{out}\n{}", server.log());
        let n = if want.is_empty() { 1 } else { 2 };
        let (calls, _) = records(&config, n);
        let last = calls.last().expect("a call");
        assert_eq!(last.4, want, "{calls:?}");
    }
}

/// A call that keys 4 (the lookup of the caller) and hears the flow out: how `who` was left.
fn lookup_exit(config: &Path, server: &Server, n: usize) -> Option<String> {
    call_until_the_flow_hangs_up(config, server, vec![(1100, Act::Key('4'))]);
    let (_, visits) = records(config, n);
    visits
        .into_iter()
        .find(|(node, _)| node == "who")
        .and_then(|(_, exit)| exit)
}

#[test]
fn an_edited_query_serves_the_calls_after_the_reload() {
    need_sipp!();
    let config = test_deployment("query-reload", rtp_range(20));
    let server = Server::launch(&config, true, &[]);
    let http = server.http();
    assert_eq!(lookup_exit(&config, &server, 1).as_deref(), Some("found"));
    // The analyst narrows the query in ivr.toml: the next call runs the new SQL.
    let before = status(http);
    let text = fs::read_to_string(&config).expect("config");
    let edited = text.replace("WHERE phone = $1", "WHERE phone = $1 AND vip = 2");
    assert_ne!(edited, text);
    fs::write(&config, edited).expect("edit");
    status_until(http, Duration::from_secs(10), |s| {
        s["version"] != before["version"]
    })
    .unwrap_or_else(|| panic!("the edit did not go live\n{}", server.log()));
    assert_eq!(lookup_exit(&config, &server, 2).as_deref(), Some("missing"));
}

#[test]
fn http_status_and_metrics_follow_valid_and_broken_edits() {
    let config = test_deployment("http", rtp_range(10));
    let server = Server::launch(&config, true, &[]);
    let http = server.http();
    let flow = config.parent().expect("dir").join("flows/t.flow");
    let first = Deployment::load(Some(&config), None).expect("deployment");
    let s = status(http);
    assert_eq!(s["version"], first.version.as_str(), "{s}");
    assert!(s["live_since"].is_string(), "{s}");
    assert!(s["last_reload"].is_null(), "{s}");

    // A broken edit: reported over HTTP with `ivr check`'s diagnostics; the version stays.
    fs::write(&flow, TEST_FLOW.replace("goto bye", "goto nowhere")).expect("edit");
    let (s, _) = status_until(http, Duration::from_secs(10), |s| failed_reloads(s) == 1)
        .unwrap_or_else(|| panic!("no failed reload\n{}", server.log()));
    assert_eq!(s["version"], first.version.as_str(), "{s}");
    assert_eq!(s["last_reload"]["ok"], false, "{s}");
    assert_eq!(
        s["last_reload"]["diagnostics"][0]["code"], "unknown-target",
        "{s}"
    );
    assert!(
        server
            .log()
            .contains("error[unknown-target]: there is no node `nowhere`"),
        "the log does not show the diagnostic like `ivr check`:\n{}",
        server.log()
    );
    let (code, kind, metrics) = http_get(http, "/metrics");
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/plain"), "{kind}");
    for line in [
        "ivr_calls_in_progress 0".to_string(),
        "ivr_reloads_total{result=\"ok\"} 0".to_string(),
        "ivr_reloads_total{result=\"failed\"} 1".to_string(),
        format!("ivr_live_version_info{{version=\"{}\"}} 1", first.version),
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }

    // A valid edit goes live.
    fs::write(
        &flow,
        TEST_FLOW.replace("\"serve test\"", "\"serve test 2\""),
    )
    .expect("edit");
    let (s, _) = status_until(http, Duration::from_secs(10), |s| {
        s["version"] != first.version.as_str()
    })
    .unwrap_or_else(|| panic!("the valid edit did not go live\n{}", server.log()));
    assert_eq!(s["last_reload"]["ok"], true, "{s}");
    assert_eq!(s["last_reload"]["version"], s["version"], "{s}");
    assert_eq!(s["reloads"]["ok"], 1, "{s}");
    let (_, _, metrics) = http_get(http, "/metrics");
    assert!(
        metrics.contains(&format!(
            "ivr_live_version_info{{version=\"{}\"}} 1",
            s["version"].as_str().expect("version")
        )),
        "{metrics}"
    );

    // Broken again, then undone: the last attempt is the clean one, and nothing new went live.
    let live = s["version"].clone();
    let good = fs::read_to_string(&flow).expect("flow");
    fs::write(&flow, good.replace("goto bye", "goto nowhere")).expect("edit");
    status_until(http, Duration::from_secs(10), |s| failed_reloads(s) == 2)
        .unwrap_or_else(|| panic!("no failed reload\n{}", server.log()));
    fs::write(&flow, &good).expect("undo");
    let (s, _) = status_until(http, Duration::from_secs(10), |s| {
        s["last_reload"]["ok"] == true
    })
    .unwrap_or_else(|| panic!("the undone edit is not shown\n{}", server.log()));
    assert_eq!(s["version"], live, "{s}");
    assert_eq!(s["last_reload"]["unchanged"], true, "{s}");
    assert_eq!(s["reloads"]["ok"], 1, "{s}");

    // A version with a warning goes live with it in the diagnostics (as `ivr check` has it).
    fs::write(
        &flow,
        format!("{good}\nstep orphan {{\n    play bye\n    hangup\n}}\n"),
    )
    .expect("edit");
    let (s, _) = status_until(http, Duration::from_secs(10), |s| s["version"] != live)
        .unwrap_or_else(|| panic!("the edit with a warning did not go live\n{}", server.log()));
    let diagnostics = s["last_reload"]["diagnostics"]
        .as_array()
        .expect("diagnostics");
    assert!(
        diagnostics
            .iter()
            .any(|d| d["code"] == "unreachable-node" && d["severity"] == "warning"),
        "{s}"
    );
}

/// The flow of the reload test at edit `i`: hello, then a node named after the edit (so each
/// call's path shows the version it ran), then bye; 1.3 s of prompts. Broken: a `goto` to a
/// node that does not exist.
fn edit_flow(i: usize, broken: bool) -> String {
    format!(
        r#"
flow t {{
    title    "edit {i}"
    language zh-CN
    entry    hello
}}

step hello {{
    play hello
    goto mid{i}
}}

step mid{i} {{
    play options
    goto {next}
}}

step bye {{
    play bye
    hangup
}}
"#,
        next = if broken { "nowhere" } else { "bye" }
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// 20 edits in a row (valid and broken) under a steady SIPp load: new calls follow each valid
/// edit, calls in progress keep their version and path, broken edits never serve a call, no
/// call fails. Also prints the reload latency and the RTP timing of calls during the edits.
#[test]
fn twenty_edits_under_load() {
    need_sipp!();
    const CALLS: usize = 150;
    const EDITS: usize = 20;
    let config = test_deployment("reload-load", rtp_range(40));
    let dir = config.parent().expect("dir").to_path_buf();
    let flow = dir.join("flows/t.flow");
    fs::write(&flow, edit_flow(0, false)).expect("flow");
    let server = Server::launch(&config, true, &[]);
    let http = server.http();
    // flow version → edit number of every version that went live.
    let mut versions = std::collections::HashMap::new();
    let s = status(http);
    let flow_version = |s: &serde_json::Value| {
        s["flows"][0]["version"]
            .as_str()
            .expect("flow version")
            .to_string()
    };
    versions.insert(flow_version(&s), 0usize);

    // The steady load: 8 calls/s, 1.3 s each.
    let addr = server.addr;
    let load_dir = dir.join("load");
    fs::create_dir_all(&load_dir).expect("dir");
    let load = std::thread::spawn(move || {
        let m = CALLS.to_string();
        sipp(
            &load_dir,
            addr,
            "flow_hangs_up.xml",
            &[
                "-r", "8", "-l", "40", "-m", &m, "-timeout", "60", "-key", "rtpport", "9",
            ],
        )
    });
    // Calls that listen to their RTP one after another, before and during the edits.
    let editing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let (editing, stop) = (Arc::clone(&editing), Arc::clone(&stop));
        let probe_dir = dir.join("probe");
        fs::create_dir_all(&probe_dir).expect("dir");
        std::thread::spawn(move || {
            let mut out: Vec<(bool, Vec<Pkt>, bool, String)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let during = editing.load(Ordering::Relaxed);
                let media = Endpoint::start(Vec::new());
                let port = media.port.to_string();
                let (ok, text) = sipp(
                    &probe_dir,
                    addr,
                    "flow_hangs_up.xml",
                    &["-m", "1", "-key", "rtpport", &port],
                );
                let (pkts, _) = media.finish();
                out.push((during, pkts, ok, text));
            }
            out
        })
    };

    std::thread::sleep(Duration::from_secs(2));
    editing.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut valid = 0;
    for i in 1..=EDITS {
        let broken = i % 3 == 0;
        let before = status(http);
        let at = Instant::now();
        fs::write(&flow, edit_flow(i, broken)).expect("edit");
        if broken {
            let failed = failed_reloads(&before);
            let (s, _) = status_until(http, Duration::from_secs(5), |s| failed_reloads(s) > failed)
                .unwrap_or_else(|| panic!("edit {i}: no failed reload\n{}", server.log()));
            assert_eq!(s["version"], before["version"], "edit {i}: {s}");
            assert_eq!(s["last_reload"]["ok"], false, "edit {i}: {s}");
        } else {
            let (s, took) = status_until(http, Duration::from_secs(5), |s| {
                s["version"] != before["version"]
            })
            .unwrap_or_else(|| panic!("edit {i} did not go live\n{}", server.log()));
            latencies.push(took);
            valid += 1;
            versions.insert(flow_version(&s), i);
        }
        let next = at + Duration::from_millis(600);
        if let Some(rest) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(rest);
        }
    }
    editing.store(false, Ordering::Relaxed);
    let (ok, out) = load.join().expect("load");
    stop.store(true, Ordering::Relaxed);
    let probes = probe.join().expect("probe");
    assert!(ok, "a call of the load failed:\n{out}\n{}", server.log());
    assert_eq!(versions.len(), valid + 1, "{versions:?}");

    // Every call's record: a version that went live, the path of that version, in the order
    // the versions went live; no call ran a broken edit.
    let db = dir.join("ivr-data/ivr.db");
    let total = CALLS + probes.len();
    let (calls, visits) = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let calls: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
                "SELECT call_id, flow_version, outcome, started_at FROM calls ORDER BY started_at",
            )
            .fetch_all(&pool)
            .await
            .expect("calls");
            if calls.len() >= total || started.elapsed() > Duration::from_secs(10) {
                let visits: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT call_id, flow_version, node FROM node_visits ORDER BY call_id, seq",
                )
                .fetch_all(&pool)
                .await
                .expect("visits");
                return (calls, visits);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(calls.len(), total, "call records");
    let mut paths: std::collections::HashMap<&str, Vec<(&str, &str)>> =
        std::collections::HashMap::new();
    for (id, v, node) in &visits {
        paths.entry(id).or_default().push((v, node));
    }
    let mut last = 0;
    let mut served = std::collections::BTreeSet::new();
    let mut order: Vec<(String, usize)> = Vec::new();
    for (id, v, outcome, started_at) in &calls {
        let Some(&edit) = versions.get(v) else {
            panic!("call {id} ran version {v}, which never went live");
        };
        assert_eq!(outcome.as_deref(), Some("not_served"), "call {id}");
        let mid = format!("mid{edit}");
        let path: Vec<(&str, &str)> = paths.get(id.as_str()).cloned().unwrap_or_default();
        assert_eq!(
            path,
            vec![
                (v.as_str(), "hello"),
                (v.as_str(), mid.as_str()),
                (v.as_str(), "bye")
            ],
            "call {id} (edit {edit})"
        );
        order.push((started_at.clone(), edit));
        served.insert(edit);
    }
    // Calls arriving in the same millisecond may be recorded in either order.
    order.sort();
    for (_, edit) in &order {
        assert!(*edit >= last, "versions out of order: {order:?}");
        last = *edit;
    }
    let live: std::collections::BTreeSet<usize> = versions.values().copied().collect();
    assert_eq!(served, live, "versions that served calls");

    latencies.sort();
    let mut gaps_during = Vec::new();
    let mut gaps_before = Vec::new(); // before and after
    for (during, pkts, ok, text) in &probes {
        assert!(ok, "a probe call failed:\n{text}");
        check_rtp_stream(pkts);
        let gaps = pkts
            .windows(2)
            .filter(|w| !w[1].marker)
            .map(|w| w[1].at - w[0].at);
        if *during {
            gaps_during.extend(gaps);
        } else {
            gaps_before.extend(gaps);
        }
    }
    gaps_during.sort();
    gaps_before.sort();
    eprintln!(
        "reload latency under load ({} valid edits, write → /status shows it): p50 {}, p99 {}, max {}",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
    );
    for (name, g) in [
        ("outside the edits", &gaps_before),
        ("during the edits", &gaps_during),
    ] {
        if !g.is_empty() {
            eprintln!(
                "RTP inter-packet gaps of calls in progress {name} ({} gaps): p50 {}, p99 {}, max {}",
                g.len(),
                ms(percentile(g, 0.5)),
                ms(percentile(g, 0.99)),
                ms(g[g.len() - 1]),
            );
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("dir");
    for e in fs::read_dir(from).expect("read dir").flatten() {
        let path = e.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(e.file_name()));
        } else {
            fs::copy(&path, to.join(e.file_name())).expect("copy");
        }
    }
}

/// The reload latency on the reference set (a copy of flows/ and prompts/): an edit of
/// flows/hotline.flow is written, then `GET /status` is polled every 5 ms until the new
/// version is live (the next call admitted gets it). Prints p50/p99 over 40 edits; record the
/// figures in docs/performance.md. Run it in release:
/// `cargo test --release --test serve -- --ignored reload_latency --nocapture`.
#[test]
#[ignore = "a measurement; run it in release (see docs/performance.md)"]
fn reload_latency_on_the_reference_set() {
    const EDITS: usize = 40;
    let dir = temp_dir("latency");
    copy_tree(&repo().join("flows"), &dir.join("flows"));
    copy_tree(&repo().join("prompts"), &dir.join("prompts"));
    let rtp = rtp_range(10);
    let text = fs::read_to_string(repo().join("ivr.toml")).expect("ivr.toml");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        out.push_str(&match key {
            "rtp_ports" => format!("rtp_ports = \"{}-{}\"", rtp.0, rtp.1),
            _ => line.to_string(),
        });
        out.push('\n');
    }
    let config = dir.join("ivr.toml");
    fs::write(&config, out).expect("config");
    let server = Server::launch(&config, true, &[]);
    let http = server.http();
    let hotline = dir.join("flows/hotline.flow");
    let original = fs::read_to_string(&hotline).expect("hotline.flow");
    let mut latencies = Vec::new();
    for i in 0..EDITS {
        let before = status(http);
        std::thread::sleep(Duration::from_millis(200));
        let at = Instant::now();
        fs::write(&hotline, format!("{original}\n# edit {i}\n")).expect("edit");
        let (_, _) = status_until(http, Duration::from_secs(10), |s| {
            s["version"] != before["version"]
        })
        .unwrap_or_else(|| panic!("edit {i} did not go live\n{}", server.log()));
        latencies.push(at.elapsed());
    }
    latencies.sort();
    eprintln!(
        "reload latency on the reference set ({EDITS} edits, write → new version live): \
         p50 {}, p99 {}, min {}, max {}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies[0]),
        ms(latencies[EDITS - 1]),
    );
}

#[test]
fn a_codec_change_by_re_invite_switches_the_prompts_to_pcma() {
    need_sipp!();
    let config = test_deployment("reinvite", rtp_range(20));
    let d = Deployment::load(Some(&config), None).expect("deployment");
    let server = Server::start(&config, &[]);
    let media = Endpoint::start(Vec::new());
    let port = media.port.to_string();
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "reinvite_pcma.xml",
        &["-m", "1", "-key", "rtpport", &port],
    );
    let (pkts, _) = media.finish();
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    let first_pcma = pkts
        .iter()
        .position(|p| p.pt == 8)
        .unwrap_or_else(|| panic!("no PCMA after the re-INVITE:\n{}", server.log()));
    assert!(first_pcma >= 20, "PCMA from packet {first_pcma}");
    assert!(pkts[..first_pcma].iter().all(|p| p.pt == 0));
    assert!(pkts[first_pcma..].iter().all(|p| p.pt == 8));
    // What follows is still the flow's audio, now in A-law frame for frame.
    let alaw: Vec<Vec<u8>> = ["hello", "options"]
        .iter()
        .flat_map(|id| {
            d.prompts
                .get("zh-CN", id)
                .map(|p| p.frames(Law::Alaw).to_vec())
                .unwrap_or_default()
        })
        .map(|f| f.to_vec())
        .collect();
    let after = &pkts[first_pcma..];
    assert!(after.len() >= 5, "{} PCMA packets", after.len());
    assert!(
        after.iter().all(|p| alaw.contains(&p.payload)),
        "a PCMA packet that is no frame of the prompts"
    );
    check_rtp_stream(&pkts);
}

#[test]
fn a_late_offer_whose_ack_has_no_usable_answer_is_ended_with_a_bye() {
    need_sipp!();
    let config = test_deployment("late-bad", rtp_range(20));
    let server = Server::start(&config, &[]);
    let (ok, out) = sipp(
        config.parent().expect("dir"),
        server.addr,
        "late_offer_bad_ack.xml",
        &["-m", "1"],
    );
    assert!(ok, "no BYE after an unusable ACK:\n{out}\n{}", server.log());
    // The call never started its flow; its record says so.
    let (calls, visits) = records(&config, 1);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].2.as_deref(), Some("failed"));
    assert!(visits.is_empty(), "{visits:?}");
}

const VOICE_MAIL_FLOW: &str = r##"
flow vm {
    title    "voice mail"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto agent
}

transfer agent {
    queue     support
    max_wait  30s -> rec
    no_agents -> rec
    after     -> bye
}

record rec {
    beep
    max        4s
    silence    1s
    terminator "#"
    save       messages
    next       bye
}

step bye {
    play bye
    hangup
}
"##;

/// `GET path` with `headers`, the body as bytes (audio): status, headers, body.
fn http_bytes(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, raw[end + 4..].to_vec())
}

fn basic(id: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}"))
    )
}

/// The unheard messages of `queue` on the dashboard, once they are `want` (5 s at most).
fn dashboard_unheard(server: &Server, queue: &str, want: u64) -> u64 {
    let started = Instant::now();
    loop {
        let (code, _, body) = http_get(server.http(), "/dashboard/state");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let n = v["queues"]
            .as_array()
            .and_then(|q| q.iter().find(|x| x["name"] == queue))
            .and_then(|x| x["messages_unheard"].as_u64())
            .unwrap_or(u64::MAX);
        if n == want || started.elapsed() > Duration::from_secs(5) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn voice_mail_reaches_the_inbox_of_its_queue_only() {
    need_sipp!();
    let config = test_deployment("voicemail", rtp_range(20));
    let dir = config.parent().expect("dir").to_path_buf();
    fs::remove_file(dir.join("flows/t.flow")).expect("t");
    fs::write(dir.join("flows/vm.flow"), VOICE_MAIL_FLOW).expect("flow");
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\ndefault = \"t\"\n",
        &format!(
            "[queues.support]\nskills = [\"support\"]\n\n[queues.sales]\nskills = [\"sales\"]\n\n\
             [agents.3001]\nskills = [\"support\"]\nha1 = \"{}\"\n\n\
             [agents.3002]\nskills = [\"sales\"]\nha1 = \"{}\"\n\n[routes]\ndefault = \"vm\"\n",
            ivr_sip::registrar::ha1("3001", "ivr", "pw3001"),
            ivr_sip::registrar::ha1("3002", "ivr", "pw3002"),
        ),
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    // No agent is logged in: the transfer gives up at once; the caller speaks 1 s after the
    // beep, and 1 s of silence ends the message.
    call_until_the_flow_hangs_up(&config, &server, vec![(1200, Act::Voice(1000))]);
    let _ = records(&config, 1);
    let http_addr = server.http();
    let support = basic("3001", "pw3001");
    let sales = basic("3002", "pw3002");
    let list = |auth: &str, query: &str| -> (u16, serde_json::Value) {
        let (code, _, body) = http(
            http_addr,
            "GET",
            &format!("/agent/messages{query}"),
            &[("Authorization", auth)],
            "",
        );
        (code, serde_json::from_str(&body).unwrap_or_default())
    };
    // The writer batches: wait for the row.
    let started = Instant::now();
    let message = loop {
        let (code, v) = list(&support, "");
        assert_eq!(code, 200, "{v}\n{}", server.log());
        if let Some(m) = v["messages"].as_array().and_then(|m| m.first()) {
            break m.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "no message listed:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(message["caller"], CALLER);
    assert_eq!(message["queue"], "support");
    assert_eq!(message["heard_at"], serde_json::Value::Null);
    assert!(
        (900..=4000).contains(&message["length_ms"].as_i64().unwrap_or(0)),
        "{message}"
    );
    assert!(message.get("file").is_none(), "no file paths to pages");
    let id = message["id"].as_i64().expect("id");
    // The sales agent does not see it, and cannot fetch it.
    let (code, v) = list(&sales, "");
    assert_eq!(code, 200);
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(0), "{v}");
    let audio = format!("/agent/messages/{id}/audio");
    let (code, _, _) = http(http_addr, "GET", &audio, &[("Authorization", &sales)], "");
    assert_eq!(code, 403);
    // Nor does anyone without the agent's login.
    let (code, _, _) = http(http_addr, "GET", &audio, &[], "");
    assert_eq!(code, 401);
    let wrong = basic("3001", "nope");
    let (code, _, _) = http(http_addr, "GET", &audio, &[("Authorization", &wrong)], "");
    assert_eq!(code, 401);
    let (code, _, _) = http(http_addr, "GET", &format!("{audio}?token=forged"), &[], "");
    assert_eq!(code, 401);
    let (code, v) = list("", "");
    assert_eq!(code, 401, "{v}");

    // One unheard message of `support` on the dashboard; done: gone from the list and the count.
    assert_eq!(dashboard_unheard(&server, "support", 1), 1);
    assert_eq!(dashboard_unheard(&server, "sales", 0), 0);
    let done = format!("/agent/messages/{id}/done");
    let (code, _, _) = http(
        http_addr,
        "POST",
        &done,
        &[("Authorization", &sales)],
        "done",
    );
    assert_eq!(code, 403);
    let (code, _, body) = http(
        http_addr,
        "POST",
        &done,
        &[("Authorization", &support)],
        "done",
    );
    assert_eq!(code, 204, "{body}");
    let (_, v) = list(&support, "");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(0), "{v}");
    let (_, v) = list(&support, "?done=1");
    assert_eq!(v["messages"][0]["done_by"], "3001", "{v}");
    assert_eq!(dashboard_unheard(&server, "support", 0), 0);

    // The audio: the whole WAV file, and a range of it for seeking.
    let (code, headers, body) = http_bytes(http_addr, &audio, &[("Authorization", &support)]);
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-type"), Some("audio/wav"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert!(body.starts_with(b"RIFF"), "a WAV file");
    let total = body.len();
    assert!(total > 44 + 9_600, "{total} bytes");
    let (code, headers, part) = http_bytes(
        http_addr,
        &audio,
        &[("Authorization", &support), ("Range", "bytes=100-199")],
    );
    assert_eq!(code, 206);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 100-199/{total}").as_str())
    );
    assert_eq!(part, body[100..200]);
    let (_, v) = list(&support, "?done=1");
    assert_eq!(v["messages"][0]["heard_by"], "3001", "played: heard");
    // Open again: listed again.
    let (code, _, _) = http(
        http_addr,
        "POST",
        &done,
        &[("Authorization", &support)],
        "{\"done\": false}",
    );
    assert_eq!(code, 204);
    let (_, v) = list(&support, "");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(1), "{v}");
}
