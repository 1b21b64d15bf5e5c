//! RTP ports from the configured range (`[server] rtp_ports = "20000-29999"`): even ports,
//! handed out least recently used first, each bound to a UDP socket and released when the
//! [`RtpPort`] guard drops, so every call gives its port back however it ends.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// `rtp_ports` that is not a range of ports: the text as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rtp_ports must read LOW-HIGH, like 20000-29999 (got `{0}`)")]
pub struct PortRangeError(pub String);

/// For `ivr serve` (`runtime/server`), whose start-up still reports its errors as text.
impl From<PortRangeError> for String {
    fn from(e: PortRangeError) -> String {
        e.to_string()
    }
}

/// Reads `LOW-HIGH` (inclusive, 1024..=65535, LOW <= HIGH).
pub fn parse_range(text: &str) -> Result<(u16, u16), PortRangeError> {
    let bad = || PortRangeError(text.to_string());
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo < 1024 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

/// The pool of RTP ports.
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    free: Mutex<VecDeque<u16>>,
    total: usize,
}

impl PortPool {
    /// The even ports of `low..=high`, bound on `ip` when handed out.
    pub fn new(ip: IpAddr, low: u16, high: u16) -> Arc<PortPool> {
        let free: VecDeque<u16> = (low..=high).filter(|p| p % 2 == 0).collect();
        let total = free.len();
        Arc::new(PortPool {
            ip,
            free: Mutex::new(free),
            total,
        })
    }

    /// How many ports the range holds.
    pub fn total(&self) -> usize {
        self.total
    }

    /// How many are free now.
    pub fn available(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }

    /// A free port with its bound socket; ports some other program holds are skipped (and
    /// put back at the end of the line). `None` when every port is taken.
    pub fn allocate(self: &Arc<Self>) -> Option<RtpPort> {
        let mut tries = self.total;
        while tries > 0 {
            tries -= 1;
            let port = self.free.lock().ok()?.pop_front()?;
            match UdpSocket::bind(SocketAddr::new(self.ip, port)) {
                Ok(socket) => {
                    return Some(RtpPort {
                        socket: Some(socket),
                        port,
                        pool: Arc::clone(self),
                    });
                }
                Err(_) => {
                    if let Ok(mut f) = self.free.lock() {
                        f.push_back(port);
                    }
                }
            }
        }
        None
    }

    fn release(&self, port: u16) {
        if let Ok(mut f) = self.free.lock() {
            f.push_back(port);
        }
    }
}

/// A port taken from the pool with its socket; dropping it closes the socket and gives the
/// port back.
#[derive(Debug)]
pub struct RtpPort {
    socket: Option<UdpSocket>,
    port: u16,
    pool: Arc<PortPool>,
}

impl RtpPort {
    /// The port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bound socket.
    pub fn socket(&self) -> Option<&UdpSocket> {
        self.socket.as_ref()
    }

    /// Takes the socket out (the port is still held until the guard drops).
    pub fn take_socket(&mut self) -> Option<UdpSocket> {
        self.socket.take()
    }
}

impl Drop for RtpPort {
    fn drop(&mut self) {
        self.socket = None;
        self.pool.release(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("20000-29999"), Ok((20000, 29999)));
        assert!(parse_range("29999-20000").is_err());
        assert!(parse_range("80-100").is_err());
        assert!(parse_range("x").is_err());
    }

    #[test]
    fn ports_come_back() {
        let pool = PortPool::new("127.0.0.1".parse().expect("ip"), 41000, 41003);
        assert_eq!(pool.total(), 2);
        let a = pool.allocate().expect("a");
        let b = pool.allocate().expect("b");
        assert_ne!(a.port(), b.port());
        assert!(pool.allocate().is_none());
        drop(a);
        assert_eq!(pool.available(), 1);
        assert!(pool.allocate().is_some());
    }
}
