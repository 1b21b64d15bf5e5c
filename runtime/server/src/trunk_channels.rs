//! The outbound channels of each trunk (`[trunks.NAME] max_calls`), shared by everything that
//! places calls through it: campaigns' attempts and agents' transfers to numbers. A channel is
//! a permit of the trunk's semaphore, held while the call is up; none free: the trunk is full.
//!
//! A trunk's count follows `ivr.toml`: every take passes the current deployment's
//! `max_calls`, and a count changed by a reload resizes the trunk there. A higher count adds
//! channels at once; a lower one takes effect as channels are released (calls in progress
//! keep theirs: the free channels above the new count are forgotten, and so are the ones
//! released while the trunk still has too many). The trunk that agents' transfers to a
//! number take is [`default_trunk`].

use ivr_compiler::config::{Config, TrunkConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The name of the trunk agents' transfers to numbers go through when several are declared.
pub const DEFAULT_TRUNK: &str = "default";

/// The trunk a transfer to a number goes through: `[trunks.default]`, or the only trunk when
/// just one is declared; none otherwise.
pub fn default_trunk(config: &Config) -> Option<(&str, &TrunkConfig)> {
    if let Some(t) = config.trunks.get(DEFAULT_TRUNK) {
        return Some((DEFAULT_TRUNK, t));
    }
    match config.trunks.len() {
        1 => config.trunks.first().map(|(n, t)| (n.as_str(), t)),
        _ => None,
    }
}

/// Whether `user` is a number that may be dialled through a trunk: digits (`*`, `#`), a
/// leading `+`, at least one digit, at most 32 characters. Agents' phones calling out and
/// agents' transfers and consultations share this rule.
pub fn is_number(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 32
        && user
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || "*#".contains(c) || (i == 0 && c == '+'))
        && user.chars().any(|c| c.is_ascii_digit())
}

/// One trunk's channels: the permits of `channels`, free or taken, number `existing`.
struct Trunk {
    channels: Arc<Semaphore>,
    /// `max_calls` as last given.
    configured: usize,
    /// The permits there are, free or taken: above `configured` after a lower count, until
    /// enough channels are released.
    existing: usize,
}

impl Trunk {
    fn new(max_calls: usize) -> Trunk {
        Trunk {
            channels: Arc::new(Semaphore::new(max_calls)),
            configured: max_calls,
            existing: max_calls,
        }
    }

    /// Takes `max_calls` as the trunk's count: adds the channels a higher count needs, and
    /// forgets free ones above it (taken ones are forgotten on a later call, once released).
    fn resize(&mut self, max_calls: usize) {
        self.configured = max_calls;
        if max_calls > self.existing {
            self.channels.add_permits(max_calls - self.existing);
            self.existing = max_calls;
        }
        if self.existing > self.configured {
            let gone = self
                .channels
                .forget_permits(self.existing - self.configured);
            self.existing -= gone;
        }
    }
}

/// Every trunk's channels (see the module documentation).
#[derive(Default)]
pub struct TrunkChannels {
    trunks: Mutex<HashMap<String, Trunk>>,
}

impl TrunkChannels {
    /// A channel of trunk `name` now, or none when all are taken. `max_calls` is the trunk's
    /// count in the current deployment: the trunk is made with it on first use and resized
    /// to it when it changed.
    pub fn try_take(&self, name: &str, max_calls: u32) -> Option<OwnedSemaphorePermit> {
        let mut t = self
            .trunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let max_calls = (max_calls as usize).min(Semaphore::MAX_PERMITS);
        let trunk = t
            .entry(name.to_string())
            .or_insert_with(|| Trunk::new(max_calls));
        trunk.resize(max_calls);
        // Under the lock: a channel released meanwhile is forgotten first when the trunk
        // has too many.
        Arc::clone(&trunk.channels).try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trunk_is_full_once_its_channels_are_taken() {
        let t = TrunkChannels::default();
        let a = t.try_take("default", 2);
        let b = t.try_take("default", 2);
        assert!(a.is_some() && b.is_some());
        assert!(t.try_take("default", 2).is_none());
        // Another trunk has its own.
        assert!(t.try_take("carrier", 1).is_some());
        drop(a);
        assert!(t.try_take("default", 2).is_some());
    }

    #[test]
    fn a_reload_raises_a_trunk_at_once_and_lowers_it_as_channels_are_released() {
        let t = TrunkChannels::default();
        let a = t.try_take("default", 1);
        assert!(a.is_some());
        assert!(t.try_take("default", 1).is_none());
        // Raised to 3: two more at once, the call in progress keeps its channel.
        let b = t.try_take("default", 3);
        let c = t.try_take("default", 3);
        assert!(b.is_some() && c.is_some());
        assert!(t.try_take("default", 3).is_none());
        // Lowered to 1 with three calls up: they go on; none new until two have ended.
        assert!(t.try_take("default", 1).is_none());
        drop(a);
        assert!(t.try_take("default", 1).is_none());
        drop(b);
        assert!(t.try_take("default", 1).is_none());
        drop(c);
        let d = t.try_take("default", 1);
        assert!(d.is_some());
        assert!(t.try_take("default", 1).is_none());
        drop(d);
        // Raised with every channel free, then lowered: the new count at once.
        let held: Vec<_> = (0..5).filter_map(|_| t.try_take("default", 4)).collect();
        assert_eq!(held.len(), 4);
        drop(held);
        let held: Vec<_> = (0..5).filter_map(|_| t.try_take("default", 2)).collect();
        assert_eq!(held.len(), 2);
        // Lowered to 1, then raised to 3 before the two calls ended: one more at once.
        assert!(t.try_take("default", 1).is_none());
        let x = t.try_take("default", 3);
        assert!(x.is_some());
        assert!(t.try_take("default", 3).is_none());
    }

    #[test]
    fn the_default_trunk_is_named_default_or_the_only_one() {
        let parse = |text: &str| {
            let mut sources = ivr_dsl::SourceMap::new();
            let file = sources.add("ivr.toml", text.to_string());
            ivr_compiler::config::Config::parse(file, std::path::Path::new("."), text).0
        };
        let one = parse("[trunks.carrier]\nuri = \"sip:127.0.0.1:5070\"\n");
        assert_eq!(default_trunk(&one).map(|t| t.0), Some("carrier"));
        let two = parse(
            "[trunks.carrier]\nuri = \"sip:127.0.0.1:5070\"\n[trunks.default]\nuri = \"sip:127.0.0.1:5080\"\n",
        );
        assert_eq!(default_trunk(&two).map(|t| t.0), Some("default"));
        let neither = parse(
            "[trunks.a]\nuri = \"sip:127.0.0.1:5070\"\n[trunks.b]\nuri = \"sip:127.0.0.1:5080\"\n",
        );
        assert!(default_trunk(&neither).is_none());
        assert!(default_trunk(&parse("")).is_none());
    }
}
