//! The sans-IO crates stay sans-IO: the call engine, the ACD, SIP and the shared sans-IO style
//! may not depend (directly or through another crate) on an async runtime, a database, an HTTP
//! server or WebRTC. `cargo tree` (offline, normal dependencies only) lists what each one pulls
//! in; a forbidden package fails the test naming the crate and the package.

use std::process::Command;

/// The crates that must stay free of I/O frameworks.
const SANS_IO: [&str; 5] = [
    "ivr-engine",
    "ivr-acd",
    "ivr-dialler",
    "ivr-sip",
    "ivr-sansio",
];

/// Packages none of them may depend on.
const FORBIDDEN: [&str; 5] = ["tokio", "sqlx", "axum", "hyper", "webrtc"];

/// Every package in the normal dependency tree of `krate`, one `NAME vVERSION ...` a line.
fn dependency_tree(krate: &str) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
            "-p",
            krate,
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// The forbidden packages in a tree: lines that start with exactly such a name and a version.
fn forbidden_in(tree: &str) -> Vec<&str> {
    let mut found: Vec<&str> = tree
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (name, version) = (words.next()?, words.next()?);
            (version.starts_with('v') && FORBIDDEN.contains(&name)).then_some(name)
        })
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

#[test]
fn the_matcher_takes_exact_package_names() {
    let tree = "ivr-x v0.1.0 (/x)\ntokio v1.47.0\ntokio-util v0.7.0\nhyper-util v0.1.0\nwebrtc v0.21.0 (*)\n";
    assert_eq!(forbidden_in(tree), ["tokio", "webrtc"]);
}

#[test]
fn sans_io_crates_depend_on_no_runtime_database_server_or_webrtc() {
    let mut failures = Vec::new();
    for krate in SANS_IO {
        let tree = dependency_tree(krate);
        assert!(
            tree.lines().next().is_some_and(|l| l.starts_with(krate)),
            "cargo tree -p {krate} printed no tree:\n{tree}"
        );
        for package in forbidden_in(&tree) {
            failures.push(format!("{krate} depends on {package}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Lines that declare an error as a bare `String` in a `Result` (outside comments).
fn string_errors(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| {
            let squeezed: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            squeezed.contains("Result<")
                && (squeezed.contains(",String>") || squeezed.contains(",std::string::String>"))
        })
        .map(|(i, _)| i + 1)
        .collect()
}

#[test]
fn the_string_error_matcher() {
    assert_eq!(
        string_errors(
            "fn a() -> Result<u8, String> {}\n// Result<u8, String>\nfn b() -> Result<Vec<String>, E> {}\n"
        ),
        [1]
    );
}

/// Libraries and the command line return typed errors (thiserror enums), never a bare
/// `Result<_, String>`.
#[test]
fn no_function_returns_a_string_as_its_error() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["dsl", "compiler", "runtime", "lsp", "src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "only {} Rust files found", files.len());
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in string_errors(&text) {
            found.push(format!(
                "{}:{line}",
                f.strip_prefix(root).unwrap_or(&f).display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "Result<_, String> at:\n{}",
        found.join("\n")
    );
}

/// The list of each crate's direct workspace dependencies in docs/architecture.md (between
/// the `crate-graph` markers) is what `cargo tree` says.
#[test]
fn the_crate_graph_in_the_architecture_document_is_cargos() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"),
    )
    .expect("docs/architecture.md");
    let start = doc
        .find("<!-- crate-graph -->")
        .expect("crate-graph marker");
    let end = doc
        .find("<!-- /crate-graph -->")
        .expect("crate-graph end marker");
    let mut differences = Vec::new();
    let mut crates = 0;
    for line in doc[start..end].lines() {
        let Some((krate, deps)) = line.split_once(':') else {
            continue;
        };
        let krate = krate.trim();
        if !krate.starts_with("ivr") {
            continue;
        }
        crates += 1;
        let mut documented: Vec<&str> = deps.split_whitespace().collect();
        documented.sort_unstable();
        let out = Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "-e",
                "normal",
                "--depth",
                "1",
                "--prefix",
                "none",
            ])
            .args(["-p", krate])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo tree runs");
        let tree = String::from_utf8_lossy(&out.stdout);
        let mut actual: Vec<&str> = tree
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with("ivr-"))
            .collect();
        actual.sort_unstable();
        actual.dedup();
        if documented != actual {
            differences.push(format!(
                "{krate}: the document says {documented:?}, cargo says {actual:?}"
            ));
        }
    }
    assert!(crates >= 10, "only {crates} crates in the document's list");
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
