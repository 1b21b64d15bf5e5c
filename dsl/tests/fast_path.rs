//! The parser's hand-written fast path (`src/parser/fast.rs`) against pest alone
//! (`parse_flow_slow`): the same tree and the same diagnostics, for every flow of the
//! repository (valid and invalid), the fuzzing corpus when it is present, the benchmark's
//! generated flow, and many small mutations of all of them (characters inserted, deleted or
//! replaced, words swapped for keywords), which land on the edges of what the fast path takes.

use ivr_dsl::{FileId, Parsed, parse_flow, parse_flow_slow};
use std::path::{Path, PathBuf};

#[path = "support/big_flow.rs"]
mod big_flow;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dsl/ has a parent")
        .to_path_buf()
}

/// Every file under `dir` (recursively) whose name ends with `ext` (any file when `None`).
fn files(dir: &Path, ext: Option<&str>, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, ext, out);
        } else if ext.is_none_or(|ext| path.extension().is_some_and(|e| e == ext)) {
            out.push(path);
        }
    }
}

/// Parses `text` both ways and panics, naming `what`, when they differ.
fn same(what: &str, text: &str) -> Parsed {
    let fast = parse_flow(FileId(7), text);
    let slow = parse_flow_slow(FileId(7), text);
    assert_eq!(
        fast.diagnostics, slow.diagnostics,
        "diagnostics differ for {what}:\n{text}"
    );
    assert_eq!(fast.flow, slow.flow, "trees differ for {what}:\n{text}");
    fast
}

/// The flows of the repository: `flows/`, `examples/`, `tests/corpus/`.
fn repository_flows() -> Vec<(String, String)> {
    let root = root();
    let mut paths = Vec::new();
    for dir in ["flows", "examples", "tests/corpus"] {
        files(&root.join(dir), Some("flow"), &mut paths);
    }
    assert!(paths.len() > 20, "the repository's flows were not found");
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).expect("a flow file is UTF-8");
            (p.display().to_string(), text)
        })
        .collect()
}

#[test]
fn repository_flows_parse_the_same() {
    for (name, text) in repository_flows() {
        same(&name, &text);
    }
}

#[test]
fn the_generated_benchmark_flow_parses_the_same() {
    let nodes = 20 * big_flow::BLOCK;
    let text = big_flow::flow_text(nodes);
    let parsed = same("the generated flow", &text);
    assert!(parsed.diagnostics.is_empty());
    assert_eq!(parsed.flow.nodes.len(), nodes);
    assert!(text.contains(&format!("menu_{}", big_flow::MENU_PROMPTS.min(20) - 1)));
}

/// The fuzzing corpus of `parse_check` (git-ignored; skipped when absent).
#[test]
fn fuzzing_corpus_parses_the_same() {
    let mut paths = Vec::new();
    files(&root().join("fuzz/corpus/parse_check"), None, &mut paths);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = paths.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for chunk in paths.chunks(per_thread) {
            scope.spawn(move || {
                for path in chunk {
                    let Ok(bytes) = std::fs::read(path) else {
                        continue;
                    };
                    // The fuzz target skips inputs that are not UTF-8.
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        same(&path.display().to_string(), text);
                    }
                }
            });
        }
    });
}

/// Clauses on the edges of what the fast path takes (most of them it must leave to pest).
const EDGES: &[&str] = &[
    "key 1 -> x if",
    "key 1 ->x",
    "key 1 ->\tx",
    "key\t1 -> x",
    "key 1 # c",
    "key # -> back",
    "key #-> back",
    "key \"#\" -> back",
    "key \"\\\"\" -> x",
    "key -> x",
    "key 12 -> main.x",
    "key 1 -> main.",
    "key 1 -> x.y.z",
    "key 1 -> hangup_now",
    "key 1 -> x if a or b and not c",
    "key 1 -> x if (a)",
    "key 1 -> x iff a",
    "key é -> x",
    "key 1 -> é",
    "key 1 -> x\u{FEFF}",
    "key\r1 -> x",
    "key 1\r-> x",
    "set x = -5",
    "set x = - 5",
    "set x = --5",
    "set x = -(5)",
    "set x = -a",
    "set x = not not a",
    "set x = nota",
    "set x = not(a)",
    "set x = a.b . c",
    "set x = a.if",
    "set x = a.",
    "set x = f ( a , b )",
    "set x = f()",
    "set x = f(,)",
    "set x = f(a,)",
    "set x = f(a)(b)",
    "set x = f(a).b",
    "set x = a < b < c",
    "set x = (a < b) < c",
    "set x = a == b != c",
    "set x = ((1))",
    "set x = (1",
    "set x = 1.5",
    "set x = 1.",
    "set x = 1.5.3",
    "set x = 5ms",
    "set x = 5msx",
    "set x = 5m",
    "set x = 5mx",
    "set x = 1.5h",
    "set x = 0.5ms",
    "set x = 99999999999999999999999999999999",
    "set x = 9999999999999999999999h",
    "set x = \"a\\nb\"",
    "set x = \"a\\qb\"",
    "set x = \"a",
    "set x = \"余额\"",
    "set x = flow",
    "set x = step",
    "set x = true",
    "set x = truex",
    "set x = a == b",
    "set x = a = b",
    "set x = a<=b",
    "set x = a<b",
    "set x = a>=b>c",
    "set x = a*b/c-d+e",
    "set x = a--b",
    "set x == 1",
    "set x=1",
    "set if = 1",
    "set main = 1",
    "set language en-US",
    "set language \"en\"",
    "set language = 1",
    "set language",
    "set languages = 1",
    "set language zh-CN中",
    "set x = a // c",
    "set x = a /b",
    "set x = a#c",
    "set x = a -> b",
    "set x = a - > b",
    "set x = 1or 2",
    "set x = a or",
    "set x = a orb",
    "set x = a and",
    "set x = a andb",
    "set x = a\u{FEFF}",
    "set x = a\u{FEFF}+ 1",
    "set x = a\r",
    "set x = aé",
    "set x = a\u{301}",
    "set\u{301} x = 1",
    "set x = 余额",
    "set x = 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1",
    "play a, b",
    "play a,",
    "play a ,b",
    "play a, # b",
    "play main",
    "play a b",
    "play 余额",
    "play a,,b",
    "digits 6..18",
    "digits 6 .. 18",
    "digits 6...18",
    "digits 6..",
    "digits 99999999999",
    "digits 6.5",
    "digits 6..99999999999",
    "attempts 3",
    "attempts 3 ->",
    "attempts 3 -> x",
    "attempts 3x",
    "attempts -3",
    "question q p scale 1..5",
    "question q p scale -1..5",
    "question q p scale 1 .. 5",
    "question q p scale 1..99999999999999999999",
    "question q p choices 1 = \"a\", 2 = \"b\"",
    "question q p choices 1=\"a\",2=\"b\"",
    "question q p choices # = \"a\"",
    "question q p choices 1 = \"a\",",
    "question q p choices 1 = \"a\" , 2 = \"b\"",
    "question q p choices 1 = \"a\",\r2 = \"b\"",
    "question q p choices 1 == \"a\"",
    "question q p choices yes = \"a\" # c",
    "question q main scale 1..5",
    "question q p",
    "terminator #",
    "terminator \"#\"",
    "terminator\t*",
    "terminator  # c",
    "terminator",
    "terminator ->",
    "query q(caller) into x",
    "query q()",
    "query q ( a , b ) into x",
    "query q(a) into",
    "query q(a) x",
    "query q(a,) into x",
    "query main(a)",
    "priority 10 if vip",
    "priority 10 if",
    "priority -1",
    "priority 10 if a if b",
    "attach a, b.c, f(x)",
    "attach a,",
    "skills \"a\", \"b\"",
    "skills \"a\",",
    "announce position every 30s",
    "announce position 30s",
    "max_wait 120s -> x",
    "max_wait 120s",
    "no_agents -> back",
    "after -> main",
    "after main",
    "barge_in on",
    "barge_in onn",
    "barge_in off # c",
    "music a, b",
    "to \"sip:1\"",
    "queue general",
    "queue main",
    "timeout 5s",
    "timeout 5",
    "timeout 1.5s",
    "timeout 0.5ms",
    "timeout 5s 6s",
    "pause 1s",
    "max 60s",
    "silence 5s",
    "inter_digit 4s",
    "next b1",
    "next -> b1",
    "next ->b1",
    "next hangup",
    "next -> repeat",
    "next main.x",
    "next main",
    "title \"x\"",
    "title x",
    "language zh-CN",
    "language \"zh-CN\"",
    "language 1",
    "entry a",
    "entry main",
    "if a -> b",
    "if a->b",
    "if a - > b",
    "if -> b",
    "if a -> b c",
    "goto x",
    "goto main",
    "goto x.y",
    "goto",
    "hangup",
    "hangup }",
    "hangup now",
    "mask",
    "beep",
    "no_input play a",
    "no_match play a, b",
    "no_input a",
    "valid len(x) >= 6 and x != \"000000\"",
    "say money balance + 0.5",
    "say digits x",
    "say moneyx y",
    "say money",
];

/// Every edge clause, as written and with a comment, a `\r` or indentation around it, in the
/// flow header and in a block of every kind.
#[test]
fn edge_clauses_parse_the_same() {
    for clause in EDGES {
        let mut text = String::new();
        for (i, line) in [
            clause.to_string(),
            format!("{clause}  # note"),
            format!("{clause}\r"),
            format!("\t{clause} // note"),
            format!("{clause}\n{clause}"),
        ]
        .iter()
        .enumerate()
        {
            text.push_str(&format!("flow f{i} {{\n{line}\n}}\n"));
            for kind in [
                "step", "menu", "input", "lookup", "transfer", "survey", "record",
            ] {
                text.push_str(&format!("{kind} n{i} {{\n    {line}\n}}\n"));
            }
        }
        same(&format!("{clause:?}"), &text);
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Text that is likely to sit on an edge of some token rule.
const PIECES: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\r",
    "\u{FEFF}",
    "\u{301}",
    "é",
    "余",
    "#",
    "//",
    "\"",
    "\\",
    "\\q",
    "(",
    ")",
    ",",
    ".",
    "..",
    "-",
    "->",
    ">",
    "<",
    "=",
    "==",
    "!=",
    "!",
    "+",
    "*",
    "/",
    "{",
    "}",
    "0",
    "1",
    "9",
    "5s",
    "5ms",
    "1.5",
    "x",
    "_",
    "a",
    "or",
    "and",
    "not",
    "if",
    "into",
    "main",
    "hangup",
    "repeat",
    "back",
    "flow",
    "step",
    "true",
    "false",
    "language",
    "play",
    "scale",
    "choices",
    "on",
    "off",
    "money",
    "digits",
    "position",
    "every",
    "\n",
    "99999999999",
    "99999999999999999999999999999999s",
];

/// Words that may replace a word.
const WORDS: &[&str] = &[
    "main", "hangup", "flow", "if", "not", "or", "true", "x", "x.y", "f(x)", "1", "\"s\"",
    "language", "play", "key", "set", "é",
];

/// One random edit of `text`, at character boundaries.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let at = bounds[rng.below(bounds.len())];
    let (head, tail) = text.split_at(at);
    match rng.below(4) {
        // Insert a piece.
        0 => format!("{head}{}{tail}", rng.pick(PIECES)),
        // Delete a few characters.
        1 => {
            let n = 1 + rng.below(3);
            let cut = tail.char_indices().nth(n).map_or(tail.len(), |(i, _)| i);
            format!("{head}{}", &tail[cut..])
        }
        // Replace the word that starts here (or the next character) by another.
        2 => {
            let len = tail
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map_or(tail.len(), |(i, _)| {
                    i.max(tail.chars().next().map_or(0, char::len_utf8))
                });
            format!("{head}{}{}", rng.pick(WORDS), &tail[len.min(tail.len())..])
        }
        // Replace one character by a piece.
        _ => {
            let len = tail.chars().next().map_or(0, char::len_utf8);
            format!("{head}{}{}", rng.pick(PIECES), &tail[len..])
        }
    }
}

/// Every line of the repository's flows (and of a small generated flow), each placed in the
/// blocks it may stand in, then mutated one, two or three times: each variant must parse the
/// same both ways.
#[test]
fn mutations_parse_the_same() {
    let mut lines: Vec<String> = Vec::new();
    let generated = big_flow::flow_text(big_flow::BLOCK);
    let flows = repository_flows();
    for text in flows
        .iter()
        .map(|(_, t)| t.as_str())
        .chain([generated.as_str()])
    {
        for line in text.lines() {
            let line = line.trim_end();
            if !line.trim().is_empty() && !lines.iter().any(|l| l == line) {
                lines.push(line.to_string());
            }
        }
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut variants = 0;
    // Batches of mutated lines, each in a block of every kind, so that one parse covers many.
    for chunk in lines.chunks(8) {
        for round in 0..12 {
            let mut text = String::new();
            for (i, line) in chunk.iter().enumerate() {
                let mut line = line.clone();
                for _ in 0..=(round % 3) {
                    line = mutate(&mut rng, &line);
                }
                let kind = [
                    "step", "menu", "input", "lookup", "transfer", "survey", "record",
                ][(i + round) % 7];
                text.push_str(&format!("{kind} n{i} {{\n{line}\n    hangup\n}}\n"));
                variants += 1;
            }
            same("a mutated flow", &text);
        }
    }
    assert!(variants > 1_000, "{variants} variants");
    // Whole files, mutated in several places at once.
    for (name, text) in &flows {
        for _ in 0..8 {
            let mut text = text.clone();
            for _ in 0..4 {
                text = mutate(&mut rng, &text);
            }
            same(&format!("a mutation of {name}"), &text);
        }
    }
}
