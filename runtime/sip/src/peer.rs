//! Where a SIP message came from and how to answer it: the transport and the source.

use std::net::SocketAddr;

/// UDP, TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP (`[server] tls`): a connection like TCP's; our Contact is `sips:`.
    Tls,
}

impl Proto {
    /// As Via writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
            Proto::Tls => "TLS",
        }
    }

    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Tls)
    }
}

/// Where a message came from, and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub proto: Proto,
    /// The source address.
    pub addr: SocketAddr,
    /// The TCP or TLS connection (0 for UDP).
    pub conn: u64,
}
