//! Calls from the browser, end to end: `ivr serve` on loopback ports answers WebRTC offers
//! (`POST /calls/ROUTE`), runs the flow, streams the transcript (`GET /calls/ID/events`) and
//! records the call with `channel = 'webrtc'`.
//!
//! - a WebRTC client written with the `webrtc` crate hears the prompts as PCMU and presses a
//!   key as telephone-event (always runs);
//! - the phone page in headless Chromium (tests/browser/phone.mjs with playwright-core) places
//!   a call, sees the first prompt's text, presses a key on the dial pad and sees the flow
//!   move on. It is skipped, with a message, when node, chromium or playwright-core is missing
//!   (scripts/test.sh installs them);
//! - the agent console (`/agent`): its WebSocket rings with the screen pop and hears the caller
//!   go, a second console or a SIP phone takes the agent over (always runs; the SIP part needs
//!   SIPp); in headless Chromium (tests/browser/agent.mjs) an agent logs in (a wrong password
//!   is refused), answers a WebRTC caller and hangs up, and talks with a SIPp caller until the
//!   caller hangs up, audio going both ways.

// The test's own WebRTC peer is built in place: its futures are large, and that is fine here.
#![allow(clippy::large_futures)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::agents::{agent_state_checked, free_udp_port, sqlite_rows, try_register_agent};
use common::*;
use ivr_media::audio::G711;

const FLOW: &str = r##"
flow t {
    title    "browser test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto choose
}

menu choose {
    prompt   options
    timeout  10s
    attempts 3 -> bye
    key 1 -> one
    key 2 -> bye
    key 3 -> pin
}

input pin {
    prompt   enter_pin
    digits   4
    timeout  5s
    attempts 2 -> bye
    mask
    into     pin
    next     bye
}

step one {
    play one
    goto choose
}

step bye {
    play bye
    hangup
}
"##;

/// Prompt id, text, tone, length (ms).
const PROMPTS: [(&str, &str, f32, usize); 5] = [
    ("hello", "Hello from the test flow", 440.0, 600),
    ("options", "Press 1 or 2", 660.0, 600),
    ("one", "You pressed one", 880.0, 400),
    ("bye", "Goodbye", 1000.0, 300),
    ("enter_pin", "Enter your PIN", 1200.0, 300),
];

/// The prompts of the transfer tests: tones apart from the agent's 300 Hz voice.
const AGENT_TEST_PROMPTS: [(&str, &str, f32, usize); 3] = [
    ("hello", "hello", 700.0, 300),
    ("hold", "hold", 900.0, 300),
    ("bye", "bye", 1100.0, 300),
];

fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    write_prompts(&dir, &PROMPTS);
    let rtp = rtp_range(20);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[routes]
"100" = "t"
"#,
            config_head(rtp)
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// Places a WebRTC call to `route` (as `caller` when given): the client, once answered, and
/// the call's Location.
async fn place_call(
    http_addr: SocketAddr,
    route: &str,
    caller: Option<&str>,
) -> (client::Caller, String) {
    let (mut client, offer) = client::Caller::offer().await;
    let path = format!("/calls/{route}");
    let x_caller = caller.map(String::from);
    let (code, headers, answer) = tokio::task::spawn_blocking(move || {
        let mut h = vec![("Content-Type", "application/sdp")];
        if let Some(x) = &x_caller {
            h.push(("X-Caller", x.as_str()));
        }
        http(http_addr, "POST", &path, &h, &offer)
    })
    .await
    .expect("POST");
    assert_eq!(code, 201, "{answer}");
    let location = header(&headers, "location").expect("Location").to_string();
    client.answered(answer).await;
    (client, location)
}

/// Reads the call's transcript (server-sent events) until a line contains `until` (or the
/// call ends, or 15 s pass): the JSON lines read.
fn transcript_until(addr: SocketAddr, location: &str, until: &str) -> Vec<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    write!(
        s,
        "GET {location}/events HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("request");
    let mut lines = Vec::new();
    let started = Instant::now();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        if let Some(data) = line.strip_prefix("data:") {
            let data = data.trim().to_string();
            let done = data.contains(until) || data.contains("\"type\":\"end\"");
            lines.push(data);
            if done {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    lines
}

/// channel, caller, outcome of the calls recorded (waits for `n` rows, at most 10 s).
fn calls(config: &Path, n: usize) -> Vec<(String, String, Option<String>)> {
    sqlite_rows(
        config,
        "SELECT channel, caller, outcome FROM calls ORDER BY id",
        n,
    )
}

mod client {
    //! A WebRTC caller with the `webrtc` crate: PCMU and telephone-event, one audio track.

    use ivr_media::dtmf;
    use rtc::media_stream::MediaStreamTrack;
    use rtc::rtp;
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
        RtpCodecKind,
    };
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::{mpsc, watch};
    use webrtc::media_stream::track_local::TrackLocal;
    use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
    use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
    use webrtc::peer_connection::{
        MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCConfigurationBuilder, RTCIceGatheringState, RTCSessionDescription, Registry,
        register_default_interceptors,
    };

    struct Handler {
        gathered: watch::Sender<bool>,
        tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
    }

    #[async_trait::async_trait]
    impl PeerConnectionEventHandler for Handler {
        async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
            if state == RTCIceGatheringState::Complete {
                let _ = self.gathered.send(true);
            }
        }

        async fn on_track(&self, track: Arc<dyn TrackRemote>) {
            let _ = self.tracks.send(track);
        }
    }

    fn codec(mime: &str, fmtp: &str) -> RTCRtpCodec {
        RTCRtpCodec {
            mime_type: mime.to_string(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_string(),
            rtcp_feedback: vec![],
        }
    }

    pub struct Caller {
        pub pc: Arc<dyn PeerConnection>,
        track: Arc<TrackLocalStaticRTP>,
        ssrc: u32,
        seq: u16,
        tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
        /// Payloads of the PCMU packets received.
        pub heard: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    impl Caller {
        /// A peer connection with its offer made and ICE gathered: (caller, offer SDP).
        pub async fn offer() -> (Caller, String) {
            let mut m = MediaEngine::default();
            m.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec("audio/PCMU", ""),
                    payload_type: 0,
                },
                RtpCodecKind::Audio,
            )
            .expect("PCMU");
            m.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec("audio/telephone-event", "0-15"),
                    payload_type: 101,
                },
                RtpCodecKind::Audio,
            )
            .expect("telephone-event");
            let registry = register_default_interceptors(Registry::new(), &mut m).expect("reg");
            let (gathered_tx, mut gathered) = watch::channel(false);
            let (tracks_tx, tracks) = mpsc::unbounded_channel();
            let pc = PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(m)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Handler {
                    gathered: gathered_tx,
                    tracks: tracks_tx,
                }))
                .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
                .build()
                .await
                .expect("peer connection");
            let pc: Arc<dyn PeerConnection> = Arc::new(pc);
            let ssrc = 0x1234_5678;
            let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "caller".into(),
                "caller-audio".into(),
                "caller".into(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    active: true,
                    codec: codec("audio/PCMU", ""),
                    ..Default::default()
                }],
            )));
            pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .expect("track");
            // A track's transceiver offers the track's codec alone: offer keys too.
            let codecs = vec![
                RTCRtpCodecParameters {
                    rtp_codec: codec("audio/PCMU", ""),
                    payload_type: 0,
                },
                RTCRtpCodecParameters {
                    rtp_codec: codec("audio/telephone-event", "0-15"),
                    payload_type: 101,
                },
            ];
            for t in pc.get_transceivers().await {
                t.set_codec_preferences(codecs.clone())
                    .await
                    .expect("codec preferences");
            }
            let offer = pc.create_offer(None).await.expect("offer");
            pc.set_local_description(offer).await.expect("local");
            let _ = tokio::time::timeout(Duration::from_secs(5), gathered.wait_for(|g| *g)).await;
            let sdp = pc.local_description().await.expect("description").sdp;
            (
                Caller {
                    pc,
                    track,
                    ssrc,
                    seq: 1,
                    tracks,
                    heard: Arc::new(Mutex::new(Vec::new())),
                },
                sdp,
            )
        }

        /// Takes the answer and keeps every PCMU payload that comes.
        pub async fn answered(&mut self, answer: String) {
            let answer = RTCSessionDescription::answer(answer).expect("answer");
            self.pc
                .set_remote_description(answer)
                .await
                .expect("remote");
            let track = tokio::time::timeout(Duration::from_secs(15), self.tracks.recv())
                .await
                .expect("a track from the server in time")
                .expect("a track");
            let heard = Arc::clone(&self.heard);
            tokio::spawn(async move {
                while let Some(ev) = track.poll().await {
                    if let TrackRemoteEvent::OnRtpPacket(p) = ev
                        && p.header.payload_type == 0
                        && let Ok(mut h) = heard.lock()
                    {
                        h.push(p.payload.to_vec());
                    }
                }
            });
        }

        /// Sends 20 ms of μ-law silence (so the server hears from us).
        pub async fn silence(&mut self, ts: u32) {
            self.frame(ts, vec![0xff; 160]).await;
        }

        /// Sends one 20 ms PCMU frame.
        pub async fn frame(&mut self, ts: u32, payload: Vec<u8>) {
            let p = self.packet(0, ts, false, payload);
            let _ = self.track.write_rtp(p).await;
        }

        /// Presses `key`: three packets of the event, then its end three times.
        pub async fn key(&mut self, key: char, ts: u32) {
            let event = dtmf::event_of_key(key).expect("a key");
            for i in 0..6u16 {
                let end = i >= 3;
                let payload = dtmf::event_payload(event, end, 160 * (i.min(3) + 1)).to_vec();
                let p = self.packet(101, ts, i == 0, payload);
                let _ = self.track.write_rtp(p).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        fn packet(&mut self, pt: u8, ts: u32, marker: bool, payload: Vec<u8>) -> rtp::Packet {
            self.seq = self.seq.wrapping_add(1);
            rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker,
                    payload_type: pt,
                    sequence_number: self.seq,
                    timestamp: ts,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload: payload.into(),
            }
        }
    }
}

#[test]
fn a_webrtc_client_hears_the_prompts_and_its_key_moves_the_flow() {
    let config = deployment("webrtc-client");
    let server = Server::start(&config, &["--max-calls", "1"]);
    let http_addr = server.http();

    // What the page calls, and the refusals.
    let (code, _, body) = http(http_addr, "GET", "/routes", &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"route\":\"t\"") && body.contains("\"route\":\"100\""),
        "{body}"
    );
    let (code, headers, body) = http(http_addr, "GET", "/", &[], "");
    assert_eq!(code, 200);
    assert!(header(&headers, "content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(body.contains("insertDTMF"), "the phone page");
    let sdp = [("Content-Type", "application/sdp")];
    let (code, _, _) = http(
        http_addr,
        "POST",
        "/calls/t",
        &[("Content-Type", "text/plain")],
        "v=0\r\n",
    );
    assert_eq!(code, 415);
    let (code, _, _) = http(http_addr, "POST", "/calls/t", &sdp, "hello");
    assert_eq!(code, 400);
    let (code, _, body) = http(
        http_addr,
        "POST",
        "/calls/t",
        &sdp,
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=rtpmap:8 PCMA/8000\r\n",
    );
    assert_eq!(code, 400, "no PCMU: {body}");
    let (code, _, _) = http(http_addr, "POST", "/calls/nowhere", &sdp, "v=0\r\n");
    assert_eq!(code, 404);
    let (code, _, _) = http(http_addr, "DELETE", "/calls/webrtc-0", &[], "");
    assert_eq!(code, 404);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (location, heard, transcript) = rt.block_on(async {
        let (mut caller, offer) = client::Caller::offer().await;
        let (code, headers, answer) = tokio::task::spawn_blocking(move || {
            http(
                http_addr,
                "POST",
                "/calls/100",
                &[("Content-Type", "application/sdp"), ("X-Caller", "13900000009")],
                &offer,
            )
        })
        .await
        .expect("POST");
        assert_eq!(code, 201, "{answer}");
        assert_eq!(header(&headers, "content-type"), Some("application/sdp"));
        let location = header(&headers, "location").expect("Location").to_string();
        assert!(location.starts_with("/calls/webrtc-"), "{location}");
        assert!(answer.contains("PCMU/8000"), "{answer}");
        assert!(answer.contains("telephone-event/8000"), "{answer}");
        assert!(answer.contains("a=candidate:"), "ICE gathered before answering:\n{answer}");
        caller.answered(answer).await;

        // max_calls is 1: the next call is refused while this one runs.
        let (code, _, _) = tokio::task::spawn_blocking(move || {
            http(http_addr, "POST", "/calls/t", &[("Content-Type", "application/sdp")], "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n")
        })
        .await
        .expect("POST");
        assert_eq!(code, 503);
        let (_, _, metrics) =
            tokio::task::spawn_blocking(move || http(http_addr, "GET", "/metrics", &[], ""))
                .await
                .expect("metrics");
        assert!(metrics.contains("ivr_webrtc_calls_active 1\n"), "{metrics}");
        // So is a SIP call: the limit counts both channels.
        if have_sipp() {
            let (dir, sip) = (config.parent().expect("dir").to_path_buf(), server.addr);
            let (ok, out) = tokio::task::spawn_blocking(move || {
                sipp(&dir, sip, "busy.xml", &["-m", "1", "-key", "rtpport", "9"])
            })
            .await
            .expect("sipp");
            assert!(ok, "503 expected for a SIP call beside the browser's:\n{out}");
        }

        // Hear the first prompt (600 ms: 30 frames), talking silence meanwhile.
        let started = Instant::now();
        let mut ts = 0u32;
        while caller.heard.lock().map_or(0, |h| h.len()) < 30
            && started.elapsed() < Duration::from_secs(15)
        {
            caller.silence(ts).await;
            ts = ts.wrapping_add(160);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        caller.key('1', ts.wrapping_add(1600)).await;
        let loc = location.clone();
        let first =
            tokio::task::spawn_blocking(move || transcript_until(http_addr, &loc, "You pressed one"))
                .await
                .expect("transcript");
        assert!(first.join("\n").contains("You pressed one"), "{first:?}");
        // A masked input: its keys are in the transcript without their digits.
        caller.key('3', ts.wrapping_add(3200)).await;
        let loc = location.clone();
        let pin =
            tokio::task::spawn_blocking(move || transcript_until(http_addr, &loc, "Enter your PIN"))
                .await
                .expect("transcript");
        assert!(pin.join("\n").contains("Enter your PIN"), "{pin:?}");
        for (i, k) in ['4', '7', '5', '9'].into_iter().enumerate() {
            caller.key(k, ts.wrapping_add(4800 + 1600 * i as u32)).await;
        }
        let loc = location.clone();
        let transcript =
            tokio::task::spawn_blocking(move || transcript_until(http_addr, &loc, "\"end\""))
                .await
                .expect("transcript");
        let loc = location.clone();
        let (code, _, _) =
            tokio::task::spawn_blocking(move || http(http_addr, "DELETE", &loc, &[], ""))
                .await
                .expect("DELETE");
        assert_eq!(code, 200);
        let heard = caller.heard.lock().map(|h| h.clone()).unwrap_or_default();
        let _ = caller.pc.close().await;
        (location, heard, transcript)
    });
    assert!(heard.len() >= 30, "{} packets heard", heard.len());
    assert!(heard.iter().all(|p| p.len() == 160), "20 ms PCMU frames");
    let loud = heard
        .iter()
        .flatten()
        .filter(|&&b| ivr_media::audio::Law::Ulaw.decode(b).unsigned_abs() > 4000)
        .count();
    assert!(
        loud > 1000,
        "the prompt's tone was heard: {loud} loud samples"
    );
    let text = transcript.join("\n");
    assert!(
        text.contains("\"text\":\"Hello from the test flow\""),
        "{text}"
    );
    assert!(text.contains("\"key\":\"1\""), "{text}");
    assert!(text.contains("\"text\":\"You pressed one\""), "{text}");
    // The 3 is a menu key (it may come as type-ahead that the menu takes on its way into the
    // masked input): it shows; only the PIN's four digits are hidden.
    assert!(text.contains("\"key\":\"3\""), "{text}");
    assert_eq!(text.matches("\"masked\":true").count(), 4, "{text}");
    for k in ['4', '7', '5', '9'] {
        assert!(!text.contains(&format!("\"key\":\"{k}\"")), "{text}");
    }
    assert!(text.contains("\"text\":\"Goodbye\""), "{text}");
    assert!(text.contains("\"type\":\"end\""), "{text}");
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}\n{}", server.log());
    assert_eq!(rows[0].0, "webrtc");
    assert_eq!(rows[0].1, "13900000009");
    assert!(rows[0].2.is_some(), "an outcome: {rows:?}");
    assert!(server.log().contains(&location["/calls/".len()..]));
}

/// Zero crossings in a frame of μ-law audio (a tone of F Hz has about F / 25 in 20 ms).
fn crossings(frame: &[u8], law: ivr_media::audio::Law) -> usize {
    let pcm: Vec<i16> = frame.iter().map(|&b| law.decode(b)).collect();
    pcm.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

const QUEUE_FLOW: &str = r##"
flow q {
    title    "browser queue test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto queue
}

transfer queue {
    queue     general
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

#[test]
fn a_browser_call_is_bridged_to_a_sip_agent() {
    if !have_sipp() {
        skip("sipp (Debian package sip-tester) is not installed: test skipped");
        return;
    }
    let config = deployment("webrtc-agent");
    let dir = config.parent().expect("dir").to_path_buf();
    fs::remove_file(dir.join("flows/t.flow")).expect("t");
    fs::write(dir.join("flows/q.flow"), QUEUE_FLOW).expect("flow");
    // Tones apart from the agent's 300 Hz voice.
    write_prompts(&dir, &AGENT_TEST_PROMPTS);
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n\"100\" = \"t\"\n",
        "[queues.general]\nring_timeout = \"5s\"\n\n[agents.2001]\nname = \"A\"\n\
         ha1  = \"c77c65cb80b98f26c9ce22ff8c3ae0ca\"\n\n[routes]\n",
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    let http_addr = server.http();

    // The agent's phone (SIPp) talks PCMA from an RTP endpoint of the test: a 300 Hz tone once
    // it hears the caller; it hangs up after 3 s.
    let agent_media = Endpoint::with(
        ivr_media::audio::Law::Alaw,
        8,
        42,
        vec![(100, Act::Voice(1000))],
    );
    let contact_port = free_udp_port();
    let contact = contact_port.to_string();
    let mut phone = Command::new("sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp/agent_talks.xml"))
        .arg(server.addr.to_string())
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &contact,
            "-m",
            "1",
        ])
        .args(["-key", "agentrtp", &agent_media.port.to_string()])
        .args(["-nostdin", "-timeout", "40", "-timeout_error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    let (ok, out) = try_register_agent(&dir, server.addr, "2001", "pw2001", contact_port);
    assert!(ok, "the agent could not register:\n{out}\n{}", server.log());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (heard, transcript) = rt.block_on(async {
        let (mut caller, location) = place_call(http_addr, "q", None).await;
        // Talk (a 1 kHz tone) for 6 s: the agent answers, talks, hangs up, the flow says bye.
        let voice: Vec<u8> = tone(1000.0, 20)
            .iter()
            .map(|&x| ivr_media::audio::Law::Ulaw.encode(x))
            .collect();
        let mut ts = 0u32;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            caller.frame(ts, voice.clone()).await;
            ts = ts.wrapping_add(160);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let loc = location.clone();
        let transcript =
            tokio::task::spawn_blocking(move || transcript_until(http_addr, &loc, "\"end\""))
                .await
                .expect("transcript");
        let heard = caller.heard.lock().map(|h| h.clone()).unwrap_or_default();
        let _ = caller.pc.close().await;
        (heard, transcript)
    });
    let phone_ok = {
        let started = Instant::now();
        loop {
            if let Ok(Some(s)) = phone.try_wait() {
                break s.success();
            }
            if started.elapsed() > Duration::from_secs(15) {
                let _ = phone.kill();
                let _ = phone.wait();
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let (heard_by_agent, _) = agent_media.finish();
    let text = transcript.join("\n");
    assert!(
        phone_ok,
        "the agent's call failed\n{text}\n{}",
        server.log()
    );
    // The agent heard the browser's 1 kHz voice, transcoded to PCMA.
    let from_caller = heard_by_agent
        .iter()
        .filter(|p| {
            p.pt == 8 && (36..=44).contains(&crossings(&p.payload, ivr_media::audio::Law::Alaw))
        })
        .count();
    assert!(
        from_caller >= 25,
        "{from_caller} frames of the caller's voice at the agent"
    );
    // The browser heard the agent's 300 Hz voice, transcoded to PCMU.
    let from_agent = heard
        .iter()
        .filter(|p| (10..=14).contains(&crossings(p, ivr_media::audio::Law::Ulaw)))
        .count();
    assert!(
        from_agent >= 25,
        "{from_agent} frames of the agent's voice in the browser"
    );
    assert!(text.contains("\"name\":\"queue\""), "{text}");
    assert!(
        text.contains("\"text\":\"bye\""),
        "the flow went on after the agent: {text}"
    );
    let rows = calls(&config, 1);
    assert_eq!(
        rows.first().map(|r| r.0.as_str()),
        Some("webrtc"),
        "{rows:?}"
    );
}

/// The command that runs `name --version`, if it does.
fn runs(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn the_phone_page_calls_from_headless_chromium() {
    let dir = repo().join("tests/browser");
    if !runs("node") {
        skip("node is not installed: test skipped");
        return;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .flat_map(|c| std::env::split_paths(&path).map(move |d| d.join(c)))
        .find(|c| c.is_file() && runs(&c.to_string_lossy()))
    else {
        skip("chromium is not installed: test skipped");
        return;
    };
    if !dir.join("node_modules/playwright-core").is_dir() {
        skip(
            "playwright-core is not installed (cd tests/browser && npm install --no-save \
             playwright-core): test skipped",
        );
        return;
    }
    let config = deployment("webrtc-chromium");
    let server = Server::start(&config, &[]);
    let url = format!("http://{}/", server.http());
    let out_path = config.parent().expect("dir").join("phone.out");
    let err_path = config.parent().expect("dir").join("phone.err");
    let mut child = Command::new("node")
        .current_dir(&dir)
        .arg("phone.mjs")
        .args([
            &url,
            "t",
            "Hello from the test flow",
            "1",
            "You pressed one",
        ])
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("out"))
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("node");
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "phone.mjs failed ({status:?}):\n{out}\n{err}\n{}",
        server.log()
    );
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("phone.mjs JSON");
    let lines: Vec<String> = result["transcript"]
        .as_array()
        .expect("transcript")
        .iter()
        .filter_map(|l| l.as_str().map(str::to_string))
        .collect();
    let first = lines
        .iter()
        .position(|l| l == "prompt: Hello from the test flow")
        .expect("the first prompt");
    let key = lines
        .iter()
        .position(|l| l == "key: key 1")
        .expect("the key");
    let next = lines
        .iter()
        .position(|l| l == "prompt: You pressed one")
        .expect("the next prompt");
    assert!(first < key && key < next, "{lines:?}");
    assert!(lines.iter().any(|l| l == "node: → one"), "{lines:?}");
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("end: call ended: ")),
        "{lines:?}"
    );
    assert!(
        result["packets"].as_u64().unwrap_or(0) > 10,
        "the browser received audio: {result}"
    );
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "webrtc");
    assert_eq!(rows[0].1, "webrtc");
}

const CONSOLE_FLOW: &str = r##"
flow q {
    title    "agent console test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto queue
}

transfer queue {
    queue     general
    music     hold
    attach    caller, call.channel
    max_wait  40s -> bye
    no_agents -> bye
    after     -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// A deployment whose flow `q` queues callers for agent 2001 (password `pw2001`).
fn console_deployment(name: &str) -> PathBuf {
    let config = deployment(name);
    let work = config.parent().expect("dir").to_path_buf();
    fs::remove_file(work.join("flows/t.flow")).expect("t");
    fs::write(work.join("flows/q.flow"), CONSOLE_FLOW).expect("flow");
    write_prompts(&work, &AGENT_TEST_PROMPTS);
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n\"100\" = \"t\"\n",
        "[queues.general]\nring_timeout = \"20s\"\nwrap_up = \"30s\"\n\n[agents.2001]\n\
         name = \"A\"\nha1  = \"c77c65cb80b98f26c9ce22ff8c3ae0ca\"\n\n[routes]\n\"100\" = \"q\"\n",
    );
    fs::write(&config, text).expect("config");
    config
}

/// Chromium, when it and playwright-core are installed (else a message: the test is skipped).
fn chromium_and_playwright() -> Option<PathBuf> {
    if !runs("node") {
        skip("node is not installed: test skipped");
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .flat_map(|c| std::env::split_paths(&path).map(move |d| d.join(c)))
        .find(|c| c.is_file() && runs(&c.to_string_lossy()))
    else {
        skip("chromium is not installed: test skipped");
        return None;
    };
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        skip(
            "playwright-core is not installed (cd tests/browser && npm install --no-save \
             playwright-core): test skipped",
        );
        return None;
    }
    Some(chromium)
}

/// tests/browser/agent.mjs in the background: agent 2001 takes the call of `caller` in the
/// console at `url`, and `who` hangs up.
fn console_page(
    chromium: &Path,
    url: &str,
    caller: &str,
    who: &str,
    out: &Path,
    err: &Path,
) -> std::process::Child {
    Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("agent.mjs")
        .args([url, "2001", "pw2001", caller, who])
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(out).expect("out"))
        .stderr(fs::File::create(err).expect("err"))
        .spawn()
        .expect("node")
}

/// Waits (bounded) for `child` to end: its status (none: killed).
fn wait_child(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if started.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the console has logged agent 2001 in: the ACD has it available and the page
/// shows it (agent.mjs prints `{"ready":true}`), so a call placed now rings a page that saw
/// "available" first.
fn wait_for_console(server: &Server, child: &mut std::process::Child, out: &Path, err: &Path) {
    let started = Instant::now();
    let ready = || fs::read_to_string(out).is_ok_and(|t| t.contains("\"ready\":true"));
    while agent_state_checked(server.http(), "2001") != "available" || !ready() {
        if started.elapsed() > Duration::from_secs(40) || child.try_wait().ok().flatten().is_some()
        {
            let status = wait_child(child, Duration::from_secs(1));
            panic!(
                "the console did not log in ({status:?}):\n{}\n{}\n{}",
                fs::read_to_string(out).unwrap_or_default(),
                fs::read_to_string(err).unwrap_or_default(),
                server.log()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last JSON line agent.mjs printed, once it succeeded.
fn console_result(
    status: Option<std::process::ExitStatus>,
    out: &Path,
    err: &Path,
    server: &Server,
) -> serde_json::Value {
    let text = fs::read_to_string(out).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "agent.mjs failed ({status:?}):\n{text}\n{}\n{}",
        fs::read_to_string(err).unwrap_or_default(),
        server.log()
    );
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("agent.mjs JSON")
}

#[test]
fn an_agent_takes_a_queued_call_in_the_console_in_headless_chromium() {
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = console_deployment("agent-console");
    let work = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let http_addr = server.http();

    // The API side: the page is served, a wrong password gets no token, the socket wants one.
    let (code, _, body) = http(http_addr, "GET", "/agent", &[], "");
    assert_eq!(code, 200);
    assert!(body.contains("Agent console"), "{body}");
    // HTTP Basic of 2001:nope and 2001:pw2001.
    let basic = |pw: &str| match pw {
        "nope" => "Basic MjAwMTpub3Bl".to_string(),
        _ => "Basic MjAwMTpwdzIwMDE=".to_string(),
    };
    let (code, _, _) = http(
        http_addr,
        "POST",
        "/agent/login",
        &[("Authorization", &basic("nope"))],
        "",
    );
    assert_eq!(code, 401);
    let (code, _, body) = http(
        http_addr,
        "POST",
        "/agent/login",
        &[("Authorization", &basic("pw2001"))],
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"token\""), "{body}");
    let (code, _, _) = http(
        http_addr,
        "GET",
        "/agent/ws?token=0123",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        "",
    );
    assert_eq!(code, 401);
    assert_eq!(agent_state_checked(http_addr, "2001"), "offline");

    let url = format!("http://{http_addr}/agent");
    let out_path = work.join("agent.out");
    let err_path = work.join("agent.err");
    let mut child = console_page(
        &chromium,
        &url,
        "13800000007",
        "agent",
        &out_path,
        &err_path,
    );
    wait_for_console(&server, &mut child, &out_path, &err_path);

    // A caller (a WebRTC client) goes into the queue and talks (a 1 kHz tone) until the
    // console has answered, talked and hung up.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let (status, heard, transcript) = rt.block_on(async {
        let (mut caller, location) = place_call(http_addr, "q", Some("13800000007")).await;
        let voice: Vec<u8> = tone(1000.0, 20)
            .iter()
            .map(|&x| ivr_media::audio::Law::Ulaw.encode(x))
            .collect();
        let mut ts = 0u32;
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if started.elapsed() > Duration::from_secs(80) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            caller.frame(ts, voice.clone()).await;
            ts = ts.wrapping_add(160);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let loc = location.clone();
        let transcript =
            tokio::task::spawn_blocking(move || transcript_until(http_addr, &loc, "\"end\""))
                .await
                .expect("transcript");
        let heard = caller.heard.lock().map(|h| h.clone()).unwrap_or_default();
        let _ = caller.pc.close().await;
        (status, heard, transcript)
    });
    let result = console_result(status, &out_path, &err_path, &server);
    let pop = &result["pop"];
    assert_eq!(pop["caller"], "13800000007", "{result}");
    assert_eq!(pop["queue"], "general", "{result}");
    assert!(
        pop["data"].as_str().is_some_and(|d| d.contains("webrtc")),
        "the attached channel: {result}"
    );
    assert!(
        pop["path"].as_str().is_some_and(|p| p.contains("hello")),
        "the path: {result}"
    );
    assert!(
        result["packets"].as_i64().unwrap_or(0) > 25,
        "the console heard the caller: {result}"
    );
    assert_eq!(result["ended"], "Ended (you hung up)", "{result}");
    let text = transcript.join("\n");
    assert!(
        text.contains("\"text\":\"bye\""),
        "the flow went on after the agent: {text}\n{}",
        server.log()
    );
    // The caller heard the agent's side: after the hold music, the console's microphone
    // (Chromium's fake device) through the bridge, not only the prompts' tones.
    let prompt_tones = |p: &Vec<u8>| {
        let c = crossings(p, ivr_media::audio::Law::Ulaw);
        (26..=30).contains(&c) || (34..=38).contains(&c) || (42..=46).contains(&c)
    };
    let from_agent = heard.iter().filter(|p| !prompt_tones(p)).count();
    assert!(
        from_agent >= 50,
        "{from_agent} frames of the agent's side at the caller ({} in all)",
        heard.len()
    );
    let rows = calls(&config, 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let db = work.join("ivr-data/ivr.db");
    let (agent, outcome): (Option<String>, Option<String>) = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        sqlx::query_as("SELECT agent, outcome FROM calls")
            .fetch_one(&pool)
            .await
            .expect("row")
    });
    assert_eq!(agent.as_deref(), Some("2001"), "{outcome:?}");
    // The console closed with the browser: the agent is offline again.
    let started = Instant::now();
    while agent_state_checked(http_addr, "2001") != "offline"
        && started.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(agent_state_checked(http_addr, "2001"), "offline");
}

mod console {
    //! The agent console's WebSocket, as the page uses it.

    use futures_util::{SinkExt, StreamExt};
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Opens the console's socket with `token`: the socket, or the HTTP status refusing it.
    pub async fn open(addr: SocketAddr, token: &str) -> Result<Socket, u16> {
        match tokio_tungstenite::connect_async(format!("ws://{addr}/agent/ws?token={token}")).await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn send(ws: &mut Socket, v: serde_json::Value) {
        ws.send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// The next event that `keep` takes (others are skipped), within 15 s; none when the
    /// socket closes first.
    pub async fn next(
        ws: &mut Socket,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let wait = async {
            while let Some(m) = ws.next().await {
                match m {
                    Ok(Message::Text(t)) => {
                        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                        if keep(&v) {
                            return Some(v);
                        }
                    }
                    Ok(Message::Close(_)) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
            None
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .expect("an event in time")
    }

    pub fn is(kind: &'static str) -> impl Fn(&serde_json::Value) -> bool {
        move |v| v["type"] == kind
    }

    pub fn state(s: &'static str) -> impl Fn(&serde_json::Value) -> bool {
        move |v| v["type"] == "state" && v["state"] == s
    }
}

/// A token for agent 2001.
fn console_login(http_addr: SocketAddr) -> String {
    let (code, _, body) = http(
        http_addr,
        "POST",
        "/agent/login",
        &[("Authorization", "Basic MjAwMTpwdzIwMDE=")],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["agent"], "2001");
    assert_eq!(v["name"], "A");
    v["token"].as_str().expect("token").to_string()
}

#[test]
fn the_console_socket_rings_with_the_screen_pop_and_hears_the_caller_go() {
    use console::{is, next, open, send, state};
    let config = console_deployment("agent-console-socket");
    let work = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let (http_addr, sip_addr) = (server.http(), server.addr);
    let (code, _, _) = http(
        http_addr,
        "POST",
        "/agent/login",
        &[("Authorization", "Basic MjAwMTpub3Bl")],
        "",
    );
    assert_eq!(code, 401, "a wrong password");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let blocking = |f: Box<dyn FnOnce() -> String + Send>| async move {
            tokio::task::spawn_blocking(f).await.expect("blocking")
        };
        let token = blocking(Box::new(move || console_login(http_addr))).await;
        assert_eq!(open(http_addr, "00").await.err(), Some(401));
        let mut ws = open(http_addr, &token).await.expect("the console's socket");
        next(&mut ws, state("available")).await.expect("available");
        // Away and back.
        send(
            &mut ws,
            serde_json::json!({"type": "state", "state": "away"}),
        )
        .await;
        next(&mut ws, state("away")).await.expect("away");
        send(
            &mut ws,
            serde_json::json!({"type": "state", "state": "available"}),
        )
        .await;
        next(&mut ws, state("available"))
            .await
            .expect("available again");
        send(
            &mut ws,
            serde_json::json!({"type": "state", "state": "lunch"}),
        )
        .await;
        next(&mut ws, is("error")).await.expect("an error");

        // A caller is queued: the console rings with the screen pop.
        // The ACD's "ringing" state and the call's offer travel on two tasks: either comes first.
        let (caller, location) = place_call(http_addr, "q", Some("13800000008")).await;
        let ringing_or_offer = |v: &serde_json::Value| is("offer")(v) || state("ringing")(v);
        let first = next(&mut ws, ringing_or_offer).await.expect("an offer");
        let second = next(&mut ws, ringing_or_offer).await.expect("ringing");
        let (offer, other) = if first["type"] == "offer" {
            (first, second)
        } else {
            (second, first)
        };
        assert_eq!(other["state"], "ringing", "{other}");
        let pop = &offer["pop"];
        assert_eq!(pop["caller"], "13800000008", "{offer}");
        assert_eq!(pop["queue"], "general", "{offer}");
        assert_eq!(pop["flow"], "q", "{offer}");
        assert!(
            pop["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x[0] == "call.channel" && x[1] == "webrtc")),
            "{offer}"
        );
        assert!(
            pop["path"]
                .as_array()
                .is_some_and(|p| p.iter().any(|n| n == "hello")),
            "{offer}"
        );
        // The caller hangs up while it rings: the offer is withdrawn.
        let loc = location.clone();
        let (code, _, _) =
            tokio::task::spawn_blocking(move || http(http_addr, "DELETE", &loc, &[], ""))
                .await
                .expect("DELETE");
        assert_eq!(code, 200);
        next(&mut ws, is("cancelled")).await.expect("cancelled");
        next(&mut ws, state("available"))
            .await
            .expect("available after");
        let _ = caller.pc.close().await;

        // Another console of the agent takes over; closing it logs the agent out.
        let token2 = blocking(Box::new(move || console_login(http_addr))).await;
        let mut ws2 = open(http_addr, &token2).await.expect("a second console");
        next(&mut ws, is("replaced")).await.expect("replaced");
        assert!(
            next(&mut ws, |_| true).await.is_none(),
            "the first one closes"
        );
        next(&mut ws2, state("available")).await.expect("available");
        // Logging out forgets the token.
        send(&mut ws2, serde_json::json!({"type": "logout"})).await;
        assert!(next(&mut ws2, |_| false).await.is_none(), "closed");
        assert_eq!(open(http_addr, &token2).await.err(), Some(401));
        let started = Instant::now();
        let mut s = String::new();
        while started.elapsed() < Duration::from_secs(5) {
            s = blocking(Box::new(move || agent_state_checked(http_addr, "2001"))).await;
            if s == "offline" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(s, "offline");

        // A SIP phone of the agent that registers takes over from the console.
        if !have_sipp() {
            skip("sipp is not installed: the SIP takeover is not tested");
            return;
        }
        let token3 = blocking(Box::new(move || console_login(http_addr))).await;
        let mut ws3 = open(http_addr, &token3).await.expect("a third console");
        next(&mut ws3, state("available")).await.expect("available");
        let (dir, sip) = (work.clone(), sip_addr);
        let (ok, out) = tokio::task::spawn_blocking(move || {
            try_register_agent(&dir, sip, "2001", "pw2001", free_udp_port())
        })
        .await
        .expect("sipp");
        assert!(ok, "the phone could not register:\n{out}");
        next(&mut ws3, is("replaced"))
            .await
            .expect("replaced by the phone");
        assert!(
            next(&mut ws3, |_| true).await.is_none(),
            "the console closes"
        );
        let s = blocking(Box::new(move || agent_state_checked(http_addr, "2001"))).await;
        assert_eq!(s, "available", "the phone's registration stays");
    });
}

#[test]
fn a_sip_caller_talks_with_the_console_until_the_caller_hangs_up() {
    if !have_sipp() {
        skip("sipp (Debian package sip-tester) is not installed: test skipped");
        return;
    }
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = console_deployment("agent-console-sip");
    let work = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let url = format!("http://{}/agent", server.http());
    let (out_path, err_path) = (work.join("agent.out"), work.join("agent.err"));
    let mut child = console_page(&chromium, &url, CALLER, "caller", &out_path, &err_path);
    wait_for_console(&server, &mut child, &out_path, &err_path);
    // The caller (SIPp, PCMU from an RTP endpoint of the test) talks all along and hangs up
    // after 9 s.
    let caller_media = Endpoint::start(vec![(100, Act::Voice(15_000))]);
    let rtp = caller_media.port.to_string();
    let (ok, out) = sipp(
        &work,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "9000", "-key", "rtpport", &rtp],
    );
    let status = wait_child(&mut child, Duration::from_secs(30));
    let (heard, _) = caller_media.finish();
    assert!(ok, "the caller's call failed:\n{out}\n{}", server.log());
    let result = console_result(status, &out_path, &err_path, &server);
    assert_eq!(result["pop"]["caller"], CALLER, "{result}");
    assert_eq!(result["ended"], "Ended (the caller hung up)", "{result}");
    assert!(
        result["packets"].as_i64().unwrap_or(0) > 100,
        "the console heard the caller: {result}"
    );
    // The caller heard the prompts (one stream) and then the agent (another, the browser's).
    let first = heard.first().map(|p| p.ssrc);
    let from_agent = heard.iter().filter(|p| Some(p.ssrc) != first).count();
    assert!(
        from_agent >= 100,
        "{from_agent} packets from the agent of {}",
        heard.len()
    );
    assert!(heard.iter().all(|p| p.pt == 0 || p.pt == 101));
    let db = work.join("ivr-data/ivr.db");
    let (agent, outcome): (Option<String>, Option<String>) = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let row: Option<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT agent, outcome FROM calls")
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            if let Some(r) = row {
                return r;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no call record"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(agent.as_deref(), Some("2001"));
    assert_eq!(outcome.as_deref(), Some("transferred"));
}

#[test]
fn the_console_inbox_plays_a_message_and_marks_it_done_in_headless_chromium() {
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = console_deployment("agent-inbox");
    let work = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // A message as a `record` node leaves it (tests/serve.rs leaves one through SIP): a WAV
    // file below the recordings folder and its row, for the queue `general` of agent 2001.
    let file = work.join("recordings/messages/m1.wav");
    fs::create_dir_all(file.parent().expect("folder")).expect("folder");
    ivr_media::audio::write_wav(&file, &tone(500.0, 3000)).expect("wav");
    let db = work.join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        sqlx::query(
            "INSERT INTO recordings (call_id, flow, node, save_table, caller, file, length_ms, \
             recorded_at, queue) VALUES ('c1', 'q', 'rec', 'messages', '13900000042', ?, 3000, \
             '2026-12-06 10:00:00', 'general')",
        )
        .bind(file.display().to_string())
        .execute(&pool)
        .await
        .expect("insert");
    });
    let out = work.join("inbox.out");
    let err = work.join("inbox.err");
    let mut child = Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("inbox.mjs")
        .args([
            &format!("http://{}/agent", server.http()),
            "2001",
            "pw2001",
            "13900000042",
        ])
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("out"))
        .stderr(fs::File::create(&err).expect("err"))
        .spawn()
        .expect("node");
    let status = wait_child(&mut child, Duration::from_secs(70));
    let v = console_result(status, &out, &err, &server);
    assert_eq!(v["first"]["class"], "unheard", "{v}");
    assert!(
        v["first"]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("general"),
        "{v}"
    );
    assert_eq!(v["first"]["count"], "(1 new)", "{v}");
    let duration = v["played"]["duration"].as_f64().unwrap_or(0.0);
    assert!((duration - 3.0).abs() < 0.2, "{v}");
    assert!(
        v["ranges"].as_array().is_some_and(|r| r
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.starts_with("bytes=")))),
        "the player asked for ranges: {v}"
    );
    // The page's work is in the database: heard and done by 2001.
    let (code, _, body) = http(
        server.http(),
        "GET",
        "/agent/messages?done=1",
        &[("Authorization", "Basic MjAwMTpwdzIwMDE=")],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(list["messages"][0]["heard_by"], "2001", "{list}");
    assert_eq!(list["messages"][0]["done_by"], "2001", "{list}");
}

/// The agent's console closes while a call rings it: the offer counts as `lost` (the console
/// went away), not as the agent declining.
#[test]
fn a_console_closed_while_it_rings_loses_the_offer() {
    use console::{is, next, open, state};
    let config = console_deployment("agent-console-lost");
    let server = Server::start(&config, &[]);
    let http_addr = server.http();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async move {
        let token = tokio::task::spawn_blocking(move || console_login(http_addr))
            .await
            .expect("login");
        let mut ws = open(http_addr, &token).await.expect("the console's socket");
        next(&mut ws, state("available")).await.expect("available");
        let (caller, location) = place_call(http_addr, "q", Some("13800000009")).await;
        next(&mut ws, is("offer")).await.expect("an offer");
        // The page goes away while it rings.
        drop(ws);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let loc = location.clone();
        let _ = tokio::task::spawn_blocking(move || http(http_addr, "DELETE", &loc, &[], ""))
            .await
            .expect("DELETE");
        let _ = caller.pc.close().await;
    });
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let events: Vec<(String, Option<String>, Option<String>)> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<(String, Option<String>, Option<String>)> =
                sqlx::query_as("SELECT event, agent, detail FROM queue_events ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
            if rows.iter().any(|r| r.0 == "lost" || r.0 == "declined")
                || started.elapsed() > Duration::from_secs(10)
            {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(
        events
            .iter()
            .any(|(e, a, _)| e == "lost" && a.as_deref() == Some("2001")),
        "{events:?}\n{}",
        server.log()
    );
    assert!(
        !events.iter().any(|(e, _, _)| e == "declined"),
        "{events:?}"
    );
}

#[test]
fn an_agent_transfers_a_call_to_a_queue_with_a_note_in_the_console() {
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = console_deployment("agent-transfer");
    let work = config.parent().expect("dir").to_path_buf();
    // A billing queue whose only agent is 2002 (password pw2002).
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n",
        "[queues.billing]\nskills = [\"billing\"]\nring_timeout = \"20s\"\nwrap_up = \"30s\"\n\n\
         [agents.2002]\nname = \"B\"\nskills = [\"billing\"]\n\
         ha1  = \"cad561eaa6db436ad7848520ac0e9ba3\"\n\n[routes]\n",
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    let http_addr = server.http();
    let url = format!("http://{http_addr}/agent");
    let (out_path, err_path) = (work.join("transfer.out"), work.join("transfer.err"));
    let mut child = Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("agent_transfer.mjs")
        .args([url.as_str(), "13800000008"])
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("out"))
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("node");
    wait_for_console(&server, &mut child, &out_path, &err_path);
    // The caller (a WebRTC client) talks until the second agent has hung up.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let status = rt.block_on(async {
        let (mut caller, _location) = place_call(http_addr, "q", Some("13800000008")).await;
        let voice: Vec<u8> = tone(1000.0, 20)
            .iter()
            .map(|&x| ivr_media::audio::Law::Ulaw.encode(x))
            .collect();
        let mut ts = 0u32;
        let started = Instant::now();
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break Some(s);
            }
            if started.elapsed() > Duration::from_secs(100) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            caller.frame(ts, voice.clone()).await;
            ts = ts.wrapping_add(160);
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = caller.pc.close().await;
        status
    });
    let result = console_result(status, &out_path, &err_path, &server);
    assert!(
        result["refused"]
            .as_str()
            .is_some_and(|r| r.contains("there is no queue `nowhere`")),
        "{result}"
    );
    assert_eq!(result["still"], "Connected", "{result}");
    assert_eq!(
        result["transferred"], "Transferred to queue.billing",
        "{result}"
    );
    let pop = &result["pop"];
    assert_eq!(pop["caller"], "13800000008", "{result}");
    assert_eq!(pop["queue"], "billing", "{result}");
    assert_eq!(pop["transferred_by"], "2001", "{result}");
    assert_eq!(pop["note"], "wants a refund of order 42", "{result}");
    assert!(
        pop["data"].as_str().is_some_and(|d| d.contains("webrtc")),
        "the first screen pop's data travels: {result}"
    );
    // The first agent wraps up after passing the caller on.
    assert_eq!(result["stateA"], "wrap-up", "{result}");
}

/// A SIPp phone of agent `id` (password `pwID`) that answers and talks (its RTP an endpoint
/// sending a tone from `ssrc`) until the IVR hangs up; registered.
fn sip_phone(work: &Path, server: &Server, id: &str, ssrc: u32) -> (std::process::Child, Endpoint) {
    let media = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        ssrc,
        vec![(0, Act::Voice(30_000))],
    );
    let port = free_udp_port();
    let phone = Command::new("sipp")
        .current_dir(work)
        .arg("-sf")
        .arg(repo().join("tests/sipp/answers_until_bye.xml"))
        .arg(server.addr.to_string())
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "60", "-timeout_error"])
        .args(["-key", "agentrtp", &media.port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp");
    let (ok, out) = try_register_agent(work, server.addr, id, &format!("pw{id}"), port);
    assert!(ok, "{id} could not register:\n{out}");
    (phone, media)
}

/// tests/browser/consult.mjs with a SIPp caller (PCMU from an RTP endpoint of the test, SSRC 7)
/// and agent 2002 on a SIPp phone (its RTP an endpoint of SSRC 42): agent 2001 takes the call
/// in the console (`phone`: on a SIPp phone of its own, SSRC 41, the console following it;
/// else with the browser's audio), consults 2002, and completes or cancels (`mode`). What the
/// page showed, and the packets the caller heard in order.
fn consult_in_console(
    name: &str,
    mode: &str,
    phone: bool,
) -> Option<(serde_json::Value, Vec<Pkt>)> {
    let chromium = chromium_and_playwright()?;
    let config = console_deployment(name);
    let work = config.parent().expect("dir").to_path_buf();
    let text = fs::read_to_string(&config).expect("config");
    let text = text.replace(
        "[routes]\n",
        "[agents.2002]\nname = \"B\"\nha1  = \"cad561eaa6db436ad7848520ac0e9ba3\"\n\n[routes]\n",
    );
    fs::write(&config, text).expect("config");
    let server = Server::start(&config, &[]);
    let url = format!("http://{}/agent", server.http());
    let (out_path, err_path) = (work.join("consult.out"), work.join("consult.err"));
    let audio = if phone { "phone" } else { "browser" };
    let mut child = Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("consult.mjs")
        .args([url.as_str(), CALLER, "2002", mode, audio])
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("out"))
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("node");
    // With a phone, 2001's SIPp phone registers once the console is open.
    let first = phone.then(|| {
        let started = Instant::now();
        while !fs::read_to_string(&out_path).is_ok_and(|t| t.contains("\"ready\":true")) {
            assert!(
                started.elapsed() < Duration::from_secs(40)
                    && child.try_wait().ok().flatten().is_none(),
                "the console did not log in:\n{}\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default(),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        sip_phone(&work, &server, "2001", 41)
    });
    wait_for_console(&server, &mut child, &out_path, &err_path);
    let (mut second, second_media) = sip_phone(&work, &server, "2002", 42);
    // The caller talks all along and hangs up after 16 s.
    let caller_media = Endpoint::start(vec![(100, Act::Voice(20_000))]);
    let rtp = caller_media.port.to_string();
    let (ok, out) = sipp(
        &work,
        server.addr,
        "call_bye.xml",
        &["-m", "1", "-d", "16000", "-key", "rtpport", &rtp],
    );
    let status = wait_child(&mut child, Duration::from_secs(40));
    let phone_ok = wait_child(&mut second, Duration::from_secs(10)).is_some_and(|s| s.success());
    let first_ok = first.map(|(mut p, media)| {
        drop(media);
        wait_child(&mut p, Duration::from_secs(10)).is_some_and(|s| s.success())
    });
    let (heard, _) = caller_media.finish();
    drop(second_media);
    assert!(ok, "the caller's call failed:\n{out}\n{}", server.log());
    let result = console_result(status, &out_path, &err_path, &server);
    assert!(phone_ok, "2002's phone failed\n{}", server.log());
    assert_ne!(
        first_ok,
        Some(false),
        "2001's phone failed\n{}",
        server.log()
    );
    let connected = if phone {
        "Connected (on your phone)"
    } else {
        "Connected"
    };
    assert_eq!(result["connected"], connected, "{result}");
    assert_eq!(
        result["consulting"], "Talking with 2002 (the caller holds)",
        "{result}"
    );
    assert_eq!(result["completeShown"], true, "{result}");
    Some((result, heard))
}

/// The streams the caller heard: the prompts' (the first packet's SSRC) and agent 2001's (the
/// browser's: the SSRC heard most that is neither the prompts' nor 2002's 42).
fn streams(heard: &[Pkt]) -> (u32, u32) {
    let prompts = heard
        .first()
        .map(|p| p.ssrc)
        .expect("the caller heard something");
    let mut counts = std::collections::HashMap::new();
    for p in heard.iter().filter(|p| p.ssrc != prompts && p.ssrc != 42) {
        *counts.entry(p.ssrc).or_insert(0usize) += 1;
    }
    let browser = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(s, _)| s)
        .expect("the caller heard agent 2001");
    (prompts, browser)
}

/// What the caller heard when 2001 completed its consultation of 2002: 2001, then the hold
/// music while they talked, then 2002 (RTP of SSRC 42), never 2001 again.
fn assert_completed(result: &serde_json::Value, heard: &[Pkt]) {
    assert_eq!(result["result"], "Transferred to 2002", "{result}");
    let (prompts, first) = streams(heard);
    let first_42 = heard.iter().position(|p| p.ssrc == 42).expect("2002 heard");
    let last_first = heard.iter().rposition(|p| p.ssrc == first).expect("2001");
    assert!(last_first < first_42, "2001 after 2002 reached the caller");
    assert!(
        heard[..last_first]
            .iter()
            .filter(|p| p.ssrc == first)
            .count()
            >= 50,
        "the caller talked with 2001 first"
    );
    let hold = heard[last_first..first_42]
        .iter()
        .filter(|p| p.ssrc == prompts)
        .count();
    assert!(
        hold >= 25,
        "{hold} packets of hold music during the consultation"
    );
    let from_second = heard[first_42..].iter().filter(|p| p.ssrc == 42).count();
    assert!(from_second >= 100, "{from_second} packets from 2002");
}

/// Agent 2001 takes the call in the console with the browser's audio, consults agent 2002
/// (SIPp phone) and completes.
#[test]
fn a_console_consultation_completed_hands_the_sip_caller_to_the_second_agent() {
    if !have_sipp() {
        skip("sipp (Debian package sip-tester) is not installed: test skipped");
        return;
    }
    let Some((result, heard)) = consult_in_console("consult-console-complete", "complete", false)
    else {
        return;
    };
    assert_completed(&result, &heard);
}

/// Agent 2001 takes the call on its SIP phone (SIPp, SSRC 41), the console following it,
/// consults agent 2002 (SIPp phone) there and completes: the caller's RTP comes from 2002.
#[test]
fn a_console_with_a_sip_phone_consults_and_completes() {
    if !have_sipp() {
        skip("sipp (Debian package sip-tester) is not installed: test skipped");
        return;
    }
    let Some((result, heard)) = consult_in_console("consult-phone-complete", "complete", true)
    else {
        return;
    };
    assert_eq!(streams(&heard).1, 41, "2001's phone talked first");
    assert_completed(&result, &heard);
}

/// Agent 2001 takes the call on its SIP phone (SIPp, SSRC 41), the console following it,
/// consults agent 2002 (SIPp phone) and cancels: the caller heard 2001, the hold music, then
/// 2001 again; 2002 never reached it.
#[test]
fn a_console_consultation_cancelled_brings_the_sip_caller_back_to_the_first_agent() {
    if !have_sipp() {
        skip("sipp (Debian package sip-tester) is not installed: test skipped");
        return;
    }
    let Some((result, heard)) = consult_in_console("consult-console-cancel", "cancel", true) else {
        return;
    };
    assert_eq!(
        result["result"], "Back with the caller / Connected (on your phone)",
        "{result}"
    );
    assert!(
        heard.iter().all(|p| p.ssrc != 42),
        "2002 reached the caller"
    );
    let (prompts, browser) = streams(&heard);
    assert_eq!(browser, 41, "2001's phone talked first");
    let first_browser = heard.iter().position(|p| p.ssrc == browser).expect("2001");
    let last_hold = heard
        .iter()
        .rposition(|p| p.ssrc == prompts)
        .expect("prompts");
    assert!(
        last_hold > first_browser,
        "no hold music after 2001 answered"
    );
    let hold = heard[first_browser..=last_hold]
        .iter()
        .filter(|p| p.ssrc == prompts)
        .count();
    assert!(hold >= 25, "{hold} packets of hold music");
    let again = heard[last_hold..]
        .iter()
        .filter(|p| p.ssrc == browser)
        .count();
    assert!(again >= 100, "{again} packets from 2001 after the cancel");
}

/// The supervisors' page: refused without a password; with HTTP Basic it takes a session,
/// searches the recordings by part of a number (a caller written as HTML shows as text and
/// runs nothing), plays one in the page and seeks into it (range requests); the search and
/// the playback are rows of `supervisor_events`.
#[test]
fn a_supervisor_searches_and_plays_a_recording_in_headless_chromium() {
    use md5::{Digest, Md5};
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = console_deployment("supervisor-page");
    let ha1: String = Md5::digest(b"3001:ivr:pw3001")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let text = fs::read_to_string(&config).expect("config");
    fs::write(
        &config,
        format!("{text}\n[supervisors.3001]\nname = \"Li <b>Zhuguan</b>\"\nha1 = \"{ha1}\"\n"),
    )
    .expect("config");
    let work = config.parent().expect("dir").to_path_buf();
    // The server and the browser in UTC+8 (Asia/Shanghai has no summer time): recordings are
    // kept in the server's local time, searched by its local day and shown as stored.
    let server = Server::start_env(&config, &[("TZ", "Asia/Shanghai")], &[]);
    let today = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    let yesterday = today.pred_opt().expect("yesterday");
    let day = today.format("%Y-%m-%d").to_string();
    let at = |d: chrono::NaiveDate, t: &str| format!("{} {t}", d.format("%Y-%m-%d"));
    let file = work.join(format!("recordings/calls/{day}/c1.wav"));
    fs::create_dir_all(file.parent().expect("folder")).expect("folder");
    ivr_media::audio::write_wav(&file, &tone(500.0, 3000)).expect("wav");
    let db = work.join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        for (call, caller, file, at) in [
            (
                "c1",
                "13900000042",
                Some(file.display().to_string()),
                at(today, "10:00:00"),
            ),
            (
                "c2",
                "<img src=x onerror=window.pwned=true>0042",
                None,
                at(today, "20:00:00"),
            ),
            ("c3", "13811111111", None, at(today, "12:00:00")),
            ("c4", "13900000042", None, at(yesterday, "20:00:00")),
        ] {
            sqlx::query(
                "INSERT INTO recordings (call_id, flow, node, save_table, caller, file, length_ms, \
                 recorded_at, queue, kind, agent) VALUES (?, 'q', 'n', 'calls', ?, ?, 3000, ?, \
                 'general', 'call', '2001')",
            )
            .bind(call)
            .bind(caller)
            .bind(file)
            .bind(at)
            .execute(&pool)
            .await
            .expect("insert");
        }
        pool.close().await;
    });
    let out = work.join("supervisor.out");
    let err = work.join("supervisor.err");
    let mut child = Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("supervisor.mjs")
        .args([
            &format!("http://{}/supervisor", server.http()),
            "3001",
            "pw3001",
            "0042",
            &day,
        ])
        .env("CHROMIUM", &chromium)
        .env("PAGE_TZ", "Asia/Shanghai")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("out"))
        .stderr(fs::File::create(&err).expect("err"))
        .spawn()
        .expect("node");
    let status = wait_child(&mut child, Duration::from_secs(70));
    let v = console_result(status, &out, &err, &server);
    assert_eq!(v["refused"], 401, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["who"], "Li <b>Zhuguan</b> (3001)", "names are text: {v}");
    assert_eq!(v["cookie"]["httpOnly"], true, "{v}");
    assert_eq!(v["cookie"]["sameSite"], "Strict", "{v}");
    assert!(
        v["polled"]
            .as_str()
            .unwrap_or_default()
            .starts_with("updated"),
        "the live calls were polled: {v}"
    );
    let listed = v["listed"].as_array().expect("rows");
    assert_eq!(
        listed.len(),
        2,
        "c1 and c2 hold 0042 today (c4 is yesterday's): {v}"
    );
    assert_eq!(listed[0][0], at(today, "20:00:00"), "as stored: {v}");
    assert_eq!(listed[1][0], at(today, "10:00:00"), "as stored: {v}");
    assert!(
        v["playing"]
            .as_str()
            .is_some_and(|p| p.contains(&at(today, "10:00:00"))),
        "{v}"
    );
    assert_eq!(
        listed[0][2], "<img src=x onerror=window.pwned=true>0042",
        "{v}"
    );
    assert_eq!(v["injected"]["pwned"], false, "{v}");
    assert_eq!(v["injected"]["images"], 0, "{v}");
    let duration = v["played"]["duration"].as_f64().unwrap_or(0.0);
    assert!((duration - 3.0).abs() < 0.2, "{v}");
    assert!(
        v["ranges"].as_array().is_some_and(|r| r
            .iter()
            .any(|x| x.as_str().is_some_and(|s| s.starts_with("bytes=")))),
        "the player asked for ranges: {v}"
    );
    assert_eq!(v["visibleActionButtons"], 0, "{v}");
    // The page's work is in the database.
    let rows: Vec<(String, String, Option<String>)> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let rows =
            sqlx::query_as("SELECT supervisor, action, call_id FROM supervisor_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("events");
        pool.close().await;
        rows
    });
    let has = |action: &str, call: Option<&str>| {
        rows.iter()
            .any(|r| r.0 == "3001" && r.1 == action && r.2.as_deref() == call)
    };
    assert!(
        has("login", None) && has("search", None) && has("play", Some("c1")),
        "{rows:?}"
    );
}
