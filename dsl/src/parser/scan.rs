//! A small hand-written scanner used around the pest grammar: it skips comments, finds the
//! token at a position (to name it in an error), finds where to resume after an error, and
//! limits the nesting of parentheses before pest sees the text.
//!
//! Every function works on byte offsets and only ever stops at ASCII bytes or at the end of a
//! character, so the offsets it returns are always character boundaries.

use std::borrow::Cow;

/// Words that start a top-level item.
pub(crate) const TOP_LEVEL_WORDS: &[&str] = &[
    "flow", "import", "step", "menu", "input", "lookup", "transfer", "survey", "record",
];

/// What kind of token [`token_at`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    /// A word: letters, digits, `_`, starting with a letter or `_`.
    Word,
    /// Starts with a digit: `12`, `58.30`, `5s`, `5x`.
    Number,
    /// A string; `terminated` is false when the line or file ends first.
    Str {
        /// Whether the closing quote was found.
        terminated: bool,
    },
    /// Anything else: `->`, `==`, `{`, `,`, ...
    Punct,
}

/// One token of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// What it is.
    pub kind: TokKind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Token {
    /// The token's text.
    pub fn text<'s>(&self, src: &'s str) -> &'s str {
        src.get(self.start..self.end).unwrap_or("")
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The offset of the `\n` that ends the line holding `pos` (or the end of the text).
pub(crate) fn line_end(src: &str, pos: usize) -> usize {
    src.as_bytes()
        .iter()
        .skip(pos)
        .position(|&b| b == b'\n')
        .map_or(src.len(), |i| pos + i)
}

/// The offset just after the `lines`-th line end from `pos` (or the end of the text).
pub(crate) fn lines_end(src: &str, pos: usize, lines: usize) -> usize {
    let mut end = pos;
    for _ in 0..lines {
        if end >= src.len() {
            return src.len();
        }
        end = line_end(src, end) + 1;
    }
    end.min(src.len())
}

/// Skips spaces and a trailing comment from `pos`, without crossing the line break.
pub(crate) fn skip_trivia_on_line(src: &str, mut pos: usize) -> usize {
    let bytes = src.as_bytes();
    loop {
        match bytes.get(pos) {
            Some(b' ' | b'\t' | b'\r') => pos += 1,
            Some(b'#') => return line_end(src, pos),
            Some(b'/') if bytes.get(pos + 1) == Some(&b'/') => return line_end(src, pos),
            _ => return pos,
        }
    }
}

/// Skips whitespace and comments from `pos`.
pub(crate) fn skip_trivia(src: &str, mut pos: usize) -> usize {
    let bytes = src.as_bytes();
    loop {
        match bytes.get(pos) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => pos += 1,
            Some(b'#') => pos = line_end(src, pos),
            Some(b'/') if bytes.get(pos + 1) == Some(&b'/') => pos = line_end(src, pos),
            Some(0xEF) if src.get(pos..).is_some_and(|s| s.starts_with('\u{FEFF}')) => pos += 3,
            _ => return pos,
        }
    }
}

/// The token that starts at `pos` (which should not be whitespace), or `None` at the end.
pub(crate) fn token_at(src: &str, pos: usize) -> Option<Token> {
    let rest = src.get(pos..)?;
    let first = rest.chars().next()?;
    let bytes = src.as_bytes();
    let tok = |kind, end| {
        Some(Token {
            kind,
            start: pos,
            end,
        })
    };
    if first == '"' {
        let mut i = pos + 1;
        loop {
            match bytes.get(i) {
                None => return tok(TokKind::Str { terminated: false }, src.len()),
                Some(b'\n') => {
                    let end = if i > pos + 1 && bytes.get(i - 1) == Some(&b'\r') {
                        i - 1
                    } else {
                        i
                    };
                    return tok(TokKind::Str { terminated: false }, end);
                }
                Some(b'"') => return tok(TokKind::Str { terminated: true }, i + 1),
                Some(b'\\') if matches!(bytes.get(i + 1), Some(b'"' | b'\\')) => i += 2,
                Some(_) => i += 1,
            }
        }
    }
    if first.is_ascii_digit() {
        let mut end = pos;
        let mut seen_dot = false;
        for (i, c) in rest.char_indices() {
            let next_is_digit = rest
                .get(i + 1..)
                .and_then(|s| s.chars().next())
                .is_some_and(|d| d.is_ascii_digit());
            if is_word_char(c) || (c == '.' && !seen_dot && next_is_digit) {
                seen_dot |= c == '.';
                end = pos + i + c.len_utf8();
            } else {
                break;
            }
        }
        return tok(TokKind::Number, end);
    }
    if is_word_char(first) {
        // ASCII first (the common case), then any other word characters.
        let mut end = pos;
        while bytes
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            end += 1;
        }
        if bytes.get(end).is_some_and(|b| !b.is_ascii()) {
            end += src
                .get(end..)
                .unwrap_or("")
                .chars()
                .take_while(|&c| is_word_char(c))
                .map(char::len_utf8)
                .sum::<usize>();
        }
        return tok(TokKind::Word, end);
    }
    for two in ["->", "==", "!=", "<=", ">=", ".."] {
        if rest.starts_with(two) {
            return tok(TokKind::Punct, pos + 2);
        }
    }
    tok(TokKind::Punct, pos + first.len_utf8())
}

/// The tokens between `from` and `to`, skipping comments.
pub(crate) fn tokens_between(src: &str, from: usize, to: usize) -> Vec<Token> {
    let mut out = Vec::new();
    let mut pos = from;
    loop {
        pos = skip_trivia(src, pos);
        if pos >= to {
            return out;
        }
        match token_at(src, pos) {
            Some(t) if t.start < to => {
                pos = t.end;
                out.push(t);
            }
            _ => return out,
        }
    }
}

/// The end of the last token that ends at or before `limit`, scanning from `from`.
pub(crate) fn last_token_end(src: &str, from: usize, limit: usize) -> usize {
    tokens_between(src, from, limit)
        .iter()
        .rev()
        .find(|t| t.end <= limit)
        .map_or(from, |t| t.end)
}

/// Where to resume inside a block after an error at `from`: the start of the next line, or a
/// `}` that closes the block. Strings and comments are skipped.
pub(crate) fn recover_point(src: &str, from: usize) -> usize {
    let bytes = src.as_bytes();
    let mut i = from;
    let mut depth = 0usize;
    loop {
        match bytes.get(i) {
            None => return src.len(),
            Some(b'\n') => return i + 1,
            Some(b'{') => {
                depth += 1;
                i += 1;
            }
            Some(b'}') if depth == 0 => return i,
            Some(b'}') => {
                depth -= 1;
                i += 1;
            }
            Some(b'"') => i = token_at(src, i).map_or(i + 1, |t| t.end.max(i + 1)),
            Some(b'#') => i = line_end(src, i),
            Some(b'/') if bytes.get(i + 1) == Some(&b'/') => i = line_end(src, i),
            Some(_) => i += 1,
        }
    }
}

/// True when a line ends between `from` and `to`.
pub(crate) fn has_newline(src: &str, from: usize, to: usize) -> bool {
    src.get(from..to).is_some_and(|s| s.contains('\n'))
}

/// True when `pos` is the first token on its line.
fn first_on_line(src: &str, pos: usize) -> bool {
    let line_start = src
        .get(..pos)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    src.get(line_start..pos)
        .is_some_and(|s| s.chars().all(char::is_whitespace))
}

/// True when the token at `pos` is a word that starts a top-level item.
pub(crate) fn is_top_level_word(src: &str, tok: &Token) -> bool {
    tok.kind == TokKind::Word && TOP_LEVEL_WORDS.contains(&tok.text(src))
}

/// True when the token at `pos` starts `record call` on a line of its own: the step action,
/// not a record node (`record call {` declares a node named `call`).
pub(crate) fn is_record_call(src: &str, tok: &Token) -> bool {
    if tok.kind != TokKind::Word || tok.text(src) != "record" {
        return false;
    }
    let next = skip_trivia_on_line(src, tok.end);
    match token_at(src, next) {
        Some(t) if t.kind == TokKind::Word && t.text(src) == "call" => {
            let after = skip_trivia_on_line(src, t.end);
            after >= line_end(src, tok.start)
        }
        _ => false,
    }
}

/// Where to resume at the top level after a broken item at `from`: after the `}` that closes
/// its block, or at the next line that starts with `flow`, `import` or a node keyword.
/// Always returns a position after `from` (unless the text ends).
pub(crate) fn skip_item(src: &str, from: usize) -> usize {
    let mut depth = 0usize;
    let mut pos = from;
    let mut first = true;
    loop {
        pos = skip_trivia(src, pos);
        let Some(tok) = token_at(src, pos) else {
            return src.len();
        };
        if !first && is_top_level_word(src, &tok) && first_on_line(src, pos) {
            return pos;
        }
        first = false;
        match tok.text(src) {
            "{" => depth += 1,
            "}" if depth <= 1 => return tok.end,
            "}" => depth -= 1,
            _ => {}
        }
        pos = tok.end;
    }
}

/// Replaces parentheses nested deeper than `max` by spaces (so that the grammar cannot recurse
/// without bound) and returns the offsets of the first too-deep parenthesis of each group.
pub(crate) fn limit_nesting(src: &str, max: usize) -> (Cow<'_, str>, Vec<usize>) {
    let bytes = src.as_bytes();
    let mut blank: Vec<usize> = Vec::new();
    let mut reported = Vec::new();
    let mut stack: Vec<bool> = Vec::new();
    let mut i = 0;
    // Only these bytes matter; the others are skipped in one go.
    let matters = |b: &u8| matches!(b, b'"' | b'#' | b'/' | b'{' | b'}' | b'(' | b')');
    while let Some(skip) = bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(matters))
    {
        i += skip;
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match b {
            b'"' => {
                i = token_at(src, i).map_or(i + 1, |t| t.end.max(i + 1));
                continue;
            }
            b'#' => {
                i = line_end(src, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = line_end(src, i);
                continue;
            }
            b'{' | b'}' => stack.clear(),
            b'(' => {
                let deep = stack.len() >= max;
                if deep {
                    blank.push(i);
                    if stack.len() == max {
                        reported.push(i);
                    }
                }
                stack.push(deep);
            }
            b')' if stack.pop() == Some(true) => blank.push(i),
            _ => {}
        }
        i += 1;
    }
    if blank.is_empty() {
        return (Cow::Borrowed(src), reported);
    }
    let mut out = bytes.to_vec();
    for i in blank {
        if let Some(b) = out.get_mut(i) {
            *b = b' ';
        }
    }
    match String::from_utf8(out) {
        Ok(s) => (Cow::Owned(s), reported),
        Err(_) => (Cow::Borrowed(src), reported),
    }
}

/// Edit distance between two words (for "did you mean" hints).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    if word.len() > 40 {
        return None;
    }
    let limit = if word.chars().count() <= 3 { 1 } else { 2 };
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<&str> {
        tokens_between(src, 0, src.len())
            .iter()
            .map(|t| t.text(src))
            .collect()
    }

    #[test]
    fn tokens_skip_comments_and_keep_strings_whole() {
        let src = "key 1 -> x # note\n// more\ntimeout 5x \"a \\\" b\" 58.30 中文";
        assert_eq!(
            texts(src),
            [
                "key",
                "1",
                "->",
                "x",
                "timeout",
                "5x",
                "\"a \\\" b\"",
                "58.30",
                "中文"
            ]
        );
    }

    #[test]
    fn unterminated_string_ends_at_line_end() {
        let src = "title \"abc\nentry x";
        let t = token_at(src, 6).unwrap();
        assert_eq!(t.kind, TokKind::Str { terminated: false });
        assert_eq!(t.text(src), "\"abc");
    }

    #[test]
    fn recovery_stops_at_closing_brace_or_line_end() {
        let src = "key 1 bill }";
        assert_eq!(recover_point(src, 6), 11);
        let src = "key 1 \"}\" x\nnext";
        assert_eq!(recover_point(src, 6), 12);
    }

    #[test]
    fn skip_item_finds_the_next_node() {
        let src = "menu m\n  key 1 -> x\n  mask\nstep s { hangup }";
        assert_eq!(&src[skip_item(src, 0)..], "step s { hangup }");
        let src = "menu { { } } step";
        assert_eq!(&src[skip_item(src, 0)..], " step");
    }

    #[test]
    fn deep_parentheses_are_blanked() {
        let src = "(((x)))";
        let (out, at) = limit_nesting(src, 2);
        assert_eq!(out, "(( x ))");
        assert_eq!(at, vec![2]);
    }

    #[test]
    fn typo_suggestions() {
        assert_eq!(closest("tiemout", ["timeout", "prompt"]), Some("timeout"));
        assert_eq!(closest("zzz", ["timeout"]), None);
    }
}
