//! `ivr fmt` over every flow of the repository (the reference flows, the examples and the
//! corpus): idempotent, nothing but layout changes, and every formatted flow compiles to the
//! same program (spans and the content hash aside) with the same diagnostics. And the command
//! itself: `--check`, rewriting, syntax errors, `--stdin`.

use ivr_compiler::catalog::Catalogs;
use ivr_compiler::project::collect_flow_files;
use ivr_compiler::{finish, load_config, parse_source};
use ivr_dsl::SourceMap;
use ivr_dsl::format::{FormatError, format_flow};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The projects of the repository: a configuration and the folders of its flows.
const PROJECTS: &[(&str, &[&str])] = &[
    ("ivr.toml", &["flows"]),
    ("examples/ivr.toml", &["examples"]),
    (
        "tests/corpus/ivr.toml",
        &["tests/corpus/valid", "tests/corpus/invalid"],
    ),
];

/// Every non-blank character, sorted: layout may move them, never add or drop one.
fn ink(text: &str) -> Vec<char> {
    let mut v: Vec<char> = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{FEFF}')
        .collect();
    v.sort_unstable();
    v
}

/// A program as JSON without its spans (`{start, end}`) and its content hash.
fn without_positions(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            if map.len() == 2 && map.contains_key("start") && map.contains_key("end") {
                return Value::Null;
            }
            Value::Object(
                map.into_iter()
                    .filter(|(k, _)| k != "version")
                    .map(|(k, v)| (k, without_positions(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(without_positions).collect()),
        other => other,
    }
}

/// Checks a project's flows as given; programs by name and diagnostics (file, code, message).
fn run(config: &Path, flows: &[(PathBuf, String)]) -> (Vec<(String, Value)>, Vec<String>) {
    let mut sources = SourceMap::new();
    let (config, mut diags) = load_config(Some(config), &mut sources).expect("configuration");
    let (catalogs, more) = Catalogs::load(&config.prompts_dir, &mut sources);
    diags.extend(more);
    let mut sources_flows = Vec::new();
    for (path, text) in flows {
        sources_flows.push(parse_source(
            path,
            text.clone(),
            true,
            &mut sources,
            &mut diags,
        ));
    }
    let checked = finish(sources, config, catalogs, sources_flows, diags);
    let programs = checked
        .programs
        .iter()
        .map(|(name, p)| {
            let json = serde_json::to_value(p).expect("program as JSON");
            (name.clone(), without_positions(json))
        })
        .collect();
    let mut diags: Vec<String> = checked
        .diagnostics
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                checked.sources.path(d.file).display(),
                d.code,
                d.message
            )
        })
        .collect();
    diags.sort();
    let _ = Catalogs::default();
    (programs, diags)
}

#[test]
fn every_flow_formats_idempotently_and_compiles_to_the_same_program() {
    let mut formatted_files = 0;
    for (config, dirs) in PROJECTS {
        let config = repo().join(config);
        let mut files = Vec::new();
        for dir in *dirs {
            collect_flow_files(&repo().join(dir), &mut files);
        }
        files.sort();
        assert!(!files.is_empty(), "no flows for {}", config.display());
        let mut before = Vec::new();
        let mut after = Vec::new();
        for path in files {
            let text = std::fs::read_to_string(&path).expect("flow text");
            let out = match format_flow(&text) {
                Ok(out) => out,
                // Files of the corpus with syntax errors are left as they are.
                Err(FormatError::Syntax { .. }) => text.clone(),
                Err(e) => panic!("{}: {e}", path.display()),
            };
            if out != text {
                formatted_files += 1;
            }
            assert_eq!(
                format_flow(&out).as_ref().unwrap_or(&out),
                &out,
                "{}: formatting again changes it",
                path.display()
            );
            assert_eq!(
                ink(&text),
                ink(&out),
                "{}: more than layout changed",
                path.display()
            );
            for line in text
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with('#') || l.starts_with("//"))
            {
                assert!(
                    out.lines().any(|l| l.trim() == line),
                    "{}: the comment line `{line}` is lost",
                    path.display()
                );
            }
            before.push((path.clone(), text));
            after.push((path, out));
        }
        let (programs_before, diags_before) = run(&config, &before);
        let (programs_after, diags_after) = run(&config, &after);
        assert!(!programs_before.is_empty());
        assert_eq!(programs_before.len(), programs_after.len());
        for ((name, a), (_, b)) in programs_before.iter().zip(&programs_after) {
            assert!(
                a == b,
                "{}: flow `{name}` compiles to another program once formatted",
                config.display()
            );
        }
        assert_eq!(
            diags_before,
            diags_after,
            "{}: diagnostics differ once formatted",
            config.display()
        );
    }
    // The corpus holds files written loosely on purpose: the test must have had work to do.
    assert!(formatted_files > 0);
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-fmt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn ivr(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run ivr");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LOOSE: &str =
    "flow demo { entry start }\nstep start {\n  play welcome # 欢迎\n goto start }\n";
const TIDY: &str = "flow demo {\n    entry start\n}\n\nstep start {\n    play welcome  # 欢迎\n    goto start\n}\n";

#[test]
fn check_lists_what_would_change_and_fmt_rewrites_it() {
    let dir = temp_dir("cli");
    std::fs::create_dir_all(dir.join("flows")).expect("flows folder");
    std::fs::write(dir.join("ivr.toml"), "").expect("config");
    std::fs::write(dir.join("flows/demo.flow"), LOOSE).expect("flow");
    std::fs::write(dir.join("flows/tidy.flow"), TIDY.replace("demo", "tidy")).expect("flow");

    // No path: every flow of the flows folder.
    let (code, out, err) = ivr(&dir, &["fmt", "--check"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("demo.flow") && !out.contains("tidy.flow"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("flows/demo.flow"))
            .ok()
            .as_deref(),
        Some(LOOSE)
    );

    let (code, out, err) = ivr(&dir, &["fmt"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("flows/demo.flow"))
            .ok()
            .as_deref(),
        Some(TIDY)
    );
    let (code, out, _) = ivr(&dir, &["fmt", "--check", "flows/demo.flow"]);
    assert_eq!((code, out.as_str()), (0, ""));

    // A syntax error: reported, the file left alone, exit 2.
    std::fs::write(dir.join("flows/broken.flow"), "step a {\n  goto\n}\n").expect("flow");
    let (code, _, err) = ivr(&dir, &["fmt", "flows"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("broken.flow") && err.contains("line 2"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("flows/broken.flow"))
            .ok()
            .as_deref(),
        Some("step a {\n  goto\n}\n")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stdin_is_formatted_to_stdout() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["fmt", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ivr");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(LOOSE.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("output");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), TIDY);
}
