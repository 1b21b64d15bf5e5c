//! `ivr test` end to end: the reference hotline's scenarios with full coverage, and the report of
//! a deliberately failing scenario (tests/engine/failing, outside the default path). The engine
//! acceptance scenarios (tests/engine/flows) run one test per file in tests/engine_scenarios.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ENGINE_CONFIG: &str = "tests/engine/ivr.toml";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `ivr ARGS...` at the repository root, without colours.
fn ivr(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .output()
        .expect("run ivr");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

/// The `N passed, M failed` closing line, as (N, M).
fn summary(text: &str) -> (usize, usize) {
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output:\n{text}"));
    let words: Vec<&str> = last.split_whitespace().collect();
    match words.as_slice() {
        [n, "passed,", m, "failed"] => (
            n.parse().expect("passed count"),
            m.parse().expect("failed count"),
        ),
        _ => panic!("the closing line is not `N passed, M failed`: {last:?}\n{text}"),
    }
}

/// How many scenarios the `.scenario` files below `dir` hold (lines starting with `scenario`).
fn count_scenarios(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            n += count_scenarios(&p);
        } else if p.extension().is_some_and(|x| x == "scenario") {
            let text = std::fs::read_to_string(&p).expect("read scenario");
            n += text
                .lines()
                .filter(|l| l.trim_start().starts_with("scenario "))
                .count();
        }
    }
    n
}

/// The engine acceptance scenarios run per file (tests/engine_scenarios.rs); this guards
/// against losing files or scenarios.
#[test]
fn the_engine_acceptance_scenarios_are_all_there() {
    let expected = count_scenarios(&root().join("tests/engine/flows"));
    assert!(
        expected >= 60,
        "tests/engine/flows lost scenarios: {expected}"
    );
}

#[test]
fn reference_hotline_scenarios_pass_with_full_coverage() {
    let expected = count_scenarios(&root().join("flows"));
    assert!(expected >= 40, "flows/ lost scenarios: {expected}");
    let (out, text) = ivr(&["test", "--coverage"]);
    let (passed, failed) = summary(&text);
    assert_eq!(failed, 0, "{text}");
    assert!(
        passed >= expected,
        "{passed} passed, but the files hold {expected} scenarios\n{text}"
    );
    assert!(out.status.success(), "exit status {:?}\n{text}", out.status);
    // hotline with the nodes of common it reaches; common routed on its own (flows/common.scenario);
    // the arrears campaign's flow, its calls started with a `contact` line.
    for flow in ["hotline", "common", "arrears_notice"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{flow}: ")))
            .unwrap_or_else(|| panic!("no coverage line for {flow}\n{text}"));
        assert!(
            line.starts_with(&format!("{flow}: 100.0% ")),
            "{flow} is not fully covered: {line}\n{text}"
        );
    }
    assert!(!text.contains("not reached"), "{text}");
}

#[test]
fn a_failing_scenario_is_reported_with_line_expectation_and_transcript() {
    let file = "tests/engine/failing/deliberate.scenario";
    let (out, text) = ivr(&["--config", ENGINE_CONFIG, "test", file]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(summary(&text), (0, 2), "{text}");

    // The wrong amount: file:line, the expectation, what came instead, the transcript with
    // the texts in the language each prompt played in (zh-CN, then en-US after the switch).
    assert!(
        text.contains(&format!("FAIL {file}:7 deliberately wrong")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{file}:14: expected say money 99.99")),
        "{text}"
    );
    assert!(text.contains("but got: say money 58.3"), "{text}");
    assert!(text.contains("transcript so far:"), "{text}");
    assert!(
        text.contains("play language_prompt   「中文提示。」"),
        "{text}"
    );
    assert!(text.contains("「五十八元三角」"), "{text}");
    assert!(
        text.contains("play language_prompt   「English prompt.」"),
        "{text}"
    );
    assert!(text.contains("「fifty eight yuan thirty」"), "{text}");

    // The masked input: compared, but its digits never printed.
    assert!(
        text.contains(&format!("{file}:25: expected var secret == \"1111\"")),
        "{text}"
    );
    assert!(text.contains("but it is ***"), "{text}");
    assert!(
        !text.contains("9876"),
        "a masked value was printed:\n{text}"
    );
}

/// A campaign flow's scenario gives the list row with a `contact` line: its values are typed as
/// the list query declares them, and a field the query does not return, a value that is not of
/// its type, or a `contact` line for a flow no campaign runs fail the scenario with the line.
#[test]
fn a_contact_line_is_checked_against_the_list_query() {
    let dir = std::env::temp_dir().join(format!("ivr-scenarios-{}-contact", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("contact.scenario");
    std::fs::write(
        &file,
        "scenario \"typed and dialled\"\nflow    arrears_notice\n\
         contact { phone: \"13800000009\", arrears: 58.3, due_date: 2026-11-25 }\n\
         expect  play arrears_greeting\nexpect  say money 58.30\nexpect  play arrears_due_by\n\
         expect  say date 2026-11-25\nexpect  play arrears_due_after\nexpect  play arrears_menu\n\
         press   0\nexpect  var caller == \"13800000009\"\n\
         expect  transfer queue billing priority 0\n...\nagent   none\n\
         expect  play arrears_agents_busy\nexpect  play goodbye\nexpect  hangup\n\n\
         scenario \"a field the list does not return\"\nflow    arrears_notice\n\
         contact { phone: \"13800000009\", arrers: 58.30 }\n\n\
         scenario \"not money\"\nflow    arrears_notice\n\
         contact { phone: \"13800000009\", arrears: \"lots\" }\n\n\
         scenario \"no campaign runs the hotline\"\nflow    hotline\n\
         contact { phone: \"13800000009\" }\n",
    )
    .expect("scenario");
    let path = file.to_str().unwrap_or_default();
    let (out, text) = ivr(&["test", path]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(summary(&text), (1, 3), "{text}");
    assert!(
        text.contains(
            "contact.scenario:21: `contact`: the list query `arrears_due` returns no field \
             `arrers` (it returns `phone`, `name`, `arrears`, `due_date`, `month`)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "contact.scenario:25: `contact`: `arrears` is money in the list query, and `lots` \
             is not money: write e.g. 58.30"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "contact.scenario:29: `contact`: flow `hotline` is run by no campaign, so it has no \
             contact row"
        ),
        "{text}"
    );
}
