//! Where a SIP message came from and how to answer it: the transport and the source.

use std::net::SocketAddr;

/// UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
}

impl Proto {
    /// As Via writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "UDP",
            Proto::Tcp => "TCP",
        }
    }

    /// Whether the transport is reliable (no retransmissions).
    pub fn reliable(self) -> bool {
        self == Proto::Tcp
    }
}

/// Where a message came from, and how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub proto: Proto,
    /// The source address.
    pub addr: SocketAddr,
    /// The TCP connection (0 for UDP).
    pub conn: u64,
}
