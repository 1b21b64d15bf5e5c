//! One clause (or head) as a line of text: tokens joined by single spaces, except where the
//! language writes them together (`len(x)`, `customer.vip`, `6..18`, `-3`, `a, b`).

use super::lex::Tok;

/// Words after which a `-` is a sign, not a subtraction (`scale -2..2`, `not -x`).
const BEFORE_SIGN: &[&str] = &["and", "or", "not", "if", "scale"];
/// Words after which `(` opens a parenthesised expression, not a call's arguments.
const BEFORE_PAREN: &[&str] = &["and", "or", "not", "if"];

/// A clause laid out: its cells, which the block aligns, and the comments written inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// The cells of the line: `[word, rest]`, `[set, NAME, "= EXPR"]` in a step,
    /// `[question, NAME, PROMPT, rest]`; a clause without arguments is one cell.
    pub cells: Vec<String>,
    /// Comments that stood between the clause's tokens: they go on lines of their own above it.
    pub comments: Vec<String>,
}

/// Lays out the tokens of one clause or head.
pub(crate) fn render(tokens: &[Tok]) -> Rendered {
    let mut comments = Vec::new();
    let mut code: Vec<&Tok> = Vec::new();
    for t in tokens {
        match t {
            Tok::Comment(c) => comments.push(c.clone()),
            _ => code.push(t),
        }
    }
    let word = code.first().map(|t| t.text()).unwrap_or("");
    let is_set = word == "set"
        && code.len() >= 4
        && code.get(1).is_some_and(|t| t.text() != "language")
        && code.get(2).is_some_and(|t| t.text() == "=");
    let cuts: &[usize] = if is_set {
        &[1, 2]
    } else if word == "question" && code.len() >= 4 {
        &[1, 2, 3]
    } else {
        &[1]
    };
    let mut cells = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&code.len())) {
        let cut = cut.min(code.len());
        if cut > from {
            cells.push(join(&code, from, cut, word));
        }
        from = cut;
    }
    Rendered { cells, comments }
}

/// The tokens `from..to` of a clause on one line.
fn join(code: &[&Tok], from: usize, to: usize, word: &str) -> String {
    let mut out = String::new();
    for i in from..to {
        if i > from && space_between(code, i, word) {
            out.push(' ');
        }
        out.push_str(code[i].text());
    }
    out
}

/// Whether a space separates token `i` from the one before it.
fn space_between(code: &[&Tok], i: usize, word: &str) -> bool {
    let a = code[i - 1];
    let b = code[i];
    let (at, bt) = (a.text(), b.text());
    if matches!(b, Tok::Punct(p) if p == "," || p == ")" || p == "." || p == "..") {
        return false;
    }
    if matches!(a, Tok::Punct(p) if p == "(" || p == "." || p == "..") {
        return false;
    }
    if at == "-" && matches!(a, Tok::Punct(_)) && is_sign(code, i - 1, word) {
        return false;
    }
    if bt == "(" && matches!(b, Tok::Punct(_)) {
        // A call: `len(x)`, `query name(...)`; not after a clause's own words.
        let say_kind = word == "say" && i - 1 == 1;
        let is_name = matches!(a, Tok::Word(w) if w.starts_with(|c: char| !c.is_ascii_digit()));
        let call = is_name && i > 1 && !say_kind && !BEFORE_PAREN.contains(&at);
        return !call;
    }
    true
}

/// Whether the `-` at `i` is a sign (nothing that ends a value stands before it).
fn is_sign(code: &[&Tok], i: usize, word: &str) -> bool {
    if i == 0 {
        return true;
    }
    let before = code[i - 1];
    match before {
        Tok::Str(_) | Tok::Key(_) => false,
        Tok::Punct(p) => p != ")",
        Tok::Word(w) => {
            i - 1 == 0 || (word == "say" && i - 1 == 1) || (BEFORE_SIGN.contains(&w.as_str()))
        }
        Tok::Comment(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::lex::tokens;

    fn line(src: &str) -> Vec<String> {
        render(&tokens(src)).cells
    }

    #[test]
    fn spacing_follows_the_language() {
        assert_eq!(
            line("query  c_by_phone ( caller , x )  into   c"),
            ["query", "c_by_phone(caller, x) into c"]
        );
        assert_eq!(
            line("if not(a.b==1)and len(x)>2->y"),
            ["if", "not (a.b == 1) and len(x) > 2 -> y"]
        );
        assert_eq!(
            line("question q  p scale -2 .. 2"),
            ["question", "q", "p", "scale -2..2"]
        );
        assert_eq!(line("set x=(a- -1)*2"), ["set", "x", "= (a - -1) * 2"]);
        assert_eq!(line("set language en-US"), ["set", "language en-US"]);
        assert_eq!(line("say money -(x)"), ["say", "money -(x)"]);
        assert_eq!(line("say number (x)"), ["say", "number (x)"]);
        assert_eq!(line("goto common.bye"), ["goto", "common.bye"]);
        assert_eq!(line("mask"), ["mask"]);
        assert_eq!(line("key # ->back"), ["key", "# -> back"]);
    }

    #[test]
    fn comments_inside_a_clause_are_set_apart() {
        let r = render(&tokens("play a, # first\n b"));
        assert_eq!(r.cells, ["play", "a, b"]);
        assert_eq!(r.comments, ["# first"]);
    }
}
