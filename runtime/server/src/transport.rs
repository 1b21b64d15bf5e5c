//! SIP over UDP and TCP on tokio. Receiving tasks read datagrams and TCP streams, cut the
//! stream into messages (Content-Length), parse them with rsip and hand them to the SIP task
//! ([`crate::sip_task`]) and its user-agent core; what cannot be parsed is answered here with
//! 400 (or 501 for an unknown method) when it has enough headers for a response, and dropped
//! otherwise. Sending never waits: a full socket or connection queue drops the message, and
//! SIP's retransmissions take it from there.
//!
//! Every byte may come from an attacker (docs/security.md), so everything the network says is
//! bounded before it is used:
//!
//! - A message is at most [`MAX_MESSAGE`] bytes. Over UDP a bigger one is dropped; over TCP a
//!   head without its end within [`MAX_MESSAGE`], a Content-Length that is not a number (or
//!   two that disagree), or one that makes the message bigger than [`MAX_MESSAGE`], closes the
//!   connection, with a 400 first when the head has what a response needs. Lengths are read
//!   digit by digit with checked arithmetic and every message framed consumes at least one
//!   byte, so no loop runs without progress.
//! - Accepted TCP connections are capped per source address
//!   ([`MAX_CONNECTIONS_PER_ADDRESS`]; an IPv6 /64 counts as one address) and in total
//!   ([`max_connections`] of `max_calls`); past a cap a new connection is accepted and closed
//!   at once, and counted.
//! - A connection closes when a message stays incomplete for [`READ_TIMEOUT`] (slowloris),
//!   when nothing complete arrives for [`IDLE_TIMEOUT`] (unless a dialog or an agent's
//!   registration holds it: [`Sender::hold`], [`Sender::keep_open`]), and when a write does
//!   not complete within [`WRITE_TIMEOUT`] (a peer that does not read). Its write queue holds
//!   [`OUT_QUEUE`] messages; more are dropped.
//!
//! What is shed is counted in [`TransportStats`] and shown in `/metrics`
//! ([`TransportStats::write_metrics`]).
//!
//! SIP over TLS (`[server] tls`, [`start_tls`]) is TCP with rustls in between: the same caps
//! (shared with TCP), the same framing and timeouts once the handshake is done, which must be
//! within [`HANDSHAKE_TIMEOUT`] of the accept; messages read on it reach the core as
//! [`Proto::Tls`] and its responses go back on the same connection.
//!
//! Connections we open ourselves ([`Sender::connect`], a transfer to a `transport=tcp` URI)
//! read and write like accepted ones, without the caps and the idle timeout; they close when
//! their [`TcpLink`] is dropped (after a linger for the last transaction) or when the other
//! side closes them.

use ivr_sip::message::{self, MAX_MESSAGE};
use rsip::SipMessage;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use ivr_sip::peer::{Peer, Proto};

/// Accepted TCP connections open at once from one source address (an IPv6 /64 counts as one
/// address); past it a new connection from there is accepted and closed at once. A PBX or a
/// carrier's proxy needs a few; an attacker gets no more than this from one address.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 32;

/// The least cap on accepted TCP connections open at once, from all addresses together
/// ([`max_connections`]).
pub const MIN_CONNECTIONS_TOTAL: usize = 256;

/// An accepted TCP connection that brings no complete message (nor an RFC 5626 keep-alive,
/// a double CRLF) for this long is closed, unless a dialog or an agent's registration holds
/// it open. Above RFC 5626's 95-120 s between keep-alives.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(150);

/// A message whose head or body is still incomplete this long after its first byte arrived
/// closes its connection (slowloris). Any connection, ours too.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A write to a TCP connection that does not complete within this long (the peer does not
/// read) closes the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS client that has not finished its handshake this long after its connection was
/// accepted is closed (a slow or silent handshake holds a place under the caps).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages waiting to be written to one TCP connection; more are dropped.
pub const OUT_QUEUE: usize = 256;

/// How long a hold of [`Sender::keep_open`] may last at most (registrations last an hour at
/// most).
const MAX_KEEP_OPEN: Duration = Duration::from_secs(24 * 3600);

/// The cap on accepted TCP connections open at once for `max_calls` calls:
/// `max(MIN_CONNECTIONS_TOTAL, 2 × max_calls)` (a caller's connection and an agent's per
/// call, with room to spare).
pub fn max_connections(max_calls: usize) -> usize {
    MIN_CONNECTIONS_TOTAL.max(max_calls.saturating_mul(2))
}

/// The limits of the TCP transport: the constants above, or shorter ones in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLimits {
    /// Accepted connections open at once from one address ([`MAX_CONNECTIONS_PER_ADDRESS`]).
    pub per_address: usize,
    /// Accepted connections open at once in total ([`max_connections`]).
    pub total: usize,
    /// [`IDLE_TIMEOUT`].
    pub idle: Duration,
    /// [`READ_TIMEOUT`].
    pub read: Duration,
    /// [`WRITE_TIMEOUT`].
    pub write: Duration,
}

impl TcpLimits {
    /// The limits for a server of `max_calls` calls.
    pub fn for_calls(max_calls: usize) -> TcpLimits {
        TcpLimits {
            per_address: MAX_CONNECTIONS_PER_ADDRESS,
            total: max_connections(max_calls),
            idle: IDLE_TIMEOUT,
            read: READ_TIMEOUT,
            write: WRITE_TIMEOUT,
        }
    }
}

/// A message for the SIP task (and its user-agent core).
#[derive(Debug)]
pub struct Inbound {
    /// Who sent it.
    pub peer: Peer,
    /// The message.
    pub msg: SipMessage,
}

/// Counters of the transports (`/metrics`: [`TransportStats::write_metrics`]).
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Messages received and parsed.
    pub received: AtomicU64,
    /// Messages that could not be parsed (answered with 400/501 or dropped), and TCP heads
    /// whose Content-Length is not a number (the connection closed).
    pub malformed: AtomicU64,
    /// Messages bigger than [`MAX_MESSAGE`], or whose Content-Length says so, dropped (over
    /// TCP the connection closed).
    pub oversized: AtomicU64,
    /// Messages dropped because the core's queue was full.
    pub dropped: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// TCP connections accepted and served.
    pub tcp_accepted: AtomicU64,
    /// Accepted TCP connections open now.
    pub tcp_open: AtomicU64,
    /// TCP connections closed at once: their address had [`TcpLimits::per_address`] open.
    pub tcp_refused_per_address: AtomicU64,
    /// TCP connections closed at once: [`TcpLimits::total`] were open.
    pub tcp_refused_total: AtomicU64,
    /// TCP connections closed after [`TcpLimits::idle`] without a message.
    pub tcp_idle_closed: AtomicU64,
    /// TCP connections closed because a message stayed incomplete for [`TcpLimits::read`].
    pub tcp_read_timeouts: AtomicU64,
    /// TCP connections closed because a write took longer than [`TcpLimits::write`].
    pub tcp_write_timeouts: AtomicU64,
    /// TLS connections whose handshake completed.
    pub tls_handshakes: AtomicU64,
    /// TLS connections closed because the handshake failed (not TLS, no common cipher, ...).
    pub tls_handshakes_failed: AtomicU64,
    /// TLS connections closed because the handshake took longer than [`HANDSHAKE_TIMEOUT`].
    pub tls_handshake_timeouts: AtomicU64,
}

impl TransportStats {
    /// The series of the transports in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP ivr_sip_messages_received_total SIP messages received and parsed.\n\
             # TYPE ivr_sip_messages_received_total counter\n\
             ivr_sip_messages_received_total {}\n\
             # HELP ivr_sip_messages_sent_total SIP messages sent.\n\
             # TYPE ivr_sip_messages_sent_total counter\n\
             ivr_sip_messages_sent_total {}\n\
             # HELP ivr_sip_messages_malformed_total SIP messages that could not be read (answered with 400/501 or dropped; over TCP a bad Content-Length closes the connection).\n\
             # TYPE ivr_sip_messages_malformed_total counter\n\
             ivr_sip_messages_malformed_total {}\n\
             # HELP ivr_sip_messages_oversized_total SIP messages over the size limit, dropped (over TCP the connection is closed).\n\
             # TYPE ivr_sip_messages_oversized_total counter\n\
             ivr_sip_messages_oversized_total {}\n\
             # HELP ivr_sip_messages_dropped_total SIP messages dropped because the SIP task's queue was full.\n\
             # TYPE ivr_sip_messages_dropped_total counter\n\
             ivr_sip_messages_dropped_total {}\n\
             # HELP ivr_sip_tcp_connections Accepted SIP TCP connections open now.\n\
             # TYPE ivr_sip_tcp_connections gauge\n\
             ivr_sip_tcp_connections {}\n\
             # HELP ivr_sip_tcp_connections_accepted_total SIP TCP connections accepted and served.\n\
             # TYPE ivr_sip_tcp_connections_accepted_total counter\n\
             ivr_sip_tcp_connections_accepted_total {}\n\
             # HELP ivr_sip_tcp_connections_refused_total SIP TCP connections closed at once because a cap was reached, by cap.\n\
             # TYPE ivr_sip_tcp_connections_refused_total counter\n\
             ivr_sip_tcp_connections_refused_total{{limit=\"per_address\"}} {}\n\
             ivr_sip_tcp_connections_refused_total{{limit=\"total\"}} {}\n\
             # HELP ivr_sip_tcp_connections_timed_out_total SIP TCP connections closed by a timeout, by timeout.\n\
             # TYPE ivr_sip_tcp_connections_timed_out_total counter\n\
             ivr_sip_tcp_connections_timed_out_total{{timeout=\"idle\"}} {}\n\
             ivr_sip_tcp_connections_timed_out_total{{timeout=\"read\"}} {}\n\
             ivr_sip_tcp_connections_timed_out_total{{timeout=\"write\"}} {}\n\
             # HELP ivr_sip_tls_handshakes_total SIP TLS handshakes, by outcome.\n\
             # TYPE ivr_sip_tls_handshakes_total counter\n\
             ivr_sip_tls_handshakes_total{{outcome=\"done\"}} {}\n\
             ivr_sip_tls_handshakes_total{{outcome=\"failed\"}} {}\n\
             ivr_sip_tls_handshakes_total{{outcome=\"timeout\"}} {}\n",
            get(&self.received),
            get(&self.sent),
            get(&self.malformed),
            get(&self.oversized),
            get(&self.dropped),
            get(&self.tcp_open),
            get(&self.tcp_accepted),
            get(&self.tcp_refused_per_address),
            get(&self.tcp_refused_total),
            get(&self.tcp_idle_closed),
            get(&self.tcp_read_timeouts),
            get(&self.tcp_write_timeouts),
            get(&self.tls_handshakes),
            get(&self.tls_handshakes_failed),
            get(&self.tls_handshake_timeouts),
        );
    }
}

/// An open TCP connection, as senders see it.
struct Entry {
    /// Its write queue.
    tx: mpsc::Sender<Arc<[u8]>>,
    /// What keeps it open while idle.
    keep: Arc<Keep>,
}

/// The open TCP connections, by connection id.
type Connections = Arc<Mutex<HashMap<u64, Entry>>>;

/// What keeps a connection open however idle it is: dialogs on it ([`ConnHold`]) and an
/// agent's registration ([`Sender::keep_open`]).
#[derive(Debug, Default)]
struct Keep {
    holds: AtomicUsize,
    until: Mutex<Option<Instant>>,
}

impl Keep {
    /// When a connection idle since `idle_until` − idle may close, given its holds: never
    /// before `idle_until`, nor while held.
    fn idle_deadline(&self, idle_until: Instant, now: Instant, idle: Duration) -> Instant {
        let mut t = idle_until;
        if self.holds.load(Ordering::Relaxed) > 0 {
            t = t.max(now + idle);
        }
        if let Some(u) = self.until.lock().ok().and_then(|u| *u) {
            t = t.max(u);
        }
        t
    }
}

/// Keeps an accepted TCP connection open, however idle, while it lives ([`Sender::hold`]):
/// a dialog on it.
#[derive(Debug)]
pub struct ConnHold {
    keep: Arc<Keep>,
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        self.keep.holds.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepted connections open, per source address and in total.
#[derive(Debug, Default)]
struct Admitted {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// One accepted connection's place in [`Admitted`], given back when dropped.
struct Slot {
    admitted: Arc<Mutex<Admitted>>,
    source: IpAddr,
    stats: Arc<TransportStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut a) = self.admitted.lock() {
            a.total = a.total.saturating_sub(1);
            if let Some(n) = a.by_source.get_mut(&self.source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    a.by_source.remove(&self.source);
                }
            }
        }
        self.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which cap a new connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    PerAddress,
    Total,
}

/// The address a connection counts against: IPv4 (also when mapped into IPv6), or the /64 of
/// an IPv6 address (one host usually has a whole /64).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// How long a connection we opened stays open after its [`TcpLink`] is dropped: the last
/// transaction on it (a BYE and its 200) completes within timer F (64 T1).
const LINGER: Duration = Duration::from_secs(32);

/// How long [`Sender::connect`] waits for the other side to accept.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

/// How long a connection closed for a framing error reads (and drops) what still comes.
const DRAIN: Duration = Duration::from_secs(1);

/// How often a refused connection or a failing accept is logged at most.
const LOG_EVERY: Duration = Duration::from_secs(10);

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
    /// The caps and timeouts of TCP.
    limits: TcpLimits,
    /// Accepted connections open.
    admitted: Arc<Mutex<Admitted>>,
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
            Proto::Tcp | Proto::Tls => {
                let conn = self
                    .tcp
                    .lock()
                    .ok()
                    .and_then(|m| m.get(&peer.conn).map(|e| e.tx.clone()));
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

    /// The caps and timeouts of TCP.
    pub fn limits(&self) -> TcpLimits {
        self.limits
    }

    /// Keeps `peer`'s TCP connection open, however idle, until the hold is dropped (a dialog
    /// on it: our BYE must reach the caller after a long quiet call); `None` for UDP or a
    /// connection that is gone.
    pub fn hold(&self, peer: &Peer) -> Option<ConnHold> {
        if !peer.proto.reliable() {
            return None;
        }
        let keep = Arc::clone(&self.tcp.lock().ok()?.get(&peer.conn)?.keep);
        keep.holds.fetch_add(1, Ordering::Relaxed);
        Some(ConnHold { keep })
    }

    /// Keeps TCP connection `conn` open, however idle, for `d` from now (an agent registered
    /// over it for that long: calls are offered to the agent on it); zero ends an earlier
    /// one. Unknown connections are left alone.
    pub fn keep_open(&self, conn: u64, d: Duration) {
        let Some(keep) = self
            .tcp
            .lock()
            .ok()
            .and_then(|m| m.get(&conn).map(|e| Arc::clone(&e.keep)))
        else {
            return;
        };
        let until = (!d.is_zero())
            .then(|| Instant::now().checked_add(d.min(MAX_KEEP_OPEN)))
            .flatten();
        if let Ok(mut u) = keep.until.lock() {
            *u = until;
        }
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
        let _ = stream.set_nodelay(true);
        let task = ConnTask {
            stream: Box::new(stream),
            peer,
            writer,
            inbound: self.inbound.clone(),
            sender: self.clone(),
            idle: false,
            _slot: None,
        };
        tokio::spawn(async move {
            let linger = async {
                let _ = closed.await;
                tokio::time::sleep(LINGER).await;
            };
            tcp_conn(task, linger).await;
        });
        Ok(TcpLink {
            peer,
            _close: close,
        })
    }

    /// A place for a new accepted connection from `ip`, unless a cap is reached.
    fn admit(&self, ip: IpAddr) -> Result<Slot, Refused> {
        let source = source_key(ip);
        let mut a = self.admitted.lock().map_err(|_| Refused::Total)?;
        if a.total >= self.limits.total {
            return Err(Refused::Total);
        }
        let n = a.by_source.entry(source).or_insert(0);
        if *n >= self.limits.per_address {
            return Err(Refused::PerAddress);
        }
        *n += 1;
        a.total += 1;
        self.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            admitted: Arc::clone(&self.admitted),
            source,
            stats: Arc::clone(&self.stats),
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

/// Binds UDP and TCP on `addr` and starts receiving; messages go to `inbound`. TCP keeps to
/// `limits` ([`TcpLimits::for_calls`]).
pub async fn start(
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    limits: TcpLimits,
) -> std::io::Result<Bound> {
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
        limits,
        admitted: Arc::new(Mutex::new(Admitted::default())),
    };
    tokio::spawn(udp_loop(udp, inbound.clone(), Arc::clone(&stats)));
    tokio::spawn(accept_loop(tcp, inbound, sender.clone(), None));
    Ok(Bound {
        sender,
        udp_addr,
        tcp_addr,
    })
}

/// The bound SIP-over-TLS listener.
pub struct BoundTls {
    /// Its address.
    pub addr: SocketAddr,
}

/// Binds the SIP-over-TLS listener on `addr` with `config` (its certificate); connections
/// share the caps of TCP ([`TcpLimits`]) and reach the core through `sender`'s queue.
pub async fn start_tls(
    addr: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    sender: &Sender,
) -> std::io::Result<BoundTls> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(accept_loop(
        listener,
        sender.inbound.clone(),
        sender.clone(),
        Some(acceptor),
    ));
    Ok(BoundTls { addr })
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
        stats.oversized.fetch_add(1, Ordering::Relaxed);
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
            let resp = message::raw_error_response(data, code);
            if let Some(r) = &resp {
                crate::metrics::registry().count_sip_message(r);
            }
            resp
        }
    }
}

async fn udp_loop(udp: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>, stats: Arc<TransportStats>) {
    // Bigger than any UDP datagram, so none is cut short.
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
        let data = buf.get(..n).unwrap_or_default();
        if let Some(resp) = deliver(data, peer, &inbound, &stats) {
            let _ = udp.try_send_to(&resp, addr);
        }
    }
}

/// Whether something last logged at `last` may be logged again now (and notes it).
fn may_log(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Accepts TCP connections (TLS ones when `tls` is given) under the caps and serves each.
async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    sender: Sender,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let (mut failing_logged, mut refusing_logged) = (None, None);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors (EMFILE) and the like: wait for some to close.
                if may_log(&mut failing_logged) {
                    tracing::warn!(error = %e, "tcp accept");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match sender.admit(addr.ip()) {
            Ok(s) => s,
            Err(why) => {
                let (counter, cap) = match why {
                    Refused::PerAddress => (&sender.stats.tcp_refused_per_address, "per address"),
                    Refused::Total => (&sender.stats.tcp_refused_total, "in total"),
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if may_log(&mut refusing_logged) {
                    tracing::warn!(
                        peer = %addr,
                        "refusing TCP connections: too many open {cap} (logged every {} s)",
                        LOG_EVERY.as_secs()
                    );
                }
                drop(stream);
                continue;
            }
        };
        sender.stats.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let Some(acceptor) = tls.clone() else {
            serve_accepted(Box::new(stream), Proto::Tcp, addr, slot, &inbound, &sender);
            continue;
        };
        let (inbound, sender) = (inbound.clone(), sender.clone());
        tokio::spawn(async move {
            // The slot is held through the handshake, so handshakes count under the caps.
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    sender.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                    serve_accepted(Box::new(tls), Proto::Tls, addr, slot, &inbound, &sender);
                }
                Ok(Err(e)) => {
                    sender
                        .stats
                        .tls_handshakes_failed
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    sender
                        .stats
                        .tls_handshake_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %addr, "TLS handshake not done in time");
                }
            }
        });
    }
}

/// Serves an accepted connection (its handshake done, for TLS).
fn serve_accepted(
    stream: Box<dyn Stream>,
    proto: Proto,
    addr: SocketAddr,
    slot: Slot,
    inbound: &mpsc::Sender<Inbound>,
    sender: &Sender,
) {
    let conn = sender.next_conn.fetch_add(1, Ordering::Relaxed);
    let writer = register(sender, conn, addr);
    let task = ConnTask {
        stream,
        peer: Peer { proto, addr, conn },
        writer,
        inbound: inbound.clone(),
        sender: sender.clone(),
        idle: true,
        _slot: Some(slot),
    };
    tokio::spawn(tcp_conn(task, std::future::pending()));
}

/// The byte stream of a connection: TCP, or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// What [`Framer::next`] found at the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framed {
    /// A whole message: the first `n` bytes (never zero).
    Message(usize),
    /// An RFC 5626 keep-alive (a double CRLF between messages), consumed.
    Ping,
    /// More bytes are needed.
    Need,
    /// The message is bigger than [`MAX_MESSAGE`] (its head ends at `head` when that is
    /// known): the stream cannot go on.
    TooLarge {
        /// The length of the head, when it is complete.
        head: Option<usize>,
    },
    /// The head (of this length) has a Content-Length that is not a number, or two that
    /// disagree: the stream cannot go on.
    BadLength {
        /// The length of the head.
        head: usize,
    },
}

/// Why a Content-Length cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LengthError {
    /// Not a number, or two that disagree.
    Bad,
    /// Over [`MAX_MESSAGE`].
    TooLarge,
}

/// Cuts a TCP stream into SIP messages by their Content-Length. Each byte is searched once
/// for the end of the head, and the buffer never holds more than [`MAX_MESSAGE`] plus one
/// read.
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
    /// How much of `buf` has been searched for the end of the head.
    scanned: usize,
    /// Where the message at the start of `buf` ends, once its head has been read.
    end: Option<usize>,
    /// How much of a keep-alive (CRLF CRLF) the CRLFs skipped so far end with.
    ping: usize,
}

impl Framer {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether a message has begun and is incomplete.
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The first `n` bytes.
    fn bytes(&self, n: usize) -> &[u8] {
        self.buf.get(..n).unwrap_or(&self.buf)
    }

    /// Drops the first `n` bytes (a message handed on, CRLFs skipped).
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
        self.scanned = 0;
        self.end = None;
    }

    /// The next thing in the stream.
    fn next(&mut self) -> Framed {
        if self.end.is_none() && self.scanned == 0 {
            // CRLFs between messages are skipped; CRLF CRLF is a keep-alive (RFC 5626), also
            // when it comes in pieces.
            let mut skip = 0;
            let mut ping = false;
            for &b in &self.buf {
                if !matches!(b, b'\r' | b'\n') {
                    break;
                }
                skip += 1;
                self.ping = match (self.ping, b) {
                    (0 | 2, b'\r') => self.ping + 1,
                    (1 | 3, b'\n') => self.ping + 1,
                    (_, b'\r') => 1,
                    _ => 0,
                };
                if self.ping == 4 {
                    self.ping = 0;
                    ping = true;
                    break;
                }
            }
            if skip > 0 {
                self.consume(skip);
                if ping {
                    return Framed::Ping;
                }
            }
            if self.buf.is_empty() {
                return Framed::Need;
            }
            self.ping = 0;
        }
        let end = match self.end {
            Some(end) => end,
            None => {
                // The head ends with CRLF CRLF within MAX_MESSAGE.
                let limit = self.buf.len().min(MAX_MESSAGE);
                let from = self.scanned.saturating_sub(3).min(limit);
                let window = self.buf.get(from..limit).unwrap_or_default();
                let Some(at) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
                    self.scanned = limit;
                    return if self.buf.len() >= MAX_MESSAGE {
                        Framed::TooLarge { head: None }
                    } else {
                        Framed::Need
                    };
                };
                // At most MAX_MESSAGE: no overflow.
                let head = from + at + 4;
                let body = match content_length(self.bytes(head)) {
                    Ok(n) => n,
                    Err(LengthError::Bad) => return Framed::BadLength { head },
                    Err(LengthError::TooLarge) => return Framed::TooLarge { head: Some(head) },
                };
                match head.checked_add(body) {
                    Some(end) if end <= MAX_MESSAGE => {
                        self.end = Some(end);
                        end
                    }
                    _ => return Framed::TooLarge { head: Some(head) },
                }
            }
        };
        if self.buf.len() >= end {
            Framed::Message(end)
        } else {
            Framed::Need
        }
    }
}

/// The Content-Length of a head (its first line and header lines); 0 when it has none.
fn content_length(head: &[u8]) -> Result<usize, LengthError> {
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let n = digits(value.get(1..).unwrap_or_default().trim_ascii())?;
        if found.is_some_and(|f| f != n) {
            return Err(LengthError::Bad);
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

/// A Content-Length value: digits only, at most [`MAX_MESSAGE`].
fn digits(v: &[u8]) -> Result<usize, LengthError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(LengthError::Bad);
    }
    let mut n: usize = 0;
    for &d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(LengthError::TooLarge)?;
        if n > MAX_MESSAGE {
            return Err(LengthError::TooLarge);
        }
    }
    Ok(n)
}

/// A new connection's queue of messages to write, entered in the sender's map.
fn register(sender: &Sender, conn: u64, addr: SocketAddr) -> Writer {
    let (tx, rx) = mpsc::channel::<Arc<[u8]>>(OUT_QUEUE);
    let keep = Arc::new(Keep::default());
    if let Ok(mut m) = sender.tcp.lock() {
        m.insert(
            conn,
            Entry {
                tx: tx.clone(),
                keep: Arc::clone(&keep),
            },
        );
    }
    tracing::debug!(conn, peer = %addr, "tcp connection");
    Writer { tx, rx, keep }
}

/// The two ends of a connection's write queue, and what keeps it open.
struct Writer {
    tx: mpsc::Sender<Arc<[u8]>>,
    rx: mpsc::Receiver<Arc<[u8]>>,
    keep: Arc<Keep>,
}

/// One connection to serve.
struct ConnTask {
    stream: Box<dyn Stream>,
    /// Its peer ([`Proto::Tcp`] and the connection's id).
    peer: Peer,
    writer: Writer,
    inbound: mpsc::Sender<Inbound>,
    sender: Sender,
    /// Close it after [`TcpLimits::idle`] without a message (accepted connections).
    idle: bool,
    /// Its place under the caps (accepted connections), given back when it closes.
    _slot: Option<Slot>,
}

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The peer closed it, or reading failed.
    Peer,
    /// We closed it (the [`TcpLink`] is gone).
    Ours,
    /// Nothing complete for [`TcpLimits::idle`].
    Idle,
    /// A message incomplete for [`TcpLimits::read`].
    ReadTimeout,
    /// Writing failed or took longer than [`TcpLimits::write`].
    Write,
    /// The stream cannot be cut into messages (too large, bad Content-Length).
    Framing,
}

/// Sleeps until `t`, or for ever.
async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads and writes one connection until either side closes it, a limit is reached or
/// `close` completes.
async fn tcp_conn(task: ConnTask, close: impl std::future::Future<Output = ()>) {
    let ConnTask {
        stream,
        peer,
        writer,
        inbound,
        sender,
        idle,
        _slot,
    } = task;
    let limits = sender.limits;
    let stats = Arc::clone(&sender.stats);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let Writer { tx, mut rx, keep } = writer;
    let mut writer = {
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                match tokio::time::timeout(limits.write, wr.write_all(&data)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return,
                    Err(_) => {
                        stats.tcp_write_timeouts.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            // The queue is closed: our side of the connection ends (FIN; TLS's close_notify
            // first).
            let _ = tokio::time::timeout(limits.write, wr.shutdown()).await;
        })
    };
    let mut writer_done = false;
    let mut framer = Framer::default();
    let mut chunk = [0u8; 4096];
    // When the last complete message (or keep-alive) arrived, and when the first byte of the
    // incomplete one did.
    let mut last = Instant::now();
    let mut partial: Option<Instant> = None;
    tokio::pin!(close);
    let why = 'read: loop {
        let deadline = match partial {
            Some(t) => Some(t + limits.read),
            None if idle => {
                Some(keep.idle_deadline(last + limits.idle, Instant::now(), limits.idle))
            }
            None => None,
        };
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r {
                Ok(0) | Err(_) => break Closed::Peer,
                Ok(n) => n,
            },
            () = &mut close => break Closed::Ours,
            _ = &mut writer, if !writer_done => {
                writer_done = true;
                break Closed::Write;
            }
            () = sleep_until(deadline) => {
                if partial.is_some() {
                    stats.tcp_read_timeouts.fetch_add(1, Ordering::Relaxed);
                    break Closed::ReadTimeout;
                }
                let now = Instant::now();
                if keep.idle_deadline(last + limits.idle, now, limits.idle) > now {
                    continue; // held open meanwhile
                }
                stats.tcp_idle_closed.fetch_add(1, Ordering::Relaxed);
                break Closed::Idle;
            }
        };
        let now = Instant::now();
        framer.push(chunk.get(..n).unwrap_or_default());
        let mut completed = false;
        loop {
            match framer.next() {
                Framed::Need => break,
                Framed::Ping => {
                    last = now;
                    completed = true;
                    let _ = tx.try_send(Arc::from(&b"\r\n"[..]));
                }
                Framed::Message(end) => {
                    let resp = deliver(framer.bytes(end), peer, &inbound, &stats);
                    framer.consume(end);
                    last = now;
                    completed = true;
                    if let Some(r) = resp {
                        let _ = tx.try_send(Arc::from(r));
                    }
                }
                Framed::TooLarge { head } => {
                    stats.oversized.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) =
                        head.and_then(|h| message::raw_error_response(framer.bytes(h), 400))
                    {
                        crate::metrics::registry().count_sip_message(&r);
                        let _ = tx.try_send(Arc::from(r));
                    }
                    break 'read Closed::Framing;
                }
                Framed::BadLength { head } => {
                    stats.malformed.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = message::raw_error_response(framer.bytes(head), 400) {
                        let _ = tx.try_send(Arc::from(r));
                    }
                    break 'read Closed::Framing;
                }
            }
        }
        if completed || partial.is_none() {
            partial = (!framer.is_empty()).then_some(now);
        }
    };
    if let Ok(mut m) = sender.tcp.lock() {
        m.remove(&peer.conn);
    }
    // The writer drains the queue (a last 400) and closes its side; bounded.
    drop(tx);
    if !writer_done
        && tokio::time::timeout(limits.write, &mut writer)
            .await
            .is_err()
    {
        writer.abort();
    }
    if why == Closed::Framing {
        // What the peer still sends (the rest of an oversized body) is read and dropped for a
        // moment, so that closing with unread data (a reset) does not destroy the 400.
        let drain = async {
            let mut left = MAX_MESSAGE;
            while let Ok(n @ 1..) = rd.read(&mut chunk).await {
                left = left.saturating_sub(n);
                if left == 0 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN, drain).await;
    }
    tracing::debug!(conn = peer.conn, peer = %peer.addr, ?why, "tcp connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Frames `data` pushed at once: what comes out until more is needed or it fails.
    fn frames(data: &[u8]) -> Vec<Framed> {
        let mut f = Framer::default();
        f.push(data);
        let mut out = Vec::new();
        loop {
            let x = f.next();
            out.push(x);
            match x {
                Framed::Message(n) => f.consume(n),
                Framed::Ping => {}
                _ => return out,
            }
        }
    }

    #[test]
    fn framing() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabcOPT";
        assert_eq!(frames(m), [Framed::Message(m.len() - 3), Framed::Need]);
        assert_eq!(
            frames(b"OPTIONS sip:a SIP/2.0\r\nl: 10\r\n\r\nabc"),
            [Framed::Need]
        );
        // No Content-Length: no body.
        assert_eq!(
            frames(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n"),
            [Framed::Message(33), Framed::Need]
        );
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 999999\r\n\r\n";
        assert_eq!(
            frames(m),
            [Framed::TooLarge {
                head: Some(m.len())
            }]
        );
        assert_eq!(
            frames(&vec![b'a'; MAX_MESSAGE + 1]),
            [Framed::TooLarge { head: None }]
        );
        // CRLFs between messages are skipped; a double one is a keep-alive.
        assert_eq!(
            frames(b"\r\n\r\nOPTIONS sip:a SIP/2.0\r\n\r\n\r\n"),
            [Framed::Ping, Framed::Message(25), Framed::Need]
        );
        assert_eq!(frames(b"\r\n"), [Framed::Need]);
    }

    /// The attack of issue 13: a Content-Length that wraps the sum of offsets around.
    #[test]
    fn a_content_length_near_the_top_of_usize_is_too_large() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 18446744073709551553\r\n\r\n";
        assert_eq!(m.len(), 63);
        assert_eq!(frames(m), [Framed::TooLarge { head: Some(63) }]);
        let mut twice = m.to_vec();
        twice.extend_from_slice(m);
        assert_eq!(frames(&twice), [Framed::TooLarge { head: Some(63) }]);
        let huge = format!("OPTIONS sip:a SIP/2.0\r\nl: {}\r\n\r\n", "9".repeat(400));
        assert_eq!(
            frames(huge.as_bytes()),
            [Framed::TooLarge {
                head: Some(huge.len())
            }]
        );
    }

    #[test]
    fn content_lengths_are_digits_only_and_agree() {
        let head = |v: &str| format!("OPTIONS sip:a SIP/2.0\r\n{v}\r\n\r\n");
        for bad in [
            "Content-Length: +5",
            "Content-Length: -1",
            "Content-Length: 5x",
            "Content-Length: 0x10",
            "Content-Length:",
            "Content-Length: 1 2",
            "Content-Length: 3\r\nl: 4",
        ] {
            let h = head(bad);
            assert_eq!(
                frames(h.as_bytes()),
                [Framed::BadLength { head: h.len() }],
                "{bad}"
            );
        }
        let h = head("content-length:  0 \r\nL: 0");
        assert_eq!(
            frames(h.as_bytes()),
            [Framed::Message(h.len()), Framed::Need]
        );
        // Exactly MAX_MESSAGE is fine, one more is not.
        let h0 = head("Content-Length: 00000");
        let body = MAX_MESSAGE - h0.len();
        let h = head(&format!("Content-Length: {body:05}"));
        let mut m = h.clone().into_bytes();
        m.resize(MAX_MESSAGE, b'x');
        assert_eq!(frames(&m), [Framed::Message(MAX_MESSAGE), Framed::Need]);
        let h = head(&format!("Content-Length: {:05}", body + 1));
        assert_eq!(
            frames(h.as_bytes()),
            [Framed::TooLarge {
                head: Some(h.len())
            }]
        );
        // A head that does not end within MAX_MESSAGE.
        let mut long = b"OPTIONS sip:a SIP/2.0\r\nX: ".to_vec();
        long.resize(MAX_MESSAGE, b'y');
        assert_eq!(frames(&long), [Framed::TooLarge { head: None }]);
    }

    /// A byte at a time frames the same as all at once, and never rescans the whole buffer.
    #[test]
    fn byte_by_byte_framing() {
        let one = "INVITE sip:a SIP/2.0\r\nVia: SIP/2.0/TCP x\r\nl: 4\r\n\r\nbody";
        let stream = format!("\r\n{one}{one}\r\n\r\n{one}");
        let mut f = Framer::default();
        let mut got = Vec::new();
        for b in stream.as_bytes() {
            f.push(&[*b]);
            loop {
                match f.next() {
                    Framed::Need => break,
                    Framed::Message(n) => {
                        got.push(String::from_utf8_lossy(f.bytes(n)).to_string());
                        f.consume(n);
                    }
                    Framed::Ping => got.push("ping".into()),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(got, [one, one, "ping", one]);
        assert!(f.is_empty());
    }

    /// Random bytes in random pieces: every step either makes progress or stops, and the
    /// buffer stays bounded.
    #[test]
    fn random_streams_always_make_progress() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pieces: [&[u8]; 9] = [
            b"\r\n",
            b"\r\n\r\n",
            b"OPTIONS sip:a SIP/2.0\r\n",
            b"Content-Length: ",
            b"l:",
            b"18446744073709551553",
            b"7",
            b": ",
            b"x",
        ];
        for _ in 0..2_000 {
            let mut f = Framer::default();
            'stream: for _ in 0..200 {
                let mut data = Vec::new();
                for _ in 0..(rand() % 8) {
                    data.extend_from_slice(pieces[(rand() % 9) as usize]);
                }
                f.push(&data);
                for _ in 0..=data.len() + 1 {
                    let before = f.buf.len();
                    match f.next() {
                        Framed::Need => {
                            assert!(f.buf.len() <= MAX_MESSAGE);
                            continue 'stream;
                        }
                        Framed::Message(n) => {
                            assert!(n > 0 && n <= f.buf.len());
                            f.consume(n);
                        }
                        Framed::Ping => assert!(f.buf.len() < before),
                        Framed::TooLarge { .. } | Framed::BadLength { .. } => break 'stream,
                    }
                }
                panic!("no progress");
            }
        }
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:3:4:5:6".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("ip");
        assert_eq!(
            source_key(mapped),
            "10.0.0.1".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(max_connections(10), MIN_CONNECTIONS_TOTAL);
        assert_eq!(max_connections(1_000), 2_000);
        assert_eq!(max_connections(usize::MAX), usize::MAX);
    }

    /// A transport on loopback with short limits, and what reaches its core.
    async fn transport(limits: TcpLimits) -> (Bound, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(64);
        let b = start("127.0.0.1:0".parse().expect("addr"), tx, limits)
            .await
            .expect("start");
        (b, rx)
    }

    fn short() -> TcpLimits {
        TcpLimits {
            per_address: 2,
            total: 3,
            idle: Duration::from_millis(400),
            read: Duration::from_millis(300),
            write: Duration::from_millis(300),
        }
    }

    /// Connects from `source` (a loopback address).
    async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.bind(format!("{source}:0").parse().expect("addr"))
            .expect("bind");
        s.connect(to).await.expect("connect")
    }

    /// How long until the server closes `s` (reads everything it sends); `None` if it is
    /// still open after `within`.
    async fn closed_after(s: &mut TcpStream, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(started + within, s.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }

    const OPTIONS: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5;branch=z9hG4bK1\r\n\
        From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn connections_over_a_cap_are_closed_at_once() {
        let limits = TcpLimits {
            idle: Duration::from_secs(30),
            ..short()
        };
        let (b, _rx) = transport(limits).await;
        let mut a1 = connect_from("127.0.0.1", b.tcp_addr).await;
        let mut a2 = connect_from("127.0.0.1", b.tcp_addr).await;
        let mut a3 = connect_from("127.0.0.1", b.tcp_addr).await;
        let quick = Duration::from_millis(200);
        assert!(
            closed_after(&mut a3, Duration::from_secs(2))
                .await
                .is_some()
        );
        assert!(closed_after(&mut a1, quick).await.is_none());
        assert!(closed_after(&mut a2, quick).await.is_none());
        let stats = b.sender.stats();
        assert_eq!(stats.tcp_refused_per_address.load(Ordering::Relaxed), 1);
        // Another address gets the last place in total, then nobody does.
        let mut c1 = connect_from("127.0.0.2", b.tcp_addr).await;
        assert!(closed_after(&mut c1, quick).await.is_none());
        let mut c2 = connect_from("127.0.0.3", b.tcp_addr).await;
        assert!(
            closed_after(&mut c2, Duration::from_secs(2))
                .await
                .is_some()
        );
        assert_eq!(stats.tcp_refused_total.load(Ordering::Relaxed), 1);
        assert_eq!(stats.tcp_open.load(Ordering::Relaxed), 3);
        // A place is given back when its connection closes.
        drop(a1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut a4 = connect_from("127.0.0.1", b.tcp_addr).await;
        assert!(closed_after(&mut a4, quick).await.is_none());
        assert_eq!(stats.tcp_accepted.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn idle_connections_close_unless_held() {
        let limits = short();
        let (b, mut rx) = transport(limits).await;
        // Messages keep it open; then it closes an idle timeout after the last.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        for _ in 0..3 {
            tokio::time::sleep(limits.idle / 2).await;
            s.write_all(OPTIONS).await.expect("write");
        }
        let took = closed_after(&mut s, Duration::from_secs(3)).await;
        assert!(
            took.is_some_and(|t| t >= limits.idle / 2),
            "closed after {took:?}"
        );
        assert_eq!(b.sender.stats().tcp_idle_closed.load(Ordering::Relaxed), 1);
        let mut peer = None;
        while let Ok(m) = rx.try_recv() {
            peer = Some(m.peer);
        }
        assert!(peer.is_some_and(|p| p.proto == Proto::Tcp));

        // A dialog's hold keeps it open; dropping the hold lets it close.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        s.write_all(OPTIONS).await.expect("write");
        let peer = rx.recv().await.expect("message").peer;
        let hold = b.sender.hold(&peer).expect("hold");
        assert!(closed_after(&mut s, limits.idle * 3).await.is_none());
        drop(hold);
        assert!(closed_after(&mut s, limits.idle * 3).await.is_some());

        // A registration keeps it open for its lifetime.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        s.write_all(OPTIONS).await.expect("write");
        let peer = rx.recv().await.expect("message").peer;
        b.sender.keep_open(peer.conn, limits.idle * 3);
        let took = closed_after(&mut s, limits.idle * 6).await;
        assert!(
            took.is_some_and(|t| t >= limits.idle * 3 - Duration::from_millis(50)),
            "closed after {took:?}"
        );
        assert!(b.sender.hold(&peer).is_none(), "the connection is gone");
    }

    #[tokio::test]
    async fn a_message_left_incomplete_closes_its_connection() {
        let limits = short();
        let (b, _rx) = transport(limits).await;
        // Half a head, then a byte now and then: the read timeout runs from the first byte.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        s.write_all(&OPTIONS[..40]).await.expect("write");
        let mut took = None;
        for i in 0..10 {
            if let Some(t) = closed_after(&mut s, limits.read / 4).await {
                took = Some(t + limits.read / 4 * i);
                break;
            }
            let _ = s
                .write_all(&OPTIONS[40 + i as usize..41 + i as usize])
                .await;
        }
        assert!(
            took.is_some_and(|t| t < limits.read * 2),
            "closed after {took:?}"
        );
        // A head without its body, likewise.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        s.write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .expect("write");
        assert!(closed_after(&mut s, limits.read * 3).await.is_some());
        assert_eq!(
            b.sender.stats().tcp_read_timeouts.load(Ordering::Relaxed),
            2
        );
        assert_eq!(b.sender.stats().tcp_idle_closed.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_bad_content_length_is_answered_with_400_and_closes() {
        let (b, mut rx) = transport(short()).await;
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        let bad = String::from_utf8_lossy(OPTIONS)
            .replace("Content-Length: 0", "Content-Length: 18446744073709551553");
        s.write_all(OPTIONS).await.expect("write");
        s.write_all(bad.as_bytes()).await.expect("write");
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with("SIP/2.0 400 "), "{got}");
        assert!(rx.recv().await.is_some(), "the good message went on");
        assert_eq!(b.sender.stats().oversized.load(Ordering::Relaxed), 1);
        // The 63 bytes of the attack: no headers to answer, just closed.
        let mut s = connect_from("127.0.0.1", b.tcp_addr).await;
        s.write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 18446744073709551553\r\n\r\n")
            .await
            .expect("write");
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
        assert!(r.is_ok() && got.is_empty(), "{got:?}");
        assert_eq!(b.sender.stats().oversized.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_is_closed() {
        let limits = short();
        let (b, mut rx) = transport(limits).await;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        sock.set_recv_buffer_size(4096).expect("buffer");
        sock.connect(&b.tcp_addr.into()).expect("connect");
        sock.set_nonblocking(true).expect("nonblocking");
        let mut s = TcpStream::from_std(sock.into()).expect("stream");
        s.write_all(OPTIONS).await.expect("write");
        let peer = rx.recv().await.expect("message").peer;
        let big: Arc<[u8]> = Arc::from(vec![b'x'; 60_000]);
        let started = Instant::now();
        while b.sender.stats().tcp_write_timeouts.load(Ordering::Relaxed) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no write timeout"
            );
            b.sender.send(&peer, Arc::clone(&big));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The connection closes.
        while b.sender.send(&peer, Arc::clone(&big)) {
            assert!(started.elapsed() < Duration::from_secs(10), "still open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
