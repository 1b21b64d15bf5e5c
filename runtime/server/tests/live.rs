//! Hot reload: valid edits go live, broken edits never do, and calls keep the deployment they
//! started with.

use ivr_server::live::{Live, ReloadOutcome};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A copy of the reference deployment (ivr.toml, flows, prompts) in a fresh folder.
fn copy_reference(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("ivr-live-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&root.join("flows"), &dir.join("flows"));
    copy_dir(&root.join("prompts"), &dir.join("prompts"));
    std::fs::copy(root.join("ivr.toml"), dir.join("ivr.toml")).expect("copy ivr.toml");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

#[test]
fn valid_edits_go_live_and_broken_ones_never_do() {
    let dir = copy_reference("reload");
    let live = Live::start(Some(dir.join("ivr.toml"))).expect("reference deployment loads");
    let first = live.current();
    let mut swaps = live.subscribe();
    assert!(matches!(live.reload(), ReloadOutcome::Unchanged));
    assert!(!swaps.has_changed().expect("open"), "nothing went live");

    // A valid edit: a new version, and a call that started before keeps the old one.
    let hotline = dir.join("flows/hotline.flow");
    edit(&hotline, "timeout  5s", "timeout  6s");
    let ReloadOutcome::Swapped { version } = live.reload() else {
        panic!("a valid edit should go live");
    };
    assert_ne!(version, first.version);
    assert_eq!(live.current().version, version);
    // Those who follow the configuration (the ACD, the registrar) hear of it.
    assert!(swaps.has_changed().expect("open"));
    swaps.borrow_and_update();
    assert_ne!(
        first.flows["hotline"].program.version,
        live.current().flows["hotline"].program.version
    );

    // A broken edit: diagnostics, and the live version stays.
    edit(&hotline, "goto identify", "goto identfy");
    let ReloadOutcome::Failed(f) = live.reload() else {
        panic!("a broken edit must not go live");
    };
    assert!(
        f.rendered.contains("there is no node `identfy`"),
        "{}",
        f.rendered
    );
    assert_eq!(live.current().version, version);
    assert!(
        !swaps.has_changed().expect("open"),
        "a broken edit is no new version"
    );
    let status = live.status();
    assert_eq!(status["version"], version.as_str());
    assert_eq!(status["last_reload"]["ok"], false);
    assert_eq!(
        status["last_reload"]["diagnostics"][0]["code"],
        "unknown-target"
    );
    assert_eq!(status["reloads"]["failed"], 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_watcher_reloads_after_an_editor_saves() {
    let dir = copy_reference("watch");
    let live = Live::start(Some(dir.join("ivr.toml"))).expect("loads");
    let before = live.current().version.clone();
    let _guard = live.watch().expect("watch");
    // An editor's save: write a temporary file, then rename it over the flow.
    let hotline = dir.join("flows/hotline.flow");
    let text = std::fs::read_to_string(&hotline).expect("read");
    let tmp = dir.join("flows/.hotline.flow.swp");
    std::fs::write(&tmp, text.replacen("timeout  5s", "timeout  7s", 1)).expect("write tmp");
    std::fs::rename(&tmp, &hotline).expect("rename");
    let started = Instant::now();
    while live.current().version == before && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(live.current().version, before, "the watcher did not reload");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a call runs: a dialled number or WHIP route by `[routes]`, a flow by name, and the rest
/// by the `default` route.
#[test]
fn routes_pick_the_flow_and_default_takes_the_rest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let d = ivr_server::deploy::Deployment::load(Some(&root.join("ivr.toml")), None)
        .expect("reference deployment");
    let flow = |f: Option<(&str, &std::sync::Arc<ivr_engine::Flow>)>| f.map(|(n, _)| n.to_string());
    assert_eq!(flow(d.flow_for("10010")).as_deref(), Some("hotline"));
    assert_eq!(
        flow(d.flow_for("99999")).as_deref(),
        Some("hotline"),
        "default"
    );
    assert_eq!(
        flow(d.flow_for_route("common")).as_deref(),
        Some("common"),
        "by flow name"
    );
    assert_eq!(
        flow(d.flow_for_route("99999")).as_deref(),
        Some("hotline"),
        "default"
    );
}

/// A flow whose prompt has no audio is not started, each missing prompt named, and the other
/// flows are; a flow that is live keeps its audio: an edit that takes it away is refused.
#[test]
fn a_flow_without_its_audio_is_not_started_and_the_others_are() {
    use ivr_server::deploy::Deployment;
    let dir = std::env::temp_dir().join(format!("ivr-live-{}-no-audio", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    let tone: Vec<i16> = (0..4000).map(|i| ((i % 20) * 800) as i16).collect();
    for id in ["hello", "lost"] {
        ivr_media::audio::write_wav(&dir.join(format!("prompts/zh-CN/{id}.wav")), &tone)
            .expect("wav");
    }
    std::fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "hello = { text = \"hi\" }\nlost = { text = \"lost\" }\n",
    )
    .expect("catalog");
    for (name, prompt) in [("a", "hello"), ("b", "lost")] {
        std::fs::write(
            dir.join(format!("flows/{name}.flow")),
            format!(
                "flow {name} {{\n    language zh-CN\n    entry s\n}}\n\nstep s {{\n    play {prompt}\n    hangup\n}}\n"
            ),
        )
        .expect("flow");
    }
    std::fs::write(
        dir.join("ivr.toml"),
        "[paths]\nflows = \"flows\"\nprompts = \"prompts\"\n\n[routes]\n\"1\" = \"a\"\n\"2\" = \"b\"\n",
    )
    .expect("config");
    let config = dir.join("ivr.toml");
    let both = Deployment::load(Some(&config), None).expect("both flows");
    assert!(both.left_out.is_empty());
    // b's audio goes: an edit that takes a live flow's audio away is refused.
    std::fs::remove_file(dir.join("prompts/zh-CN/lost.wav")).expect("rm");
    let refused = Deployment::load(Some(&config), Some(&both));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.rendered.contains("prompt `lost` (zh-CN) has no audio")),
        "{:?}",
        refused.map(|d| d.left_out)
    );
    // Started that way: a runs, b is not started, and `lost` is named.
    let d = Deployment::load(Some(&config), None).expect("a starts");
    assert!(d.flows.contains_key("a") && !d.flows.contains_key("b"));
    assert!(
        d.left_out.contains("prompt `lost` (zh-CN) has no audio"),
        "{}",
        d.left_out
    );
    assert!(d.flow_for("2").is_none(), "b's calls are refused");
    assert!(d.routes_to_not_started("2") && !d.routes_to_not_started("1"));
    // A flow with a check error is not started either, the diagnostic as `ivr check` has it;
    // broken while live, the edit is refused whole.
    let c = dir.join("flows/c.flow");
    std::fs::write(
        &c,
        "flow c {\n    language zh-CN\n    entry s\n}\n\nstep s {\n    goto nowhere\n}\n",
    )
    .expect("flow");
    let d = Deployment::load(Some(&config), None).expect("a starts");
    assert!(d.flows.contains_key("a") && !d.flows.contains_key("c"));
    assert!(
        d.left_out.contains("there is no node `nowhere`"),
        "{}",
        d.left_out
    );
    assert!(
        d.left_out.contains("flow(s) not started: b, c"),
        "{}",
        d.left_out
    );
    assert_eq!(d.not_started, ["c", "b"]);
    assert_eq!(
        Live::start(Some(config.clone())).expect("live").status()["not_started"],
        serde_json::json!(["c", "b"])
    );
    std::fs::write(
        dir.join("flows/a.flow"),
        "flow a {\n    language zh-CN\n    entry s\n}\n\nstep s {\n    goto nowhere\n}\n",
    )
    .expect("break a");
    assert!(
        Deployment::load(Some(&config), Some(&d)).is_err(),
        "a is live"
    );

    std::fs::remove_file(&c).expect("rm");
    std::fs::write(
        dir.join("flows/a.flow"),
        "flow a {\n    language zh-CN\n    entry s\n}\n\nstep s {\n    play hello\n    hangup\n}\n",
    )
    .expect("mend a");
    // With no flow that can start, nothing starts.
    std::fs::remove_file(dir.join("prompts/zh-CN/hello.wav")).expect("rm");
    let none = Deployment::load(Some(&config), None);
    assert!(none.is_err_and(|e| e.rendered.contains("prompt `hello` (zh-CN) has no audio")));
}
