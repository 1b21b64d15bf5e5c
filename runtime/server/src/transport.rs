//! SIP over UDP and TCP on tokio. Receiving tasks read datagrams and TCP streams, cut the
//! stream into messages (Content-Length), parse them with rsip and hand them to the SIP task
//! ([`crate::sip_task`]) and its user-agent core; what cannot be parsed is answered here with 400 (or 501 for an unknown
//! method) when it has enough headers for a response, and dropped otherwise. Oversized
//! messages are dropped (and close a TCP connection). Sending never waits: a full socket or
//! connection queue drops the message, and SIP's retransmissions take it from there.
//!
//! Connections we open ourselves ([`Sender::connect`], a transfer to a `transport=tcp` URI)
//! read and write like accepted ones; they close when their [`TcpLink`] is dropped (after a
//! linger for the last transaction) or when the other side closes them.

use ivr_sip::message::{self, MAX_MESSAGE};
use rsip::SipMessage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

pub use ivr_sip::peer::{Peer, Proto};

/// A message for the SIP task (and its user-agent core).
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it.
    pub peer: Peer,
    /// The message.
    pub msg: SipMessage,
}

/// Counters of the transports.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages received and parsed.
    pub received: AtomicU64,
    /// Messages that could not be parsed (answered with 400/501 or dropped).
    pub malformed: AtomicU64,
    /// Messages dropped: oversized, or the core's queue was full.
    pub dropped: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
}

/// The writers of open TCP connections, by connection id.
type Connections = Arc<Mutex<HashMap<u64, mpsc::Sender<Arc<[u8]>>>>>;

/// How long a connection we opened stays open after its [`TcpLink`] is dropped: the last
/// transaction on it (a BYE and its 200) completes within timer F (64 T1).
const LINGER: std::time::Duration = std::time::Duration::from_secs(32);

/// How long [`Sender::connect`] waits for the other side to accept.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// Sends SIP messages on the listening sockets; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    udp: Arc<UdpSocket>,
    tcp: Connections,
    stats: Arc<TransportStats>,
    /// Where the messages read on connections we open go.
    inbound: mpsc::Sender<Inbound>,
    /// Ids of TCP connections, accepted or opened.
    next_conn: Arc<AtomicU64>,
}

/// A TCP connection we opened: its peer, for the core's messages. The connection closes
/// [`LINGER`] after this is dropped (at once if the other side closes it first).
#[derive(Debug)]
pub struct TcpLink {
    /// Where messages for the connection go ([`Proto::Tcp`] and its id).
    pub peer: Peer,
    _close: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sender({:?})", self.udp.local_addr().ok())
    }
}

impl Sender {
    /// Sends `data` to `peer` without waiting; false when it could not be sent now.
    pub fn send(&self, peer: &Peer, data: Arc<[u8]>) -> bool {
        let ok = match peer.proto {
            Proto::Udp => self.udp.try_send_to(&data, peer.addr).is_ok(),
            Proto::Tcp => {
                let conn = self
                    .tcp
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&peer.conn).cloned());
                conn.is_some_and(|tx| tx.try_send(data).is_ok())
            }
        };
        if ok {
            self.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.stats
    }

    /// Opens a TCP connection to `addr` for calls we place; what arrives on it reaches the
    /// core like everything else. Fails when nobody accepts within a few seconds.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpLink> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (close, closed) = tokio::sync::oneshot::channel();
        let peer = Peer {
            proto: Proto::Tcp,
            addr,
            conn,
        };
        // Registered before this returns, so the first message finds it.
        let writer = register(self, conn, stream.peer_addr().unwrap_or(addr));
        let (inbound, sender) = (self.inbound.clone(), self.clone());
        tokio::spawn(async move {
            let linger = async {
                let _ = closed.await;
                tokio::time::sleep(LINGER).await;
            };
            tcp_conn(stream, addr, conn, writer, inbound, sender, linger).await;
        });
        Ok(TcpLink {
            peer,
            _close: close,
        })
    }
}

/// The bound transports.
pub struct Bound {
    /// The sender.
    pub sender: Sender,
    /// The UDP address.
    pub udp_addr: SocketAddr,
    /// The TCP address.
    pub tcp_addr: SocketAddr,
}

/// Binds UDP and TCP on `addr` and starts receiving; messages go to `inbound`.
pub async fn start(addr: SocketAddr, inbound: mpsc::Sender<Inbound>) -> std::io::Result<Bound> {
    let udp = {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        // Room for bursts of INVITEs while the core is busy.
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        Arc::new(UdpSocket::from_std(s.into())?)
    };
    let udp_addr = udp.local_addr()?;
    // TCP on the same port as UDP (which may have been chosen by the system).
    let tcp = TcpListener::bind(SocketAddr::new(addr.ip(), udp_addr.port())).await?;
    let tcp_addr = tcp.local_addr()?;
    let stats = Arc::new(TransportStats::default());
    let sender = Sender {
        udp: Arc::clone(&udp),
        tcp: Arc::new(Mutex::new(HashMap::new())),
        stats: Arc::clone(&stats),
        inbound: inbound.clone(),
        next_conn: Arc::new(AtomicU64::new(1)),
    };
    tokio::spawn(udp_loop(udp, inbound.clone(), Arc::clone(&stats)));
    tokio::spawn(tcp_accept(tcp, inbound, sender.clone()));
    Ok(Bound {
        sender,
        udp_addr,
        tcp_addr,
    })
}

/// Parses one message and hands it on, or answers what cannot be parsed.
fn deliver(
    data: &[u8],
    peer: Peer,
    inbound: &mpsc::Sender<Inbound>,
    stats: &TransportStats,
) -> Option<Vec<u8>> {
    if data.iter().all(|b| b.is_ascii_whitespace()) {
        return None; // keep-alive
    }
    if data.len() > MAX_MESSAGE {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    match message::parse(data) {
        Ok(msg) => {
            stats.received.fetch_add(1, Ordering::Relaxed);
            if inbound.try_send(Inbound { peer, msg }).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
        Err(why) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            let known = rsip::Method::all();
            let code = match message::raw_method(data) {
                Some(m) if !known.iter().any(|k| k.to_string().eq_ignore_ascii_case(m)) => 501,
                _ => 400,
            };
            tracing::debug!(peer = %peer.addr, %why, code, "unreadable SIP message");
            message::raw_error_response(data, code)
        }
    }
}

async fn udp_loop(udp: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>, stats: Arc<TransportStats>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, addr) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                tracing::trace!(error = %e, "udp receive");
                continue;
            }
        };
        let peer = Peer {
            proto: Proto::Udp,
            addr,
            conn: 0,
        };
        if let Some(resp) = deliver(&buf[..n], peer, &inbound, &stats) {
            let _ = udp.try_send_to(&resp, addr);
        }
    }
}

async fn tcp_accept(listener: TcpListener, inbound: mpsc::Sender<Inbound>, sender: Sender) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let conn = sender.next_conn.fetch_add(1, Ordering::Relaxed);
        let writer = register(&sender, conn, addr);
        tokio::spawn(tcp_conn(
            stream,
            addr,
            conn,
            writer,
            inbound.clone(),
            sender.clone(),
            std::future::pending(),
        ));
    }
}

/// Where a complete message ends in `buf` (after leading CRLFs are skipped): `Ok(Some(end))`,
/// `Ok(None)` when more is needed, `Err` when it is too large.
fn frame(buf: &[u8]) -> Result<Option<usize>, ()> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_MESSAGE {
            Err(())
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut len = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, v)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                len = v.trim().parse().map_err(|_| ())?;
            }
        }
    }
    let end = head_end + 4 + len;
    if end > MAX_MESSAGE {
        return Err(());
    }
    Ok((buf.len() >= end).then_some(end))
}

/// A new connection's queue of messages to write, entered in the sender's map.
fn register(sender: &Sender, conn: u64, addr: SocketAddr) -> Writer {
    let (tx, rx) = mpsc::channel::<Arc<[u8]>>(256);
    if let Ok(mut m) = sender.tcp.lock() {
        m.insert(conn, tx.clone());
    }
    tracing::debug!(conn, peer = %addr, "tcp connection");
    Writer { tx, rx }
}

/// The two ends of a connection's write queue.
struct Writer {
    tx: mpsc::Sender<Arc<[u8]>>,
    rx: mpsc::Receiver<Arc<[u8]>>,
}

/// Reads and writes one connection until either side closes it or `close` completes.
async fn tcp_conn(
    stream: TcpStream,
    addr: SocketAddr,
    conn: u64,
    writer: Writer,
    inbound: mpsc::Sender<Inbound>,
    sender: Sender,
    close: impl std::future::Future<Output = ()>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let Writer { tx, mut rx } = writer;
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let peer = Peer {
        proto: Proto::Tcp,
        addr,
        conn,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    tokio::pin!(close);
    'read: loop {
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = &mut close => break,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let skip = buf
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if skip > 0 {
                buf.drain(..skip);
            }
            match frame(&buf) {
                Ok(Some(end)) => {
                    let resp = deliver(&buf[..end], peer, &inbound, &sender.stats);
                    buf.drain(..end);
                    if let Some(r) = resp {
                        let _ = tx.try_send(Arc::from(r));
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    sender.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    break 'read;
                }
            }
        }
    }
    if let Ok(mut m) = sender.tcp.lock() {
        m.remove(&conn);
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcOPT";
        assert_eq!(frame(m), Ok(Some(m.len() - 3)));
        assert_eq!(
            frame(b"OPTIONS sip:a SIP/2.0\r\nl: 10\r\n\r\nabc"),
            Ok(None)
        );
        assert_eq!(
            frame(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 999999\r\n\r\n"),
            Err(())
        );
        assert_eq!(frame(&vec![b'a'; MAX_MESSAGE + 1]), Err(()));
    }
}
