//! The `ivr` command line as users run it: exit statuses, output formats, graphs, compile
//! output and simulation.

use std::path::PathBuf;
use std::process::{Command, Output};

fn ivr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ivr")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch folder with a flow file, checked against the repository's ivr.toml and prompts.
fn scratch_flow(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{name}.flow"));
    std::fs::write(&path, text).expect("write flow");
    path
}

#[test]
fn reference_flows_check_clean() {
    let o = ivr(&["check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).trim_end().ends_with("0 errors, 0 warnings"),
        "{}",
        stdout(&o)
    );
    // Every example marks the tasks it completes with `served`, but agent_transfer, which
    // only hands callers to agents: its one warning says so (examples/README.md).
    let o = ivr(&["--config", "examples/ivr.toml", "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.trim_end().ends_with("0 errors, 1 warning"), "{out}");
    assert!(
        out.contains("warning[no-served]: flow `agent_transfer` has no `served` action"),
        "{out}"
    );
}

const BROKEN: &str = "flow broken {\n    language zh-CN\n    entry start\n}\n\nstep start {\n    play welcom\n    goto main_mneu\n}\n\nmenu main_menu {\n    prompt main_menu\n    attempts 3 -> start\n    key 1 -> start\n    key 1 -> start\n    key * -> repeat\n}\n";

#[test]
fn errors_are_reported_all_at_once_with_place_and_hint() {
    let path = scratch_flow("broken", BROKEN);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("error[unknown-prompt]: there is no prompt `welcom` in the zh-CN catalog"),
        "{out}"
    );
    assert!(out.contains("broken.flow:7:10"), "{out}");
    assert!(out.contains("did you mean `welcome`?"), "{out}");
    assert!(
        out.contains("error[unknown-target]: there is no node `main_mneu`"),
        "{out}"
    );
    assert!(out.contains("did you mean `main_menu`?"), "{out}");
    assert!(out.contains("error[duplicate-key]"), "{out}");
    assert!(out.contains("3 errors"), "{out}");
}

#[test]
fn json_diagnostics_for_editors() {
    let path = scratch_flow(
        "broken_json",
        &BROKEN.replace("flow broken", "flow broken_json"),
    );
    let o = ivr(&[
        "check",
        "--format",
        "json",
        path.to_str().unwrap_or_default(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("valid JSON");
    let items = v.as_array().expect("an array");
    assert_eq!(items.len(), 3, "{v}");
    let first = &items[0];
    assert_eq!(first["line"], 7);
    assert_eq!(first["column"], 10);
    assert_eq!(first["severity"], "error");
    assert_eq!(first["code"], "unknown-prompt");
    assert!(
        first["hint"]
            .as_str()
            .is_some_and(|h| h.contains("welcome"))
    );
}

#[test]
fn warnings_alone_exit_zero() {
    let text = "flow lonely {\n    language zh-CN\n    entry start\n}\n\nstep start {\n    play welcome\n    served \"greeting\"\n    hangup\n}\n\nstep orphan {\n    hangup\n}\n";
    let path = scratch_flow("lonely", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("warning[unreachable-node]: no path reaches step `orphan`"));
    assert!(stdout(&o).contains("0 errors, 1 warning"));
    // A `to` transfer without `no_agents`: a busy number would end the call as failed.
    let text = "flow outside {\n    language zh-CN\n    entry out\n}\n\n\
                transfer out {\n    to \"sip:95500@pbx\"\n    after -> bye\n}\n\n\
                step bye {\n    play goodbye\n    hangup\n}\n";
    let path = scratch_flow("outside", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("warning[unhandled-busy]: transfer `out` has no `no_agents`"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn served_tasks_are_checked_and_a_flow_without_one_is_warned_about() {
    // No `served` anywhere: a warning at the flow's name, with a hint.
    let text = "flow unserved {\n    language zh-CN\n    entry start\n}\n\nstep start {\n    play welcome\n    hangup\n}\n";
    let path = scratch_flow("unserved", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "warning[no-served]: flow `unserved` has no `served` action: every call that ends in the IVR will count as `not_served`"
        ),
        "{out}"
    );
    assert!(out.contains("unserved.flow:1:6"), "{out}");
    assert!(out.contains("hint: add `served \"TASK\"`"), "{out}");
    assert!(out.contains("0 errors, 1 warning"), "{out}");
    // A task name that reports could not label: an error at the name, with a fixed name.
    let text = "flow badtask {\n    language zh-CN\n    entry start\n}\n\nstep start {\n    served \"Bill Inquiry\"\n    hangup\n}\n";
    let path = scratch_flow("badtask", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("error[bad-task]: `Bill Inquiry` is not a task name"),
        "{out}"
    );
    assert!(out.contains("badtask.flow:7:12"), "{out}");
    assert!(out.contains("`served \"bill_inquiry\"`"), "{out}");
    // `served` belongs in a step; elsewhere it is misplaced.
    let text = "flow misplaced {\n    language zh-CN\n    entry m\n}\n\nmenu m {\n    prompt main_menu\n    served \"x\"\n    key 1 -> repeat\n}\n";
    let path = scratch_flow("misplaced", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains("`served`"), "{}", stdout(&o));
    // `served` is no keyword: a node may still be called so.
    let text = "flow named {\n    language zh-CN\n    entry served\n}\n\nstep served {\n    served \"done\"\n    hangup\n}\n";
    let path = scratch_flow("named", text);
    let o = ivr(&["check", path.to_str().unwrap_or_default()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("0 errors, 0 warnings"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn compile_emits_the_program_as_json() {
    let o = ivr(&["compile", "hotline", "--emit", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let program: ivr_compiler::program::Program =
        serde_json::from_str(&stdout(&o)).expect("a program");
    assert_eq!(program.name, "hotline");
    assert_eq!(program.version.len(), 16);
    assert!(program.nodes.len() > 40);
    assert!(program.nodes.iter().any(|n| n.name == "common.goodbye"));
    assert_eq!(
        program.languages,
        vec!["zh-CN".to_string(), "en-US".to_string()]
    );
    // The same source always gives the same version.
    let again = ivr(&["compile", "hotline"]);
    assert_eq!(stdout(&o), stdout(&again));
}

#[test]
fn graphs_render() {
    let o = ivr(&["graph", "hotline", "--format", "dot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph \"hotline\""));
    assert!(dot.contains("label=\"key 1\""));
    assert!(dot.contains("label=\"found\""));
    let o = ivr(&["graph", "hotline", "--format", "mermaid"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("flowchart LR"));
    // Laid out by ivr itself: the flow map's drawing.
    let o = ivr(&["graph", "hotline", "--format", "svg"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg = stdout(&o);
    assert!(svg.starts_with("<svg "), "{svg}");
    assert!(svg.contains("data-node=\"main_menu\" data-kind=\"menu\""));
    assert!(svg.contains("data-label=\"key 1\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    // Graphviz renders it (the test command installs graphviz).
    if let Ok(mut child) = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dot.as_bytes())
            .expect("write dot");
        let svg = child.wait_with_output().expect("dot ran");
        assert!(
            svg.status.success(),
            "{}",
            String::from_utf8_lossy(&svg.stderr)
        );
        assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
    }
}

#[test]
fn unknown_flow_is_a_clear_error() {
    let o = ivr(&["graph", "hotlin"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("there is no flow `hotlin`; did you mean `hotline`?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn simulate_runs_a_script() {
    // A number that is not in the demo database: the caller is served as a guest.
    let o = ivr(&[
        "simulate",
        "hotline",
        "--caller",
        "13900000000",
        "--script",
        "*",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("[guest] welcome"), "{out}");
    assert!(out.contains("欢迎致电客户服务热线"), "{out}");
    // `*` repeats the guest menu.
    assert_eq!(out.matches("[guest_menu] guest_menu").count(), 2, "{out}");
}

/// `--script` takes the words the terminal takes, and its errors name them as it takes them:
/// `agent answers` (or `agent:answers`), `wait 6s` (or `wait:6s`).
#[test]
fn simulate_script_takes_what_its_errors_say() {
    let o = ivr(&[
        "simulate",
        "hotline",
        "--caller",
        "13900000000",
        "--script",
        "agent dances",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let said = stdout(&o);
    assert!(said.contains("write `agent answers`"), "{said}");
    for script in ["0 wait 1s agent answers", "0 wait:1s agent:answers"] {
        let o = ivr(&[
            "simulate",
            "hotline",
            "--caller",
            "13900000000",
            "--script",
            script,
        ]);
        assert!(o.status.success(), "{script}: {}", stdout(&o));
        let out = stdout(&o);
        assert!(out.contains("transfer queue"), "{script}: {out}");
        assert!(!out.contains("write `"), "{script}: {out}");
        assert!(
            !out.contains("no transfer is in progress"),
            "{script}: {out}"
        );
    }
}

/// `--coverage` counts what passing scenarios reached: a failing scenario covers nothing.
#[test]
fn coverage_counts_only_passing_scenarios() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-coverage", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    std::fs::write(
        dir.join("ivr.toml"),
        "[paths]\nflows = \"flows\"\nprompts = \"prompts\"\n\n[routes]\n\"100\" = \"app\"\n",
    )
    .expect("config");
    std::fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "choose = { text = \"菜单\" }\none = { text = \"一\" }\ntwo = { text = \"二\" }\n",
    )
    .expect("catalog");
    std::fs::write(
        dir.join("flows/app.flow"),
        "flow app {\n    language zh-CN\n    entry m\n}\n\n\
         menu m {\n    prompt choose\n    key 1 -> one\n    key 2 -> two\n}\n\n\
         step one {\n    play one\n    hangup\n}\n\n\
         step two {\n    play two\n    hangup\n}\n",
    )
    .expect("flow");
    std::fs::write(
        dir.join("flows/app.scenario"),
        "scenario \"one\"\nflow app\nexpect play choose\npress \"1\"\nexpect play one\nexpect hangup\n\n\
         scenario \"two, expected wrong\"\nflow app\nexpect play choose\npress \"2\"\nexpect play one\n",
    )
    .expect("scenario");
    let config = dir.join("ivr.toml");
    let o = ivr(&[
        "--config",
        config.to_str().unwrap_or_default(),
        "test",
        "--coverage",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    assert!(out.contains("not reached: menu m key 2"), "{out}");
    assert!(out.contains("not reached: node two"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ivr agent-password` with the password piped on standard input.
fn agent_password(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ivr");
    // The command may end before it reads (a configuration it refuses): a closed pipe is fine.
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "write password: {e}"
        );
    }
    child.wait_with_output().expect("ivr ran")
}

#[test]
fn agent_password_prints_ha1() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-agentpw", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    // No ivr.toml: the realm is `ivr`. MD5("2001:ivr:s3cret").
    let o = agent_password(&dir, &["agent-password", "2001"], "s3cret\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "016bfbde6c079217f6cbb7af1e80adcf\n");
    // The realm of `[server] realm`, even while the agent has no ha1 yet (this is how it gets
    // one). The RFC 2617 example: MD5("Mufasa:testrealm@host.com:Circle Of Life").
    let config = dir.join("ivr.toml");
    std::fs::write(
        &config,
        "[server]\nrealm = \"testrealm@host.com\"\n\n[agents.Mufasa]\nname = \"Mufasa\"\n",
    )
    .expect("config");
    let path = config.to_str().unwrap_or_default();
    let o = agent_password(
        &dir,
        &["agent-password", "Mufasa", "--config", path],
        "Circle Of Life\r\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "939e7578ed9e3c518a452acee763bce9\n");
    // Without a trailing newline, from ./ivr.toml.
    let o = agent_password(&dir, &["agent-password", "Mufasa"], "Circle Of Life");
    assert_eq!(stdout(&o), "939e7578ed9e3c518a452acee763bce9\n");
    // An empty password is refused with a clear message, and nothing goes to stdout.
    for input in ["\n", ""] {
        let o = agent_password(&dir, &["agent-password", "2001"], input);
        assert_eq!(o.status.code(), Some(2), "{input:?}");
        assert!(stdout(&o).is_empty());
        assert!(
            stderr(&o).contains("the password is empty"),
            "{}",
            stderr(&o)
        );
    }
    // A configuration with other errors: the realm cannot be trusted.
    std::fs::write(&config, "[server]\nrealm = 5\n").expect("config");
    let o = agent_password(&dir, &["agent-password", "2001"], "s3cret\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("fix the configuration first"),
        "{}",
        stderr(&o)
    );
    let o = agent_password(&dir, &["agent-password", "a:b"], "s3cret\n");
    assert_eq!(o.status.code(), Some(2));
    // A supervisor without an ha1 yet (a warning, not an error): the same hash, with its realm.
    std::fs::write(
        &config,
        "[server]\nrealm = \"testrealm@host.com\"\n\n[supervisors.Mufasa]\nname = \"Q\"\n",
    )
    .expect("config");
    let o = agent_password(&dir, &["agent-password", "Mufasa"], "Circle Of Life\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "939e7578ed9e3c518a452acee763bce9\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The configuration example of the spec, word for word (tests/fixtures/spec_ivr.toml), with
/// a hotline flow: it checks (the placeholder `ha1 = "4f1c..."` is a warning, that agent just
/// cannot log in) and its scenario runs.
#[test]
fn the_spec_configuration_example_checks_and_runs() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-spec-config", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    let spec = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spec_ivr.toml"),
    )
    .expect("fixture");
    std::fs::write(dir.join("ivr.toml"), spec).expect("config");
    std::fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "welcome = { text = \"欢迎致电客户服务热线。\" }\n",
    )
    .expect("catalog");
    std::fs::write(
        dir.join("flows/hotline.flow"),
        "flow hotline {\n    language zh-CN\n    entry welcome\n}\n\n\
         step welcome {\n    play welcome\n    served \"greeting\"\n    hangup\n}\n",
    )
    .expect("flow");
    std::fs::write(
        dir.join("flows/hotline.scenario"),
        "scenario \"welcome\"\nflow hotline\nexpect play welcome\nexpect served greeting\n\
         expect hangup\nexpect outcome self_service\n",
    )
    .expect("scenario");
    let config = dir.join("ivr.toml");
    let config = config.to_str().unwrap_or_default();
    let o = ivr(&["--config", config, "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("warning[config]: agent `2001` has an `ha1` of 7 characters"),
        "{}",
        stdout(&o)
    );
    let o = ivr(&["--config", config, "test"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).trim_end().ends_with("1 passed, 0 failed"),
        "{}",
        stdout(&o)
    );
    // An audio file that is no audio is a warning of its own (ivr serve would not play it).
    std::fs::write(dir.join("prompts/zh-CN/welcome.wav"), [7u8; 300]).expect("junk");
    let o = ivr(&["--config", config, "check"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("prompt `welcome` (zh-CN) has no playable audio")
            && stdout(&o).contains("is not a WAV, FLAC, Ogg or MP3 file"),
        "{}",
        stdout(&o)
    );
}

/// One flow with an error does not stop the scenarios of the others: they run, the broken
/// flow's scenarios fail, a scenario with a syntax error fails as a whole, and the summary
/// line counts scenarios.
#[test]
fn a_broken_flow_or_scenario_fails_alone() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-broken-one", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    let write = |path: &str, text: &str| std::fs::write(dir.join(path), text).expect(path);
    write(
        "ivr.toml",
        "[paths]\nflows = \"flows\"\nprompts = \"prompts\"\n",
    );
    write("prompts/zh-CN/prompts.toml", "hello = { text = \"hi\" }\n");
    write(
        "flows/app.flow",
        "flow app {\n    language zh-CN\n    entry a\n}\n\nstep a {\n    play hello\n    hangup\n}\n",
    );
    write(
        "flows/broken.flow",
        "flow broken {\n    language zh-CN\n    entry a\n}\n\nstep a {\n    goto nope\n}\n",
    );
    write(
        "flows/app.scenario",
        "scenario \"hello\"\nflow app\nexpect play hello\nexpect hangup\n\n\
         scenario \"a bad line\"\nflow app\nexpect frob\nexpect play hello\n\n\
         scenario \"hello again\"\nflow app\nexpect play hello\nexpect hangup\n",
    );
    write(
        "flows/broken.scenario",
        "scenario \"broken\"\nflow broken\nexpect hangup\n",
    );
    let config = dir.join("ivr.toml");
    let config = config.to_str().unwrap_or_default();
    let o = ivr(&["--config", config, "test"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.trim_end().ends_with("2 passed, 2 failed"), "{out}");
    assert!(out.contains("FAIL ") && out.contains("a bad line"), "{out}");
    assert!(
        out.contains("the flow `broken` has errors"),
        "{out}{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("error[unknown-target]: there is no node `nope`"),
        "{}",
        stderr(&o)
    );
    // The healthy flow can be simulated; the broken one is refused with the reason.
    let o = ivr(&["--config", config, "simulate", "app", "--script", "hangup"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = ivr(&[
        "--config", config, "simulate", "broken", "--script", "hangup",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`broken` has errors"), "{}", stderr(&o));
    // A fault says why the call failed (never a value).
    std::fs::write(
        dir.join("flows/app.flow"),
        "flow app {\n    language zh-CN\n    entry a\n}\n\nstep a {\n    play hello\n    \
         set d = 1 / 0\n    hangup\n}\n",
    )
    .expect("flow");
    let o = ivr(&["--config", config, "simulate", "app", "--script", "hangup"]);
    assert!(
        stdout(&o).contains("fault in node `a`: division by zero")
            && stdout(&o).contains("call ended: failed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // A file that is not UTF-8 is one more problem at its place, not the end of the check.
    std::fs::write(dir.join("flows/junk.flow"), b"flow junk {\n \xff\xfe\n}\n").expect("junk");
    let o = ivr(&["--config", config, "check"]);
    let out = stdout(&o);
    assert!(
        out.contains("error[encoding]: this file is not UTF-8 text")
            && out.contains("junk.flow:2:2"),
        "{out}"
    );
    assert!(out.contains("there is no node `nope`"), "{out}");
}

/// A flow that only says values needs no prompt catalog: zh-CN and en-US have the fragments
/// built in.
#[test]
fn a_flow_that_only_says_values_needs_no_catalog() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-say-only", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::write(
        dir.join("flows/solo.flow"),
        "flow solo {\n    language zh-CN\n    entry a\n}\n\nstep a {\n    say money 58.30\n    \
         set language en-US\n    say number 105\n    hangup\n}\n",
    )
    .expect("flow");
    std::fs::write(
        dir.join("flows/solo.scenario"),
        "scenario \"say\"\nflow solo\nexpect say money 58.3\nexpect say number 105\n\
         expect hangup\n",
    )
    .expect("scenario");
    let config = dir.join("ivr.toml");
    std::fs::write(&config, "[paths]\nflows = \"flows\"\n").expect("config");
    let config = config.to_str().unwrap_or_default();
    let o = ivr(&["--config", config, "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let o = ivr(&["--config", config, "test"]);
    assert!(
        stdout(&o).trim_end().ends_with("1 passed, 0 failed"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // A language without fragments of its own still needs its catalog.
    std::fs::write(
        dir.join("flows/solo.flow"),
        "flow solo {\n    language fr-FR\n    entry a\n}\n\nstep a {\n    say number 5\n    hangup\n}\n",
    )
    .expect("flow");
    let o = ivr(&["--config", config, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("there is no prompt catalog for language `fr-FR`"),
        "{}",
        stdout(&o)
    );
    // A flows folder that does not exist is named (not "0 flows checked").
    std::fs::write(dir.join("ivr.toml"), "[paths]\nflows = \"flws\"\n").expect("config");
    let o = ivr(&["--config", config, "check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the flows folder") && stderr(&o).contains("flws does not exist"),
        "{}",
        stderr(&o)
    );
}

/// A configuration that cannot be read (a value of the wrong type) is reported alone, in plain
/// words: not again as every query, queue and calendar the flows use.
#[test]
fn an_unreadable_configuration_is_reported_alone() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-bad-config", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let reference = std::fs::read_to_string(root.join("ivr.toml")).expect("ivr.toml");
    let text = reference
        .replace("max_calls = 5000", "max_calls = \"two\"")
        .replace(
            "flows      = \"flows\"",
            &format!("flows      = \"{}\"", root.join("flows").display()),
        )
        .replace(
            "prompts    = \"prompts\"",
            &format!("prompts    = \"{}\"", root.join("prompts").display()),
        );
    assert!(text.contains("max_calls = \"two\""), "the edit applies");
    let config = dir.join("ivr.toml");
    std::fs::write(&config, text).expect("config");
    let o = ivr(&["--config", config.to_str().unwrap_or_default(), "check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("error[config]: found text \"two\", expected a whole number"),
        "{out}"
    );
    assert!(!out.contains("there is no query"), "{out}");
    assert!(out.trim_end().ends_with("1 error, 0 warnings"), "{out}");
    // `ivr test` cannot run a scenario, and says so with its closing line.
    let o = ivr(&["--config", config.to_str().unwrap_or_default(), "test"]);
    assert_eq!(o.status.code(), Some(1));
    let last = stdout(&o)
        .trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(
        last.starts_with("0 passed, ") && last.ends_with(" failed") && last != "0 passed, 0 failed",
        "{}",
        stdout(&o)
    );
    // A limit that refuses every call is a mistake too.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace("max_calls = \"two\"", "max_calls = 0"),
    )
    .expect("edit");
    let o = ivr(&["--config", config.to_str().unwrap_or_default(), "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("`max_calls = 0` would refuse every call"),
        "{}",
        stdout(&o)
    );
}

/// Wrong service passwords count across calls: simulated calls one after another on an embedded
/// demo database of their own, with `--live-data` (writes persist between them, as between
/// real calls).
#[test]
fn wrong_passwords_across_calls_lock_the_service_password() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-lock", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let text = std::fs::read_to_string(root.join("ivr.toml"))
        .expect("ivr.toml")
        .replace(
            "flows      = \"flows\"",
            &format!("flows      = {:?}", root.join("flows")),
        )
        .replace(
            "prompts    = \"prompts\"",
            &format!("prompts    = {:?}", root.join("prompts")),
        );
    let config = dir.join("ivr.toml");
    std::fs::write(&config, text).expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let call = |caller: &str, script: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_ivr"))
            .args(["--config", config, "simulate", "hotline", "--live-data"])
            .args(["--caller", caller, "--script", script])
            .env("NO_COLOR", "1")
            .env_remove("IVR_SECRET")
            .output()
            .expect("run ivr");
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    // 王五: 3 wrong passwords end the password checks of the first call (4, 3, 2 tries left) ...
    let out = call("13800000003", "1 111111 222222 333333 hangup");
    assert!(out.contains("say number 2"), "{out}");
    assert!(out.contains("[password_locked] password_locked"), "{out}");
    assert!(!out.contains("account_locked"), "{out}");
    // ... the count goes on in the next call, and its fifth wrong password locks ...
    let out = call("13800000003", "1 444444 555555 hangup");
    assert!(out.contains("say number 1"), "{out}");
    assert!(out.contains("[account_locked] account_locked"), "{out}");
    assert!(out.contains("transfer queue general"), "{out}");
    // ... so the call after that hears it at once: no password is asked for, even the right one.
    let out = call("13800000003", "1 hangup");
    assert!(out.contains("[account_locked] account_locked"), "{out}");
    assert!(!out.contains("enter_password"), "{out}");
    // 张三: 2 wrong passwords, then the right one in another call resets the count.
    let out = call("13800000001", "1 111111 222222 hangup");
    assert!(out.contains("say number 3"), "{out}");
    let out = call("13800000001", "1 123456 hangup");
    assert!(out.contains("balance_is"), "{out}");
    let out = call("13800000001", "1 111111 hangup");
    assert!(out.contains("say number 4"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[server] trusted` and `invite_rate` are checked like every key: a network that does not
/// read, and a rate that is not one, are errors at their line with a hint.
#[test]
fn bad_trusted_networks_and_invite_rates_are_errors_at_their_line() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-edge-config", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("dir");
    let config = dir.join("ivr.toml");
    let path = config.to_str().unwrap_or_default();
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[server]\ntrusted = [\n  \"192.0.2.0/24\",\n  \
         \"10.0.0.0/33\",\n  \"192.0.2.1/24\",\n]\ninvite_rate = -5\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "error[config]: `trusted` network `10.0.0.0/33` has a prefix length beyond the 32 \
             bits of its address\n  ┌─ "
        ) && out.contains("ivr.toml:7:3\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "error[config]: `trusted` network `192.0.2.1/24` has bits set after its first 24"
        ) && out.contains("ivr.toml:8:3\n")
            && out.contains(
                "hint: write `192.0.2.0/24` for the network, or `192.0.2.1` for the one address"
            ),
        "{out}"
    );
    assert!(
        out.contains("error[config]: `invite_rate = -5` is not a rate")
            && out.contains("ivr.toml:10:15\n"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("3 errors, 0 warnings"), "{out}");
    // Zero, and a rate that is not a number.
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[server]\ninvite_rate = 0\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(
            "error[config]: `invite_rate = 0` would refuse every INVITE from untrusted sources"
        ) && out.contains("ivr.toml:5:15\n")
            && out.contains("hint: INVITEs a second per untrusted source address, at least 1"),
        "{out}"
    );
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[server]\ninvite_rate = \"lots\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("expected a whole number") && stdout(&o).contains("ivr.toml:5:15"),
        "{}",
        stdout(&o)
    );
    // Good values check clean.
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[server]\ntrusted = [\"192.0.2.0/24\", \"2001:db8::/32\", \
         \"198.51.100.7\"]\ninvite_rate = 50\nrtp_timeout = \"45s\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// Copies `from` into `to`: folders made, `.toml` and `.flow` files copied, audio linked.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("folder");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else if src
            .extension()
            .is_some_and(|x| x == "toml" || x == "flow" || x == "scenario")
        {
            std::fs::copy(&src, &dst).expect("copy");
        } else {
            std::os::unix::fs::symlink(&src, &dst).expect("link");
        }
    }
}

fn version_at(config: &std::path::Path) -> String {
    let o = ivr(&["--config", &config.to_string_lossy(), "compile", "hotline"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let program: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("a program");
    program["version"].as_str().expect("version").to_string()
}

/// A flow's version is one identity: the same files give the same version in another folder;
/// an edit of a prompt the flow plays gives a new one, and undoing it the old one again.
#[test]
fn a_flow_version_covers_its_text_imports_and_prompts_in_any_folder() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("ivr-cli-version-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_tree(&root.join("flows"), &dir.join("flows"));
    copy_tree(&root.join("prompts"), &dir.join("prompts"));
    std::fs::copy(root.join("ivr.toml"), dir.join("ivr.toml")).expect("config");
    let here = version_at(&root.join("ivr.toml"));
    let config = dir.join("ivr.toml");
    assert_eq!(
        version_at(&config),
        here,
        "the same files in another folder"
    );

    let catalog = dir.join("prompts/zh-CN/prompts.toml");
    let text = std::fs::read_to_string(&catalog).expect("catalog");
    let edited = text.replace("欢迎致电客户服务热线", "欢迎致电热线");
    assert_ne!(edited, text);
    std::fs::write(&catalog, &edited).expect("edit");
    let new = version_at(&config);
    assert_ne!(new, here, "a prompt's text changed");
    assert_eq!(new.len(), 16);
    std::fs::write(&catalog, &text).expect("undo");
    assert_eq!(version_at(&config), here, "undone");

    // An imported flow's edit is a new version of the importer too.
    let common = dir.join("flows/common.flow");
    let text = std::fs::read_to_string(&common).expect("common");
    std::fs::write(&common, format!("{text}\n# an edit\n")).expect("edit");
    assert_ne!(version_at(&config), here, "an imported flow changed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unreadable_certificates_and_srtp_are_errors_at_their_line() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-tls-config", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("dir");
    std::fs::create_dir_all(dir.join("tls")).expect("dir");
    std::fs::write(
        dir.join("tls/cert.pem"),
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .expect("cert");
    let config = dir.join("ivr.toml");
    let path = config.to_str().unwrap_or_default();
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[server]\n\
         tls = { sip = \"0.0.0.0:5061\", cert = \"tls/cert.pem\", key = \"tls/key.pem\" }\n\
         https = { cert = \"tls/cert.pem\", key = \"tls/cert.pem\" }\nsrtp = \"sometimes\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("error[config]: `tls` key `")
            && out.contains("tls/key.pem` cannot be read")
            && out.contains("ivr.toml:5:60\n"),
        "{out}"
    );
    assert!(
        out.contains("tls/cert.pem` holds no PEM key") && out.contains("ivr.toml:6:40\n"),
        "{out}"
    );
    assert!(
        out.contains("error[config]: `srtp = \"sometimes\"` is not a policy")
            && out.contains("ivr.toml:7:8\n")
            && out.contains("`\"optional\"` (RTP/SAVP with SDES keys or plain RTP)"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("3 errors, 0 warnings"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ivr simulate FLOW --contact k=v,...`: the campaign's list row, typed as its query says;
/// `caller` is its phone. Values that do not fit are refused before the call starts.
#[test]
fn simulate_takes_a_contact_row() {
    let o = ivr(&[
        "simulate",
        "arrears_notice",
        "--contact",
        "phone=13800000009,arrears=58.30,due_date=2026-11-25",
        "--script",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("13800000009"), "{out}");
    assert!(out.contains("五十八元三角"), "{out}");
    assert!(out.contains("二零二六年十一月二十五日"), "{out}");
    assert!(out.contains("transfer queue billing"), "{out}");
    for (contact, error) in [
        (
            "phone=13800000009,arrears=lots",
            "--contact: `arrears` is money in the list query, and `lots` is not money: write e.g. 58.30",
        ),
        (
            "phone=13800000009,due=2026-11-25",
            "--contact: the list query `arrears_due` returns no field `due` (it returns `phone`, `name`, `arrears`, `due_date`, `month`)",
        ),
        ("phone", "--contact: `phone` is not `name=value`"),
    ] {
        let o = ivr(&[
            "simulate",
            "arrears_notice",
            "--contact",
            contact,
            "--script",
            "0",
        ]);
        assert!(!o.status.success(), "{contact}: {}", stdout(&o));
        assert!(stderr(&o).contains(error), "{contact}: {}", stderr(&o));
    }
    let o = ivr(&["simulate", "hotline", "--contact", "phone=13800000009"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("flow `hotline` is run by no campaign"),
        "{}",
        stderr(&o)
    );
}

/// `[campaigns.NAME]`: the list query must take no args and return `phone`, the flow and the
/// calendar must exist, counts and durations must read; a flow reads only the fields its
/// campaign's list returns.
#[test]
fn campaign_settings_and_contact_fields_are_checked() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-campaign", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("dir");
    std::fs::write(
        dir.join("flows/notice.flow"),
        "flow notice {\n    language zh-CN\n    entry    start\n}\n\nstep start {\n    \
         served \"notice\"\n    say money contact.arrers\n    hangup\n}\n",
    )
    .expect("flow");
    let config = dir.join("ivr.toml");
    let path = config.to_str().unwrap_or_default();
    let base = "[paths]\nflows = \"flows\"\n\n\
                [queries.due]\nsql = \"SELECT phone, amount AS arrears FROM bills\"\n\
                fields = { phone = \"text\", arrears = \"money\" }\n\n\
                [queries.by_phone]\nargs = [\"phone\"]\nsql = \"SELECT amount FROM bills WHERE phone = $1\"\n\
                fields = { amount = \"money\" }\n\n\
                [trunks.carrier]\nuri = \"sip:192.0.2.1:5060\"\n\n";
    std::fs::write(
        &config,
        format!("{base}[campaigns.a]\nflow = \"notice\"\nlist = \"due\"\ntrunk = \"carrier\"\n"),
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "error[unknown-field]: `contact` has no field `arrers`: query `due`, the list of \
             campaign `a`, does not return it"
        ) && out.contains("notice.flow:8:23")
            && out.contains("hint: did you mean `arrears`?"),
        "{out}"
    );
    std::fs::write(
        &config,
        format!(
            "{base}[campaigns.a]\nflow = \"notise\"\nlist = \"by_phone\"\ncalendar = \"office\"\n\
             rate = 0\nretry_after = \"soon\"\ntrunk = \"carrier\"\n"
        ),
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    for (message, at) in [
        (
            "error[config]: campaign `a`'s list `by_phone` takes arguments or is a transaction",
            "ivr.toml:18:8",
        ),
        (
            "error[config]: campaign `a`'s list `by_phone` returns no `phone` field",
            "ivr.toml:18:8",
        ),
        (
            "error[config]: campaign `a`'s calendar `office` is not in `[calendars]`",
            "ivr.toml:19:12",
        ),
        ("error[config]: campaign `a` has rate 0", "ivr.toml:20:8"),
        (
            "error[config]: campaign `a` has a bad retry_after `soon`",
            "ivr.toml:21:15",
        ),
        (
            "error[contact-without-campaign]: flow `notice` reads `contact`, but no campaign runs it",
            "notice.flow:8:15",
        ),
    ] {
        assert!(out.contains(message), "{message}\n{out}");
        assert!(out.contains(at), "{at}\n{out}");
    }
    std::fs::write(
        &config,
        format!(
            "{base}[campaigns.a]\nflow = \"notice\"\nlist = \"due\"\ntrunk = \"carrier\"\nattemps = 3\n"
        ),
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert!(
        stdout(&o).contains("unknown key `attemps` (in `campaigns.a.attemps`)")
            && stdout(&o).contains("did you mean `attempts`?"),
        "{}",
        stdout(&o)
    );
    // A campaign left out for its own error (its trunk is not declared) still counts as
    // running its flow: the flow gets no cascading `contact-without-campaign`.
    std::fs::write(
        &config,
        format!("{base}[campaigns.a]\nflow = \"notice\"\nlist = \"due\"\ntrunk = \"carier\"\n"),
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("campaign `a`'s trunk `carier` is not a working `[trunks.*]`")
            && !out.contains("contact-without-campaign"),
        "{out}"
    );
}

/// `[recording]` is a known section with keys of its own: a misspelt section or key gets a
/// "did you mean".
#[test]
fn recording_section_and_keys_get_did_you_mean() {
    let dir = std::env::temp_dir().join(format!("ivr-cli-{}-recording", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("dir");
    std::fs::write(
        dir.join("flows/notice.flow"),
        "flow notice {\n    language zh-CN\n    entry    start\n}\n\nstep start {\n    \
         served \"notice\"\n    hangup\n}\n",
    )
    .expect("flow");
    let config = dir.join("ivr.toml");
    let path = config.to_str().unwrap_or_default();
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[recordings]\ncalls = \"all\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    let out = stdout(&o);
    assert!(
        out.contains("unknown key `recordings`") && out.contains("did you mean `recording`?"),
        "{out}"
    );
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[recording]\ncalls = \"all\"\nkeeps = \"90d\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    let out = stdout(&o);
    assert!(
        out.contains("unknown key `keeps` (in `recording.keeps`)")
            && out.contains("did you mean `keep`?"),
        "{out}"
    );
    std::fs::write(
        &config,
        "[paths]\nflows = \"flows\"\n\n[recording]\ncalls = \"all\"\nkeep = \"90d\"\n",
    )
    .expect("config");
    let o = ivr(&["--config", path, "check"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
