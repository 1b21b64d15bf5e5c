//! Transfers and queues end to end, with real peers: SIPp plays the agents' phones (a REGISTER
//! with digest authentication, then a UAS that answers or lets it ring) and the callers; `ivr
//! serve` queues the callers, offers them to agents, bridges the media, and records what
//! happened in its SQLite database. Every peer is on 127.0.0.1 and every run is bounded.

mod common;

use common::agents::{
    self, Peer, agent_auth, agent_phone, agent_state_checked, free_udp_port, general_queue_toml,
    queue_waiting, register_agent, set_agent_state, sqlite_rows, try_register_agent,
    write_queue_prompts,
};
use common::*;
use ivr_media::audio::G711;
use std::fs;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VIP: &str = "13900000009";

fn acd_flow(external: u16) -> String {
    format!(
        r##"
flow q {{
    title    "queue test"
    language zh-CN
    entry    hello
}}

step hello {{
    play hello
    goto queue
}}

transfer queue {{
    queue     general
    priority  10 if caller == "{VIP}"
    attach    caller, call.channel
    music     hold
    max_wait  20s -> sorry
    no_agents -> sorry
    after     -> rate
}}

survey rate {{
    question overall rate_q scale 1..5
    timeout  6s
    attempts 1
    save     surveys
    next     bye
}}

step sorry {{
    play sorry
    hangup
}}

step bye {{
    play bye
    hangup
}}
"##
    ) + &external_flow("x", &format!("sip:95500@127.0.0.1:{external}"))
}

/// Flow `name`: a transfer to `target` (a SIP URI), `sorry` when it cannot be reached, `bye`
/// when the far end hangs up first.
fn external_flow(name: &str, target: &str) -> String {
    format!(
        r##"
flow {name} {{
    title    "external transfer"
    language zh-CN
    entry    out
}}

transfer out {{
    to        "{target}"
    music     hold
    no_agents -> sorry
    after     -> bye
}}

step sorry {{
    play sorry
    hangup
}}

step bye {{
    play bye
    hangup
}}
"##
    )
}

/// Callers of 10086 need an agent who speaks English.
const ENGLISH_FLOW: &str = r##"
flow e {
    title    "english line"
    language zh-CN
    entry    queue
}

transfer queue {
    queue     general
    skills    "english"
    music     hold
    max_wait  20s -> bye
    no_agents -> bye
    after     -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// Callers of 10088 key a PIN (masked) before they wait; the flow attaches it.
const PIN_FLOW: &str = r##"
flow p {
    title    "pin line"
    language zh-CN
    entry    pin
}

input pin {
    prompt   hello
    digits   4
    timeout  5s
    attempts 1 -> bye
    mask
    into     card_pin
    next     queue
}

transfer queue {
    queue     general
    attach    caller, card_pin
    music     hold
    max_wait  20s -> bye
    no_agents -> bye
    after     -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// A deployment with the queue flow (`q`, the default route) and the external transfer
/// (`x`, dialled as 95500) in a temporary folder.
fn deployment(name: &str, external: u16) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    let text = acd_flow(external);
    let at = text.find("\nflow x").expect("second flow");
    fs::write(dir.join("flows/q.flow"), &text[..at]).expect("flow q");
    fs::write(dir.join("flows/x.flow"), &text[at..]).expect("flow x");
    fs::write(dir.join("flows/e.flow"), ENGLISH_FLOW).expect("flow e");
    fs::write(dir.join("flows/p.flow"), PIN_FLOW).expect("flow p");
    write_queue_prompts(&dir);
    let rtp = rtp_range(40);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}{}
[routes]
"95500" = "x"
"10086" = "e"
"10088" = "p"
default = "q"
"#,
            config_head(rtp),
            general_queue_toml("2s")
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// An agent's phone: a UAS on a port of its own running `scenario` for `calls` calls, and
/// its registration (which must succeed).
fn agent(
    dir: &Path,
    server: &Server,
    id: &str,
    password: &str,
    scenario: &str,
    calls: u32,
) -> Peer {
    agent_with(dir, server, id, password, scenario, calls, &[])
}

/// [`agent`] with more SIPp arguments (`-key target queue.general`).
fn agent_with(
    dir: &Path,
    server: &Server,
    id: &str,
    password: &str,
    scenario: &str,
    calls: u32,
    extra: &[&str],
) -> Peer {
    let phone = agent_phone(
        dir,
        server.addr,
        (id, password),
        (scenario, calls, 40),
        extra,
        || server.log(),
    );
    // The 200 OK goes out before the ACD hears of the binding.
    wait_until("the registration reaches the ACD", || {
        agent_state(server, id) != "offline"
    });
    phone
}

/// A caller (SIPp UAC) in the background.
fn caller(dir: &Path, server: &Server, number: &str, scenario: &str, extra: &[&str]) -> Peer {
    let mut args = vec!["-m", "1", "-key", "caller", number, "-s", "10010"];
    args.extend_from_slice(extra);
    Peer::spawn(dir, server.addr, scenario, &args)
}

/// call_id, outcome, queue, agent, caller.
type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

/// The call rows once there are `n` (waits for the batching writer).
fn calls(config: &Path, n: usize) -> Vec<Row> {
    sqlite_rows(
        config,
        "SELECT call_id, outcome, queue, agent, caller FROM calls ORDER BY id",
        n,
    )
}

/// question, answer, agent, queue.
type Answer = (String, Option<String>, Option<String>, Option<String>);

/// The saved survey answers.
fn surveys(config: &Path) -> Vec<Answer> {
    sqlite_rows(
        config,
        "SELECT question, answer, agent, queue FROM survey_answers ORDER BY id",
        0,
    )
}

#[test]
fn a_caller_reaches_an_agent_who_sees_the_screen_pop_then_rates_the_call() {
    need_sipp!();
    let config = deployment("answer", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let mut phone = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 1);
    let mut call = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "4"],
    );
    let call_ok = call.wait(Duration::from_secs(30));
    let phone_ok = phone.wait(Duration::from_secs(10));
    assert!(
        call_ok && phone_ok,
        "caller {call_ok}, agent {phone_ok}\n{}\n{}\n{}",
        call.report(),
        phone.report(),
        server.log()
    );
    // The screen pop travelled in the INVITE to the agent.
    let invite = phone.messages();
    for h in [
        format!("X-IVR-Caller: {CALLER}"),
        "X-IVR-Called: 10010".to_string(),
        "X-IVR-Flow: q".to_string(),
        "X-IVR-Queue: general".to_string(),
        "X-IVR-Call-Channel: sip".to_string(),
        "X-IVR-Path: hello,queue".to_string(),
    ] {
        assert!(
            invite.contains(&h),
            "no `{h}` in the agent's INVITE:\n{invite}"
        );
    }
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (_, outcome, queue, agent, number) = &rows[0];
    assert_eq!(outcome.as_deref(), Some("transferred"));
    assert_eq!(queue.as_deref(), Some("general"));
    assert_eq!(agent.as_deref(), Some("2001"));
    assert_eq!(number, CALLER);
    // The survey after the agent hung up, saved with the agent and the queue.
    let s = surveys(&config);
    assert_eq!(
        s,
        vec![(
            "overall".to_string(),
            Some("4".to_string()),
            Some("2001".to_string()),
            Some("general".to_string())
        )],
        "{}",
        server.log()
    );
}

/// The node visits (node, exit) of a call.
fn visits(config: &Path, call_id: &str) -> Vec<(String, Option<String>)> {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        sqlx::query_as("SELECT node, exit FROM node_visits WHERE call_id = ? ORDER BY seq")
            .bind(call_id)
            .fetch_all(&pool)
            .await
            .unwrap_or_default()
    })
}

#[test]
fn a_vip_who_came_later_is_served_before_the_callers_waiting_ahead() {
    need_sipp!();
    let config = deployment("vip", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // One agent. The first caller gets it at once; while they talk (1.5 s) and the agent wraps
    // up (1 s), a second caller and then a VIP wait. The VIP is offered the agent next.
    let mut phone = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 3);
    let mut first = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "3"],
    );
    wait_until("the first caller reaches the agent", || {
        agent_state(&server, "2001") != "available"
    });
    let mut second = caller(
        &dir,
        &server,
        "13800000002",
        "caller_rates.xml",
        &["-key", "score", "4"],
    );
    wait_until("the second caller waits", || waiting(&server) == 1);
    let mut vip = caller(
        &dir,
        &server,
        VIP,
        "caller_rates.xml",
        &["-key", "score", "5"],
    );
    let ok: Vec<bool> = [&mut first, &mut second, &mut vip]
        .into_iter()
        .map(|c| c.wait(Duration::from_secs(45)))
        .collect();
    let p = phone.wait(Duration::from_secs(10));
    assert!(
        ok.iter().all(|o| *o) && p,
        "callers {ok:?}, agent {p}\n{}\n{}\n{}\n{}\n{}",
        first.report(),
        second.report(),
        vip.report(),
        phone.report(),
        server.log()
    );
    assert_eq!(
        phone.offered_callers(),
        vec![
            CALLER.to_string(),
            VIP.to_string(),
            "13800000002".to_string()
        ]
    );
    let rows = calls(&config, 3);
    assert!(
        rows.iter()
            .all(|r| r.1.as_deref() == Some("transferred") && r.3.as_deref() == Some("2001")),
        "{rows:?}"
    );
}

#[test]
fn ring_timeout_moves_the_call_to_the_next_agent() {
    need_sipp!();
    let config = deployment("ring", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // 2001 has been idle longest: it rings first, for the queue's 2 s, then 2002 answers.
    let mut silent = agent(&dir, &server, "2001", "pw2001", "agent_no_answer.xml", 1);
    std::thread::sleep(Duration::from_millis(200));
    let mut phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    let started = Instant::now();
    let mut call = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "2"],
    );
    let ok = call.wait(Duration::from_secs(30));
    let (s, p) = (
        silent.wait(Duration::from_secs(5)),
        phone.wait(Duration::from_secs(5)),
    );
    assert!(
        ok && s && p,
        "caller {ok}, ringing agent {s}, answering agent {p}\n{}\n{}\n{}\n{}",
        call.report(),
        silent.report(),
        phone.report(),
        server.log()
    );
    assert!(
        silent.messages().contains("CANCEL sip:2001@"),
        "{}",
        silent.report()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn a_caller_who_hangs_up_while_waiting_is_abandoned_and_the_phone_stops_ringing() {
    need_sipp!();
    let config = deployment("abandon", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let mut silent = agent(&dir, &server, "2001", "pw2001", "agent_no_answer.xml", 1);
    let rtp = free_udp_port().to_string();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "1200", "-key", "rtpport", &rtp],
    );
    assert!(ok, "{out}\n{}", server.log());
    assert!(
        silent.wait(Duration::from_secs(5)),
        "the agent's phone was not cancelled:\n{}\n{}",
        silent.report(),
        server.log()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("abandoned"), "{rows:?}");
    assert_eq!(rows[0].2.as_deref(), Some("general"), "{rows:?}");
    assert_eq!(rows[0].3, None, "{rows:?}");
}

#[test]
fn with_no_agent_logged_in_the_flow_takes_its_no_agents_path() {
    need_sipp!();
    let config = deployment("none", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let rtp = free_udp_port().to_string();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &["-m", "1", "-key", "rtpport", &rtp],
    );
    assert!(ok, "{out}\n{}", server.log());
    let rows = calls(&config, 1);
    // "Sorry, nobody is there" and the flow hangs up: no task done.
    assert_eq!(rows[0].1.as_deref(), Some("not_served"), "{rows:?}");
    let v = visits(&config, &rows[0].0);
    assert!(
        v.contains(&("queue".to_string(), Some("no_agents".to_string()))),
        "{v:?}"
    );
    // The log says what happened: refused for no agents, not "waiting for an agent".
    let log = server.log();
    assert!(
        log.contains("refused: nobody who could take the call is logged in (no_agents)"),
        "{log}"
    );
    assert!(!log.contains("waiting for an agent"), "{log}");
}

#[test]
fn a_blind_transfer_to_an_external_number_bridges_and_comes_back() {
    need_sipp!();
    let external = free_udp_port();
    let config = deployment("external", external);
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let messages = call_the_far_end(&dir, &server, "95500", &["-p", &external.to_string()]);
    assert!(
        messages.contains("INVITE sip:95500@127.0.0.1"),
        "{messages}"
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_came_back(&config, &rows[0].0);
}

/// A caller of `number` transferred to a SIPp phone (agent_answers.xml with `far`: its port
/// and transport) that answers and hangs up first: what the phone received.
fn call_the_far_end(dir: &Path, server: &Server, number: &str, far: &[&str]) -> String {
    let mut args = vec!["-m", "1"];
    args.extend_from_slice(far);
    let mut far = Peer::spawn(dir, server.addr, "agent_answers.xml", &args);
    std::thread::sleep(Duration::from_millis(300));
    let rtp = free_udp_port().to_string();
    let (ok, out) = sipp(
        dir,
        server.addr,
        "flow_hangs_up.xml",
        &["-m", "1", "-s", number, "-key", "rtpport", &rtp],
    );
    let far_ok = far.wait(Duration::from_secs(5));
    assert!(ok && far_ok, "{out}\n{}\n{}", far.report(), server.log());
    far.messages()
}

/// Call `id` was bridged by `out` and came back to `bye` when the far end hung up.
fn assert_came_back(config: &Path, id: &str) {
    let v = visits(config, id);
    assert_eq!(
        v,
        vec![
            ("out".to_string(), Some("after".to_string())),
            ("bye".to_string(), Some("hangup".to_string()))
        ]
    );
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

#[test]
fn a_transfer_to_a_tcp_uri_opens_a_connection_and_a_refused_one_fails_over() {
    need_sipp!();
    let config = deployment("external-tcp", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    // 95501: a port where nothing listens over TCP; 95502: a SIPp phone listening on TCP.
    let (closed, external) = (free_tcp_port(), free_tcp_port());
    for (name, number, port) in [("xt", "95501", closed), ("xu", "95502", external)] {
        let flow = external_flow(
            name,
            &format!("sip:{number}@127.0.0.1:{port};transport=tcp"),
        );
        fs::write(dir.join(format!("flows/{name}.flow")), flow).expect("flow");
    }
    let text = fs::read_to_string(&config).expect("config");
    let routes = "[routes]\n\"95501\" = \"xt\"\n\"95502\" = \"xu\"\n";
    fs::write(&config, text.replace("[routes]\n", routes)).expect("config");
    let server = Server::start(&config, &[]);

    // Refused: the leg fails at once (503) and the flow takes its failure path.
    let rtp = free_udp_port().to_string();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &["-m", "1", "-s", "95501", "-key", "rtpport", &rtp],
    );
    assert!(ok, "{out}\n{}", server.log());
    let rows = calls(&config, 1);
    let v = visits(&config, &rows[0].0);
    assert_eq!(
        v.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["out", "sorry"],
        "{v:?}\n{}",
        server.log()
    );

    // Accepted: the INVITE goes over a connection we open, the far end's BYE comes back on
    // it, and the caller returns to the flow.
    let far = ["-t", "t1", "-p", &external.to_string()];
    let messages = call_the_far_end(&dir, &server, "95502", &far);
    assert!(
        messages.contains("INVITE sip:95502@127.0.0.1") && messages.contains("SIP/2.0/TCP"),
        "{messages}"
    );
    let rows = calls(&config, 2);
    let last = rows
        .iter()
        .find(|r| r.1.as_deref() == Some("transferred"))
        .unwrap_or_else(|| panic!("no transferred call: {rows:?}"));
    assert_came_back(&config, &last.0);
}

#[test]
fn a_call_that_needs_a_skill_goes_to_the_agent_who_has_it() {
    need_sipp!();
    let config = deployment("skills", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // 2001 has been idle longest but speaks no English; 2002 does.
    let other = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 1);
    std::thread::sleep(Duration::from_millis(200));
    let mut phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    let rtp = free_udp_port().to_string();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &["-m", "1", "-s", "10086", "-key", "rtpport", &rtp],
    );
    assert!(
        ok && phone.wait(Duration::from_secs(5)),
        "{out}\n{}\n{}",
        phone.report(),
        server.log()
    );
    assert!(
        !other.messages().contains("INVITE sip:"),
        "{}",
        other.report()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
}

#[test]
fn the_conversation_is_relayed_both_ways_transcoded_with_dtmf_passed() {
    need_sipp!();
    let config = deployment("relay", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // The agent's phone speaks PCMA from SSRC 42 once it hears the caller; the caller speaks
    // PCMU and presses 5 while they talk.
    let agent_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(100, Act::Voice(600))],
    );
    let port = free_udp_port();
    let mut phone = Peer::spawn(
        &dir,
        server.addr,
        "agent_talks.xml",
        &[
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-key",
            "agentrtp",
            &agent_media.port.to_string(),
        ],
    );
    let (ok, out) = try_register_agent(&dir, server.addr, "2001", "pw2001", port);
    assert!(ok, "{out}");
    // The bridge is up about 0.7 s in (hello, then 300 ms of ringing); the agent hangs up 3 s
    // after answering: the caller talks from 2.0 to 3.2 s and keys at 3.3 s.
    let caller_media = Endpoint::start(vec![(2000, Act::Voice(1200)), (3300, Act::Key('5'))]);
    let rtp = caller_media.port.to_string();
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "5000", "-key", "rtpport", &rtp],
    );
    let phone_ok = phone.wait(Duration::from_secs(10));
    let (heard_by_agent, _) = agent_media.finish();
    let (heard_by_caller, _) = caller_media.finish();
    assert!(
        ok && phone_ok,
        "{out}\n{}\n{}",
        phone.report(),
        server.log()
    );
    // The agent heard the caller's voice as PCMA (payload type 8), a 300 Hz tone, not silence.
    let voice: Vec<&Pkt> = heard_by_agent.iter().filter(|p| p.pt == 8).collect();
    assert!(voice.len() >= 25, "{} PCMA packets", voice.len());
    let loud = voice
        .iter()
        .filter(|p| {
            p.payload
                .iter()
                .map(|&b| i32::from(ivr_media::audio::Law::Alaw.decode(b)).abs())
                .max()
                .unwrap_or(0)
                > 4000
        })
        .count();
    assert!(loud >= 25, "{loud} loud PCMA packets");
    // The caller's key reached the agent as telephone-event 101, key 5.
    let events: Vec<&Pkt> = heard_by_agent.iter().filter(|p| p.pt == 101).collect();
    assert!(
        events.iter().any(|p| p.payload.first() == Some(&5)),
        "{} event packets",
        events.len()
    );
    // The caller heard the agent (SSRC 42) in PCMU (payload type 0).
    let from_agent: Vec<&Pkt> = heard_by_caller.iter().filter(|p| p.ssrc == 42).collect();
    assert!(
        from_agent.len() >= 25,
        "{} packets from the agent",
        from_agent.len()
    );
    assert!(from_agent.iter().all(|p| p.pt == 0));
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
}

/// The power of `hz` in `x` per sample (Goertzel).
fn tone_power(x: &[i16], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len().max(1) as f64).powi(2)
}

/// A capture SIPp can play (`play_pcap_audio`): `ms` milliseconds of a `hz` tone as G.711 RTP
/// in `law` (payload type `pt`, SSRC `ssrc`), one 20 ms packet every 20 ms, in Ethernet, IPv4
/// and UDP (addresses and ports are placeholders: SIPp sends to the call's media address).
fn write_tone_pcap(path: &Path, law: ivr_media::audio::Law, pt: u8, ssrc: u32, hz: f64, ms: u32) {
    let mut out: Vec<u8> = Vec::new();
    // Global header: magic, version 2.4, no time zone, snap length, link type 1 (Ethernet).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for n in 0..ms / 20 {
        let mut rtp = vec![0x80, pt & 0x7f];
        rtp.extend_from_slice(&(n as u16).wrapping_add(1000).to_be_bytes());
        rtp.extend_from_slice(&(n * 160).to_be_bytes());
        rtp.extend_from_slice(&ssrc.to_be_bytes());
        rtp.extend((0..160u32).map(|i| {
            let t = f64::from(n * 160 + i) / 8000.0;
            law.encode((8000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16)
        }));
        let udp_len = 8 + rtp.len() as u16;
        let ip_len = 20 + udp_len;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&40_000u16.to_be_bytes());
        frame.extend_from_slice(&40_002u16.to_be_bytes());
        frame.extend_from_slice(&udp_len.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&rtp);
        let at_us = n * 20_000;
        for word in [at_us / 1_000_000, at_us % 1_000_000] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        for _ in 0..2 {
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    fs::write(path, out).expect("pcap");
}

/// `[recording] calls = "transferred"`: the bridged call is recorded from the agent's answer,
/// the caller on the left channel and the agent on the right. Both talk with SIPp's
/// `play_pcap_audio` from captures made here (the caller a 440 Hz tone in PCMU, the agent
/// 1000 Hz in PCMA); a tone detector tells the channels apart. The `recordings` row names the
/// agent, the queue and the file's SHA-256.
#[test]
fn a_transferred_call_is_recorded_caller_left_agent_right() {
    need_sipp!();
    let config = deployment("recorded", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let mut text = fs::read_to_string(&config).expect("config");
    text = text.replace(
        "[routes]",
        "[recording]\ncalls  = \"transferred\"\nfolder = \"recordings/calls\"\nkeep   = \"90d\"\n\n[routes]",
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    // Where each side receives the other's audio (a sink: only what they send is checked).
    let agent_sink = UdpSocket::bind("127.0.0.1:0").expect("agent's RTP");
    let caller_sink = UdpSocket::bind("127.0.0.1:0").expect("caller's RTP");
    let agent_rtp = agent_sink.local_addr().expect("addr").port().to_string();
    let caller_rtp = caller_sink.local_addr().expect("addr").port().to_string();
    // The agent's phone runs in a folder of its own holding its capture (SIPp reads
    // `agent.pcap` from its working folder); the caller's capture is in the test's folder.
    let agent_dir = dir.join("agent-phone");
    fs::create_dir_all(&agent_dir).expect("agent's folder");
    let law = ivr_media::audio::Law::Alaw;
    write_tone_pcap(&agent_dir.join("agent.pcap"), law, 8, 42, 1000.0, 3_000);
    let law = ivr_media::audio::Law::Ulaw;
    write_tone_pcap(&dir.join("caller.pcap"), law, 0, 7, 440.0, 5_000);
    let port = free_udp_port();
    let phone = {
        let (addr, port, media_port) = (server.addr, port.to_string(), free_udp_port());
        let agent_rtp = agent_rtp.clone();
        std::thread::spawn(move || {
            sipp(
                &agent_dir,
                addr,
                "agent_talks_pcap.xml",
                &[
                    "-p",
                    &port,
                    "-mp",
                    &media_port.to_string(),
                    "-m",
                    "1",
                    "-key",
                    "agentrtp",
                    &agent_rtp,
                ],
            )
        })
    };
    let (ok, out) = try_register_agent(&dir, server.addr, "2001", "pw2001", port);
    assert!(ok, "{out}");
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "call_pcap.xml",
        &["-m", "1", "-d", "5000", "-key", "rtpport", &caller_rtp],
    );
    let (phone_ok, phone_out) = phone.join().expect("the agent's SIPp");
    assert!(
        ok && phone_ok,
        "{out}\n--- agent ---\n{phone_out}\n{}",
        server.log()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    // The row comes once the file is closed.
    let db = dir.join("ivr-data/ivr.db");
    type Rec = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
    );
    let rec: Vec<Rec> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<Rec> = sqlx::query_as(
                "SELECT kind, agent, queue, file, sha256, length_ms FROM recordings ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            if !rows.is_empty() || started.elapsed() > Duration::from_secs(10) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(rec.len(), 1, "{rec:?}\n{}", server.log());
    let (kind, agent, queue, file, sha, length_ms) = rec[0].clone();
    assert_eq!(kind, "call");
    assert_eq!(agent.as_deref(), Some("2001"));
    assert_eq!(queue.as_deref(), Some("general"));
    let file = PathBuf::from(file.expect("a file"));
    assert!(
        file.starts_with(dir.join("recordings/calls")),
        "{}",
        file.display()
    );
    let bytes = fs::read(&file).expect("the WAV");
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha.as_deref(), Some(hex.as_str()));
    // From the agent's answer (about 0.7 s in) to the end of the call (the agent talks 3 s,
    // then the flow's `after` path until the caller's BYE at 5 s).
    assert!((2_500..=4_800).contains(&length_ms), "{length_ms} ms");
    let mut r = hound::WavReader::open(&file).expect("a WAV");
    assert_eq!(r.spec().channels, 2);
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left: Vec<i16> = all.iter().step_by(2).copied().collect();
    let right: Vec<i16> = all.iter().skip(1).step_by(2).copied().collect();
    let (l440, l1k) = (tone_power(&left, 440.0), tone_power(&left, 1000.0));
    let (r440, r1k) = (tone_power(&right, 440.0), tone_power(&right, 1000.0));
    assert!(
        l440 > 1_000.0 && l440 > 20.0 * l1k,
        "left: 440 Hz {l440}, 1 kHz {l1k}"
    );
    assert!(
        r1k > 1_000.0 && r1k > 20.0 * r440,
        "right: 440 Hz {r440}, 1 kHz {r1k}"
    );
    // `/metrics`: the frames written, none dropped.
    let (code, _, metrics) = http_get(server.http(), "/metrics");
    assert_eq!(code, 200);
    let value = |name: &str| -> Option<u64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    assert_eq!(
        value("ivr_recording_frames_dropped_total"),
        Some(0),
        "{metrics}"
    );
    // Both legs, 50 frames a second each, for at least 2.5 s.
    assert!(
        value("ivr_recording_frames_written_total").is_some_and(|n| n >= 200),
        "{metrics}"
    );
}

/// `kill -9` while a call is recorded (`calls = "all"`): the file on disk is a playable WAV
/// whose header is at most about a second behind its data; the next start repairs it.
#[test]
fn a_kill_during_recording_leaves_a_playable_wav() {
    need_sipp!();
    let config = deployment("killed", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let text = fs::read_to_string(&config)
        .expect("config")
        .replace("[routes]", "[recording]\ncalls = \"all\"\n\n[routes]");
    fs::write(&config, text).expect("config");
    let mut server = Server::start(&config, &[]);
    let caller_media = Endpoint::start(vec![(100, Act::Tone(440.0, 6000))]);
    let rtp = caller_media.port.to_string();
    let _caller = Peer::spawn(
        &dir,
        server.addr,
        "call_bye.xml",
        &[
            "-p",
            &free_udp_port().to_string(),
            "-m",
            "1",
            "-d",
            "8000",
            "-key",
            "rtpport",
            &rtp,
            "-key",
            "caller",
            "13800000001",
        ],
    );
    std::thread::sleep(Duration::from_millis(4500));
    let _ = server.child.kill();
    let _ = server.child.wait();
    caller_media.finish();
    let day = fs::read_dir(dir.join("recordings/calls"))
        .unwrap_or_else(|e| panic!("no recordings folder ({e})\n{}", server.log()))
        .flatten()
        .next()
        .expect("a day folder")
        .path();
    let file = fs::read_dir(&day)
        .expect("day")
        .flatten()
        .next()
        .expect("a file")
        .path();
    let bytes = fs::read(&file).expect("wav");
    let declared = u64::from(u32::from_le_bytes([
        bytes[40], bytes[41], bytes[42], bytes[43],
    ]));
    let on_disk = bytes.len() as u64 - 44;
    assert!(
        declared >= 16_000,
        "{declared} bytes declared, {on_disk} on disk"
    );
    assert!(
        on_disk - declared <= 48_000,
        "{declared} bytes declared, {on_disk} on disk"
    );
    let r = hound::WavReader::open(&file).expect("playable as it is");
    assert!(r.duration() >= 4_000, "{} samples", r.duration());
    // The next start fixes the header to what is there.
    let server = Server::start(&config, &[]);
    let started = Instant::now();
    loop {
        let bytes = fs::read(&file).expect("wav");
        let declared = u64::from(u32::from_le_bytes([
            bytes[40], bytes[41], bytes[42], bytes[43],
        ]));
        if declared == bytes.len() as u64 - 44 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Callers waiting in queue `general` (`GET /agents`).
fn waiting(server: &Server) -> u64 {
    queue_waiting(server.http(), "general")
}

/// Polls `done` until it holds (10 s at most, else the test fails naming `what`).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    agents::wait_until(what, Duration::from_secs(10), done);
}

/// The state of agent `id` in `GET /agents`.
fn agent_state(server: &Server, id: &str) -> String {
    agent_state_checked(server.http(), id)
}

#[test]
fn an_agent_who_is_away_gets_no_calls_until_available_again() {
    need_sipp!();
    let config = deployment("away", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let http = server.http();
    assert_eq!(agent_state(&server, "2001"), "offline");
    let mut phone = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 1);
    assert_eq!(agent_state(&server, "2001"), "available");
    // Only the agent's own password may change its state.
    let wrong = [("Authorization", "Basic MjAwMTp3cm9uZw==")];
    let (code, _, _) = http_request(http, "POST", "/agents/2001/state", &wrong, "away");
    assert_eq!(code, 401);
    let (code, _, _) = http_request(http, "POST", "/agents/2001/state", &[], "away");
    assert_eq!(code, 401);
    let right = [("Authorization", "Basic MjAwMTpwdzIwMDE=")];
    let (code, _, body) = http_request(http, "POST", "/agents/2001/state", &right, "away");
    assert_eq!(code, 204, "{body}");
    assert_eq!(agent_state(&server, "2001"), "away");
    let (code, _, body) = http_request(http, "POST", "/agents/2001/state", &right, "lunch");
    assert_eq!(code, 400, "{body}");
    // A caller waits while the only agent is away ...
    let mut call = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "5"],
    );
    wait_until("the caller waits", || waiting(&server) == 1);
    let (_, _, body) = http_get(http, "/agents");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let general = v["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|x| x["name"] == "general"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(general["waiting"], 1, "{body}");
    assert!(
        !body.contains(CALLER),
        "no caller data without a password: {body}"
    );
    // ... and is offered as soon as the agent is back; the agent sees the screen pop.
    let (code, _, body) = http_request(
        http,
        "POST",
        "/agents/2001/state",
        &right,
        r#"{"state": "available"}"#,
    );
    assert_eq!(code, 204, "{body}");
    std::thread::sleep(Duration::from_millis(150));
    let (code, _, body) = http_request(http, "GET", "/agents/2001", &right, "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(CALLER), "screen pop: {body}");
    let ok = call.wait(Duration::from_secs(30));
    let p = phone.wait(Duration::from_secs(5));
    assert!(
        ok && p,
        "{}\n{}\n{}",
        call.report(),
        phone.report(),
        server.log()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].3.as_deref(), Some("2001"), "{rows:?}");
}

#[test]
fn wrong_agent_passwords_over_http_are_slowed_down() {
    let config = deployment("http-strikes", free_udp_port());
    let server = Server::start(&config, &[]);
    let http = server.http();
    let wrong = [("Authorization", "Basic MjAwMTp3cm9uZw==")];
    let right = [("Authorization", "Basic MjAwMTpwdzIwMDE=")];
    let timed = |auth: &[(&str, &str)]| {
        let t = Instant::now();
        let (code, _, _) = http_request(http, "GET", "/agents/2001", auth, "");
        (code, t.elapsed())
    };
    // Three failures are answered at once, the fourth after a second ...
    for _ in 0..3 {
        let (code, took) = timed(&wrong);
        assert_eq!(code, 401);
        assert!(took < Duration::from_millis(800), "{took:?}");
    }
    let (code, took) = timed(&wrong);
    assert_eq!(code, 401);
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // ... and so is the right password from that address (2 s), which then clears it.
    let (code, took) = timed(&right);
    assert_eq!(code, 200);
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    let (code, took) = timed(&right);
    assert_eq!(code, 200);
    assert!(took < Duration::from_millis(800), "{took:?}");
    // The console's login counts the same way.
    let (code, _, _) = http_request(http, "POST", "/agent/login", &right, "");
    assert_eq!(code, 200);
}

#[test]
fn masked_digits_never_reach_the_screen_pop() {
    need_sipp!();
    let config = deployment("masked", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let mut phone = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 1);
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "pin_then_wait.xml",
        &["-m", "1", "-s", "10088"],
    );
    let p = phone.wait(Duration::from_secs(5));
    assert!(ok && p, "{out}\n{}\n{}", phone.report(), server.log());
    let invite = phone.messages();
    assert!(invite.contains("X-IVR-Card-Pin: ***"), "{invite}");
    // The PIN as a word of its own: random numbers (SDP ids, ports, timestamps) may hold
    // the digits 1234 inside longer ones.
    let has_pin = |text: &str| {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "1234")
    };
    assert!(!has_pin(&invite), "the PIN reached the agent:\n{invite}");
    assert!(!has_pin(&server.log()), "the PIN reached the log");
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
}

// ---------------------------------------------------------------------------------------------
// Overflow between queues and agent levels

/// A deployment for overflow and levels: 10020 waits in `billing` with `overflow general when
/// none_idle`, 10021 with `overflow general after 2s`, 10022 in `vip` (`best_level`) asking for
/// `level 4`. 2001 is a billing agent of level 1, 2002 a general agent of level 4.
fn routing_deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    let transfer = |node: &str, queue: &str, extra: &str| {
        format!(
            "transfer {node} {{\n    queue     {queue}\n    {extra}\n    attach    caller\n    music     hold\n    max_wait  20s -> sorry\n    no_agents -> sorry\n    after     -> bye\n}}\n\n"
        )
    };
    let flow = format!(
        "flow r {{\n    title    \"routing test\"\n    language zh-CN\n    entry    hello\n}}\n\n\
         step hello {{\n    play hello\n    if called == \"10020\" -> billing_now\n    if called == \"10021\" -> billing_later\n    goto vip\n}}\n\n\
         {}{}{}\
         step sorry {{\n    play sorry\n    hangup\n}}\n\n\
         step bye {{\n    play bye\n    hangup\n}}\n",
        transfer("billing_now", "billing", "overflow  general when none_idle"),
        transfer("billing_later", "billing", "overflow  general after 2s"),
        transfer("vip", "vip", "level     4"),
    );
    fs::write(dir.join("flows/r.flow"), flow).expect("flow r");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 400.0, 300),
            ("hold", "hold", 500.0, 400),
            ("sorry", "sorry", 700.0, 300),
            ("bye", "bye", 800.0, 300),
        ],
    );
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[queues.billing]
skills       = ["billing"]
ring_timeout = "5s"
wrap_up      = "0s"

[queues.general]
ring_timeout = "5s"
wrap_up      = "0s"

[queues.vip]
strategy     = "best_level"
ring_timeout = "5s"
wrap_up      = "0s"

[agents.2001]
name   = "王芳"
skills = ["billing"]
ha1    = "c77c65cb80b98f26c9ce22ff8c3ae0ca"   # pw2001

[agents.2002]
name   = "李强"
level  = 4
ha1    = "cad561eaa6db436ad7848520ac0e9ba3"   # pw2002

[routes]
default = "r"
"#,
            config_head(rtp_range(20))
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// A queue's figure in `GET /agents`.
fn queue_figure(server: &Server, queue: &str, figure: &str) -> u64 {
    let (_, _, body) = http_get(server.http(), "/agents");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|x| x["name"] == queue))
        .and_then(|g| g[figure].as_u64())
        .unwrap_or(0)
}

/// Dials `number` (a caller who waits for the flow to hang up), in the background.
fn dial(dir: &Path, server: &Server, number: &str) -> Peer {
    let rtp = free_udp_port().to_string();
    Peer::spawn(
        dir,
        server.addr,
        "flow_hangs_up.xml",
        &[
            "-m", "1", "-s", number, "-key", "caller", CALLER, "-key", "rtpport", &rtp,
        ],
    )
}

#[test]
fn overflow_when_none_idle_rings_a_general_agent_at_once() {
    need_sipp!();
    let config = routing_deployment("overflow-now");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // No billing agent is free (none is logged in); the general agent is.
    let mut phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    // Without the overflow nobody could take the call: 2002 has no billing skill.
    let mut call = dial(&dir, &server, "10020");
    assert!(
        call.wait(Duration::from_secs(20)) && phone.wait(Duration::from_secs(5)),
        "{}\n{}\n{}",
        call.report(),
        phone.report(),
        server.log()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_eq!(rows[0].2.as_deref(), Some("billing"), "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
    assert_eq!(queue_figure(&server, "billing", "overflowed"), 1);
    assert_eq!(queue_figure(&server, "general", "overflow_answered"), 1);
}

#[test]
fn overflow_after_two_seconds_keeps_the_billing_place() {
    need_sipp!();
    let config = routing_deployment("overflow-later");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let mut phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    let mut call = dial(&dir, &server, "10021");
    wait_until("the caller waits in billing", || {
        queue_figure(&server, "billing", "waiting") == 1
    });
    let queued = Instant::now();
    wait_until("the general agent rings", || {
        agent_state(&server, "2002") != "available"
    });
    let waited = queued.elapsed();
    assert!(
        waited >= Duration::from_millis(1_900) && waited < Duration::from_millis(3_500),
        "rang after {waited:?}"
    );
    // While it rings, the caller still holds their place in billing.
    assert_eq!(queue_figure(&server, "billing", "waiting"), 1);
    assert_eq!(queue_figure(&server, "billing", "overflowed"), 1);
    assert!(
        call.wait(Duration::from_secs(20)) && phone.wait(Duration::from_secs(5)),
        "{}\n{}\n{}",
        call.report(),
        phone.report(),
        server.log()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
}

#[test]
fn best_level_rings_the_level_four_agent_first() {
    need_sipp!();
    let config = routing_deployment("best-level");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // 2001 (level 1) has been idle longest; 2002 is level 4.
    let other = agent(&dir, &server, "2001", "pw2001", "agent_answers.xml", 1);
    std::thread::sleep(Duration::from_millis(200));
    let mut phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    let mut call = dial(&dir, &server, "10022");
    assert!(
        call.wait(Duration::from_secs(20)) && phone.wait(Duration::from_secs(5)),
        "{}\n{}\n{}",
        call.report(),
        phone.report(),
        server.log()
    );
    assert!(
        !other.messages().contains("INVITE sip:"),
        "{}",
        other.report()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows[0].2.as_deref(), Some("vip"), "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
}

/// Sets agent `id` (password `pw{id}`) away or available over HTTP.
fn set_state(server: &Server, id: &str, state: &str) {
    let (code, body) = set_agent_state(server.http(), id, state);
    assert_eq!(code, 204, "{body}");
}

#[test]
fn a_blind_refer_to_a_queue_puts_the_caller_first_with_the_screen_pop_and_transferred_by() {
    need_sipp!();
    let config = deployment("refer", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // Agent 2001 answers the first caller and, 3 s later, transfers it blind to
    // sip:queue.general@ivr; it has asked to go away after this call.
    let mut first_phone = agent_with(
        &dir,
        &server,
        "2001",
        "pw2001",
        "agent_refers.xml",
        1,
        &["-key", "target", "queue.general"],
    );
    let mut first = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "3"],
    );
    let started = Instant::now();
    while agent_state(&server, "2001") != "on_call" {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the first caller does not reach 2001\n{}\n{}\n{}",
            first.report(),
            first_phone.report(),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    set_state(&server, "2001", "away");
    // Meanwhile a VIP (flow priority 10) waits in the same queue.
    let mut vip = caller(
        &dir,
        &server,
        VIP,
        "caller_rates.xml",
        &["-key", "score", "5"],
    );
    wait_until("the VIP waits", || waiting(&server) == 1);
    // The transfer puts the first caller back in the queue, ahead of the VIP.
    wait_until("the transferred caller waits", || waiting(&server) == 2);
    let mut second_phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 2);
    let ok: Vec<bool> = [&mut first, &mut vip]
        .into_iter()
        .map(|c| c.wait(Duration::from_secs(45)))
        .collect();
    let p1 = first_phone.wait(Duration::from_secs(5));
    let p2 = second_phone.wait(Duration::from_secs(10));
    assert!(
        ok.iter().all(|o| *o) && p1 && p2,
        "callers {ok:?}, agents {p1} {p2}\n{}\n{}\n{}\n{}\n{}",
        first.report(),
        vip.report(),
        first_phone.report(),
        second_phone.report(),
        server.log()
    );
    // 2001 heard NOTIFY 100 Trying then 200 OK (its scenario checks both) and ivr's BYE.
    let refer = first_phone.messages();
    assert!(refer.contains("SIP/2.0 202 Accepted"), "{refer}");
    assert!(refer.contains("message/sipfrag"), "{refer}");
    // 2002 got the transferred caller first, with the screen pop and who transferred it.
    assert_eq!(
        second_phone.offered_callers(),
        vec![CALLER.to_string(), VIP.to_string()]
    );
    let pops = second_phone.messages();
    let first_invite = &pops[..pops
        .find(&format!("X-IVR-Caller: {VIP}"))
        .unwrap_or(pops.len())];
    for h in [
        "X-IVR-Transferred-By: 2001",
        "X-IVR-Queue: general",
        "X-IVR-Path: hello,queue",
        "X-IVR-Call-Channel: sip",
    ] {
        assert!(first_invite.contains(h), "no `{h}` in:\n{first_invite}");
    }
    let rows = calls(&config, 2);
    assert!(
        rows.iter().all(|r| r.1.as_deref() == Some("transferred")),
        "{rows:?}"
    );
}

#[test]
fn a_refer_to_an_unknown_target_keeps_the_caller_with_the_agent() {
    need_sipp!();
    let config = deployment("refer-refused", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // No such queue; a number (no trunk yet). Each time the agent's phone hears the refusal
    // in the final NOTIFY, then talks on with the caller and hangs up itself.
    for (n, (target, status)) in [
        ("queue.nowhere", "SIP/2.0 404 Not Found"),
        ("95519", "SIP/2.0 403 Forbidden"),
    ]
    .into_iter()
    .enumerate()
    {
        let port = free_udp_port();
        let mut phone = Peer::spawn(
            &dir,
            server.addr,
            "agent_refer_refused.xml",
            &["-p", &port.to_string(), "-m", "1", "-key", "target", target],
        );
        let (ok, out) = try_register_agent(&dir, server.addr, "2001", "pw2001", port);
        assert!(ok, "{out}");
        wait_until("2001 is available", || {
            agent_state(&server, "2001") == "available"
        });
        let mut call = caller(
            &dir,
            &server,
            CALLER,
            "caller_rates.xml",
            &["-key", "score", "4"],
        );
        let c = call.wait(Duration::from_secs(30));
        let p = phone.wait(Duration::from_secs(10));
        assert!(
            c && p,
            "{target}: caller {c}, agent {p}\n{}\n{}\n{}",
            call.report(),
            phone.report(),
            server.log()
        );
        let m = phone.messages();
        assert!(m.contains(status), "{target}: no `{status}` in:\n{m}");
        let rows = calls(&config, n + 1);
        let (_, outcome, _, agent, _) = &rows[n];
        assert_eq!(outcome.as_deref(), Some("transferred"), "{rows:?}");
        assert_eq!(agent.as_deref(), Some("2001"), "{rows:?}");
        // The caller stayed: after the agent hung up, the flow asked for the rating.
        let s = surveys(&config);
        assert_eq!(s.len(), n + 1, "{s:?}\n{}", server.log());
    }
}

#[test]
fn a_blind_refer_to_an_agent_rings_that_agent_with_the_screen_pop() {
    need_sipp!();
    let config = deployment("refer-agent", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let mut first_phone = agent_with(
        &dir,
        &server,
        "2001",
        "pw2001",
        "agent_refers.xml",
        1,
        &["-key", "target", "2002"],
    );
    let mut call = caller(
        &dir,
        &server,
        CALLER,
        "caller_rates.xml",
        &["-key", "score", "3"],
    );
    wait_until("the caller reaches 2001", || {
        agent_state(&server, "2001") == "on_call"
    });
    // 2002 logs in while 2001 talks; 3 s in, 2001 transfers the caller to it.
    let mut second_phone = agent(&dir, &server, "2002", "pw2002", "agent_answers.xml", 1);
    let c = call.wait(Duration::from_secs(45));
    let p1 = first_phone.wait(Duration::from_secs(5));
    let p2 = second_phone.wait(Duration::from_secs(10));
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        call.report(),
        first_phone.report(),
        second_phone.report(),
        server.log()
    );
    assert_eq!(second_phone.offered_callers(), vec![CALLER.to_string()]);
    let pop = second_phone.messages();
    for h in ["X-IVR-Transferred-By: 2001", "X-IVR-Queue: general"] {
        assert!(pop.contains(h), "no `{h}` in:\n{pop}");
    }
}

/// `POST /agents/ID/PATH` as agent `id` (password `pwID`) with `body`: the status and body.
fn agent_post(server: &Server, id: &str, path: &str, body: &str) -> (u16, String) {
    let auth = agent_auth(id);
    let (code, _, body) = http_request(
        server.http(),
        "POST",
        &format!("/agents/{id}/{path}"),
        &[("Authorization", &auth)],
        body,
    );
    (code, body)
}

/// A phone that answers and talks (its RTP an [`Endpoint`] sending a tone from `ssrc` once it
/// hears anything) until it gets a BYE; registered as agent `id` unless `id` is empty.
fn talking_phone(dir: &Path, server: &Server, id: &str, ssrc: u32) -> (Peer, Endpoint, u16) {
    let (phone, media, port) = agents::talking_phone(
        dir,
        server.addr,
        ("answers_until_bye.xml", 1, 40),
        (ssrc, 20_000),
    );
    if !id.is_empty() {
        register_agent(dir, server.addr, id, &format!("pw{id}"), port, String::new);
        wait_until("the registration reaches the ACD", || {
            agent_state(server, id) != "offline"
        });
    }
    (phone, media, port)
}

/// A caller (SIPp) talking for `ms` from an [`Endpoint`] of SSRC 7, in the background.
fn talking_caller(dir: &Path, server: &Server, ms: u64) -> (Peer, Endpoint) {
    let media = Endpoint::start(vec![(0, Act::Voice(ms))]);
    let caller = Peer::spawn(
        dir,
        server.addr,
        "call_bye.xml",
        &[
            "-m",
            "1",
            "-d",
            &ms.to_string(),
            "-key",
            "caller",
            "13800000001",
            "-key",
            "rtpport",
            &media.port.to_string(),
        ],
    );
    (caller, media)
}

/// Packets of `ssrc` among `got` that arrived in `from..to`.
fn heard(got: &[Pkt], ssrc: u32, from: Instant, to: Instant) -> usize {
    got.iter()
        .filter(|p| p.ssrc == ssrc && p.at >= from && p.at < to)
        .count()
}

/// Agent 2001 talks with a caller, consults agent 2002 (the caller holds: it hears neither),
/// 2002 answers with the screen pop, `transferred_by` and the note, and 2001 completes: the
/// caller's RTP comes from 2002, 2001's leg ends and it wraps up. Before that, a transfer to a
/// number is refused (no trunk) and the caller stays with 2001.
#[test]
fn a_consultation_completed_hands_the_caller_to_the_second_agent() {
    need_sipp!();
    let config = deployment("consult-complete", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let (mut first, first_media, _) = talking_phone(&dir, &server, "2001", 41);
    let (mut call, caller_media) = talking_caller(&dir, &server, 12_000);
    wait_until("the caller reaches 2001", || {
        agent_state(&server, "2001") == "on_call"
    });
    let (mut second, second_media, _) = talking_phone(&dir, &server, "2002", 42);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = agent_post(&server, "2001", "transfer", r#"{"target": "13900000001"}"#);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no default trunk"), "{body}");
    let talking = Instant::now();
    std::thread::sleep(Duration::from_millis(1000));
    let (code, body) = agent_post(
        &server,
        "2001",
        "consult",
        r#"{"target": "2002", "note": "wants a refund"}"#,
    );
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let held = Instant::now();
    // A second one at once is refused.
    let (code, body) = agent_post(&server, "2001", "consult", r#"{"target": "queue.general"}"#);
    assert_eq!(code, 409, "{body}");
    wait_until("2002 answers the consultation", || {
        agent_state(&server, "2002") == "on_call"
    });
    std::thread::sleep(Duration::from_millis(1500));
    // The server moves the caller to 2002 before it answers 204: 2002 may be heard from the
    // moment the completion is asked for, not only once the answer is back.
    let asked = Instant::now();
    let (code, body) = agent_post(&server, "2001", "consult/complete", "");
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let completed = Instant::now();
    wait_until("2001 wraps up", || {
        agent_state(&server, "2001") == "wrap_up"
    });
    let c = call.wait(Duration::from_secs(20));
    let p1 = first.wait(Duration::from_secs(5));
    let p2 = second.wait(Duration::from_secs(5));
    let (got, _) = caller_media.finish();
    let (at_first, _) = first_media.finish();
    let (at_second, _) = second_media.finish();
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        call.report(),
        first.report(),
        second.report(),
        server.log()
    );
    let margin = Duration::from_millis(300);
    let end = Instant::now();
    // The caller heard 2001, then neither while holding, then 2002.
    assert!(
        heard(&got, 41, talking, held) >= 25,
        "2001 before the consultation"
    );
    assert_eq!(
        heard(&got, 41, held + margin, end),
        0,
        "2001 after the hold"
    );
    assert_eq!(
        heard(&got, 42, held, asked),
        0,
        "2002 during the consultation"
    );
    let from_second = heard(&got, 42, completed, end);
    assert!(
        from_second >= 50,
        "{from_second} packets from 2002 after the completion"
    );
    // 2001 and 2002 heard each other while the caller held.
    assert!(
        heard(&at_first, 42, held, completed) >= 25,
        "2001 heard 2002"
    );
    assert!(
        heard(&at_second, 41, held, completed) >= 25,
        "2002 heard 2001"
    );
    assert!(
        heard(&at_second, 7, completed + margin, end) >= 25,
        "2002 hears the caller"
    );
    let pop = second.messages();
    for h in ["X-IVR-Transferred-By: 2001", "X-IVR-Note: wants a refund"] {
        assert!(pop.contains(h), "no `{h}` in:\n{pop}");
    }
    // The record names the agent the caller ended with, as after a phone's attended transfer.
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_eq!(rows[0].3.as_deref(), Some("2002"), "{rows:?}");
}

/// A consultation cancelled: 2002's leg ends, the caller (who heard nobody while holding) is
/// back with 2001 and hears it again.
#[test]
fn a_consultation_cancelled_brings_the_caller_back_to_the_first_agent() {
    need_sipp!();
    let config = deployment("consult-cancel", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let (mut first, _first_media, _) = talking_phone(&dir, &server, "2001", 41);
    let (mut call, caller_media) = talking_caller(&dir, &server, 11_000);
    wait_until("the caller reaches 2001", || {
        agent_state(&server, "2001") == "on_call"
    });
    let (mut second, _second_media, _) = talking_phone(&dir, &server, "2002", 42);
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = agent_post(&server, "2001", "consult", r#"{"target": "2002"}"#);
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let held = Instant::now();
    wait_until("2002 answers the consultation", || {
        agent_state(&server, "2002") == "on_call"
    });
    std::thread::sleep(Duration::from_millis(1500));
    let (code, body) = agent_post(&server, "2001", "consult/cancel", "");
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let back = Instant::now();
    let p2 = second.wait(Duration::from_secs(5));
    assert_eq!(agent_state(&server, "2001"), "on_call");
    let c = call.wait(Duration::from_secs(20));
    let p1 = first.wait(Duration::from_secs(5));
    let (got, _) = caller_media.finish();
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        call.report(),
        first.report(),
        second.report(),
        server.log()
    );
    let margin = Duration::from_millis(300);
    let end = Instant::now();
    assert_eq!(
        heard(&got, 41, held + margin, back),
        0,
        "2001 during the hold"
    );
    assert_eq!(
        heard(&got, 42, held, end),
        0,
        "2002 never reaches the caller"
    );
    let again = heard(&got, 41, back + margin, end);
    assert!(again >= 50, "{again} packets from 2001 after the cancel");
}

/// `POST /agents/2001/transfer` to a number goes through the default trunk (a SIPp gateway):
/// the caller stays with 2001 while it rings, then hears the far end; 2001 wraps up. The
/// trunk's one channel (`max_calls = 1`) is taken meanwhile: 2002's transfer of another caller
/// to a number is refused.
#[test]
fn a_console_transfer_to_a_number_goes_through_the_default_trunk() {
    need_sipp!();
    let config = deployment("transfer-number", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let gateway_port = free_udp_port();
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n",
        &format!(
            "[trunks.default]\nuri = \"sip:127.0.0.1:{gateway_port}\"\ncaller_id = \"10010\"\nmax_calls = 1\n\n[routes]\n"
        ),
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    let far_media = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        43,
        vec![(0, Act::Voice(20_000))],
    );
    let mut far = Peer::spawn(
        &dir,
        server.addr,
        "answers_until_bye.xml",
        &[
            "-p",
            &gateway_port.to_string(),
            "-m",
            "1",
            "-key",
            "agentrtp",
            &far_media.port.to_string(),
        ],
    );
    let (mut first, _first_media, _) = talking_phone(&dir, &server, "2001", 41);
    let (mut call, caller_media) = talking_caller(&dir, &server, 12_000);
    wait_until("the caller reaches 2001", || {
        agent_state(&server, "2001") == "on_call"
    });
    std::thread::sleep(Duration::from_millis(1000));
    let (code, body) = agent_post(&server, "2001", "transfer", r#"{"target": "13900000001"}"#);
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let transferred = Instant::now();
    wait_until("2001 wraps up", || {
        agent_state(&server, "2001") == "wrap_up"
    });
    set_state(&server, "2001", "away");
    // The trunk's one channel is the number's now: 2002's caller cannot go out.
    let (mut second, _second_media, _) = talking_phone(&dir, &server, "2002", 42);
    let (mut call2, _caller2_media) = talking_caller(&dir, &server, 3_000);
    wait_until("the second caller reaches 2002", || {
        agent_state(&server, "2002") == "on_call"
    });
    // `+` alone is no number: refused as an unknown target (not dialled as `sip:+@...`).
    let (code, body) = agent_post(&server, "2002", "transfer", r#"{"target": "+"}"#);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("is neither queue.NAME"), "{body}");
    let (code, body) = agent_post(&server, "2002", "transfer", r#"{"target": "13900000002"}"#);
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("every channel of trunk `default` is in use"),
        "{body}"
    );
    let c2 = call2.wait(Duration::from_secs(10));
    let p2 = second.wait(Duration::from_secs(5));
    assert!(c2 && p2, "{}\n{}", call2.report(), second.report());
    let c = call.wait(Duration::from_secs(20));
    let p1 = first.wait(Duration::from_secs(5));
    let g = far.wait(Duration::from_secs(5));
    let (got, _) = caller_media.finish();
    assert!(
        c && p1 && g,
        "caller {c}, agent {p1}, gateway {g}\n{}\n{}\n{}\n{}",
        call.report(),
        first.report(),
        far.report(),
        server.log()
    );
    let end = Instant::now();
    let from_far = heard(&got, 43, transferred, end);
    assert!(from_far >= 50, "{from_far} packets from the number");
    assert_eq!(
        heard(&got, 41, transferred + Duration::from_millis(300), end),
        0
    );
    let invite = far.messages();
    assert!(
        invite.contains("INVITE sip:13900000001@127.0.0.1"),
        "{invite}"
    );
    assert!(
        !invite.contains("X-IVR-Caller"),
        "no caller data to a carrier: {invite}"
    );
}

/// The consulted agent's phone declines (486): the consultation is over at once, the caller
/// (who held) is back with 2001 and hears it again; completing then is refused.
#[test]
fn a_consultation_the_target_declines_leaves_the_caller_with_the_agent() {
    need_sipp!();
    let config = deployment("consult-declined", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let (mut first, _first_media, _) = talking_phone(&dir, &server, "2001", 41);
    let (mut call, caller_media) = talking_caller(&dir, &server, 8_000);
    wait_until("the caller reaches 2001", || {
        agent_state(&server, "2001") == "on_call"
    });
    let mut second = agent(&dir, &server, "2002", "pw2002", "declines.xml", 1);
    std::thread::sleep(Duration::from_millis(1000));
    let (code, body) = agent_post(&server, "2001", "consult", r#"{"target": "2002"}"#);
    assert_eq!(code, 204, "{body}\n{}", server.log());
    let p2 = second.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(300));
    let (code, body) = agent_post(&server, "2001", "consult/complete", "");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no consultation in progress"), "{body}");
    let back = Instant::now();
    let c = call.wait(Duration::from_secs(20));
    let p1 = first.wait(Duration::from_secs(5));
    let (got, _) = caller_media.finish();
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        call.report(),
        first.report(),
        second.report(),
        server.log()
    );
    let again = heard(&got, 41, back, Instant::now());
    assert!(again >= 50, "{again} packets from 2001 after the refusal");
    assert!(
        server.log().contains("2002 is busy or declined"),
        "{}",
        server.log()
    );
}

/// The agent's phone transfers the caller blind with REFER to a number: it goes out through the
/// default trunk (a SIPp gateway), the REFER's final NOTIFY says `200 OK` once the number
/// answered, the agent's leg ends, and the caller hears the far end.
#[test]
fn a_blind_refer_to_a_number_goes_through_the_default_trunk() {
    need_sipp!();
    let config = deployment("refer-number", free_udp_port());
    let dir = config.parent().expect("dir").to_path_buf();
    let gateway_port = free_udp_port();
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n",
        &format!("[trunks.carrier]\nuri = \"sip:127.0.0.1:{gateway_port}\"\n\n[routes]\n"),
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    let far_media = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        43,
        vec![(0, Act::Voice(20_000))],
    );
    let mut far = Peer::spawn(
        &dir,
        server.addr,
        "answers_until_bye.xml",
        &[
            "-p",
            &gateway_port.to_string(),
            "-m",
            "1",
            "-key",
            "agentrtp",
            &far_media.port.to_string(),
        ],
    );
    let mut phone = agent_with(
        &dir,
        &server,
        "2001",
        "pw2001",
        "agent_refers.xml",
        1,
        &["-key", "target", "13900000001"],
    );
    let (mut call, caller_media) = talking_caller(&dir, &server, 9_000);
    let p = phone.wait(Duration::from_secs(15));
    let referred = Instant::now();
    let c = call.wait(Duration::from_secs(20));
    let g = far.wait(Duration::from_secs(5));
    let (got, _) = caller_media.finish();
    assert!(
        c && p && g,
        "caller {c}, agent {p}, gateway {g}\n{}\n{}\n{}\n{}",
        call.report(),
        phone.report(),
        far.report(),
        server.log()
    );
    let from_far = heard(&got, 43, referred, Instant::now());
    assert!(from_far >= 50, "{from_far} packets from the number");
    assert!(
        far.messages().contains("INVITE sip:13900000001@127.0.0.1"),
        "{}",
        far.messages()
    );
}
