//! Skills interned to bit numbers, and sets of them as bitmasks: "agent has every skill the
//! call needs" is a few word operations.

use std::collections::HashMap;

/// A set of interned skills: bit `n` of word `n / 64` is skill `n`. Trailing zero words are
/// never stored, so equal sets compare and hash equal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct SkillSet {
    words: Vec<u64>,
}

impl SkillSet {
    /// Adds skill `bit`.
    pub(super) fn insert(&mut self, bit: usize) {
        let word = bit / 64;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (bit % 64);
    }

    /// Whether every skill of `self` is in `of`.
    pub(super) fn is_subset(&self, of: &SkillSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(i, w)| w & !of.words.get(i).copied().unwrap_or(0) == 0)
    }

    /// The skills of both.
    pub(super) fn union(&self, other: &SkillSet) -> SkillSet {
        let (long, short) = if self.words.len() >= other.words.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut words = long.words.clone();
        for (w, o) in words.iter_mut().zip(&short.words) {
            *w |= o;
        }
        SkillSet { words }
    }
}

/// Skill names to bit numbers. Rebuilt on every reconfiguration from the skills still in use,
/// so it does not grow across reloads.
#[derive(Debug, Default)]
pub(super) struct SkillTable {
    bits: HashMap<String, usize>,
}

impl SkillTable {
    /// The bit of `name`, interning it if new.
    pub(super) fn bit(&mut self, name: &str) -> usize {
        if let Some(&b) = self.bits.get(name) {
            return b;
        }
        let b = self.bits.len();
        self.bits.insert(name.to_string(), b);
        b
    }

    /// The set of `names`, interning new ones.
    pub(super) fn set(&mut self, names: &[String]) -> SkillSet {
        let mut set = SkillSet::default();
        for n in names {
            set.insert(self.bit(n));
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_and_unions_across_words() {
        let mut t = SkillTable::default();
        let names: Vec<String> = (0..130).map(|i| format!("s{i}")).collect();
        let all = t.set(&names);
        let some = t.set(&[names[3].clone(), names[129].clone()]);
        let other = t.set(&[names[70].clone()]);
        assert!(some.is_subset(&all));
        assert!(!all.is_subset(&some));
        assert!(!other.is_subset(&some));
        assert!(SkillSet::default().is_subset(&some));
        let both = some.union(&other);
        assert!(other.is_subset(&both) && some.is_subset(&both));
        assert_eq!(both, other.union(&some));
        assert_eq!(t.set(&[names[3].clone()]), t.set(&[names[3].clone()]));
    }
}
