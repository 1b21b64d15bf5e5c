//! The browser channel: one WebRTC peer connection per call (the `webrtc` crate: ICE with
//! host candidates, DTLS-SRTP), PCMU and telephone-event only, answered WHIP-style from the
//! browser's offer once ICE gathering is complete (no trickle).
//!
//! A browser's call goes through the same media seam as a SIP call: the call task
//! ([`ivr_server::call`]) has an RTP socket, the pacer sends the prompts' 20 ms PCMU frames
//! to it, and it reads keys (RFC 4733) and voice from it. Here that seam is met by a relay
//! socket on loopback: what the pacer (or a transfer's bridge) sends to the relay is written
//! to the local track (SRTP to the browser, with the track's SSRC), and what the browser sends
//! on its track is written, as plain RTP, to the call's socket. Payload types are mapped on
//! the way: PCMU is 0 on both sides; the browser's telephone-event type becomes
//! [`sdp::DEFAULT_EVENT_PT`] towards the call and back. So the driver, its `EventDetector`,
//! the pacer's `PlaybackDone` and a transfer's bridge work for browsers unchanged.
//!
//! A supervisor's browser ([`supervise`]) has a session of the same kind but no call of its
//! own: what it hears and says goes through a [`crate::supervise`] pair with the bridge.

use crate::audio::{FRAME_SAMPLES, G711, Law};
use crate::supervise::{Mode, SupervisorEnd};
use bytes::BytesMut;
use ivr_sip::sdp;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    Registry, register_default_interceptors,
};

/// The payload type of PCMU (static, RFC 3551).
const PCMU_PT: u8 = 0;
/// How long ICE gathering may take before we answer with what we have.
const GATHERING: Duration = Duration::from_secs(5);
/// Packets of the browser waiting for the relay (beyond: dropped, like a full socket).
const INBOUND_QUEUE: usize = 256;

/// Why a browser's offer could not be answered.
#[derive(Debug)]
pub enum OfferError {
    /// Not an SDP offer we can read, or one without PCMU audio (HTTP 400).
    Bad(String),
    /// Something on our side failed (HTTP 500).
    Internal(String),
}

impl std::fmt::Display for OfferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfferError::Bad(s) => write!(f, "bad offer: {s}"),
            OfferError::Internal(s) => write!(f, "{s}"),
        }
    }
}

/// The state of the connection, as the relay needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// ICE and DTLS are not done yet.
    Connecting,
    /// Media flows.
    Connected,
    /// Failed or closed: the caller is gone.
    Gone,
}

struct Handler {
    gathered: watch::Sender<bool>,
    link: watch::Sender<Link>,
    inbound: mpsc::Sender<rtp::Packet>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "WebRTC connection state");
        let link = match state {
            RTCPeerConnectionState::Connected => Link::Connected,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => Link::Gone,
            _ => return,
        };
        let _ = self.link.send(link);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.inbound.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(p) {
                            return;
                        }
                    }
                    TrackRemoteEvent::OnEnded => return,
                    _ => {}
                }
            }
        });
    }
}

/// Where the peer connection binds its ICE host candidates: loopback (a browser on this
/// machine) and every LAN interface (the wildcard expands to each non-loopback address).
fn ice_addrs() -> Vec<String> {
    vec!["127.0.0.1:0".to_string(), "0.0.0.0:0".to_string()]
}

/// The media engine: PCMU and telephone-event (8 kHz) only, so every answer is G.711 μ-law.
fn media_engine() -> Result<MediaEngine, OfferError> {
    let mut m = MediaEngine::default();
    let codecs = [
        ("audio/PCMU", PCMU_PT, ""),
        ("audio/telephone-event", sdp::DEFAULT_EVENT_PT, "0-15"),
    ];
    for (mime, pt, fmtp) in codecs {
        m.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_string(),
                    clock_rate: 8000,
                    channels: 0,
                    sdp_fmtp_line: fmtp.to_string(),
                    rtcp_feedback: vec![],
                },
                payload_type: pt,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| OfferError::Internal(e.to_string()))?;
    }
    Ok(m)
}

fn pcmu() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/PCMU".to_string(),
        clock_rate: 8000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Checks that `offer` is SDP with an audio section offering PCMU at 8 kHz.
pub fn check_offer(offer: &str) -> Result<(), OfferError> {
    let s = sdp::parse(offer).map_err(|e| OfferError::Bad(e.to_string()))?;
    let has_pcmu = s.media.iter().any(|m| {
        m.kind == "audio"
            && m.port != 0
            && m.formats.iter().any(|f| {
                f.parse::<u8>()
                    .ok()
                    .and_then(|pt| m.encoding(pt))
                    .is_some_and(|(name, rate)| name == "pcmu" && rate == 8000)
            })
    });
    if has_pcmu {
        Ok(())
    } else {
        Err(OfferError::Bad(
            "no PCMU (G.711 μ-law) audio in the offer".into(),
        ))
    }
}

/// The offer without telephone-event at rates other than 8 kHz: the media engine matches
/// codecs by name and parameters only, so a browser's `telephone-event/48000` (offered before
/// the 8 kHz one) would otherwise be chosen, and the browser would send no keys we can read.
fn only_narrowband_events(offer: &str) -> String {
    let mut drop: Vec<&str> = Vec::new();
    for line in offer.lines() {
        if let Some(rest) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, enc)) = rest.split_once(' ')
        {
            let enc = enc.trim().to_ascii_lowercase();
            if enc.starts_with("telephone-event/") && !enc.starts_with("telephone-event/8000") {
                drop.push(pt);
            }
        }
    }
    if drop.is_empty() {
        return offer.to_string();
    }
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines() {
        let attr_pt = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|r| r.split([' ', '\t']).next());
        if attr_pt.is_some_and(|pt| drop.contains(&pt)) {
            continue;
        }
        if line.starts_with("m=") {
            let kept: Vec<&str> = line
                .split(' ')
                .enumerate()
                .filter(|(i, f)| *i < 3 || !drop.contains(f))
                .map(|(_, f)| f)
                .collect();
            out.push_str(&kept.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// The telephone-event payload type (8 kHz) of the first audio section of `text`.
fn event_pt_of(text: &str) -> Option<u8> {
    let s = sdp::parse(text).ok()?;
    let m = s.media.iter().find(|m| m.kind == "audio")?;
    m.formats.iter().find_map(|f| {
        let pt = f.parse::<u8>().ok()?;
        matches!(m.encoding(pt), Some((name, 8000)) if name == "telephone-event").then_some(pt)
    })
}

/// A browser's peer connection, answered.
pub struct Session {
    pc: Arc<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    /// The SDP answer.
    pub answer: String,
    /// The telephone-event payload type the answer agreed on (the browser's).
    event_pt: Option<u8>,
    link: watch::Receiver<Link>,
    inbound: mpsc::Receiver<rtp::Packet>,
}

impl Session {
    /// Answers a browser's SDP offer: one send-receive PCMU track, ICE gathered in full.
    pub async fn answer(offer: &str) -> Result<Session, OfferError> {
        check_offer(offer)?;
        let mut media = media_engine()?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(|e| OfferError::Internal(e.to_string()))?;
        let (gathered_tx, mut gathered) = watch::channel(false);
        let (link_tx, link) = watch::channel(Link::Connecting);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            link: link_tx,
            inbound: inbound_tx,
        });
        // Boxed: building a peer connection is a future of some 20 KB.
        let pc = Box::pin(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(ice_addrs())
                .build(),
        )
        .await
        .map_err(|e| OfferError::Internal(format!("cannot open a peer connection: {e}")))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = ivr_sip::message::random_u64() as u32;
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "ivr".to_string(),
            "ivr-audio".to_string(),
            "ivr".to_string(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                active: true,
                codec: pcmu(),
                ..Default::default()
            }],
        )));
        let done = async {
            pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| OfferError::Internal(e.to_string()))?;
            let offer = RTCSessionDescription::offer(only_narrowband_events(offer))
                .map_err(|e| OfferError::Bad(e.to_string()))?;
            pc.set_remote_description(offer)
                .await
                .map_err(|e| OfferError::Bad(e.to_string()))?;
            let answer = pc
                .create_answer(None)
                .await
                .map_err(|e| OfferError::Bad(e.to_string()))?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| OfferError::Internal(e.to_string()))?;
            if tokio::time::timeout(GATHERING, gathered.wait_for(|g| *g))
                .await
                .is_err()
            {
                tracing::warn!("ICE gathering not complete in time: answering with what we have");
            }
            pc.local_description()
                .await
                .map(|d| d.sdp)
                .ok_or_else(|| OfferError::Internal("no local description".into()))
        };
        let answer = match done.await {
            Ok(a) => a,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        if !answer.to_ascii_lowercase().contains("pcmu/8000") {
            let _ = pc.close().await;
            return Err(OfferError::Bad("no common codec (PCMU)".into()));
        }
        let event_pt = event_pt_of(&answer);
        Ok(Session {
            pc,
            track,
            ssrc,
            answer,
            event_pt,
            link,
            inbound,
        })
    }

    /// Waits until media can flow (true), or the connection failed or `within` passed.
    pub async fn connected(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, self.link.wait_for(|l| *l != Link::Connecting)).await,
            Ok(Ok(l)) if *l == Link::Connected
        )
    }

    /// Closes the peer connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// The loopback socket that stands for the browser on the call's RTP socket.
pub struct Relay {
    sock: UdpSocket,
    /// The call's RTP socket (where the browser's packets go).
    call: SocketAddr,
}

impl Relay {
    /// A relay for the call whose RTP socket is bound at `call` (its IP may be unspecified:
    /// loopback then).
    pub async fn bind(call: SocketAddr) -> std::io::Result<Relay> {
        let ip = match call.ip() {
            ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        Ok(Relay {
            sock,
            call: SocketAddr::new(ip, call.port()),
        })
    }

    /// Where the call sends the browser's audio.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.sock.local_addr()
    }
}

/// One continuous RTP stream towards the browser out of the streams the call sends (the
/// pacer's, a transfer's callee's through the bridge, each with its own SSRC, sequence numbers
/// and timestamps): our own sequence numbers (SRTP refuses a sequence number far behind the
/// last one as a replay), and timestamps that go on from the last one when the source changes
/// (with the marker bit: a new talkspurt).
#[derive(Debug, Default)]
struct Renumber {
    /// The source's SSRC, and what to add to its timestamps.
    source: Option<(u32, u32)>,
    seq: u16,
    last_ts: u32,
}

impl Renumber {
    fn apply(&mut self, h: &mut rtp::header::Header) {
        let offset = match self.source {
            Some((ssrc, offset)) if ssrc == h.ssrc => offset,
            _ => {
                let offset = self
                    .last_ts
                    .wrapping_add(crate::audio::FRAME_SAMPLES as u32)
                    .wrapping_sub(h.timestamp);
                self.source = Some((h.ssrc, offset));
                h.marker = true;
                offset
            }
        };
        self.seq = self.seq.wrapping_add(1);
        h.sequence_number = self.seq;
        h.timestamp = h.timestamp.wrapping_add(offset);
        self.last_ts = h.timestamp;
    }
}

/// What the HTTP side asks of a running browser call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `DELETE /calls/ID`: the caller hung up.
    Hangup,
    /// Shutdown: end the call now.
    Terminate,
}

/// Why [`relay`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The call's task is over.
    CallOver,
    /// The caller hung up (`DELETE`, or the connection failed or closed).
    Hangup,
    /// Asked to end the call.
    Terminate,
}

/// Carries media between the browser and the call until `stop` resolves (the call's task is
/// over) or the caller goes: returns which. After [`RelayEnd::Hangup`] and
/// [`RelayEnd::Terminate`] the caller tells the call and calls this again to carry the rest.
pub async fn relay(
    session: &mut Session,
    relay: &Relay,
    control: &mut mpsc::UnboundedReceiver<Control>,
    stop: impl std::future::Future<Output = ()>,
) -> RelayEnd {
    tokio::pin!(stop);
    let mut buf = [0u8; 1500];
    let mut out = BytesMut::zeroed(1500);
    let mut to_browser = Renumber::default();
    loop {
        tokio::select! {
            () = &mut stop => return RelayEnd::CallOver,
            r = relay.sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                if from != relay.call {
                    continue;
                }
                let Ok(mut p) = rtp::Packet::unmarshal(&mut &buf[..n]) else { continue };
                p.header.payload_type = match p.header.payload_type {
                    PCMU_PT => PCMU_PT,
                    sdp::DEFAULT_EVENT_PT => match session.event_pt {
                        Some(pt) => pt,
                        None => continue,
                    },
                    _ => continue,
                };
                to_browser.apply(&mut p.header);
                p.header.ssrc = session.ssrc;
                p.header.extension = false;
                p.header.extensions.clear();
                if let Err(e) = session.track.write_rtp(p).await {
                    tracing::trace!(error = %e, "RTP to the browser dropped");
                }
            }
            p = session.inbound.recv() => {
                let Some(mut p) = p else { continue };
                let pt = p.header.payload_type;
                p.header.payload_type = if pt == PCMU_PT {
                    PCMU_PT
                } else if Some(pt) == session.event_pt {
                    sdp::DEFAULT_EVENT_PT
                } else {
                    continue;
                };
                // The call reads plain RTP: no header extensions, no CSRCs.
                p.header.extension = false;
                p.header.extensions.clear();
                p.header.csrc.clear();
                p.header.padding = false;
                let size = p.marshal_size();
                if size > out.len() {
                    continue;
                }
                if let Ok(n) = p.marshal_to(&mut out[..size]) {
                    let _ = relay.sock.send_to(&out[..n], relay.call).await;
                }
            }
            c = control.recv() => match c {
                Some(Control::Hangup) => return RelayEnd::Hangup,
                Some(Control::Terminate) => return RelayEnd::Terminate,
                None => return RelayEnd::Hangup,
            },
            r = session.link.changed() => {
                if r.is_err() || *session.link.borrow() == Link::Gone {
                    return RelayEnd::Hangup;
                }
            }
        }
    }
}

/// Why [`supervise`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuperviseEnd {
    /// The call side went (the bridge ended or the call is over).
    CallGone,
    /// The supervisor left (the control channel closed, or the connection failed or closed).
    SupervisorGone,
}

/// How often [`supervise`] looks whether the call side is still there.
const CALL_CHECK: Duration = Duration::from_millis(200);

/// Carries a supervisor's media: every 20 ms what they hear ([`SupervisorEnd::heard`], both
/// parties mixed) is sent to the browser as PCMU; what the browser sends (PCMU) is decoded
/// and handed to [`SupervisorEnd::speak`], which sends it on by the mode. Mode changes come
/// on `modes`. Returns when the call side or the supervisor goes.
pub async fn supervise(
    session: &mut Session,
    end: &mut SupervisorEnd,
    modes: &mut mpsc::UnboundedReceiver<Mode>,
) -> SuperviseEnd {
    let mut tick = tokio::time::interval(Duration::from_millis(crate::audio::FRAME_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut check = tokio::time::interval(CALL_CHECK);
    let mut heard = [0i16; FRAME_SAMPLES];
    let mut said = [0i16; crate::supervise::MAX_PACKET_SAMPLES];
    let mut payload = [0u8; FRAME_SAMPLES];
    let mut seq = ivr_sip::message::random_u64() as u16;
    let mut ts = ivr_sip::message::random_u64() as u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                end.heard(&mut heard);
                for (b, &s) in payload.iter_mut().zip(heard.iter()) {
                    *b = Law::Ulaw.encode(s);
                }
                seq = seq.wrapping_add(1);
                ts = ts.wrapping_add(FRAME_SAMPLES as u32);
                let p = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        payload_type: PCMU_PT,
                        sequence_number: seq,
                        timestamp: ts,
                        ssrc: session.ssrc,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::copy_from_slice(&payload),
                };
                if let Err(e) = session.track.write_rtp(p).await {
                    tracing::trace!(error = %e, "RTP to the supervisor dropped");
                }
            }
            p = session.inbound.recv() => {
                let Some(p) = p else { return SuperviseEnd::SupervisorGone };
                if p.header.payload_type != PCMU_PT {
                    continue;
                }
                let n = p.payload.len().min(said.len());
                for (s, &b) in said[..n].iter_mut().zip(p.payload.iter()) {
                    *s = Law::Ulaw.decode(b);
                }
                end.speak(&said[..n]);
            }
            m = modes.recv() => match m {
                Some(m) => end.set_mode(m),
                None => return SuperviseEnd::SupervisorGone,
            },
            _ = check.tick() => {
                if end.call_gone() {
                    return SuperviseEnd::CallGone;
                }
            }
            r = session.link.changed() => {
                if r.is_err() || *session.link.borrow() == Link::Gone {
                    return SuperviseEnd::SupervisorGone;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 110 126\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\na=rtpmap:110 telephone-event/48000\r\na=fmtp:110 0-15\r\n\
        a=rtpmap:126 telephone-event/8000\r\na=fmtp:126 0-15\r\n";

    #[test]
    fn wideband_telephone_events_are_left_out_of_the_offer() {
        let o = only_narrowband_events(CHROME);
        assert!(
            o.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n"),
            "{o}"
        );
        assert!(!o.contains(":110 "), "{o}");
        assert!(o.contains("a=fmtp:126 0-15\r\n"), "{o}");
        assert_eq!(event_pt_of(&o), Some(126));
        assert!(check_offer(&o).is_ok());
    }

    #[test]
    fn streams_towards_the_browser_are_renumbered_into_one() {
        let mut r = Renumber::default();
        let mut h = |ssrc: u32, seq: u16, ts: u32| {
            let mut x = rtp::header::Header {
                ssrc,
                sequence_number: seq,
                timestamp: ts,
                ..Default::default()
            };
            r.apply(&mut x);
            (x.sequence_number, x.timestamp, x.marker)
        };
        let (s1, t1, m1) = h(7, 30_000, 1_000);
        let (s2, t2, m2) = h(7, 30_001, 1_160);
        assert!(m1 && !m2);
        assert_eq!((s2, t2), (s1.wrapping_add(1), t1 + 160));
        // The bridge's stream: far behind in sequence numbers, elsewhere in time.
        let (s3, t3, m3) = h(42, 5, 9);
        assert!(m3);
        assert_eq!((s3, t3), (s2.wrapping_add(1), t2 + 160));
        let (s4, t4, _) = h(42, 6, 169);
        assert_eq!((s4, t4), (s3.wrapping_add(1), t3 + 160));
    }

    #[test]
    fn an_offer_without_pcmu_is_refused() {
        let o = CHROME
            .replace(" 0 8 ", " 8 ")
            .replace("a=rtpmap:0 PCMU/8000\r\n", "");
        assert!(matches!(check_offer(&o), Err(OfferError::Bad(_))));
        assert!(matches!(check_offer("hello"), Err(OfferError::Bad(_))));
    }
}
