//! The documentation stands alone: no doc (README.md, docs/*.md, examples/README.md, the
//! comments of flows/) names a file outside the repository (`../shared`, `shared/spec`, an
//! absolute path on a machine such as `/work/...` or `/home/...`), every relative link of a
//! markdown file resolves (its file, and its `#anchor` when it has one), and every repository
//! path written in backticks (`runtime/data/src/source.rs`) exists.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents: markdown files and the flows' comments (their text, one per file).
fn documents() -> Vec<(PathBuf, String)> {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("examples/README.md")];
    for dir in ["docs", "flows"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        files.extend(entries.into_iter().filter(|p| {
            p.extension()
                .is_some_and(|x| x == "md" || x == "flow" || x == "scenario")
        }));
    }
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let text = if p.extension().is_some_and(|x| x == "md") {
                text
            } else {
                // Only the comments of flows and scenarios are documentation.
                text.lines()
                    .map(|l| l.find('#').map_or("", |i| &l[i..]))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            (p, text)
        })
        .collect()
}

/// Names of places outside the repository.
const OUTSIDE: &[&str] = &[
    "../shared",
    "shared/spec",
    "flow-language.md",
    "platform-v2.md",
    "/work/",
    "/home/",
    "/root/",
    "/Users/",
];

/// A markdown heading's anchor as GitHub makes it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let s = slug(line.trim_start_matches('#'));
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

/// The targets of `[text](target)` links outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Outside inline code.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

/// Top-level folders of the repository whose paths docs name in backticks.
const TOP: &[&str] = &[
    "benches/",
    "bench/",
    "compiler/",
    "docs/",
    "dsl/",
    "examples/",
    "flows/",
    "fuzz/",
    "prompts/",
    "runtime/",
    "scripts/",
    "src/",
    "tests/",
];

/// Paths in backticks that name a repository file or folder.
fn code_paths(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, span) in markdown.split('`').enumerate() {
        if i % 2 == 0 || span.contains(char::is_whitespace) {
            continue;
        }
        if !TOP.iter().any(|t| span.starts_with(t)) {
            continue;
        }
        if span.contains(['*', '<', '>', '{', '}', '$', '|', '…']) || span.contains("...") {
            continue;
        }
        // `prompts/LANGUAGE/prompts.toml`: a placeholder, not a path.
        if span
            .split('/')
            .any(|seg| seg.len() > 1 && seg.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        {
            continue;
        }
        // `flows/hotline.scenario:423` names a line of the file.
        let path = match span.rsplit_once(':') {
            Some((p, line)) if line.chars().all(|c| c.is_ascii_digit()) => p,
            _ => span,
        };
        out.push(path.trim_end_matches([',', '.', ';']).to_string());
    }
    out
}

#[test]
fn docs_name_nothing_outside_the_repository() {
    let mut wrong = Vec::new();
    for (path, text) in documents() {
        for (n, line) in text.lines().enumerate() {
            for name in OUTSIDE {
                if line.contains(name) {
                    wrong.push(format!(
                        "{}:{}: names `{name}`: {line}",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn markdown_links_resolve() {
    let mut wrong = Vec::new();
    let docs = documents();
    for (path, text) in docs
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "md"))
    {
        let dir = path.parent().unwrap_or(Path::new("."));
        for link in links(text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (file, anchor) = match link.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !target.exists() {
                wrong.push(format!(
                    "{}: link `{link}`: {} does not exist",
                    path.display(),
                    target.display()
                ));
                continue;
            }
            if let Some(a) = anchor
                && target.extension().is_some_and(|x| x == "md")
            {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(a) {
                    wrong.push(format!(
                        "{}: link `{link}`: no heading with the anchor `#{a}`",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn repository_paths_in_docs_exist() {
    let root = root();
    let mut wrong = Vec::new();
    for (path, text) in documents() {
        for p in code_paths(&text) {
            if !root.join(&p).exists() {
                wrong.push(format!("{}: `{p}` does not exist", path.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checks can fail: each finds the mistake it is for.
#[test]
fn the_checks_find_their_mistakes() {
    assert_eq!(
        links("see [spec](../shared/spec/x.md) and `[no](code)`"),
        ["../shared/spec/x.md"]
    );
    assert!(anchors("# Data: the catalog\n## `ivr report`\n").contains("data-the-catalog"));
    assert!(anchors("## `ivr report`\n").contains("ivr-report"));
    assert_eq!(
        code_paths(
            "in `runtime/data/src/nope.rs`, `flows/hotline.scenario:12`, `prompts/TAG/x` and `ivr test`"
        ),
        ["runtime/data/src/nope.rs", "flows/hotline.scenario"]
    );
    assert!(!root().join("runtime/data/src/nope.rs").exists());
}
