//! Data-driven tests of `ivr check`, one test per file (datatest-stable): every flow in
//! `tests/corpus/valid` checks clean (`valid_flow::NAME.flow`), and every flow in
//! `tests/corpus/invalid` (`invalid_flow::NAME.flow`) produces exactly the diagnostic codes its
//! first line names (`# expect: code, code`) and the rendered output stored beside it in
//! `NAME.expected`. Run with `UPDATE_EXPECT=1` to rewrite the `.expected` files after an
//! intended change.

use ivr_compiler::{CheckOptions, check};
use std::fmt;
use std::path::Path;

const CONFIG: &str = "tests/corpus/ivr.toml";

/// A failed check, printed as written (datatest-stable shows a test's error with `{:?}`).
struct Failure(String);

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

fn fail(message: String) -> datatest_stable::Result<()> {
    Err(Box::new(Failure(message)))
}

fn run(path: &Path) -> Result<ivr_compiler::Checked, Failure> {
    check(&CheckOptions {
        config: Some(CONFIG.into()),
        paths: vec![path.to_path_buf()],
    })
    .map_err(|e| Failure(format!("{}: {e}", path.display())))
}

/// A flow of `tests/corpus/valid`: no diagnostic at all.
fn valid_flow(path: &Path) -> datatest_stable::Result<()> {
    let checked = run(path)?;
    if checked.diagnostics.is_empty() {
        return Ok(());
    }
    fail(format!(
        "{}: a valid flow produced diagnostics:\n{}",
        path.display(),
        checked.sources.render(&checked.diagnostics, false)
    ))
}

/// A flow of `tests/corpus/invalid`: the codes of its first line, and its `.expected` output.
fn invalid_flow(path: &Path, text: String) -> datatest_stable::Result<()> {
    let Some(codes_line) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect:"))
    else {
        return fail(format!(
            "{}: first line must be `# expect: code, ...`",
            path.display()
        ));
    };
    let mut want: Vec<String> = codes_line
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    want.sort();
    want.dedup();
    let checked = run(path)?;
    let rendered = checked.sources.render(&checked.diagnostics, false);
    let mut codes: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|d| d.code.to_string())
        .collect();
    codes.sort();
    codes.dedup();
    if codes != want {
        return fail(format!(
            "{}: expected codes {want:?}, got {codes:?}\n{rendered}",
            path.display()
        ));
    }
    let expect_path = path.with_extension("expected");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&expect_path, &rendered)?;
        return Ok(());
    }
    match std::fs::read_to_string(&expect_path) {
        Ok(expected) if expected == rendered => Ok(()),
        Ok(expected) => fail(format!(
            "{}: output differs from {}\n--- expected\n{expected}\n--- actual\n{rendered}",
            path.display(),
            expect_path.display()
        )),
        Err(_) => fail(format!(
            "{}: no {} (run with UPDATE_EXPECT=1 to create it)\n{rendered}",
            path.display(),
            expect_path.display()
        )),
    }
}

datatest_stable::harness! {
    { test = valid_flow, root = "tests/corpus/valid", pattern = r"\.flow$" },
    { test = invalid_flow, root = "tests/corpus/invalid", pattern = r"\.flow$" },
}
