//! Attended transfer end to end (RFC 3891 Replaces in a REFER, RFC 3515): SIPp plays the
//! caller and the agents' phones; agent 2001's phone answers the caller, calls agent 2002
//! through the IVR itself (the consultation call, digest-authenticated), then sends REFER with
//! Replaces on the caller's dialog. The IVR bridges the caller to 2002's leg, ends both of
//! 2001's dialogs and says so in the REFER's NOTIFYs. The audio is checked with RTP endpoints
//! of the test's own (which SSRC reaches the caller). Every peer is on 127.0.0.1 and every run
//! is bounded.

mod common;

use common::agents::{self, Peer, agent_phone, free_udp_port, sqlite_rows};
use common::*;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A caller of the number test (any number but the gateway's).
const VIP: &str = "13900000009";

const FLOW: &str = r#"
flow q {
    title    "attended transfer test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto queue
}

transfer queue {
    queue     general
    attach    caller
    music     hold
    no_agents -> sorry
    after     -> bye
}

step sorry {
    play sorry
    hangup
}

step bye {
    play bye
    hangup
}
"#;

/// A deployment with the queue flow as the default route (queue `general`, which only 2001
/// serves) and agents 2001 and 2002 (who serves `english`).
fn deployment(name: &str) -> PathBuf {
    deployment_with(name, "")
}

/// [`deployment`] with more of `ivr.toml` (a trunk).
fn deployment_with(name: &str, more: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/q.flow"), FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 400.0, 200),
            ("hold", "hold", 500.0, 400),
            ("sorry", "sorry", 700.0, 300),
            ("bye", "bye", 800.0, 300),
        ],
    );
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[queues.general]
skills       = ["mandarin"]
ring_timeout = "3s"
wrap_up      = "1s"

[agents.2001]
name   = "王芳"
skills = ["mandarin"]
ha1    = "c77c65cb80b98f26c9ce22ff8c3ae0ca"   # pw2001

[queues.english]
skills       = ["english"]
ring_timeout = "3s"
wrap_up      = "1s"

[agents.2002]
name   = "李强"
skills = ["english"]
ha1    = "cad561eaa6db436ad7848520ac0e9ba3"   # pw2002

[routes]
default = "q"
{more}"#,
            config_head(rtp_range(40))
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// A SIPp of these tests in the background (30 s at most).
fn peer(dir: &Path, server: SocketAddr, scenario: &str, args: &[&str]) -> Peer {
    Peer::spawn_for(dir, Some(server), scenario, 30, args)
}

/// The state of agent `id` in `GET /agents`.
fn agent_state(server: &Server, id: &str) -> String {
    agents::agent_state(server.http(), id)
}

/// Polls `done` until it holds (10 s at most, else the test fails naming `what`).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    agents::wait_until(what, Duration::from_secs(10), done);
}

/// Agent `id`'s phone (a SIPp UAS running `scenario` with `args`) and its registration.
fn agent(dir: &Path, server: &Server, id: &str, scenario: &str, args: &[&str]) -> Peer {
    let password = format!("pw{id}");
    let phone = agent_phone(
        dir,
        server.addr,
        (id, &password),
        (scenario, 1, 30),
        args,
        || server.log(),
    );
    wait_until("the registration reaches the ACD", || {
        agent_state(server, id) == "available"
    });
    phone
}

/// call_id, outcome, agent.
type Row = (String, Option<String>, Option<String>);

/// The call rows once there are `n` (waits for the batching writer).
fn calls(config: &Path, n: usize) -> Vec<Row> {
    sqlite_rows(
        config,
        "SELECT call_id, outcome, agent FROM calls ORDER BY id",
        n,
    )
}

/// Queue events of the call `call_id`: (event, agent).
fn queue_events(config: &Path, call_id: &str) -> Vec<(String, Option<String>)> {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        sqlx::query_as("SELECT event, agent FROM queue_events WHERE call_id = ? ORDER BY id")
            .bind(call_id)
            .fetch_all(&pool)
            .await
            .unwrap_or_default()
    })
}

#[test]
fn an_attended_transfer_bridges_the_caller_to_the_consulted_agent() {
    need_sipp!();
    attended_transfer_to("attended", "2002");
}

#[test]
fn an_attended_transfer_through_a_queue_bridges_the_caller_to_its_agent() {
    need_sipp!();
    attended_transfer_to("attended-queue", "queue.english");
}

/// Agent 2001 consults `target` (2002, or a queue only 2002 serves) from its phone and
/// completes the transfer with REFER and Replaces.
fn attended_transfer_to(name: &str, target: &str) {
    let config = deployment(name);
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // Each phone's audio: 2001 speaks from SSRC 42 once it hears the caller, 2002 from SSRC
    // 43 once it hears anyone (the caller, after the transfer).
    let first_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(0, Act::Voice(1500))],
    );
    let second_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        43,
        vec![(0, Act::Voice(2000))],
    );
    let consult_rtp = free_udp_port().to_string();
    let first_rtp = first_media.port.to_string();
    let second_rtp = second_media.port.to_string();
    let mut first = agent(
        &dir,
        &server,
        "2001",
        "agent_consults.xml",
        &[
            "-key",
            "agent",
            "2001",
            "-key",
            "target",
            target,
            "-key",
            "agentrtp",
            &first_rtp,
            "-key",
            "consultrtp",
            &consult_rtp,
            "-au",
            "2001",
            "-ap",
            "pw2001",
        ],
    );
    // 2002 answers the consultation after 300 ms and hangs up 3 s later.
    let mut second = agent(
        &dir,
        &server,
        "2002",
        "agent_talks.xml",
        &["-key", "agentrtp", &second_rtp],
    );
    // Only 2001 serves `general`: the caller reaches 2001.
    let caller_media = Endpoint::start(vec![(0, Act::Voice(7000))]);
    let rtp = caller_media.port.to_string();
    let mut caller = peer(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &[
            "-m", "1", "-s", "10010", "-key", "caller", CALLER, "-key", "rtpport", &rtp,
        ],
    );
    let c = caller.wait(Duration::from_secs(30));
    let p1 = first.wait(Duration::from_secs(5));
    let p2 = second.wait(Duration::from_secs(5));
    let (heard_by_caller, _) = caller_media.finish();
    let (heard_by_second, _) = second_media.finish();
    let (heard_by_first, _) = first_media.finish();
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        caller.report_lines(80),
        first.report_lines(80),
        second.report_lines(80),
        server.log()
    );
    // 2001's phone checked 202, NOTIFY 100 Trying and 200 OK, and a BYE on each of its
    // dialogs (its scenario fails otherwise).
    let m = first.messages();
    assert!(m.contains("SIP/2.0 401 Unauthorized"), "{m}");
    assert!(m.contains("Content-Type: message/sipfrag"), "{m}");
    assert_eq!(m.matches("BYE sip:").count(), 2, "{m}");
    // 2002's phone got the caller's screen pop and who transferred it.
    let pop = second.messages();
    for h in [
        format!("X-IVR-Caller: {CALLER}"),
        "X-IVR-Transferred-By: 2001".to_string(),
        "X-IVR-Queue: english".to_string(),
    ] {
        assert!(pop.contains(&h), "no `{h}` in:\n{pop}");
    }
    // The caller heard 2001 first, then 2002.
    let from =
        |ssrc: u32| -> Vec<&Pkt> { heard_by_caller.iter().filter(|p| p.ssrc == ssrc).collect() };
    let (one, two) = (from(42), from(43));
    assert!(one.len() >= 20, "{} packets from 2001", one.len());
    assert!(two.len() >= 50, "{} packets from 2002", two.len());
    let last_of_one = one.iter().map(|p| p.at).max().expect("2001");
    let first_of_two = two.iter().map(|p| p.at).min().expect("2002");
    assert!(last_of_one < first_of_two + Duration::from_millis(100));
    // And 2002 heard the caller (relayed as PCMA), 2001 too before the transfer.
    assert!(heard_by_second.iter().filter(|p| p.ssrc == 7).count() >= 25);
    assert!(heard_by_first.iter().filter(|p| p.ssrc == 7).count() >= 10);
    // The record names the agent the caller ended with; the queue events show 2001's answer
    // and then 2002's, under the caller's call id.
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
    assert_eq!(rows[0].2.as_deref(), Some("2002"), "{rows:?}");
    let events = queue_events(&config, &rows[0].0);
    let answered: Vec<Option<String>> = events
        .iter()
        .filter(|e| e.0 == "answered")
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(
        answered,
        vec![Some("2001".to_string()), Some("2002".to_string())],
        "{events:?}"
    );
}

#[test]
fn a_replaces_naming_no_consultation_is_refused_and_the_caller_stays() {
    need_sipp!();
    let config = deployment("attended-refused");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // 2001 speaks from SSRC 42 for 3.5 s once it hears the caller: before and after its
    // refused REFER (1.3 s in), until it hangs up (3.3 s in).
    let first_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(0, Act::Voice(3500))],
    );
    let first_rtp = first_media.port.to_string();
    let mut first = agent(
        &dir,
        &server,
        "2001",
        "agent_replaces_unknown.xml",
        &["-key", "target", "2002", "-key", "agentrtp", &first_rtp],
    );
    let caller_media = Endpoint::start(vec![(0, Act::Voice(6000))]);
    let rtp = caller_media.port.to_string();
    let mut caller = peer(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &[
            "-m", "1", "-s", "10010", "-key", "caller", CALLER, "-key", "rtpport", &rtp,
        ],
    );
    let c = caller.wait(Duration::from_secs(30));
    let p1 = first.wait(Duration::from_secs(5));
    let (heard_by_caller, _) = caller_media.finish();
    drop(first_media);
    assert!(
        c && p1,
        "caller {c}, agent {p1}\n{}\n{}\n{}",
        caller.report_lines(80),
        first.report_lines(80),
        server.log()
    );
    let m = first.messages();
    assert!(
        m.contains("SIP/2.0 481 Call/Transaction Does Not Exist"),
        "{m}"
    );
    // The caller heard 2001 for about 2.5 s, across the refused transfer, without a gap.
    let one: Vec<&Pkt> = heard_by_caller.iter().filter(|p| p.ssrc == 42).collect();
    assert!(one.len() >= 100, "{} packets from 2001", one.len());
    let span = one.iter().map(|p| p.at).max().expect("last")
        - one.iter().map(|p| p.at).min().expect("first");
    assert!(span >= Duration::from_millis(2000), "{span:?}");
    let rows = calls(&config, 1);
    assert_eq!(rows[0].2.as_deref(), Some("2001"), "{rows:?}");
}

#[test]
fn an_attended_transfer_to_a_number_goes_through_the_default_trunk() {
    need_sipp!();
    let gateway_port = free_udp_port();
    let config = deployment_with(
        "attended-number",
        &format!(
            "\n[trunks.default]\nuri       = \"sip:127.0.0.1:{gateway_port}\"\ncaller_id = \"10010\"\nmax_calls = 2\n"
        ),
    );
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // The carrier's gateway answers 13800000001; its customer speaks from SSRC 44 once it
    // hears the caller (after the transfer).
    let far_media = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        44,
        vec![(0, Act::Voice(2000))],
    );
    let far_rtp = far_media.port.to_string();
    let mut gateway = peer(
        &dir,
        server.addr,
        "campaign_gateway.xml",
        &[
            "-p",
            &gateway_port.to_string(),
            "-m",
            "1",
            "-key",
            "rtpport",
            &far_rtp,
        ],
    );
    let first_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(0, Act::Voice(1500))],
    );
    let first_rtp = first_media.port.to_string();
    let consult_rtp = free_udp_port().to_string();
    let mut first = agent(
        &dir,
        &server,
        "2001",
        "agent_consults.xml",
        &[
            "-key",
            "agent",
            "2001",
            "-key",
            "target",
            "13800000001",
            "-key",
            "agentrtp",
            &first_rtp,
            "-key",
            "consultrtp",
            &consult_rtp,
            "-au",
            "2001",
            "-ap",
            "pw2001",
        ],
    );
    let caller_media = Endpoint::start(vec![(0, Act::Voice(6000))]);
    let rtp = caller_media.port.to_string();
    // The caller hangs up 6 s in: the IVR ends the trunk's leg (BYE to the gateway).
    let mut caller = peer(
        &dir,
        server.addr,
        "call_bye.xml",
        &[
            "-m", "1", "-d", "6000", "-s", "10010", "-key", "caller", VIP, "-key", "rtpport", &rtp,
        ],
    );
    let c = caller.wait(Duration::from_secs(30));
    let p1 = first.wait(Duration::from_secs(5));
    let g = gateway.wait(Duration::from_secs(5));
    let (heard_by_caller, _) = caller_media.finish();
    drop(far_media);
    drop(first_media);
    assert!(
        c && p1 && g,
        "caller {c}, agent {p1}, gateway {g}\n{}\n{}\n{}\n{}",
        caller.report_lines(80),
        first.report_lines(80),
        gateway.report_lines(80),
        server.log()
    );
    let m = first.messages();
    assert!(
        m.contains("SIP/2.0 200 OK\r\n") || m.contains("SIP/2.0 200 OK\n"),
        "{m}"
    );
    // The carrier got the trunk's caller id and no caller data.
    let invite = gateway.messages();
    assert!(
        invite.contains("INVITE sip:13800000001@127.0.0.1:"),
        "{invite}"
    );
    assert!(invite.contains("<sip:10010@"), "{invite}");
    assert!(!invite.contains("X-IVR-"), "{invite}");
    // The caller heard the number's side after the transfer.
    let far = heard_by_caller.iter().filter(|p| p.ssrc == 44).count();
    assert!(far >= 50, "{far} packets from the number");
    let rows = calls(&config, 1);
    assert_eq!(rows[0].1.as_deref(), Some("transferred"), "{rows:?}");
}

#[test]
fn a_replaces_naming_a_consultation_still_ringing_is_refused_and_the_caller_stays() {
    need_sipp!();
    let config = deployment("attended-early");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // 2001 speaks from SSRC 42 for 3.5 s once it hears the caller.
    let first_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(0, Act::Voice(3500))],
    );
    let first_rtp = first_media.port.to_string();
    let consult_rtp = free_udp_port().to_string();
    let mut first = agent(
        &dir,
        &server,
        "2001",
        "agent_consults_early.xml",
        &[
            "-key",
            "agent",
            "2001",
            "-key",
            "target",
            "2002",
            "-key",
            "agentrtp",
            &first_rtp,
            "-key",
            "consultrtp",
            &consult_rtp,
            "-au",
            "2001",
            "-ap",
            "pw2001",
        ],
    );
    // 2002's phone rings and never answers: it hears the CANCEL when 2001 hangs up the
    // consultation.
    let mut second = agent(&dir, &server, "2002", "agent_no_answer.xml", &[]);
    let caller_media = Endpoint::start(vec![(0, Act::Voice(6000))]);
    let rtp = caller_media.port.to_string();
    let mut caller = peer(
        &dir,
        server.addr,
        "flow_hangs_up.xml",
        &[
            "-m", "1", "-s", "10010", "-key", "caller", CALLER, "-key", "rtpport", &rtp,
        ],
    );
    let c = caller.wait(Duration::from_secs(30));
    let p1 = first.wait(Duration::from_secs(5));
    let p2 = second.wait(Duration::from_secs(5));
    let (heard_by_caller, _) = caller_media.finish();
    drop(first_media);
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        caller.report_lines(80),
        first.report_lines(80),
        second.report_lines(80),
        server.log()
    );
    let m = first.messages();
    assert!(m.contains("SIP/2.0 480 Temporarily Unavailable"), "{m}");
    // The caller heard 2001 across the refused transfer, and never 2002.
    let one: Vec<&Pkt> = heard_by_caller.iter().filter(|p| p.ssrc == 42).collect();
    assert!(one.len() >= 100, "{} packets from 2001", one.len());
    let rows = calls(&config, 1);
    assert_eq!(rows[0].2.as_deref(), Some("2001"), "{rows:?}");
    let events = queue_events(&config, &rows[0].0);
    assert!(
        !events
            .iter()
            .any(|e| e.0 == "answered" && e.1.as_deref() == Some("2002")),
        "{events:?}"
    );
}

#[test]
fn an_agents_call_to_a_number_needs_its_password_and_its_login() {
    need_sipp!();
    let gateway_port = free_udp_port();
    let config = deployment_with(
        "attended-refused-calls",
        &format!(
            "\n[trunks.default]\nuri       = \"sip:127.0.0.1:{gateway_port}\"\ncaller_id = \"10010\"\nmax_calls = 2\n"
        ),
    );
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // A gateway that would answer the number: it must never hear of these calls.
    let gateway = peer(
        &dir,
        server.addr,
        "campaign_gateway.xml",
        &[
            "-p",
            &gateway_port.to_string(),
            "-m",
            "1",
            "-key",
            "rtpport",
            "9",
        ],
    );
    // 2001 is logged in but its phone has the wrong password; 2002 has the right one but is
    // not logged in. Each is challenged, then refused.
    let _phone = agent(&dir, &server, "2001", "agent_answers.xml", &[]);
    for (id, password) in [("2001", "guess"), ("2002", "pw2002")] {
        let (ok, out) = sipp(
            &dir,
            server.addr,
            "agent_call_refused.xml",
            &[
                "-m",
                "1",
                "-key",
                "agent",
                id,
                "-key",
                "target",
                "13800000001",
                "-au",
                id,
                "-ap",
                password,
            ],
        );
        assert!(ok, "{id}: {out}\n{}", server.log());
    }
    std::thread::sleep(Duration::from_millis(300));
    let heard = gateway.messages();
    assert!(!heard.contains("INVITE"), "{heard}");
    assert!(!server.log().contains("dials a number"), "{}", server.log());
}
