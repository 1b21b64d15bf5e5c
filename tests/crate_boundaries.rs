//! The sans-IO crates stay sans-IO: the call engine, the ACD, SIP and the shared sans-IO style
//! may not depend (directly or through another crate) on an async runtime, a database, an HTTP
//! server or WebRTC. `cargo tree` (offline, normal dependencies only) lists what each one pulls
//! in; a forbidden package fails the test naming the crate and the package.

use std::process::Command;

/// The crates that must stay free of I/O frameworks.
const SANS_IO: [&str; 4] = ["ivr-engine", "ivr-acd", "ivr-sip", "ivr-sansio"];

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
