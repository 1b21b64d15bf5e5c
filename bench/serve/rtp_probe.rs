//! The callers' media side of the `ivr serve` benchmark (bench/serve/run.sh): one UDP socket
//! that every SIPp call of the run names in its SDP. It tells the channels apart by SSRC and
//! measures, per channel, the gap between consecutive packets as they arrive; with `--dtmf`,
//! it presses `1` (RFC 4733) once on each channel after it has played for a second and
//! measures how long until the channel's audio changes (the flow's next prompt: the
//! benchmark's waiting prompt is digital silence, the one after the key is a tone).
//!
//! Arrival times are the kernel's receive timestamps (SO_TIMESTAMPNS), so the probe's own
//! scheduling does not blur the gaps it measures. A gap is only measured between packets with
//! consecutive RTP sequence numbers: a packet lost on the way (in this machine's loopback,
//! when the probe's socket buffer overflows) would otherwise count as a 40 ms gap of the
//! sender's. Losses are reported apart: `lost` (sequence numbers never seen) and
//! `rcvbuf_errors` (the kernel's count of datagrams dropped for a full receive buffer, from
//! /proc/net/snmp, during the run). `gap_us_all` keeps the old figure over every pair of
//! packets received in a row, losses included.
//!
//! With `--talk` (the recording benchmark, bench/recording/run.sh) it also talks: every 20 ms
//! it sends one PCMU packet (a tone, an SSRC of its own) to every address that has sent it
//! RTP within the last two seconds, so that each bridged call carries audio both ways; the
//! JSON then holds `talk_late_us`, how late its 20 ms ticks were (its own share of the gaps
//! the other side measures). With `--from SECS` only gaps after SECS seconds are counted
//! (the steady state, after the calls have been set up).
//!
//! Usage: rtp_probe PORT SECONDS [--dtmf] [--talk] [--from SECS] — prints one JSON object.

// A measuring tool, not part of `ivr`: kernel receive timestamps need recvmsg and
// setsockopt through libc (each block has its SAFETY note).
#![allow(unsafe_code)]

use ivr_media::audio::{G711, Law};
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Receives one datagram with its kernel timestamp (as an `Instant` on our clock).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, Instant)> {
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u8; 64];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut addr).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: every pointer in `msg` points at a live local of the right size.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return None;
    }
    let now_sys = SystemTime::now();
    let now = Instant::now();
    let mut at = now;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let stamp = UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                if let Ok(ago) = now_sys.duration_since(stamp) {
                    at = now - ago;
                }
            }
            c = libc::CMSG_NXTHDR(&raw const msg, c);
        }
    }
    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    let from = SocketAddr::new(ip.into(), u16::from_be(addr.sin_port));
    Some((n as usize, from, at))
}

struct Chan {
    last: Instant,
    last_seq: u16,
    first: Instant,
    from: SocketAddr,
    packets: u64,
    key_sent: Option<Instant>,
    latency: Option<Duration>,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7078);
    let secs: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dtmf = args.iter().any(|a| a == "--dtmf");
    let talk = args.iter().any(|a| a == "--talk");
    let from_secs: u64 = args
        .iter()
        .position(|a| a == "--from")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .expect("socket");
    let _ = sock.set_recv_buffer_size(64 << 20);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    sock.bind(&addr.into()).expect("bind");
    let sock: UdpSocket = sock.into();
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option on our socket.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let start = Instant::now();
    let peers: Arc<Mutex<HashMap<SocketAddr, Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let talker = talk.then(|| {
        let sock = sock.try_clone().expect("socket");
        let (peers, stop) = (Arc::clone(&peers), Arc::clone(&stop));
        std::thread::spawn(move || talk_loop(&sock, &peers, &stop))
    });
    let steady = start + Duration::from_secs(from_secs);
    let mut chans: HashMap<u32, Chan> = HashMap::new();
    // Gaps in microseconds, between consecutive packets of one channel within a talkspurt.
    let mut gaps: Vec<u32> = Vec::with_capacity(1 << 22);
    let mut all_gaps: Vec<u32> = Vec::with_capacity(1 << 22);
    let mut lost = 0u64;
    let rcvbuf_before = rcvbuf_errors();
    let mut buf = [0u8; 2048];
    let mut packets = 0u64;
    let mut seq = 1u16;
    while start.elapsed() < Duration::from_secs(secs) {
        let Some((n, from, now)) = recv_stamped(&sock, &mut buf) else {
            continue;
        };
        if n < 12 || buf[0] >> 6 != 2 {
            continue;
        }
        if talk && let Ok(mut p) = peers.lock() {
            p.insert(from, now);
        }
        packets += 1;
        let marker = buf[1] & 0x80 != 0;
        let rtp_seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let payload = &buf[12..n];
        let c = chans.entry(ssrc).or_insert(Chan {
            last: now,
            last_seq: rtp_seq.wrapping_sub(1),
            first: now,
            from,
            packets: 0,
            key_sent: None,
            latency: None,
        });
        if c.packets > 0 && !marker && now >= steady {
            let gap = (now - c.last).as_micros().min(u128::from(u32::MAX)) as u32;
            all_gaps.push(gap);
            let step = rtp_seq.wrapping_sub(c.last_seq);
            if step == 1 {
                gaps.push(gap);
            } else if step > 1 && step < 1000 {
                lost += u64::from(step - 1);
            }
        }
        c.packets += 1;
        c.last = now;
        c.last_seq = rtp_seq;
        c.from = from;
        if dtmf {
            if let Some(sent) = c.key_sent {
                if c.latency.is_none() && payload.iter().any(|&b| b != 0xff) {
                    c.latency = Some(now - sent);
                }
            } else if now - c.first > Duration::from_secs(1) {
                // Key 1: three packets and an end packet, one timestamp (start and end of
                // the event in one burst: the detector acts on the first).
                for (i, end) in [(0u16, false), (1, true)] {
                    let mut p = [0u8; 16];
                    p[0] = 0x80;
                    p[1] = if i == 0 { 0x80 | 101 } else { 101 };
                    p[2..4].copy_from_slice(&seq.to_be_bytes());
                    p[4..8].copy_from_slice(&1234u32.to_be_bytes());
                    p[8..12].copy_from_slice(&(ssrc ^ 0x5555).to_be_bytes());
                    p[12] = 1;
                    p[13] = if end { 0x80 | 10 } else { 10 };
                    p[14..16].copy_from_slice(&160u16.to_be_bytes());
                    seq = seq.wrapping_add(1);
                    let _ = sock.send_to(&p, from);
                }
                c.key_sent = Some(Instant::now());
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut late = talker.and_then(|t| t.join().ok()).unwrap_or_default();
    late.sort_unstable();
    gaps.sort_unstable();
    all_gaps.sort_unstable();
    let rcvbuf = rcvbuf_errors().saturating_sub(rcvbuf_before);
    let over40 = gaps.iter().filter(|&&g| g > 40_000).count();
    let outside = gaps
        .iter()
        .filter(|&&g| !(18_000..=22_000).contains(&g))
        .count();
    let mut lat: Vec<u32> = chans
        .values()
        .filter_map(|c| c.latency.map(|d| d.as_micros() as u32))
        .collect();
    lat.sort_unstable();
    println!(
        "{{\"channels\": {}, \"packets\": {}, \"gaps\": {}, \"gap_us\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}}, \
         \"gaps_outside_18_22ms\": {}, \"gaps_over_40ms\": {}, \"dtmf_channels\": {}, \
         \"dtmf_to_audio_us\": {{\"p50\": {}, \"p99\": {}, \"max\": {}}}, \"lost\": {}, \"rcvbuf_errors\": {}, \
         \"gap_us_all\": {{\"p99\": {}, \"over_40ms\": {}}}, \
         \"talk_late_us\": {{\"ticks\": {}, \"p50\": {}, \"p99\": {}, \"max\": {}}}}}",
        chans.len(),
        packets,
        gaps.len(),
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.99),
        percentile(&gaps, 0.999),
        gaps.last().copied().unwrap_or(0),
        outside,
        over40,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0),
        lost,
        rcvbuf,
        percentile(&all_gaps, 0.99),
        all_gaps.iter().filter(|&&g| g > 40_000).count(),
        late.len(),
        percentile(&late, 0.5),
        percentile(&late, 0.99),
        late.last().copied().unwrap_or(0),
    );
}

/// `--talk`: every 20 ms, one PCMU packet of a 400 Hz tone to every peer heard from within
/// the last two seconds, each peer with an SSRC, sequence and timestamp of its own. Returns
/// how late each tick was, in microseconds.
fn talk_loop(
    sock: &UdpSocket,
    peers: &Mutex<HashMap<SocketAddr, Instant>>,
    stop: &AtomicBool,
) -> Vec<u32> {
    let payload: Vec<u8> = (0..160)
        .map(|i| {
            let x = 6000.0 * (2.0 * std::f64::consts::PI * 400.0 * f64::from(i) / 8000.0).sin();
            Law::Ulaw.encode(x as i16)
        })
        .collect();
    // Per peer: SSRC, sequence number, timestamp.
    let mut streams: HashMap<SocketAddr, (u32, u16, u32)> = HashMap::new();
    let mut next_ssrc = 0x1000_0000u32 ^ std::process::id();
    // The pacer's real-time class (SCHED_FIFO, low priority), so that a loaded machine delays
    // the bridge it measures rather than the probe's own ticks; without the privilege the
    // thread stays in the normal class (its lateness is reported either way).
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: plain FFI on the calling thread with a valid parameter block.
    unsafe {
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &raw const param);
    }
    let mut late = Vec::with_capacity(1 << 16);
    let mut pkt = [0u8; 172];
    let mut tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tick += Duration::from_millis(20);
        let now = Instant::now();
        if tick > now {
            std::thread::sleep(tick - now);
        }
        late.push(tick.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        let live: Vec<SocketAddr> = match peers.lock() {
            Ok(mut p) => {
                p.retain(|_, heard| heard.elapsed() < Duration::from_secs(2));
                streams.retain(|a, _| p.contains_key(a));
                p.keys().copied().collect()
            }
            Err(_) => break,
        };
        for to in live {
            let s = streams.entry(to).or_insert_with(|| {
                next_ssrc = next_ssrc.wrapping_add(1);
                (next_ssrc, 1, 0)
            });
            pkt[0] = 0x80;
            pkt[1] = 0;
            pkt[2..4].copy_from_slice(&s.1.to_be_bytes());
            pkt[4..8].copy_from_slice(&s.2.to_be_bytes());
            pkt[8..12].copy_from_slice(&s.0.to_be_bytes());
            pkt[12..].copy_from_slice(&payload);
            s.1 = s.1.wrapping_add(1);
            s.2 = s.2.wrapping_add(160);
            let _ = sock.send_to(&pkt, to);
        }
    }
    late
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets).
fn rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
