//! Cutting a scenario file into logical lines of tokens with the pest grammar
//! `src/scenario.pest`.

use crate::span::Span;
use pest::Parser;

mod grammar {
    #![allow(missing_docs)]
    use pest_derive::Parser;

    /// The pest lexer generated from `src/scenario.pest`.
    #[derive(Parser)]
    #[grammar = "scenario.pest"]
    pub(super) struct ScenarioLexer;
}

use grammar::{Rule, ScenarioLexer};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tk {
    /// `"..."` (quotes and escapes as written).
    Str,
    /// `"...` without its closing quote.
    OpenStr,
    /// `2026-11-23`
    Date,
    /// `10:00`, `10:00:30`
    Time,
    /// `5s`, `500ms`
    Duration,
    /// `12`, `-3`, `58.30`
    Number,
    /// `name`, `customer.vip`
    Path,
    /// `->`
    Arrow,
    /// `==`
    EqEq,
    /// `...`
    Ellipsis,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `*`
    Star,
    /// A word that is none of the above (`12abc`).
    BadWord,
    /// Any other character.
    Other,
}

/// One token: its kind, its text and where it stands in the file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Token<'a> {
    pub kind: Tk,
    pub text: &'a str,
    pub span: Span,
}

/// A comment: where it stands and whether it starts with `#` (rather than `//`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Comment {
    pub span: Span,
    pub hash: bool,
}

/// One physical line cut into tokens.
#[derive(Debug, Clone)]
struct PhysLine<'a> {
    tokens: Vec<Token<'a>>,
    comment: Option<Comment>,
}

/// One or more physical lines read as one: a line whose `{` is not closed continues on the
/// following lines that start with `field:` or `}`.
#[derive(Debug, Clone)]
pub(super) struct LogicalLine<'a> {
    /// The tokens, comments left out.
    pub tokens: Vec<Token<'a>>,
    /// The comments of the line, in order.
    pub comments: Vec<Comment>,
    /// From the first token to the last (empty lines have no logical line).
    pub span: Span,
}

fn kind_of(rule: Rule) -> Option<Tk> {
    Some(match rule {
        Rule::string => Tk::Str,
        Rule::open_string => Tk::OpenStr,
        Rule::date => Tk::Date,
        Rule::time => Tk::Time,
        Rule::duration => Tk::Duration,
        Rule::number => Tk::Number,
        Rule::path => Tk::Path,
        Rule::arrow => Tk::Arrow,
        Rule::eqeq => Tk::EqEq,
        Rule::ellipsis => Tk::Ellipsis,
        Rule::lbrace => Tk::LBrace,
        Rule::rbrace => Tk::RBrace,
        Rule::comma => Tk::Comma,
        Rule::colon => Tk::Colon,
        Rule::star => Tk::Star,
        Rule::bad_word => Tk::BadWord,
        Rule::other => Tk::Other,
        _ => return None,
    })
}

/// Tokens of one physical line starting at byte `offset` of the file.
fn lex_line(text: &str, offset: usize) -> PhysLine<'_> {
    let mut line = PhysLine {
        tokens: Vec::new(),
        comment: None,
    };
    match ScenarioLexer::parse(Rule::line, text) {
        Ok(pairs) => {
            for pair in pairs.flatten() {
                let s = pair.as_span();
                let span = Span::new(offset + s.start(), offset + s.end());
                if pair.as_rule() == Rule::comment {
                    line.comment = Some(Comment {
                        span,
                        hash: s.as_str().starts_with('#'),
                    });
                } else if let Some(kind) = kind_of(pair.as_rule()) {
                    line.tokens.push(Token {
                        kind,
                        text: s.as_str(),
                        span,
                    });
                }
            }
        }
        // The grammar accepts every line; should it ever not, the whole line becomes one
        // unreadable token that the parser reports.
        Err(_) => {
            let trimmed = text.trim();
            if !trimmed.is_empty() {
                let start = offset + text.find(trimmed).unwrap_or(0);
                line.tokens.push(Token {
                    kind: Tk::Other,
                    text: trimmed,
                    span: Span::new(start, start + trimmed.len()),
                });
            }
        }
    }
    line
}

fn brace_depth(tokens: &[Token<'_>]) -> i64 {
    tokens.iter().fold(0i64, |d, t| match t.kind {
        Tk::LBrace => d + 1,
        Tk::RBrace => d - 1,
        _ => d,
    })
}

/// Whether a line continues an unclosed `{ ... }` of the line before: it starts with `}` or
/// with `field:` / `"field":`.
fn continues(tokens: &[Token<'_>]) -> bool {
    match tokens {
        [first, ..] if first.kind == Tk::RBrace => true,
        [first, second, ..] => {
            matches!(first.kind, Tk::Path | Tk::Str) && second.kind == Tk::Colon
                || first.kind == Tk::Comma
        }
        _ => false,
    }
}

/// The logical lines of a file.
pub(super) fn logical_lines(source: &str) -> Vec<LogicalLine<'_>> {
    let mut phys = Vec::new();
    let mut offset = 0usize;
    for text in source.split('\n') {
        phys.push(lex_line(text, offset));
        offset += text.len() + 1;
    }

    let mut out = Vec::new();
    let mut i = 0;
    while i < phys.len() {
        let first = &phys[i];
        i += 1;
        if first.tokens.is_empty() {
            continue;
        }
        let mut tokens = first.tokens.clone();
        let mut comments: Vec<Comment> = first.comment.into_iter().collect();
        let mut depth = brace_depth(&tokens);
        while depth > 0 {
            // the next line with tokens, comment-only and blank lines skipped
            let mut j = i;
            while j < phys.len() && phys[j].tokens.is_empty() {
                j += 1;
            }
            let Some(next) = phys.get(j) else { break };
            if !continues(&next.tokens) {
                break;
            }
            for skipped in &phys[i..j] {
                comments.extend(skipped.comment);
            }
            tokens.extend(next.tokens.iter().copied());
            comments.extend(next.comment);
            depth += brace_depth(&next.tokens);
            i = j + 1;
        }
        let span = match (tokens.first(), tokens.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => Span::default(),
        };
        out.push(LogicalLine {
            tokens,
            comments,
            span,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Tk, &str)> {
        logical_lines(src)
            .into_iter()
            .flat_map(|l| l.tokens)
            .map(|t| (t.kind, t.text))
            .collect()
    }

    #[test]
    fn tokens() {
        use Tk::*;
        assert_eq!(
            kinds(
                r#"at 2026-11-23 10:00:30 x.y -3 5s 500ms 58.30 "a\"b" -> == ... { } , : * 12ab ?"#
            ),
            vec![
                (Path, "at"),
                (Date, "2026-11-23"),
                (Time, "10:00:30"),
                (Path, "x.y"),
                (Number, "-3"),
                (Duration, "5s"),
                (Duration, "500ms"),
                (Number, "58.30"),
                (Str, r#""a\"b""#),
                (Arrow, "->"),
                (EqEq, "=="),
                (Ellipsis, "..."),
                (LBrace, "{"),
                (RBrace, "}"),
                (Comma, ","),
                (Colon, ":"),
                (Star, "*"),
                (BadWord, "12ab"),
                (Other, "?"),
            ]
        );
    }

    #[test]
    fn comments_and_open_strings() {
        use Tk::*;
        assert_eq!(
            kinds("press 1 # x \"y"),
            vec![(Path, "press"), (Number, "1")]
        );
        assert_eq!(kinds("a // b"), vec![(Path, "a")]);
        assert_eq!(kinds("a \"b # c"), vec![(Path, "a"), (OpenStr, "\"b # c")]);
        assert_eq!(
            kinds("x->found"),
            vec![(Path, "x"), (Arrow, "->"), (Path, "found")]
        );
    }

    #[test]
    fn continued_records() {
        let lines = logical_lines("mock q -> found {\n  a: 1,\n\n  # c\n  b: 2\n}\npress 1\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].tokens.len(), 13);
        assert_eq!(lines[0].comments.len(), 1);
        // an unclosed brace does not swallow the next line
        let lines = logical_lines("mock q -> found { a: 1\npress 1\n");
        assert_eq!(lines.len(), 2);
    }
}
