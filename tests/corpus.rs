//! Data-driven tests of `ivr check`: every flow in `tests/corpus/valid` checks clean, and every
//! flow in `tests/corpus/invalid` produces exactly the diagnostic codes its first line names
//! (`# expect: code, code`) and the rendered output stored beside it in `NAME.expected`.
//! Run with `UPDATE_EXPECT=1` to rewrite the `.expected` files after an intended change.

use ivr_compiler::{CheckOptions, check};
use std::path::{Path, PathBuf};

const CONFIG: &str = "tests/corpus/ivr.toml";

fn flows_in(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flow"))
        .collect();
    files.sort();
    files
}

fn run(path: &Path) -> ivr_compiler::Checked {
    check(&CheckOptions {
        config: Some(CONFIG.into()),
        paths: vec![path.to_path_buf()],
    })
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn valid_flows_check_clean() {
    let files = flows_in("tests/corpus/valid");
    assert!(files.len() >= 5, "the valid corpus is missing");
    let mut failures = String::new();
    for path in &files {
        let checked = run(path);
        if !checked.diagnostics.is_empty() {
            failures.push_str(&checked.sources.render(&checked.diagnostics, false));
        }
    }
    assert!(
        failures.is_empty(),
        "valid flows produced diagnostics:\n{failures}"
    );
}

#[test]
fn invalid_flows_report_what_they_expect() {
    let files = flows_in("tests/corpus/invalid");
    assert!(files.len() >= 20, "the invalid corpus is missing");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("corpus file");
        let expected_codes: Vec<String> = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# expect: code, ...`",
                    path.display()
                )
            })
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let checked = run(path);
        let mut codes: Vec<String> = checked
            .diagnostics
            .iter()
            .map(|d| d.code.to_string())
            .collect();
        codes.sort();
        codes.dedup();
        let mut want = expected_codes.clone();
        want.sort();
        want.dedup();
        if codes != want {
            failures.push(format!(
                "{}: expected codes {want:?}, got {codes:?}\n{}",
                path.display(),
                checked.sources.render(&checked.diagnostics, false)
            ));
            continue;
        }
        let rendered = checked.sources.render(&checked.diagnostics, false);
        let expect_path = path.with_extension("expected");
        if update {
            std::fs::write(&expect_path, &rendered).expect("write .expected");
            continue;
        }
        match std::fs::read_to_string(&expect_path) {
            Ok(expected) if expected == rendered => {}
            Ok(expected) => failures.push(format!(
                "{}: output differs from {}\n--- expected\n{expected}\n--- actual\n{rendered}",
                path.display(),
                expect_path.display()
            )),
            Err(_) => failures.push(format!(
                "{}: no {} (run with UPDATE_EXPECT=1 to create it)\n{rendered}",
                path.display(),
                expect_path.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
