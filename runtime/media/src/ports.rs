//! RTP ports from the configured range (`[server] rtp_ports = "20000-29999"`): even ports,
//! handed out at random among the free ones (a stranger cannot guess the next call's port from
//! the last one's), each bound to a UDP socket and released when the
//! [`RtpPort`] guard drops, so every call gives its port back however it ends.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// A random number from the operating system (a fixed one if it has none to give).
fn random_u64() -> u64 {
    getrandom::u64().unwrap_or(0x9e37_79b9_7f4a_7c15)
}

/// `rtp_ports` that is not a range of ports: the text as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rtp_ports must read LOW-HIGH, like 20000-29999 (got `{0}`)")]
pub struct PortRangeError(pub String);

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

    /// A free port, drawn at random, with its bound socket; ports some other program holds
    /// are skipped (and put back). `None` when every port is taken.
    pub fn allocate(self: &Arc<Self>) -> Option<RtpPort> {
        let mut tries = self.total;
        while tries > 0 {
            tries -= 1;
            let port = {
                let mut free = self.free.lock().ok()?;
                let n = u64::try_from(free.len()).ok()?;
                if n == 0 {
                    return None;
                }
                let i = usize::try_from(random_u64() % n).ok()?;
                free.swap_remove_back(i)?
            };
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

    #[test]
    fn ports_are_handed_out_at_random() {
        let pool = PortPool::new("127.0.0.1".parse().expect("ip"), 42000, 42199);
        let ports: Vec<u16> = (0..20)
            .filter_map(|_| pool.allocate().map(|p| p.port()))
            .collect();
        assert_eq!(ports.len(), 20);
        // In order they would be 42000, 42002, ...: at random, hardly ever 20 in a row.
        let in_order = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(in_order < 10, "ports in order: {ports:?}");
    }
}
