//! Syntax error messages in words. pest reports which rules it expected at the furthest point
//! it reached; this module names them the way an analyst would ("a duration such as `5s`"),
//! says what came before ("after `timeout`"), and picks the span: the offending token, or the
//! end of the previous token when something is missing at the end of a line.

use super::build::{BUILTIN_TARGETS, RESERVED_NAME, SYNTAX};
use super::grammar::Rule;
use super::literals;
use super::nodes::{CLAUSE_WORDS, Place, words_of};
use super::scan::{self, TokKind, Token, has_newline};
use crate::ast::is_keyword;
use crate::diagnostic::{Diagnostic, FileId};
use crate::span::Span;
use pest::error::{Error, ErrorVariant, InputLocation};

/// Where a failed parse started, to say what was being written.
pub(crate) struct Context<'a> {
    /// Start of the clause or item (absolute offset).
    pub start: usize,
    /// The block the clause is in, when it is in one.
    pub block: Option<(Place, &'a str)>,
}

/// How strongly a phrase describes what is missing; weak ones are dropped when a strong one
/// is present (after a complete expression, an operator is always possible).
#[derive(PartialEq, Eq)]
enum Strength {
    Strong,
    Weak,
}

const TARGET: &str = "a target (a node name, `repeat`, `back`, `main` or `hangup`)";
const NAME: &str = "a name";
const DURATION: &str = "a duration such as `5s`";
const EXPRESSION: &str = "an expression";

fn phrase(rule: Rule) -> Option<(&'static str, Strength)> {
    use Strength::{Strong, Weak};
    Some(match rule {
        Rule::arrow | Rule::key_tail | Rule::goes_to => ("`->` and a target", Strong),
        Rule::target | Rule::builtin_target | Rule::imported_target | Rule::node_target => {
            (TARGET, Strong)
        }
        Rule::name | Rule::decl_name | Rule::ident => (NAME, Strong),
        Rule::path_head | Rule::field => (NAME, Weak),
        Rule::duration => (DURATION, Strong),
        Rule::string => ("a quoted string", Strong),
        Rule::language | Rule::lang_tag => ("a language tag such as `zh-CN`", Strong),
        Rule::key_lit | Rule::bare_key => ("a key (`0`-`9`, `*` or `#`)", Strong),
        Rule::uint | Rule::int => ("a whole number", Strong),
        Rule::number => ("a number", Strong),
        Rule::expr | Rule::operand => (EXPRESSION, Strong),
        Rule::switch => ("`on` or `off`", Strong),
        Rule::say_kind => ("`money`, `number`, `digits`, `date` or `time`", Strong),
        Rule::assign => ("`=`", Strong),
        Rule::lparen => ("`(`", Strong),
        Rule::rparen => ("`)`", Strong),
        Rule::lbrace => ("`{`", Strong),
        Rule::rbrace => ("`}`", Strong),
        Rule::dotdot => ("`..`", Weak),
        Rule::call_open => ("`(`", Weak),
        Rule::kw_play => ("`play` and a prompt", Strong),
        Rule::kw_position => ("`position every` and a duration", Strong),
        Rule::kw_every => ("`every` and a duration", Strong),
        Rule::kw_language => ("`language`", Weak),
        Rule::scale | Rule::kw_scale => ("`scale 1..5`", Strong),
        Rule::choices | Rule::kw_choices => ("`choices 1 = \"yes\", ...`", Strong),
        Rule::choice => ("a choice such as `1 = \"yes\"`", Strong),
        Rule::clause => ("a clause", Strong),
        Rule::line_done => ("the end of the line", Strong),
        Rule::kw_if | Rule::kw_into => ("more", Weak),
        r if is_operator(r) => ("an operator", Weak),
        _ => return None,
    })
}

fn is_operator(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::op_or
            | Rule::op_and
            | Rule::op_eq
            | Rule::op_ne
            | Rule::op_le
            | Rule::op_ge
            | Rule::op_lt
            | Rule::op_gt
            | Rule::op_add
            | Rule::op_sub
            | Rule::op_mul
            | Rule::op_div
            | Rule::op_not
            | Rule::op_neg
    )
}

/// What was expected, in words: "`->` and a target", "a name or `{`".
fn expected(positives: &[Rule]) -> Vec<&'static str> {
    let mut strong = Vec::new();
    let mut weak = Vec::new();
    for &rule in positives {
        if let Some((text, strength)) = phrase(rule) {
            let list = if strength == Strength::Strong {
                &mut strong
            } else {
                &mut weak
            };
            if !list.contains(&text) {
                list.push(text);
            }
        }
    }
    if strong.is_empty() { weak } else { strong }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// The text of the tokens from `start` to `end`, one space where the source had any.
fn tokens_text(src: &str, tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut prev_end: Option<usize> = None;
    for t in tokens {
        if prev_end.is_some_and(|e| e < t.start) {
            out.push(' ');
        }
        out.push_str(t.text(src));
        prev_end = Some(t.end);
    }
    out
}

/// What came before the error, short enough to quote.
fn before_text(src: &str, tokens: &[Token]) -> String {
    const MAX_CHARS: usize = 40;
    let all = tokens_text(src, tokens);
    if all.chars().count() <= MAX_CHARS {
        return all;
    }
    let tail = tokens
        .get(tokens.len().saturating_sub(3)..)
        .unwrap_or(tokens);
    format!("... {}", tokens_text(src, tail))
}

/// Converts a pest error from parsing `src[offset..]` into a diagnostic. Returns it with the
/// absolute offset where the parse stopped, from which the caller recovers.
pub(crate) fn syntax_error(
    file: FileId,
    src: &str,
    offset: usize,
    err: &Error<Rule>,
    ctx: &Context<'_>,
) -> (Diagnostic, usize) {
    let rel = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let at = (offset + rel).min(src.len());
    let positives: &[Rule] = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => positives,
        ErrorVariant::CustomError { .. } => &[],
    };
    (describe(file, src, at, positives, ctx), at)
}

fn describe(
    file: FileId,
    src: &str,
    at: usize,
    positives: &[Rule],
    ctx: &Context<'_>,
) -> Diagnostic {
    let tok = scan::token_at(src, scan::skip_trivia(src, at));
    let tok_span = tok.map(|t| Span::new(t.start, t.end));
    let tok_text = tok.map_or("", |t| t.text(src));

    // A broken string is the real problem wherever it stands.
    if let Some(t) = tok
        && let TokKind::Str { terminated } = t.kind
    {
        let span = Span::new(t.start, t.end);
        if !terminated {
            return Diagnostic::error(SYNTAX, file, span, "unterminated string")
                .with_hint("close the string with `\"` on the same line");
        }
        if let Some((i, len)) = literals::bad_escape(tok_text) {
            let esc = tok_text.get(i..i + len).unwrap_or("\\");
            return Diagnostic::error(
                SYNTAX,
                file,
                Span::new(t.start + i, t.start + i + len),
                format!("unknown escape `{esc}` in a string"),
            )
            .with_hint("a string may contain `\\\"`, `\\\\`, `\\n` and `\\t`");
        }
    }

    let before = scan::tokens_between(src, ctx.start, at);
    let Some(prev) = before.last() else {
        return at_clause_start(file, src, at, tok, ctx);
    };
    let prev_end = prev.end;
    let missing_here = Span::new(prev_end, prev_end);
    let span = match (tok, tok_span) {
        (Some(t), Some(s)) if t.text(src) != "}" && !has_newline(src, prev_end, t.start) => s,
        _ => missing_here,
    };
    let wanted = expected(positives);

    // A keyword where a name was expected: say so.
    let wants_name = wanted.contains(&NAME) || wanted.contains(&TARGET);
    if wants_name && span != missing_here && is_keyword(tok_text) {
        let message = if BUILTIN_TARGETS.contains(&tok_text) {
            format!("`{tok_text}` is a built-in target and cannot be used as a name")
        } else {
            format!("`{tok_text}` is a keyword and cannot be used as a name")
        };
        return Diagnostic::error(RESERVED_NAME, file, span, message)
            .with_hint(format!("choose another name, such as `{tok_text}_1`"));
    }

    let what = if wanted.is_empty() {
        "something else".to_string()
    } else {
        join_or(&wanted)
    };
    let mut message = format!("expected {what} after `{}`", before_text(src, &before));
    if span != missing_here && !tok_text.is_empty() {
        message.push_str(&format!(", found `{tok_text}`"));
    }
    let hint = if wanted.contains(&DURATION) && tok.is_some_and(|t| t.kind == TokKind::Number) {
        if tok_text.chars().all(|c| c.is_ascii_digit() || c == '.') {
            Some("add a unit: `500ms`, `5s`, `2m` or `1h`")
        } else {
            Some("a duration is a number with the unit `ms`, `s`, `m` or `h`, such as `5s`")
        }
    } else if wanted.contains(&TARGET) && span == missing_here {
        Some("every transition names where the call goes next")
    } else {
        None
    };
    let d = Diagnostic::error(SYNTAX, file, span, message);
    match hint {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

/// An error at the very start of a clause: an unknown clause word, or stray text.
fn at_clause_start(
    file: FileId,
    src: &str,
    at: usize,
    tok: Option<Token>,
    ctx: &Context<'_>,
) -> Diagnostic {
    let Some(tok) = tok else {
        return Diagnostic::error(SYNTAX, file, Span::new(at, at), "unexpected end of file");
    };
    let text = tok.text(src);
    let span = Span::new(tok.start, tok.end);
    let Some((place, desc)) = ctx.block else {
        return Diagnostic::error(SYNTAX, file, span, format!("unexpected `{text}`"));
    };
    let allowed = words_of(place);
    let is_operator = matches!(
        text,
        "==" | "!=" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "and" | "or"
    );
    if is_operator {
        let after = scan::skip_trivia(src, tok.end);
        let span = match scan::token_at(src, after) {
            Some(n) if !has_newline(src, tok.end, n.start) && n.text(src) != "}" => {
                Span::new(n.start, n.end)
            }
            _ => Span::new(tok.end, tok.end),
        };
        return Diagnostic::error(
            SYNTAX,
            file,
            span,
            format!("expected an expression after `{text}`"),
        );
    }
    if tok.kind == TokKind::Word {
        let (what, container) = match place {
            Place::Header => ("item", "the flow header".to_string()),
            Place::Node(crate::ast::NodeKind::Step) => ("statement", desc.to_string()),
            Place::Node(_) => ("clause", desc.to_string()),
        };
        let message = format!("unknown {what} `{text}` in {container}");
        let hint = match scan::closest(text, allowed.iter().copied())
            .or_else(|| scan::closest(text, CLAUSE_WORDS.iter().copied()))
        {
            Some(word) => format!("did you mean `{word}`?"),
            None => {
                let quoted: Vec<String> = allowed.iter().map(|w| format!("`{w}`")).collect();
                let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
                format!("{} takes {}", place.with_article(), join_or(&quoted))
            }
        };
        return Diagnostic::error(SYNTAX, file, span, message).with_hint(hint);
    }
    if text == "->" {
        let after = scan::skip_trivia(src, tok.end);
        let next = scan::token_at(src, after);
        let target_follows =
            next.is_some_and(|n| n.kind == TokKind::Word && !has_newline(src, tok.end, n.start));
        if !target_follows {
            return Diagnostic::error(
                SYNTAX,
                file,
                Span::new(tok.end, tok.end),
                "expected a target after `->`",
            )
            .with_hint("every transition names where the call goes next");
        }
        return Diagnostic::error(
            SYNTAX,
            file,
            span,
            "unexpected `->`: an arrow follows a clause keyword, as in `found -> NODE`",
        );
    }
    let close = match place {
        Place::Header => "to close the flow header".to_string(),
        Place::Node(_) => format!("to close {desc}"),
    };
    Diagnostic::error(
        SYNTAX,
        file,
        span,
        format!("expected a clause or `}}` {close}, found `{text}`"),
    )
}
