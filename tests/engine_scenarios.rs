//! The engine acceptance scenarios (tests/engine/flows, one rule of the flow language at a
//! time) through `ivr test`, one test per scenario file (datatest-stable:
//! `scenario_file::NAME.scenario`): every scenario of the file passes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

const ENGINE_CONFIG: &str = "tests/engine/ivr.toml";

/// A failed run, printed as written (datatest-stable shows a test's error with `{:?}`).
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

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `N passed, M failed` closing line, as (N, M).
fn summary(text: &str) -> Option<(usize, usize)> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    match last.split_whitespace().collect::<Vec<_>>().as_slice() {
        [n, "passed,", m, "failed"] => Some((n.parse().ok()?, m.parse().ok()?)),
        _ => None,
    }
}

/// One scenario file: `ivr test FILE` with the engine's configuration passes all of its
/// scenarios (lines starting with `scenario`).
fn scenario_file(path: &Path, text: String) -> datatest_stable::Result<()> {
    let fail = |why: String| -> datatest_stable::Result<()> {
        Err(Box::new(Failure(format!("{}: {why}", path.display()))))
    };
    let expected = text
        .lines()
        .filter(|l| l.trim_start().starts_with("scenario "))
        .count();
    if expected == 0 {
        return fail("the file holds no scenario".into());
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["--config", ENGINE_CONFIG, "test"])
        .arg(path)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match summary(&output) {
        None => fail(format!(
            "the closing line is not `N passed, M failed`\n{output}"
        )),
        Some((_, failed)) if failed > 0 => fail(format!("{failed} failed\n{output}")),
        Some((passed, _)) if passed < expected => fail(format!(
            "{passed} passed, but the file holds {expected} scenarios\n{output}"
        )),
        _ if !out.status.success() => fail(format!("exit status {:?}\n{output}", out.status)),
        _ => Ok(()),
    }
}

datatest_stable::harness! {
    { test = scenario_file, root = "tests/engine/flows", pattern = r"\.scenario$" },
}
