//! End-to-end tests of `[server] tls` and `[server] https`: `ivr serve` with a self-signed
//! certificate made by the `openssl` command line, a call placed over SIP-over-TLS by a small
//! rustls client here (SIPp 3.6 as packaged has no TLS transport), `/status` fetched over
//! HTTPS, and the attacks a TLS listener meets: a client that never finishes its handshake, and
//! bytes that are no ClientHello. Also SRTP with SDES keys (`[server] srtp`): a call offering
//! `RTP/SAVP` with an `a=crypto` key, over TLS and over UDP, hears its prompts protected with
//! the answer's key (decrypted here with `rtc-srtp`) and its protected RFC 4733 key moves the
//! flow; a forged packet is dropped and counted; the policies refuse with 488.
//!
//! Every server listens on 127.0.0.1 only; every wait is bounded.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::*;

const FLOW: &str = r##"
flow t {
    title    "tls test"
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
    key 1 -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// A self-signed certificate for 127.0.0.1 in `dir/tls/` (`cert.pem`, `key.pem`), made with
/// the `openssl` command line; `None` (after [`skip`]) without it.
fn make_cert(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let tls = dir.join("tls");
    fs::create_dir_all(&tls).expect("dir");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=ivr.test", "-addext"])
        .arg("subjectAltName=IP:127.0.0.1,DNS:localhost")
        // An end-entity certificate (webpki refuses a CA certificate as the server's own).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => Some((cert, key)),
        Ok(o) => panic!("openssl req failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            skip(&format!("no openssl command ({e}): test skipped"));
            None
        }
    }
}

/// A deployment of [`FLOW`] with SIP over TLS on a free port and, when `https`, HTTPS.
fn deployment(name: &str, https: bool) -> Option<PathBuf> {
    deployment_srtp(name, https, None)
}

/// [`deployment`] with `[server] srtp = "srtp"` when given.
fn deployment_srtp(name: &str, https: bool, srtp: Option<&str>) -> Option<PathBuf> {
    let dir = temp_dir(name);
    make_cert(&dir)?;
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 400.0, 300),
            ("options", "options", 600.0, 600),
            ("bye", "bye", 1200.0, 200),
        ],
    );
    let head = config_head(rtp_range(10)).replace(
        "max_calls = 100\n",
        &format!(
            "max_calls = 100\n\
             tls = {{ sip = \"127.0.0.1:0\", cert = \"tls/cert.pem\", key = \"tls/key.pem\" }}\n{}",
            if https {
                "https = { cert = \"tls/cert.pem\", key = \"tls/key.pem\" }\n".to_string()
            } else {
                String::new()
            } + &srtp.map_or(String::new(), |s| format!("srtp = \"{s}\"\n"))
        ),
    );
    fs::write(
        dir.join("ivr.toml"),
        format!("{head}[routes]\ndefault = \"t\"\n"),
    )
    .expect("config");
    Some(dir.join("ivr.toml"))
}

/// The address after `word` in the server's start-up line (`tls:`, `HTTPS on `).
fn listed(server: &Server, word: &str) -> SocketAddr {
    let out = fs::read_to_string(&server.out).unwrap_or_default();
    let at = out.find(word).unwrap_or_else(|| panic!("{word} in {out}")) + word.len();
    out[at..]
        .split([',', ';', ' '])
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("address after {word} in {out}"))
}

/// A rustls client that trusts only the test's certificate.
fn client_config(cert: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("pem") {
        roots.add(c.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr`, handshake done (timed).
fn connect_tls(addr: SocketAddr, cert: &Path) -> (Tls, Duration) {
    let started = Instant::now();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(client_config(cert), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS handshake with ivr");
    }
    (tls, started.elapsed())
}

/// Reads SIP messages from a stream (framed by Content-Length).
struct SipReader {
    buf: Vec<u8>,
}

impl SipReader {
    /// The next message, or `None` when the peer closed or 10 s passed.
    fn next(&mut self, s: &mut impl Read) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        let k = k.trim();
                        (k.eq_ignore_ascii_case("content-length") || k == "l")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&msg).to_string());
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return None;
                }
                Err(_) => return None,
            }
        }
    }
}

/// The value of header `name` of a SIP message.
fn sip_header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// An INVITE from `local` with an offer of `proto` (and the SDP lines `extra`) on port `rtp`.
fn invite(
    local: SocketAddr,
    server: SocketAddr,
    rtp: u16,
    proto: &str,
    extra: &str,
    transport: &str,
) -> String {
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp} {proto} 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n{extra}a=sendrecv\r\n"
    );
    format!(
        "INVITE sip:100@{server} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-tls-1-{rtp};rport\r\n\
         From: <sip:{CALLER}@127.0.0.1>;tag=tls1\r\nTo: <sip:100@{server}>\r\n\
         Call-ID: tls-call-{rtp}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:{CALLER}@{local};transport={}>\r\nMax-Forwards: 70\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        transport.to_ascii_lowercase(),
        sdp.len()
    )
}

/// A request within the dialog of the 200 `ok`.
fn in_dialog(method: &str, cseq: u32, ok: &str, local: SocketAddr, body: &str) -> String {
    let contact = sip_header(ok, "Contact").expect("Contact");
    let uri = contact
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or(contact);
    let mut extra = String::new();
    if !body.is_empty() {
        extra.push_str("Content-Type: application/dtmf-relay\r\n");
    }
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK-tls-{cseq};rport\r\n\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
         {extra}Content-Length: {}\r\n\r\n{body}",
        sip_header(ok, "From").expect("From"),
        sip_header(ok, "To").expect("To"),
        sip_header(ok, "Call-ID").expect("Call-ID"),
        body.len()
    )
}

/// The response to `req` (the `Via`, `From`, `To`, `Call-ID`, `CSeq` of the request).
fn response_to(req: &str, code: &str) -> String {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for h in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for l in req.lines() {
            if let Some((k, _)) = l.split_once(':')
                && k.trim().eq_ignore_ascii_case(h)
            {
                out.push_str(l.trim_end());
                out.push_str("\r\n");
            }
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

fn metric(server: SocketAddr, cert: &Path, https: bool, line: &str) -> Option<u64> {
    let body = if https {
        https_get(server, cert, "/metrics").1
    } else {
        http_get(server, "/metrics").2
    };
    body.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
}

/// `GET path` over HTTPS: the status code and the body.
fn https_get(addr: SocketAddr, cert: &Path, path: &str) -> (u16, String) {
    let (mut tls, _) = connect_tls(addr, cert);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = Vec::new();
    // The server closes after the response (close_notify or not).
    let _ = tls.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_string();
    (code, body)
}

/// A call over SIP-over-TLS: INVITE, 200 with a `sips:` Contact on the TLS port, ACK, key 1
/// by INFO, and the flow's BYE back on the same TLS connection with a TLS Via; the call is
/// recorded. Also how long the handshake took (printed).
#[test]
fn a_call_over_tls_is_answered_and_ended_on_the_same_connection() {
    let Some(config) = deployment("tls-call", false) else {
        return;
    };
    let cert = config.parent().expect("dir").join("tls/cert.pem");
    let server = Server::start(&config, &[]);
    let tls_addr = listed(&server, "tls:");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    rtp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let (mut tls, handshake) = connect_tls(tls_addr, &cert);
    eprintln!("TLS handshake (connect included): {handshake:?}");
    let local = tls.sock.local_addr().expect("local");
    let mut reader = SipReader { buf: Vec::new() };
    tls.write_all(invite(local, tls_addr, rtp_port, "RTP/AVP", "", "TLS").as_bytes())
        .expect("INVITE");
    let ok = loop {
        let m = reader
            .next(&mut tls)
            .unwrap_or_else(|| panic!("no final response\n{}", server.log()));
        if m.starts_with("SIP/2.0 1") {
            continue;
        }
        break m;
    };
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", server.log());
    let contact = sip_header(&ok, "Contact").expect("Contact");
    assert!(
        contact.contains(&format!("sips:ivr@127.0.0.1:{}", tls_addr.port())),
        "Contact of a TLS call: {contact}"
    );
    tls.write_all(in_dialog("ACK", 1, &ok, local, "").as_bytes())
        .expect("ACK");
    // The caller hears the flow (its RTP comes to our SDP port).
    let mut buf = [0u8; 1500];
    let heard = (0..25).any(|_| rtp.recv_from(&mut buf).is_ok());
    assert!(heard, "no RTP for a TLS call\n{}", server.log());
    tls.write_all(in_dialog("INFO", 2, &ok, local, "Signal=1\r\nDuration=160\r\n").as_bytes())
        .expect("INFO");
    let mut bye = None;
    while let Some(m) = reader.next(&mut tls) {
        if m.starts_with("BYE ") {
            bye = Some(m);
            break;
        }
    }
    let bye = bye.unwrap_or_else(|| panic!("no BYE over TLS\n{}", server.log()));
    let via = sip_header(&bye, "Via").expect("Via");
    assert!(
        via.starts_with(&format!("SIP/2.0/TLS 127.0.0.1:{}", tls_addr.port())),
        "Via of our BYE: {via}"
    );
    tls.write_all(response_to(&bye, "200 OK").as_bytes())
        .expect("200");
    // Recorded, with the key taken.
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let visits: Vec<(String, Option<String>)> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let v: Vec<(String, Option<String>)> =
                sqlx::query_as("SELECT node, exit FROM node_visits ORDER BY call_id, seq")
                    .fetch_all(&pool)
                    .await
                    .expect("visits");
            if v.iter().any(|(n, _)| n == "bye") || started.elapsed() > Duration::from_secs(8) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(
        visits.contains(&("choose".to_string(), Some("key 1".to_string()))),
        "{visits:?}"
    );
    assert_eq!(
        metric(
            server.http(),
            &cert,
            false,
            "ivr_sip_tls_handshakes_total{outcome=\"done\"}"
        ),
        Some(1)
    );
    // The handshake's cost (connect included), for docs/security.md: the median of 20.
    let mut times: Vec<Duration> = (0..20).map(|_| connect_tls(tls_addr, &cert).1).collect();
    times.sort();
    eprintln!(
        "TLS handshakes (connect included): median {:?}, max {:?}",
        times[10], times[19]
    );
}

/// The attacks a TLS listener meets: a client that connects and never finishes its handshake
/// is closed after the handshake timeout (10 s); bytes that are no ClientHello close the
/// connection at once; a TLS client is served all along.
#[test]
fn a_handshake_that_never_ends_is_cut_and_garbage_is_refused() {
    let Some(config) = deployment("tls-attack", false) else {
        return;
    };
    let cert = config.parent().expect("dir").join("tls/cert.pem");
    let server = Server::start(&config, &[]);
    let tls_addr = listed(&server, "tls:");
    // Silent: connected, nothing sent.
    let mut silent = TcpStream::connect(tls_addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    // Half a ClientHello: a TLS record header announcing 512 bytes, and 5 of them.
    let mut half = TcpStream::connect(tls_addr).expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .expect("half");
    half.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let started = Instant::now();
    // Garbage: plain SIP on the TLS port.
    let mut garbage = TcpStream::connect(tls_addr).expect("connect");
    garbage
        .write_all(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n")
        .expect("garbage");
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "garbage not refused at once: {:?}",
        started.elapsed()
    );
    assert!(
        !String::from_utf8_lossy(&reply).contains("SIP/2.0"),
        "answered as SIP: {reply:?}"
    );
    // A real client meanwhile.
    let (tls, _) = connect_tls(tls_addr, &cert);
    drop(tls);
    for (name, s) in [("silent", &mut silent), ("half", &mut half)] {
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        let after = started.elapsed();
        assert!(
            after >= Duration::from_secs(9),
            "{name}: closed before the handshake timeout, after {after:?} ({r:?})"
        );
        assert!(
            after < Duration::from_secs(13),
            "{name} not closed by the handshake timeout: {after:?} ({r:?})"
        );
    }
    // Both were cut; the second's count may land just after its close: wait for it (2 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    let timeouts = loop {
        let n = metric(
            server.http(),
            &cert,
            false,
            "ivr_sip_tls_handshakes_total{outcome=\"timeout\"}",
        );
        if n == Some(2) || Instant::now() >= deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(timeouts, Some(2));
    assert_eq!(
        metric(
            server.http(),
            &cert,
            false,
            "ivr_sip_tls_handshakes_total{outcome=\"failed\"}"
        ),
        Some(1)
    );
    assert_eq!(
        metric(server.http(), &cert, false, "ivr_sip_tcp_connections "),
        Some(0),
        "every slot given back"
    );
}

/// `[server] https`: `/status` over TLS; plain HTTP on that port gets no HTTP answer and is
/// counted.
#[test]
fn https_serves_status_over_tls_and_refuses_plain_http() {
    let Some(config) = deployment("https", true) else {
        return;
    };
    let cert = config.parent().expect("dir").join("tls/cert.pem");
    let server = Server::start(&config, &[]);
    let addr = listed(&server, "HTTPS on ");
    let (code, body) = https_get(addr, &cert, "/status");
    assert_eq!(code, 200, "{body}");
    let mut plain = TcpStream::connect(addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain
        .write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("plain");
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !reply.starts_with(b"HTTP/"),
        "plain HTTP answered: {}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(
        metric(addr, &cert, true, "ivr_http_tls_handshakes_failed_total"),
        Some(1)
    );
}

/// An SDES key line (RFC 4568).
const CRYPTO: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";

/// The final response to an INVITE sent over UDP from `udp`.
fn udp_final(udp: &UdpSocket, server: &Server, offer: &str) -> String {
    udp.send_to(offer.as_bytes(), server.addr).expect("send");
    let mut buf = [0u8; 4096];
    while let Ok((n, _)) = udp.recv_from(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        if !m.starts_with("SIP/2.0 1") {
            return m;
        }
    }
    panic!("no final response\n{}", server.log())
}

/// The policies: `none` (the default) refuses `RTP/SAVP` with 488, over TLS like over UDP,
/// rather than answering it as plain RTP; `required` refuses a plain `RTP/AVP` offer (and an
/// INVITE without an offer) with 488.
#[test]
fn an_srtp_offer_is_refused_with_488() {
    let Some(config) = deployment("savp", false) else {
        return;
    };
    let cert = config.parent().expect("dir").join("tls/cert.pem");
    let server = Server::start(&config, &[]);
    let tls_addr = listed(&server, "tls:");
    let (mut tls, _) = connect_tls(tls_addr, &cert);
    let local = tls.sock.local_addr().expect("local");
    let offer = invite(local, tls_addr, 4000, "RTP/SAVP", CRYPTO, "TLS");
    tls.write_all(offer.as_bytes()).expect("INVITE");
    let mut reader = SipReader { buf: Vec::new() };
    let last = loop {
        let m = reader
            .next(&mut tls)
            .unwrap_or_else(|| panic!("no final response\n{}", server.log()));
        if !m.starts_with("SIP/2.0 1") {
            break m;
        }
    };
    assert!(last.starts_with("SIP/2.0 488"), "{last}");
    // Over UDP too.
    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = udp.local_addr().expect("addr");
    let offer = invite(local, server.addr, 4002, "RTP/SAVP", CRYPTO, "UDP");
    let final_code = udp_final(&udp, &server, &offer);
    assert!(
        final_code.starts_with("SIP/2.0 488"),
        "{final_code}\n{}",
        server.log()
    );
    drop(server);
    // `required`: a plain offer is refused.
    let Some(config) = deployment_srtp("savp-required", false, Some("required")) else {
        return;
    };
    let server = Server::start(&config, &[]);
    let offer = invite(local, server.addr, 4004, "RTP/AVP", "", "UDP");
    let final_code = udp_final(&udp, &server, &offer);
    assert!(
        final_code.starts_with("SIP/2.0 488"),
        "{final_code}\n{}",
        server.log()
    );
    // An SRTP offer is answered there (SRTP calls are tested in full below).
    let offer = invite(local, server.addr, 4006, "RTP/SAVP", CRYPTO, "UDP");
    let final_code = udp_final(&udp, &server, &offer);
    assert!(
        final_code.starts_with("SIP/2.0 200") && final_code.contains("a=crypto:1 "),
        "{final_code}\n{}",
        server.log()
    );
}

/// An SRTP context of `rtc-srtp` for key and salt `key` (AES_CM_128_HMAC_SHA1_80).
fn srtp_context(key: &[u8; 30]) -> rtc::srtp::context::Context {
    let provider = rtc::srtp::crypto::default_provider().expect("crypto provider");
    rtc::srtp::context::Context::new(
        &key[..16],
        &key[16..],
        rtc::srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80,
        None,
        None,
        provider.crypto(),
    )
    .expect("SRTP context")
}

/// A plain RTP packet: header and payload.
fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, (u8::from(marker) << 7) | pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// One SRTP call, signalled over `send`/`recv` (TLS or UDP): the answer is `RTP/SAVP` with one
/// `a=crypto` of the server's own key; the prompts come protected with it (authenticated,
/// G.711 that is not silence); a forged packet is dropped and counted; key 1 protected with our
/// key (RFC 4733) ends the menu, and the flow's BYE comes. Returns the 200's SDP answer.
fn srtp_call(
    server: &Server,
    ok: &str,
    rtp: &UdpSocket,
    our_key: &[u8; 30],
    send: &mut dyn FnMut(&str),
    next: &mut dyn FnMut() -> Option<String>,
    local: SocketAddr,
) {
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", server.log());
    let body = ok.split_once("\r\n\r\n").map_or("", |b| b.1);
    let answer = ivr_sip::sdp::parse(body).expect("SDP answer");
    let m = &answer.media[0];
    assert_eq!(m.proto, "RTP/SAVP", "{body}");
    assert_eq!(body.matches("a=crypto:").count(), 1, "{body}");
    let theirs = m.crypto.first().expect("the answer's a=crypto");
    assert_eq!(theirs.tag, 1);
    assert_ne!(&theirs.key, our_key);
    let media = SocketAddr::new(m.addr.expect("c="), m.port);
    send(&in_dialog("ACK", 1, ok, local, ""));
    // The prompts, protected with the answer's key.
    let mut rx = srtp_context(&theirs.key);
    let mut buf = [0u8; 1500];
    let mut loud = 0;
    let mut got = 0;
    let started = Instant::now();
    while loud < 10 && started.elapsed() < Duration::from_secs(5) {
        let Ok((n, _)) = rtp.recv_from(&mut buf) else {
            continue;
        };
        got += 1;
        assert_eq!(
            n,
            12 + 160 + 10,
            "an SRTP packet of 20 ms of G.711 and an 80-bit tag"
        );
        let plain = rx
            .decrypt_rtp(&buf[..n])
            .unwrap_or_else(|e| panic!("our prompt audio does not authenticate: {e}"));
        assert_eq!(plain[1] & 0x7f, 0, "PCMU");
        let payload = &plain[12..];
        // μ-law silence is 0xFF/0x7F; a tone swings far from it.
        if payload.iter().any(|&b| b & 0x7f < 0x70) {
            loud += 1;
        }
    }
    assert!(
        loud >= 10,
        "{got} packets, {loud} with sound\n{}",
        server.log()
    );
    let mut tx = srtp_context(our_key);
    let ssrc = 0x5eed_0001;
    // Forged: our SSRC and sequence, a wrong tag. Dropped and counted, the call goes on.
    let before = metric(
        server.http(),
        Path::new(""),
        false,
        "ivr_srtp_auth_failures_total",
    )
    .expect("ivr_srtp_auth_failures_total");
    let mut forged = rtp_packet(101, true, 10, 8000, ssrc, &[1, 0x0a, 0, 160]);
    forged.extend_from_slice(&[0xAB; 10]);
    for _ in 0..3 {
        rtp.send_to(&forged, media).expect("forged");
    }
    // Plain RTP on an SRTP call is refused the same way.
    rtp.send_to(
        &rtp_packet(101, true, 11, 8000, ssrc, &[1, 0x0a, 0, 160]),
        media,
    )
    .expect("plain");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = metric(
            server.http(),
            Path::new(""),
            false,
            "ivr_srtp_auth_failures_total",
        )
        .unwrap_or_default();
        if now >= before + 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{before} → {now}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Key 1 (RFC 4733), protected with our key: the menu takes it, the flow says bye and
    // hangs up.
    for (i, (end, dur)) in [(false, 160u16), (false, 320), (true, 480), (true, 480)]
        .into_iter()
        .enumerate()
    {
        let e = [
            1,
            if end { 0x80 | 10 } else { 10 },
            (dur >> 8) as u8,
            dur as u8,
        ];
        let p = rtp_packet(101, i == 0, 20 + i as u16, 16_000, ssrc, &e);
        let p = tx.encrypt_rtp(&p).expect("encrypt");
        rtp.send_to(&p, media).expect("key");
    }
    let mut bye = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // Our audio keeps coming until then: drain it.
        let _ = rtp.recv_from(&mut buf);
        if let Some(msg) = next()
            && msg.starts_with("BYE ")
        {
            bye = Some(msg);
            break;
        }
    }
    let bye = bye.unwrap_or_else(|| panic!("no BYE after key 1\n{}", server.log()));
    send(&response_to(&bye, "200 OK"));
}

/// The SDP line of a fresh key of ours.
fn our_crypto() -> ([u8; 30], String) {
    use base64::Engine as _;
    let mut key = [0u8; 30];
    getrandom::fill(&mut key).expect("random");
    let line = format!(
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^31\r\n",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    (key, line)
}

/// SRTP calls with `srtp = "optional"`, over TLS (where SDES keys belong: they travel in the
/// SDP) and over UDP; a plain offer is still answered.
#[test]
fn srtp_calls_hear_protected_prompts_and_their_protected_keys_are_taken() {
    let Some(config) = deployment_srtp("srtp-call", false, Some("optional")) else {
        return;
    };
    let cert = config.parent().expect("dir").join("tls/cert.pem");
    let server = Server::start(&config, &[]);
    let tls_addr = listed(&server, "tls:");
    // Over TLS.
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let (key, line) = our_crypto();
    let (tls, _) = connect_tls(tls_addr, &cert);
    let tls = std::cell::RefCell::new(tls);
    let local = tls.borrow().sock.local_addr().expect("local");
    let mut reader = SipReader { buf: Vec::new() };
    tls.borrow_mut()
        .write_all(invite(local, tls_addr, rtp_port, "RTP/SAVP", &line, "TLS").as_bytes())
        .expect("INVITE");
    let ok = loop {
        let m = reader
            .next(&mut *tls.borrow_mut())
            .unwrap_or_else(|| panic!("no final response\n{}", server.log()));
        if !m.starts_with("SIP/2.0 1") {
            break m;
        }
    };
    tls.borrow_mut()
        .sock
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    srtp_call(
        &server,
        &ok,
        &rtp,
        &key,
        &mut |m: &str| tls.borrow_mut().write_all(m.as_bytes()).expect("send"),
        &mut || reader.next(&mut *tls.borrow_mut()),
        local,
    );
    // Over UDP.
    let sip = UdpSocket::bind("127.0.0.1:0").expect("sip");
    sip.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sip.local_addr().expect("addr");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let (key, line) = our_crypto();
    let ok = udp_final(
        &sip,
        &server,
        &invite(local, server.addr, rtp_port, "RTP/SAVP", &line, "UDP"),
    );
    sip.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let to = server.addr;
    srtp_call(
        &server,
        &ok,
        &rtp,
        &key,
        &mut |m: &str| {
            sip.send_to(m.replace("SIP/2.0/TLS", "SIP/2.0/UDP").as_bytes(), to)
                .expect("send");
        },
        &mut || {
            let mut buf = [0u8; 4096];
            sip.recv_from(&mut buf)
                .ok()
                .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).to_string())
        },
        local,
    );
    // Both calls took key 1 in the menu.
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    let visits: Vec<(String, Option<String>)> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let v: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT node, exit FROM node_visits WHERE node = 'choose' ORDER BY call_id, seq",
            )
            .fetch_all(&pool)
            .await
            .expect("visits");
            if v.len() >= 2 || started.elapsed() > Duration::from_secs(8) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let key1 = ("choose".to_string(), Some("key 1".to_string()));
    assert_eq!(visits, vec![key1.clone(), key1], "{}", server.log());
    // A plain offer is answered plain under `optional`.
    let offer = invite(local, server.addr, 4010, "RTP/AVP", "", "UDP");
    sip.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let ok = udp_final(&sip, &server, &offer);
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains("RTP/AVP") && !ok.contains("a=crypto"),
        "{ok}"
    );
}

/// A transfer of an SRTP caller to a plain SIP number: the bridge decrypts what the caller
/// sends for the callee's plain leg, and protects the callee's plain audio with the call's
/// key on its way to the caller.
#[test]
fn the_bridge_of_an_srtp_caller_to_a_plain_leg_decrypts_and_protects() {
    let dir = temp_dir("srtp-bridge");
    let agent = UdpSocket::bind("127.0.0.1:0").expect("agent sip");
    agent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let agent_rtp = UdpSocket::bind("127.0.0.1:0").expect("agent rtp");
    agent_rtp
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let flow = format!(
        "flow x {{\n    title    \"bridge\"\n    language zh-CN\n    entry    out\n}}\n\n\
         transfer out {{\n    to        \"sip:95500@127.0.0.1:{}\"\n    music     hold\n    \
         no_agents -> bye\n    after     -> bye\n}}\n\nstep bye {{\n    play bye\n    hangup\n}}\n",
        agent.local_addr().expect("addr").port()
    );
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/x.flow"), flow).expect("flow");
    write_prompts(
        &dir,
        &[("hold", "hold", 500.0, 2000), ("bye", "bye", 1200.0, 200)],
    );
    let head = config_head(rtp_range(10)).replace(
        "max_calls = 100\n",
        "max_calls = 100\nsrtp = \"required\"\n",
    );
    fs::write(
        dir.join("ivr.toml"),
        format!("{head}[routes]\ndefault = \"x\"\n"),
    )
    .expect("config");
    let server = Server::start(&dir.join("ivr.toml"), &[]);
    // The caller, SRTP over UDP.
    let sip = UdpSocket::bind("127.0.0.1:0").expect("sip");
    sip.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sip.local_addr().expect("addr");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp");
    rtp.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let (key, line) = our_crypto();
    let ok = udp_final(
        &sip,
        &server,
        &invite(local, server.addr, rtp_port, "RTP/SAVP", &line, "UDP"),
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", server.log());
    let body = ok.split_once("\r\n\r\n").map_or("", |b| b.1);
    let answer = ivr_sip::sdp::parse(body).expect("SDP answer");
    let m = &answer.media[0];
    let theirs = m.crypto.first().expect("a=crypto").key;
    let media = SocketAddr::new(m.addr.expect("c="), m.port);
    sip.send_to(
        in_dialog("ACK", 1, &ok, local, "")
            .replace("SIP/2.0/TLS", "SIP/2.0/UDP")
            .as_bytes(),
        server.addr,
    )
    .expect("ACK");
    // The plain callee answers the leg's INVITE.
    let mut buf = [0u8; 4096];
    let (n, from) = agent.recv_from(&mut buf).expect("the leg's INVITE");
    let inv = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(inv.starts_with("INVITE "), "{inv}");
    let offer = ivr_sip::sdp::parse(inv.split_once("\r\n\r\n").map_or("", |b| b.1))
        .expect("the leg's offer");
    assert_eq!(offer.media[0].proto, "RTP/AVP", "the leg is plain");
    let leg = SocketAddr::new(offer.media[0].addr.expect("c="), offer.media[0].port);
    let arp = agent_rtp.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {arp} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    );
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for l in inv.lines() {
        let Some((k, _)) = l.split_once(':') else {
            continue;
        };
        let k = k.trim();
        if ["Via", "From", "Call-ID", "CSeq"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            resp.push_str(l.trim_end());
            resp.push_str("\r\n");
        } else if k.eq_ignore_ascii_case("To") {
            resp.push_str(l.trim_end());
            resp.push_str(";tag=agent1\r\n");
        }
    }
    resp.push_str(&format!(
        "Contact: <sip:95500@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        agent.local_addr().expect("addr"),
        sdp.len()
    ));
    agent.send_to(resp.as_bytes(), from).expect("200");
    // Both talk for a while: the callee plain 0x10s, the caller protected 0x20s.
    let mut tx = srtp_context(&key);
    let mut rx = srtp_context(&theirs);
    let (mut caller_heard, mut callee_heard) = (0, 0);
    let started = Instant::now();
    let mut seq = 1u16;
    while (caller_heard < 5 || callee_heard < 5) && started.elapsed() < Duration::from_secs(8) {
        seq += 1;
        let ts = u32::from(seq) * 160;
        agent_rtp
            .send_to(&rtp_packet(0, false, seq, ts, 0xa6e7, &[0x10; 160]), leg)
            .expect("callee rtp");
        let p = tx
            .encrypt_rtp(&rtp_packet(0, false, seq, ts, 0xca11, &[0x20; 160]))
            .expect("encrypt");
        rtp.send_to(&p, media).expect("caller rtp");
        if let Ok((n, _)) = rtp.recv_from(&mut buf) {
            let plain = rx
                .decrypt_rtp(&buf[..n])
                .unwrap_or_else(|e| panic!("the caller's audio does not authenticate: {e}"));
            if plain[12..] == [0x10; 160] {
                caller_heard += 1;
            }
        }
        while let Ok((n, _)) = agent_rtp.recv_from(&mut buf) {
            assert!(n >= 12);
            if buf[12..n] == [0x20; 160] {
                callee_heard += 1;
            }
            if callee_heard >= 5 {
                break;
            }
        }
    }
    assert!(
        caller_heard >= 5 && callee_heard >= 5,
        "the caller heard {caller_heard} of the callee's packets, the callee {callee_heard} of the caller's\n{}",
        server.log()
    );
}
