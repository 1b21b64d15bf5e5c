//! RTP (RFC 3550) fixed headers: writing the 12 bytes we send, reading the ones we receive.
//! No allocation: headers are written into a caller's buffer and packets are read in place.

/// Length of the fixed RTP header without CSRCs or extensions.
pub const HEADER_LEN: usize = 12;

/// The fields of an RTP header we send or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload type (0 PCMU, 8 PCMA, dynamic for telephone-event).
    pub payload_type: u8,
    /// Marker bit (the first packet of a talkspurt; the first packet of a DTMF event).
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp (8 kHz units for G.711 and telephone-event).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
}

impl Header {
    /// Writes the header (version 2, no padding, extension or CSRC).
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = 0x80;
        out[1] = (self.payload_type & 0x7f) | if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
    }
}

/// A received RTP packet, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The header fields.
    pub header: Header,
    /// The payload (after CSRCs and any header extension, without padding).
    pub payload: &'a [u8],
}

/// Reads an RTP packet; `None` for anything that is not RTP version 2 or is truncated (RTCP
/// on the same port is rejected by its payload types 200-204 with the marker bit).
pub fn parse(buf: &[u8]) -> Option<Packet<'_>> {
    if buf.len() < HEADER_LEN || buf[0] >> 6 != 2 {
        return None;
    }
    let padding = buf[0] & 0x20 != 0;
    let extension = buf[0] & 0x10 != 0;
    let csrcs = usize::from(buf[0] & 0x0f);
    let pt = buf[1] & 0x7f;
    // RTCP packet types 200..=204 appear as marker + payload type 72..=76.
    if buf[1] & 0x80 != 0 && (72..=76).contains(&pt) {
        return None;
    }
    let mut start = HEADER_LEN + 4 * csrcs;
    if extension {
        let ext = buf.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    let mut end = buf.len();
    if padding {
        let pad = usize::from(*buf.last()?);
        end = end.checked_sub(pad)?;
    }
    let payload = buf.get(start..end)?;
    Some(Packet {
        header: Header {
            payload_type: pt,
            marker: buf[1] & 0x80 != 0,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header {
            payload_type: 8,
            marker: true,
            seq: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
        };
        let mut buf = [0u8; HEADER_LEN + 3];
        let mut head = [0u8; HEADER_LEN];
        h.write(&mut head);
        buf[..HEADER_LEN].copy_from_slice(&head);
        buf[HEADER_LEN..].copy_from_slice(&[1, 2, 3]);
        let p = parse(&buf).expect("valid");
        assert_eq!(p.header, h);
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn rejects_junk() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x40; 20]).is_none());
        // RTCP sender report.
        let mut rtcp = [0u8; 28];
        rtcp[0] = 0x80;
        rtcp[1] = 200;
        assert!(parse(&rtcp).is_none());
        // Padding longer than the packet.
        let mut bad = [0u8; 13];
        bad[0] = 0xa0;
        bad[12] = 200;
        assert!(parse(&bad).is_none());
    }
}
