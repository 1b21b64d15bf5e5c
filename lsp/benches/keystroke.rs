//! How long a keystroke in a 5,000-node flow takes to be diagnosed by `ivr lsp`: the server's
//! real loop (`ivr_lsp::serve`) on an in-memory connection, a project on disk (configuration,
//! zh-CN and en-US catalogs with audio files, the generated flow of `benches/check.rs`), the
//! flow open; each iteration sends one `didChange` of one character (incremental sync) and
//! waits for the `publishDiagnostics` it causes.
//!
//! Run with `cargo bench -p ivr-lsp --bench keystroke`; results and the machine they were
//! taken on are in docs/performance.md.

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use lsp_server::{Connection, Message, Notification, Request, RequestId};
use serde_json::{Value, json};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "../../dsl/tests/support/big_flow.rs"]
mod big_flow;
use big_flow::{CONFIG, MENU_PROMPTS, PROMPTS, flow_text};

const NODES: usize = 5_000;

/// A WAV header and 20 ms of silence at 8 kHz.
fn wav() -> Vec<u8> {
    let data = vec![0u8; 320];
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

fn project() -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("ivr-lsp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows folder");
    std::fs::write(dir.join("ivr.toml"), CONFIG).expect("configuration");
    let ids: Vec<String> = PROMPTS
        .iter()
        .map(|p| p.to_string())
        .chain((0..MENU_PROMPTS).map(|i| format!("menu_{i}")))
        .collect();
    for lang in ["zh-CN", "en-US"] {
        let folder = dir.join("prompts").join(lang);
        std::fs::create_dir_all(&folder).expect("catalog folder");
        let mut text = String::new();
        for id in &ids {
            writeln!(text, "{id} = {{ text = \"{id} ({lang})\" }}").expect("string");
            std::fs::write(folder.join(format!("{id}.wav")), wav()).expect("audio");
        }
        std::fs::write(folder.join("prompts.toml"), text).expect("catalog");
    }
    let flow = flow_text(NODES);
    std::fs::write(dir.join("flows/big.flow"), &flow).expect("flow");
    (dir, flow)
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Waits for the diagnostics of `uri`; returns how many there are.
fn diagnostics(client: &Connection, uri: &str) -> usize {
    loop {
        let msg = client
            .receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("diagnostics");
        if let Message::Notification(n) = msg
            && n.method == "textDocument/publishDiagnostics"
            && n.params["uri"] == uri
        {
            return n.params["diagnostics"].as_array().map_or(0, Vec::len);
        }
    }
}

fn keystroke(c: &mut Criterion) {
    let (dir, flow) = project();
    let (server, client) = Connection::memory();
    let config = dir.join("ivr.toml");
    let server_config = config.clone();
    let thread = std::thread::spawn(move || ivr_lsp::server::serve(&server, Some(server_config)));
    let init = Request::new(
        RequestId::from(1),
        "initialize".into(),
        json!({ "processId": null, "rootUri": uri(&dir), "capabilities": {} }),
    );
    client.sender.send(init.into()).expect("send");
    let _ = client.receiver.recv().expect("initialize answered");
    let note = |method: &str, params: Value| {
        Message::Notification(Notification::new(method.into(), params))
    };
    client
        .sender
        .send(note("initialized", json!({})))
        .expect("send");
    let path = dir.join("flows/big.flow");
    let u = uri(&path);
    client
        .sender
        .send(note(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": u, "languageId": "ivr-flow", "version": 1, "text": flow } }),
        ))
        .expect("send");
    assert_eq!(
        diagnostics(&client, &u),
        0,
        "the generated flow checks clean"
    );

    // A one-character edit in the middle of the file: `timeout  5s` becomes `6s` and back.
    let at = flow[flow.len() / 2..]
        .find("timeout  5s")
        .map(|i| flow.len() / 2 + i + 9)
        .expect("a menu's timeout");
    let line = flow[..at].matches('\n').count();
    let col = at - flow[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut version = 1;
    let mut group = c.benchmark_group("lsp_5000_nodes");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("keystroke_to_diagnostics", |b| {
        b.iter(|| {
            version += 1;
            let digit = if version % 2 == 0 { "6" } else { "5" };
            let change = json!({
                "textDocument": { "uri": u, "version": version },
                "contentChanges": [{
                    "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 1 } },
                    "text": digit
                }]
            });
            client.sender.send(note("textDocument/didChange", change)).expect("send");
            assert_eq!(diagnostics(&client, &u), 0);
        });
    });
    // The machine is shared: besides wall time (above, which includes waiting for a core),
    // the processor time a keystroke costs, from the process's user and system time in
    // /proc/self/stat (the client thread only waits), over 60 keystrokes.
    if let Some(before) = cpu_ticks() {
        let mut walls = Vec::new();
        for _ in 0..60 {
            version += 1;
            let digit = if version % 2 == 0 { "6" } else { "5" };
            let change = json!({
                "textDocument": { "uri": u, "version": version },
                "contentChanges": [{
                    "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col + 1 } },
                    "text": digit
                }]
            });
            let t = std::time::Instant::now();
            client
                .sender
                .send(note("textDocument/didChange", change))
                .expect("send");
            assert_eq!(diagnostics(&client, &u), 0);
            walls.push(t.elapsed());
        }
        if let Some(after) = cpu_ticks() {
            walls.sort();
            // Clock ticks are 10 ms on Linux (CLK_TCK = 100).
            let cpu_ms = (after - before) as f64 * 10.0 / 60.0;
            println!(
                "keystroke: {cpu_ms:.1} ms of processor time each (mean of 60); wall median {:.1} ms",
                walls[30].as_secs_f64() * 1000.0
            );
        }
    }

    // The same work without the server, measured in the same run (the machine is shared and
    // noisy): `ivr check`'s work on the flow, parsing and checking it with the configuration
    // and catalogs already read (what benches/check.rs calls `parse_and_check`).
    let mut sources = ivr_dsl::SourceMap::new();
    let (cfg, _) = ivr_compiler::load_config(Some(&config), &mut sources).expect("configuration");
    let (catalogs, _) = ivr_compiler::catalog::Catalogs::load(&cfg.prompts_dir, &mut sources);
    let check = || {
        let mut sources = sources.clone();
        let mut diags = Vec::new();
        let f = ivr_compiler::parse_source(&path, flow.clone(), true, &mut sources, &mut diags);
        let checked = ivr_compiler::finish(sources, cfg.clone(), catalogs.clone(), vec![f], diags);
        assert!(checked.diagnostics.is_empty());
    };
    group.bench_function("parse_and_check_baseline", |b| b.iter(check));
    if let Some(before) = cpu_ticks() {
        for _ in 0..60 {
            check();
        }
        if let Some(after) = cpu_ticks() {
            let cpu_ms = (after - before) as f64 * 10.0 / 60.0;
            println!("parse and check: {cpu_ms:.1} ms of processor time each (mean of 60)");
        }
    }
    group.finish();
    let shutdown = Request::new(RequestId::from(2), "shutdown".into(), Value::Null);
    client.sender.send(shutdown.into()).expect("send");
    let _ = client.receiver.recv();
    client.sender.send(note("exit", Value::Null)).expect("send");
    let _ = thread.join();
    let _ = std::fs::remove_dir_all(&dir);
}

/// User plus system time of this process so far, in clock ticks.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

criterion_group!(benches, keystroke);
criterion_main!(benches);
