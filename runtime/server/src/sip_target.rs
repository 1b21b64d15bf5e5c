//! Where a SIP URI is sent: its host and port looked up, and over TCP a connection opened
//! ([`resolve`]); used by transfers to `to` addresses, campaigns and callbacks dialling through
//! a trunk.

use crate::transport::{Peer, Proto, TcpLink};
use std::net::SocketAddr;

/// Where a `transfer to` URI is sent: its host and port (5060 by default), looked up when it
/// is a name, over UDP, or over a new TCP connection for `;transport=tcp` (RFC 3263's
/// NAPTR/SRV steps are not taken: name the port). `Err`: the status the leg fails with, 404
/// when the host is not found, 503 when it does not accept the connection (RFC 3261 8.1.3.1).
pub(crate) async fn resolve(
    target: &str,
    sip: &crate::transport::Sender,
) -> Result<(Peer, Option<TcpLink>), u16> {
    let uri = rsip::Uri::try_from(target).map_err(|_| 404u16)?;
    let proto = match uri
        .params
        .iter()
        .find_map(|p| match p {
            rsip::Param::Transport(t) => Some(t.to_string().to_ascii_lowercase()),
            _ => None,
        })
        .as_deref()
    {
        Some("tcp") => Proto::Tcp,
        _ => Proto::Udp,
    };
    let host = uri.host_with_port.host.to_string();
    let port = uri.host_with_port.port.map_or(5060, |p| *p.value());
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or(404u16)?,
    };
    match proto {
        Proto::Tcp => match sip.connect(addr).await {
            Ok(link) => Ok((link.peer, Some(link))),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "cannot connect over TCP");
                Err(503)
            }
        },
        // `transport=tls` targets are not dialled over TLS (no client TLS): UDP, as before.
        Proto::Udp | Proto::Tls => Ok((
            Peer {
                addr,
                proto: Proto::Udp,
                conn: 0,
            },
            None,
        )),
    }
}
