//! The tokens of one clause or head, and the comments and line breaks between clauses.
//!
//! The parser has already accepted the text, so this lexer only needs to cut it where the
//! grammar does. The one subtlety is `#`: after `key`, after `terminator` and in a survey's
//! `choices` it is a key, everywhere else it starts a comment.

/// A token as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A name, keyword, number or duration.
    Word(String),
    /// A key literal (`1`, `*`, `#`, a word): written as is.
    Key(String),
    /// A string literal, quotes and escapes as written.
    Str(String),
    /// Punctuation or an operator.
    Punct(String),
    /// A comment, `#` or `//` to the end of its line (trailing blanks removed).
    Comment(String),
}

impl Tok {
    /// The text it is written as.
    pub(crate) fn text(&self) -> &str {
        match self {
            Tok::Word(t) | Tok::Key(t) | Tok::Str(t) | Tok::Punct(t) | Tok::Comment(t) => t,
        }
    }
}

/// Whether `c` may continue a name (the grammar's `LETTER | MARK | ASCII_DIGIT | "_"`;
/// outside strings and comments, any other non-ASCII character can only be part of a name).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || (!c.is_ascii() && !c.is_whitespace())
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{FEFF}')
}

/// The end of a comment starting at `at`: its line's end.
fn line_end(text: &str, at: usize) -> usize {
    text[at..].find('\n').map_or(text.len(), |i| at + i)
}

/// The tokens of a clause (or a head), in order, with the comments written between them.
pub(crate) fn tokens(text: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Whether the next token is a key literal, and whether we are in `choices`.
    let mut key_next = false;
    let mut in_choices = false;
    // Whether the next word is a language tag (`en-US`), one token.
    let mut lang_next = false;
    let mut significant = 0usize;
    let mut first_word = String::new();
    while let Some(c) = text[pos..].chars().next() {
        if is_space(c) {
            pos += c.len_utf8();
            continue;
        }
        let start = pos;
        let tok = if key_next && c != '"' {
            key_next = false;
            if is_word_char(c) {
                pos = word_end(text, pos);
            } else {
                pos += c.len_utf8();
            }
            Tok::Key(text[start..pos].to_string())
        } else if c == '#' || text[pos..].starts_with("//") {
            pos = line_end(text, pos);
            out.push(Tok::Comment(text[start..pos].trim_end().to_string()));
            continue;
        } else if c == '"' {
            key_next = false;
            pos = string_end(text, pos);
            Tok::Str(text[start..pos].to_string())
        } else if c.is_ascii_digit() {
            pos = number_end(text, pos);
            Tok::Word(text[start..pos].to_string())
        } else if lang_next && c.is_ascii_alphabetic() {
            pos += text[pos..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .unwrap_or(text.len() - pos);
            Tok::Word(text[start..pos].to_string())
        } else if is_word_char(c) {
            pos = word_end(text, pos);
            Tok::Word(text[start..pos].to_string())
        } else {
            let two = text.get(pos..pos + 2).unwrap_or("");
            let len = match two {
                "->" | "==" | "!=" | "<=" | ">=" | ".." => 2,
                _ => c.len_utf8(),
            };
            pos += len;
            Tok::Punct(text[start..pos].to_string())
        };
        lang_next = tok == Tok::Word("language".into())
            && (significant == 0 || (significant == 1 && first_word == "set"));
        if significant == 0 {
            first_word = tok.text().to_string();
            key_next = matches!(first_word.as_str(), "key" | "terminator");
        } else if first_word == "question" {
            if tok == Tok::Word("choices".into()) {
                in_choices = true;
                key_next = true;
            } else if in_choices && tok == Tok::Punct(",".into()) {
                key_next = true;
            }
        }
        significant += 1;
        out.push(tok);
    }
    out
}

fn word_end(text: &str, mut pos: usize) -> usize {
    while let Some(c) = text[pos..].chars().next() {
        if !is_word_char(c) {
            break;
        }
        pos += c.len_utf8();
    }
    pos
}

/// `12`, `58.30`, `500ms`, `1.5s`; stops before `..`.
fn number_end(text: &str, mut pos: usize) -> usize {
    let bytes = text.as_bytes();
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    if bytes.get(pos) == Some(&b'.') && bytes.get(pos + 1).is_some_and(u8::is_ascii_digit) {
        pos += 1;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
    }
    word_end(text, pos)
}

/// After the closing quote (or at the line's end for a string the parser would refuse).
fn string_end(text: &str, start: usize) -> usize {
    let mut chars = text[start + 1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return start + 1 + i + 1,
            '\\' => {
                chars.next();
            }
            '\n' => return start + 1 + i,
            _ => {}
        }
    }
    text.len()
}

/// What lies between two pieces of code: comments and line breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// Each comment, in order.
    pub comments: Vec<GapComment>,
    /// Line breaks after the last comment (or in the whole gap when it has none).
    pub breaks_after: usize,
}

/// A comment between two pieces of code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GapComment {
    /// `#` or `//` to the end of the line, trailing blanks removed.
    pub text: String,
    /// Line breaks between the previous code or comment and this comment (0: it trails).
    pub breaks_before: usize,
    /// Its column in its line, in characters.
    pub column: usize,
}

/// Reads the trivia from `start` to `end` of `src` (blanks and comments only).
pub(crate) fn gap(src: &str, start: usize, end: usize) -> Gap {
    let mut comments = Vec::new();
    let mut breaks = 0;
    let mut pos = start;
    while pos < end {
        let Some(c) = src[pos..end].chars().next() else {
            break;
        };
        if c == '\n' {
            breaks += 1;
            pos += 1;
        } else if is_space(c) {
            pos += c.len_utf8();
        } else {
            let stop = line_end(src, pos).min(end);
            let line_start = src[..pos].rfind('\n').map_or(0, |i| i + 1);
            comments.push(GapComment {
                text: src[pos..stop].trim_end().to_string(),
                breaks_before: breaks,
                column: src[line_start..pos].chars().count(),
            });
            breaks = 0;
            pos = stop;
        }
    }
    Gap {
        comments,
        breaks_after: breaks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokens(src).iter().map(|t| t.text().to_string()).collect()
    }

    #[test]
    fn a_hash_after_key_is_a_key_elsewhere_a_comment() {
        assert_eq!(
            texts("key # -> back # no"),
            ["key", "#", "->", "back", "# no"]
        );
        assert_eq!(texts("terminator #"), ["terminator", "#"]);
        assert_eq!(
            texts("question q p choices 1 = \"y\", # = \"n\""),
            [
                "question", "q", "p", "choices", "1", "=", "\"y\"", ",", "#", "=", "\"n\""
            ]
        );
        assert_eq!(texts("goto a # c"), ["goto", "a", "# c"]);
    }

    #[test]
    fn numbers_ranges_and_operators() {
        assert_eq!(texts("digits 6..18"), ["digits", "6", "..", "18"]);
        assert_eq!(
            texts("set x=58.30*-2"),
            ["set", "x", "=", "58.30", "*", "-", "2"]
        );
        assert_eq!(texts("timeout 1.5s"), ["timeout", "1.5s"]);
        assert_eq!(
            texts("if a.b!=\"中\\\"文\"->c"),
            ["if", "a", ".", "b", "!=", "\"中\\\"文\"", "->", "c"]
        );
    }

    #[test]
    fn gaps_count_breaks_and_columns() {
        let src = "x  # one\n\n  // two\n\n";
        let g = gap(src, 1, src.len());
        assert_eq!(g.comments.len(), 2);
        assert_eq!((g.comments[0].breaks_before, g.comments[0].column), (0, 3));
        assert_eq!((g.comments[1].breaks_before, g.comments[1].column), (2, 2));
        assert_eq!(g.breaks_after, 2);
    }
}
