//! "Did you mean ...?": the nearest existing name to a misspelt one.

/// Edit distance (insertions, deletions, substitutions, and transpositions of two adjacent
/// characters, as in `agnet` for `agent`) between two strings, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows: two back (for transpositions), one back, current.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 0..a.len() {
        cur[0] = i + 1;
        for j in 0..b.len() {
            let cost = usize::from(a[i] != b[j]);
            let mut d = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && a[i] == b[j - 1] && a[i - 1] == b[j] {
                d = d.min(prev2[j - 1] + 1);
            }
            cur[j + 1] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if it is close enough to be a likely misspelling
/// (at most a third of the name's length, at least 1, or a case-insensitive match, or a
/// prefix of length 3 or more).
pub fn nearest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(name) {
            0
        } else {
            edit_distance(name, c)
        };
        let prefix = name.len() >= 3 && (c.starts_with(name) || name.starts_with(c));
        if (d <= limit || prefix) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// A ready hint: ``did you mean `x`?`` when a near name exists.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    nearest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        assert_eq!(edit_distance("blance", "balance"), 1);
        assert_eq!(
            nearest("blance", ["id", "name", "balance"]),
            Some("balance")
        );
        assert_eq!(
            nearest("main_mneu", ["main_menu", "agent"]),
            Some("main_menu")
        );
        assert_eq!(nearest("xyz", ["main_menu", "agent"]), None);
        assert_eq!(nearest("Agent", ["agent"]), Some("agent"));
        // A swap of two neighbouring letters is one edit.
        assert_eq!(edit_distance("agnet", "agent"), 1);
        assert_eq!(nearest("agnet", ["agent", "goodbye"]), Some("agent"));
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
