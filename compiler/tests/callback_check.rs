//! `callback after D -> NODE` in transfer nodes as `ivr check` sees it: the prompts
//! `callback_offer` and `callback_confirm` in every catalog the flow uses (reported at the
//! clause's line), a trunk to dial back through (the queue's `trunk`, else `default`), a
//! queue (not `to`), and the target node.

use ivr_compiler::project::{CheckOptions, check};
use std::fs;
use std::path::PathBuf;

const FLOW: &str = "flow f {\n    language zh-CN\n    entry wait\n}\n\n\
transfer wait {\n    queue    general\n    callback after 60s -> TARGET\n    max_wait 120s -> bye\n    no_agents -> bye\n}\n\n\
step saved {\n    play bye\n    hangup\n}\n\n\
step bye {\n    play bye\n    served \"x\"\n    hangup\n}\n";

/// A project in a scratch folder; the diagnostics of `ivr check` as (code, line, message).
fn check_project(
    name: &str,
    target: &str,
    queue: &str,
    trunks: &str,
    prompts: &str,
) -> Vec<(String, usize, String)> {
    let dir =
        std::env::temp_dir().join(format!("ivr-callback-check-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/f.flow"), FLOW.replace("TARGET", target)).expect("flow");
    fs::write(dir.join("prompts/zh-CN/prompts.toml"), prompts).expect("prompts");
    fs::write(
        dir.join("ivr.toml"),
        format!("[paths]\nflows = \"flows\"\nprompts = \"prompts\"\n\n[queues.general]\n{queue}\n\n{trunks}"),
    )
    .expect("config");
    let checked = check(&CheckOptions {
        config: Some(dir.join("ivr.toml")),
        paths: Vec::new(),
    })
    .expect("check");
    let out = checked
        .diagnostics
        .iter()
        .filter(|d| d.code != "missing-audio")
        .map(|d| {
            let (line, _) = checked.sources.line_col(d.file, d.span);
            (d.code.to_string(), line, d.message.clone())
        })
        .collect();
    let _ = fs::remove_dir_all(PathBuf::from(&dir));
    out
}

const TRUNK: &str = "[trunks.default]\nuri = \"sip:127.0.0.1:5090\"\n";
const ALL_PROMPTS: &str = "bye = { text = \"再见\" }\ncallback_offer = { text = \"按1回电\" }\ncallback_confirm = { text = \"已保留\" }\n";

#[test]
fn a_complete_callback_clause_is_clean() {
    let d = check_project("clean", "saved", "", TRUNK, ALL_PROMPTS);
    assert_eq!(d, Vec::<(String, usize, String)>::new());
}

#[test]
fn missing_prompts_are_reported_at_the_clause() {
    let d = check_project("prompts", "saved", "", TRUNK, "bye = { text = \"再见\" }\n");
    let unknown: Vec<_> = d.iter().filter(|(c, _, _)| c == "unknown-prompt").collect();
    assert_eq!(unknown.len(), 2, "{d:?}");
    assert!(unknown.iter().all(|(_, line, _)| *line == 8), "{d:?}");
    assert!(unknown[0].2.contains("callback_offer"), "{d:?}");
    assert!(unknown[1].2.contains("callback_confirm"), "{d:?}");
}

#[test]
fn a_queue_without_a_trunk_is_reported() {
    let d = check_project("no-trunk", "saved", "", "", ALL_PROMPTS);
    let e: Vec<_> = d
        .iter()
        .filter(|(c, _, _)| c == "callback-without-trunk")
        .collect();
    assert_eq!(e.len(), 1, "{d:?}");
    assert_eq!(e[0].1, 8);
    assert!(e[0].2.contains("[trunks.default]"), "{d:?}");
    // A queue's own trunk must exist.
    let d = check_project(
        "bad-trunk",
        "saved",
        "trunk = \"carier\"",
        "[trunks.carrier]\nuri = \"sip:127.0.0.1:5090\"\n",
        ALL_PROMPTS,
    );
    assert!(
        d.iter()
            .any(|(c, _, m)| c == "config" && m.contains("trunk `carier`")),
        "{d:?}"
    );
    // With it, the callback is dialled through it.
    let d = check_project(
        "own-trunk",
        "saved",
        "trunk = \"carrier\"",
        "[trunks.carrier]\nuri = \"sip:127.0.0.1:5090\"\n",
        ALL_PROMPTS,
    );
    assert!(
        d.iter()
            .all(|(c, _, _)| c != "callback-without-trunk" && c != "config"),
        "{d:?}"
    );
}

#[test]
fn the_target_must_exist() {
    let d = check_project("target", "nowhere", "", TRUNK, ALL_PROMPTS);
    assert!(
        d.iter()
            .any(|(_, line, m)| *line == 8 && m.contains("nowhere")),
        "{d:?}"
    );
}

#[test]
fn bad_callback_settings_of_a_queue_are_reported() {
    let d = check_project(
        "settings",
        "saved",
        "callback_attempts = 0\ncallback_retry_after = \"soon\"\ncallback_tries = 3",
        TRUNK,
        ALL_PROMPTS,
    );
    let config: Vec<_> = d.iter().filter(|(c, _, _)| c == "config").collect();
    assert!(
        config
            .iter()
            .any(|(_, _, m)| m.contains("callback_attempts 0")),
        "{d:?}"
    );
    assert!(
        config
            .iter()
            .any(|(_, _, m)| m.contains("callback_retry_after `soon`")),
        "{d:?}"
    );
    assert!(
        config.iter().any(|(_, _, m)| m.contains("callback_tries")),
        "{d:?}"
    );
}
