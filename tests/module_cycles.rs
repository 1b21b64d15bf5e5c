//! No import circles between the modules of any crate of the workspace: a module A that uses a
//! module B while B, directly or through others, uses A. Dependencies between the top-level
//! modules of a crate point one way.
//!
//! A plain text scan of every crate's `src/` (the root package and the workspace members of
//! `Cargo.toml`): each file belongs to the top-level module its path names (`src/call/mod.rs`
//! and `src/call/transfer.rs` are both `call`); its references are `crate::x`,
//! `crate::{x, y::z}` and the `super::` paths that climb to the crate root (`super::x` in
//! `src/a.rs`, `super::super::x` in `src/a/b.rs` or in an inline `mod tests` of `src/a/mod.rs`).
//! A name the crate root re-exports from a module (`pub use parser::parse_flow;`, then
//! `crate::parse_flow`) counts as that module. Comments (doc links included), strings and
//! character literals are left out. The crate root (`lib.rs`, `main.rs`) is not a module here:
//! it declares and wires every module, and items it defines itself are shared by all.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// A crate's modules: top-level module → module it uses → where (the first `file:line`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The folders of the crates to check: the root package and the workspace's members.
fn crates(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let mut out = vec![root.to_path_buf()];
    let members = manifest
        .split_once("members")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("[workspace] members");
    for m in members.split(',') {
        let m = m.trim().trim_matches('"');
        if !m.is_empty() {
            out.push(root.join(m));
        }
    }
    out.retain(|c| c.join("src").is_dir());
    out
}

/// `text` with comments, string literals and character literals blanked out (line breaks
/// kept, so lines still count).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let blank = |out: &mut String, from: &[char]| {
        for &ch in from {
            out.push(if ch == '\n' { '\n' } else { ' ' });
        }
    };
    let mut i = 0;
    while i < c.len() {
        // Line comment.
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        // Block comment (they nest).
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && c.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && c.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &c[i..j.min(c.len())]);
            i = j;
            continue;
        }
        // Raw string: r"..", r#".."#, br#".."#.
        let starts_raw = c[i] == 'r'
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))));
        if starts_raw {
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) == Some(&'"') {
                let body = i + 2 + hashes;
                let end = (body..c.len())
                    .find(|&j| c[j] == '"' && c[j + 1..].iter().take(hashes).all(|&h| h == '#'))
                    .map_or(c.len(), |j| (j + 1 + hashes).min(c.len()));
                blank(&mut out, &c[i..end]);
                i = end;
                continue;
            }
        }
        // String.
        if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(c.len());
            blank(&mut out, &c[i..end]);
            i = end;
            continue;
        }
        // Character literal (a lifetime or a label is left alone).
        if c[i] == '\'' {
            let end = if c.get(i + 1) == Some(&'\\') {
                (i + 3..c.len()).find(|&j| c[j] == '\'').map(|j| j + 1)
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 3)
            } else {
                None
            };
            if let Some(end) = end {
                blank(&mut out, &c[i..end]);
                i = end;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// A cursor over stripped source text.
struct Scan<'a> {
    c: &'a [char],
    i: usize,
}

impl Scan<'_> {
    fn skip_space(&mut self) {
        while self.i < self.c.len() && self.c[self.i].is_whitespace() {
            self.i += 1;
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let start = self.i;
        while self.i < self.c.len() && (self.c[self.i].is_alphanumeric() || self.c[self.i] == '_') {
            self.i += 1;
        }
        (self.i > start).then(|| self.c[start..self.i].iter().collect())
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_space();
        let s: Vec<char> = s.chars().collect();
        if self.c[self.i..].starts_with(&s) {
            self.i += s.len();
            true
        } else {
            false
        }
    }

    /// After `path::`: the first segment of each path it goes on with (one, or each item of
    /// a `{...}` group).
    fn heads(&mut self) -> Vec<String> {
        if !self.eat("{") {
            return self.ident().into_iter().collect();
        }
        let mut heads = Vec::new();
        let mut depth = 1;
        let mut item_start = true;
        while self.i < self.c.len() && depth > 0 {
            if item_start {
                if let Some(h) = self.ident() {
                    heads.push(h);
                }
                item_start = false;
                continue;
            }
            match self.c[self.i] {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 1 => item_start = true,
                _ => {}
            }
            self.i += 1;
        }
        heads
    }
}

/// The names that `text`, a file `depth` modules below the crate root (`src/a.rs` is 1,
/// `src/a/b.rs` 2), reaches from the crate root, with their lines: the first segment of each
/// `crate::` path, and of each `super::` path that climbs to the root.
fn references(text: &str, depth: usize) -> Vec<(String, usize)> {
    let c: Vec<char> = strip(text).chars().collect();
    let breaks: Vec<usize> = (0..c.len()).filter(|&j| c[j] == '\n').collect();
    let mut out = Vec::new();
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Inline modules (`mod tests { ... }`) open at these brace depths.
    let mut inline: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '{' => braces += 1,
            '}' => {
                braces = braces.saturating_sub(1);
                if inline.last() == Some(&braces) {
                    inline.pop();
                }
            }
            _ => {}
        }
        let starts_word =
            ident_char(c[i]) && (i == 0 || !(ident_char(c[i - 1]) || c[i - 1] == '$'));
        if !starts_word {
            i += 1;
            continue;
        }
        let mut s = Scan { c: &c, i };
        let word = s.ident().unwrap_or_default();
        let line = breaks.partition_point(|&b| b < i) + 1;
        // Paths preceded by `::` belong to another crate or module (`ivr_acd::crate` is none).
        let after_path = c[..i]
            .iter()
            .rev()
            .find(|ch| !ch.is_whitespace())
            .is_some_and(|&ch| ch == ':');
        match word.as_str() {
            "mod" => {
                let before = s.i;
                if s.ident().is_some() && s.eat("{") {
                    inline.push(braces);
                    braces += 1;
                    i = s.i;
                    continue;
                }
                s.i = before;
            }
            "crate" if !after_path && s.eat("::") => {
                for h in s.heads() {
                    out.push((h, line));
                }
            }
            "super" if !after_path => {
                let mut ups = 1;
                while s.eat("::") {
                    let before = s.i;
                    if s.ident().as_deref() == Some("super") {
                        ups += 1;
                    } else {
                        s.i = before;
                        if ups == depth + inline.len() {
                            for h in s.heads() {
                                out.push((h, line));
                            }
                        }
                        break;
                    }
                }
            }
            _ => {}
        }
        i = s.i.max(i + 1);
    }
    out
}

/// The top-level module of a file under `src/` and how deep below the crate root it is; none
/// for the crate root.
fn module_of(rel: &Path) -> Option<(String, usize)> {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_string();
    let depth = if parts.last().is_some_and(|p| p == "mod.rs") {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The graph of the top-level modules of the crate whose folder is `dir`.
fn graph(dir: &Path) -> Graph {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let mut modules = BTreeSet::new();
    let mut roots = Vec::new();
    for f in &files {
        match module_of(f.strip_prefix(&src).expect("under src")) {
            Some((m, _)) => {
                modules.insert(m);
            }
            None => roots.push(f.clone()),
        }
    }
    // Names the crate root takes from its modules (`pub use parser::{Parsed, parse_flow};`).
    let mut reexports: BTreeMap<String, String> = BTreeMap::new();
    for r in &roots {
        let text = strip(&read(r));
        for statement in text.split(';') {
            let words: Vec<&str> = statement.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| *w == "use") else {
                continue;
            };
            let path = words[at + 1..].join(" ");
            let path = path.as_str();
            let path = path
                .strip_prefix("crate::")
                .or_else(|| path.strip_prefix("self::"))
                .unwrap_or(path);
            let Some((module, rest)) = path.split_once("::") else {
                continue;
            };
            let module = module.trim();
            if !modules.contains(module) {
                continue;
            }
            for name in rest.split(|ch: char| !(ch.is_alphanumeric() || ch == '_')) {
                if !name.is_empty() && !["self", "as"].contains(&name) && !modules.contains(name) {
                    reexports.insert(name.to_string(), module.to_string());
                }
            }
        }
    }
    let mut g: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeMap::new()))
        .collect();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let Some((from, depth)) = module_of(rel) else {
            continue;
        };
        for (name, line) in references(&read(f), depth) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else {
                continue;
            };
            if to != from {
                let at = format!("src/{}:{line}", rel.display());
                g.entry(from.clone()).or_default().entry(to).or_insert(at);
            }
        }
    }
    g
}

/// The circles of a graph: for each set of modules that reach one another, one circle through
/// its first module (the shortest), the first module again at the end.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in g.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in g.keys() {
        if done.contains(m) || !reach(m).contains(m) {
            continue;
        }
        // Its set: those it reaches that reach it.
        let set: BTreeSet<String> = reach(m)
            .into_iter()
            .filter(|n| reach(n).contains(m))
            .collect();
        done.extend(set.iter().cloned());
        // The shortest way back to `m`, breadth first.
        let mut back: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = VecDeque::from([m.clone()]);
        'search: while let Some(n) = queue.pop_front() {
            for next in g.get(&n).into_iter().flat_map(|e| e.keys()) {
                if next == m {
                    let mut circle = vec![m.clone(), n.clone()];
                    let mut at = n.clone();
                    while let Some(prev) = back.get(&at) {
                        circle.push(prev.clone());
                        at = prev.clone();
                    }
                    circle.reverse();
                    out.push(circle);
                    break 'search;
                }
                if set.contains(next) && next != m && !back.contains_key(next) {
                    back.insert(next.clone(), n.clone());
                    queue.push_back(next.clone());
                }
            }
        }
    }
    out
}

/// A circle as a sentence: the modules, and where each uses the next.
fn describe(g: &Graph, circle: &[String]) -> String {
    let mut s = circle.join(" -> ");
    for w in circle.windows(2) {
        let at = &g[&w[0]][&w[1]];
        s.push_str(&format!("\n      {at} uses {}", w[1]));
    }
    s
}

#[test]
fn no_crate_has_an_import_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crates = crates(root);
    assert!(crates.len() > 5, "the workspace's crates: {crates:?}");
    let mut found = Vec::new();
    for dir in &crates {
        let g = graph(dir);
        for c in circles(&g) {
            let name = dir.strip_prefix(root).unwrap_or(dir).display().to_string();
            let name = if name.is_empty() { ".".into() } else { name };
            found.push(format!("  {name}: {}", describe(&g, &c)));
        }
    }
    assert!(
        found.is_empty(),
        "import circles between modules (dependencies must point one way; move what both \
         need into the module that owns it or a small lower module):\n{}",
        found.join("\n")
    );
}

/// A crate written into a temporary folder: (path under `src/`, text).
fn scratch(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-module-cycles-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join("src").join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("folder");
        std::fs::write(&p, text).expect("file");
    }
    dir
}

/// The files of a crate with modules `a`, `b` (with `b::inner`) and `c`, where `a` uses `b`
/// and `b::inner` uses `c`; `c_text` is `c`'s.
fn abc(c_text: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "lib.rs",
            "mod a;\nmod b;\nmod c;\npub use a::{Alpha, alpha as first};\npub struct Root;\n",
        ),
        (
            "a.rs",
            "use crate::b::Beta;\npub struct Alpha<'x>(&'x str);\npub fn alpha() {}\n",
        ),
        ("b/mod.rs", "mod inner;\npub struct Beta;\n"),
        (
            "b/inner.rs",
            "use super::super::c::Gamma;\nuse super::Beta; // super::super::a\n",
        ),
        ("c.rs", c_text),
    ]
}

#[test]
fn a_circle_is_found_and_named() {
    // `c` reaches `a` through a re-export of the crate root: a -> b -> c -> a.
    let dir = scratch(
        "circle",
        &abc("pub struct Gamma;\nfn f() { let _ = crate::first(); }\n"),
    );
    let g = graph(&dir);
    let found = circles(&g);
    assert_eq!(found, vec![vec!["a", "b", "c", "a"]], "{g:?}");
    let said = describe(&g, &found[0]);
    assert!(said.contains("src/b/inner.rs:1 uses c"), "{said}");
    assert!(said.contains("src/c.rs:2 uses a"), "{said}");
    // The same through a `{...}` group, and through `super::` from an inline module.
    for (name, c) in [
        ("group", "use crate::{Root, a::Alpha};\npub struct Gamma;\n"),
        (
            "inline",
            "pub struct Gamma;\n#[cfg(test)]\nmod tests {\n    use super::super::a::alpha;\n}\n",
        ),
    ] {
        let g = graph(&scratch(name, &abc(c)));
        assert_eq!(circles(&g), vec![vec!["a", "b", "c", "a"]], "{name}: {g:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_is_not_a_use_is_no_circle() {
    // `c` names `a` only in comments, strings and characters, or items of its own and of the
    // crate root.
    let c = "//! See [`crate::a`].\n\
             /* crate::a::Alpha /* nested */ crate::a */\n\
             pub struct Gamma;\n\
             const S: &str = \"crate::a\";\n\
             const R: &str = r#\"super::a \"quoted\"\"#;\n\
             const Q: char = '\"';\n\
             fn f<'a>(x: &'a str) -> &'a str { let _ = crate::Root; x }\n\
             pub(crate) fn g() {}\n\
             #[cfg(test)]\n\
             mod tests {\n    use super::*;\n    use super::Gamma;\n}\n\
             fn h() { let _ = ivr::crate_name::a; }\n";
    let g = graph(&scratch("none", &abc(c)));
    assert!(circles(&g).is_empty(), "{g:?}");
    assert_eq!(
        g["c"].keys().collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{g:?}"
    );
    assert_eq!(g["b"].keys().collect::<Vec<_>>(), ["c"]);
}
