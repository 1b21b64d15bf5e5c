//! DTMF keys: RFC 4733 telephone-events on the media (the keys of SIP INFO bodies are
//! `ivr_sip::info::key_of_info`).
//!
//! A telephone-event is sent as several packets sharing one RTP timestamp (the event's start),
//! the last three usually repeated with the end bit. [`EventDetector`] reports each event once,
//! on its first packet, so a key reaches the flow as soon as it is pressed.

/// The key of a telephone-event code (0-9, `*` = 10, `#` = 11; A-D and others are not keys).
pub fn key_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        _ => None,
    }
}

/// The telephone-event code of a key.
pub fn event_of_key(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        _ => None,
    }
}

/// Reports each telephone-event once.
#[derive(Debug, Default, Clone)]
pub struct EventDetector {
    /// The RTP timestamp of the last event reported.
    last: Option<u32>,
}

impl EventDetector {
    /// A detector that has seen nothing.
    pub fn new() -> EventDetector {
        EventDetector::default()
    }

    /// Feeds one telephone-event payload with its packet's RTP timestamp; returns the key when
    /// this packet starts a new event.
    pub fn feed(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        if payload.len() < 4 {
            return None;
        }
        if self.last == Some(timestamp) {
            return None;
        }
        self.last = Some(timestamp);
        key_of_event(payload[0])
    }
}

/// Writes a telephone-event payload (for tests and tools): event, end bit, volume 10,
/// duration in timestamp units.
pub fn event_payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_event() {
        let mut d = EventDetector::new();
        assert_eq!(d.feed(1000, &event_payload(5, false, 160)), Some('5'));
        assert_eq!(d.feed(1000, &event_payload(5, false, 320)), None);
        for _ in 0..3 {
            assert_eq!(d.feed(1000, &event_payload(5, true, 800)), None);
        }
        // The same key again is a new event (new timestamp).
        assert_eq!(d.feed(3000, &event_payload(5, true, 800)), Some('5'));
        assert_eq!(d.feed(5000, &event_payload(11, false, 160)), Some('#'));
        assert_eq!(d.feed(7000, &event_payload(16, false, 160)), None);
        assert_eq!(d.feed(9000, &[1, 2]), None);
    }
}
