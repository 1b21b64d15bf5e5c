//! The outbound channels of each trunk (`[trunks.NAME] max_calls`), shared by everything that
//! places calls through it: campaigns' attempts and agents' transfers to numbers. A channel is
//! a permit of the trunk's semaphore, held while the call is up; none free: the trunk is full.
//!
//! A trunk's count is fixed the first time it is used (a reload does not resize it); the
//! trunk that agents' transfers to a number take is [`default_trunk`].

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

/// Every trunk's channels (see the module documentation).
#[derive(Default)]
pub struct TrunkChannels {
    trunks: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl TrunkChannels {
    /// The semaphore of trunk `name`, made with `max_calls` permits on first use.
    pub fn of(&self, name: &str, max_calls: u32) -> Arc<Semaphore> {
        let mut t = self
            .trunks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            t.entry(name.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(max_calls as usize))),
        )
    }

    /// A channel of trunk `name` now, or none when all are taken.
    pub fn try_take(&self, name: &str, max_calls: u32) -> Option<OwnedSemaphorePermit> {
        self.of(name, max_calls).try_acquire_owned().ok()
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
