//! `ivr lsp` spoken to over standard input and output by a JSON-RPC client of our own, as an
//! editor does: initialize, the corpus' mistakes as diagnostics at the right ranges (UTF-16
//! columns on lines with Chinese text), edits, definition, references, rename, completion,
//! hover, document symbols, formatting, shutdown and exit.

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `file://` URI (the paths of these tests need no escaping but spaces and Chinese).
fn uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
    notes: VecDeque<Value>,
}

impl Client {
    /// Starts `ivr [--config CONFIG] lsp` in `dir` and initialises it with `dir` as the root.
    fn start(dir: &Path, config: Option<&Path>) -> Client {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ivr"));
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .arg("lsp")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ivr lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("Content-Length")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let msg: Value = serde_json::from_slice(&body).expect("JSON message");
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            rx,
            next_id: 1,
            notes: VecDeque::new(),
        };
        let init = client.request(
            "initialize",
            json!({ "processId": null, "rootUri": uri(dir), "capabilities": {} }),
        );
        let caps = &init["capabilities"];
        for cap in [
            "definitionProvider",
            "referencesProvider",
            "renameProvider",
            "hoverProvider",
            "completionProvider",
            "documentSymbolProvider",
            "documentFormattingProvider",
        ] {
            assert!(!caps[cap].is_null(), "{cap} missing in {init}");
        }
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns its result (panics on an error response).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let resp = self.request_raw(method, params);
        assert!(resp["error"].is_null(), "{method}: {resp}");
        resp["result"].clone()
    }

    fn request_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let msg = self.rx.recv_timeout(WAIT).expect("a response in time");
            if msg["id"] == json!(id) {
                return msg;
            }
            self.notes.push_back(msg);
        }
    }

    /// The next diagnostics published for `uri` (earlier ones are dropped).
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let is_it = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        };
        let list = |m: Value| {
            m["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        };
        if let Some(i) = self.notes.iter().position(is_it) {
            return self.notes.remove(i).map(list).unwrap_or_default();
        }
        loop {
            let msg = self.rx.recv_timeout(WAIT).expect("diagnostics in time");
            if is_it(&msg) {
                return list(msg);
            }
            self.notes.push_back(msg);
        }
    }

    /// Waits until the server has sent everything of the batches before this call (a request
    /// is answered after the diagnostics of the edits before it).
    fn sync(&mut self) {
        let resp = self.request_raw("ivr/sync", Value::Null);
        assert!(!resp["error"].is_null());
    }

    fn open(&mut self, path: &Path, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri(path), "languageId": "ivr-flow", "version": 1, "text": text } }),
        );
    }

    fn close(&mut self, path: &Path) {
        self.notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": uri(path) } }),
        );
    }

    /// `shutdown`, `exit`, and the process ends by itself with status 0.
    fn finish(mut self) {
        let result = self.request("shutdown", Value::Null);
        assert!(result.is_null());
        self.notify("exit", Value::Null);
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "{status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("ivr lsp did not exit after `exit`");
    }
}

/// The LSP position (line, UTF-16 column) of 1-based line and character column `col`.
fn lsp_position(text: &str, line: usize, col: usize) -> (u64, u64) {
    let l = text.lines().nth(line - 1).unwrap_or("");
    let units: usize = l.chars().take(col - 1).map(char::len_utf16).sum();
    ((line - 1) as u64, units as u64)
}

/// Where `needle` starts (its `nth` occurrence) as (line, UTF-16 column).
fn find(text: &str, needle: &str, nth: usize) -> (u64, u64) {
    let at = text
        .match_indices(needle)
        .nth(nth)
        .map(|(i, _)| i)
        .expect("needle in text");
    let line = text[..at].matches('\n').count();
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let col: usize = text[start..at].chars().map(char::len_utf16).sum();
    (line as u64, col as u64)
}

fn pos(p: (u64, u64)) -> Value {
    json!({ "line": p.0, "character": p.1 })
}

/// The diagnostics an `.expected` file shows: (file, code, line, column), the position as LSP
/// counts it in that file.
fn expected(expected: &str) -> Vec<(PathBuf, String, u64, u64)> {
    let mut out = Vec::new();
    let mut code = None;
    for line in expected.lines() {
        if let Some(rest) = line
            .strip_prefix("error[")
            .or_else(|| line.strip_prefix("warning["))
        {
            code = rest.split(']').next().map(String::from);
        } else if let Some(loc) = line.trim_start().strip_prefix("┌─ ")
            && let Some(c) = code.take()
        {
            let mut parts = loc.rsplitn(3, ':');
            let col: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let ln: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            let file = repo().join(parts.next().unwrap_or(""));
            let text = std::fs::read_to_string(&file).expect("file of a diagnostic");
            let (l, ch) = lsp_position(&text, ln, col);
            out.push((file, c, l, ch));
        }
    }
    out.sort();
    out
}

fn got(diags: &[Value]) -> Vec<(String, u64, u64)> {
    let mut out: Vec<_> = diags
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["range"]["start"]["line"].as_u64().unwrap_or(0),
                d["range"]["start"]["character"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn corpus_mistakes_are_diagnosed_at_their_ranges() {
    let config = repo().join("tests/corpus/ivr.toml");
    let mut client = Client::start(&repo(), Some(&config));
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/corpus/invalid"))
        .expect("corpus")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    files.sort();
    assert!(files.len() > 20);
    for flow in &files {
        let text = std::fs::read_to_string(flow).expect("flow");
        let want =
            expected(&std::fs::read_to_string(flow.with_extension("expected")).expect("expected"));
        assert!(!want.is_empty(), "{}: nothing expected", flow.display());
        let mut files: Vec<PathBuf> = want.iter().map(|w| w.0.clone()).collect();
        files.push(flow.clone());
        files.sort();
        files.dedup();
        client.notes.clear();
        client.open(flow, &text);
        for file in &files {
            let diags = client.diagnostics(&uri(file));
            let want_here: Vec<_> = want
                .iter()
                .filter(|w| &w.0 == file)
                .map(|w| (w.1.clone(), w.2, w.3))
                .collect();
            assert_eq!(
                got(&diags),
                want_here,
                "{}: in {}",
                flow.display(),
                file.display()
            );
            if file == flow && flow.ends_with("duplicate_node.flow") {
                // "the first one": the other place, as related information.
                let related = &diags[0]["relatedInformation"][0];
                assert_eq!(related["location"]["uri"], uri(flow), "{diags:?}");
                assert!(related["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
        }
        client.close(flow);
        assert!(
            client.diagnostics(&uri(flow)).is_empty(),
            "closing clears {}",
            flow.display()
        );
        client.sync();
    }
    client.finish();
}

/// A small project: a flow with Chinese text, the flow it imports, a catalog, a query, a queue.
fn project() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-lsp-热线 {}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flows")).expect("flows");
    std::fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    std::fs::write(
        dir.join("ivr.toml"),
        r#"
[queries.customer_by_phone]
args   = ["phone"]
sql    = "SELECT id, name, vip, balance FROM customers WHERE phone = $1"
fields = { id = "number", name = "text", vip = "bool", balance = "money" }

[queues.general]
skills = ["mandarin"]

[campaigns.reminder]                  # the hotline is also a campaign's flow: `contact` completes
flow = "hotline"
list = "due"
trunk = "carrier"

[queries.due]
sql    = "SELECT phone, amount AS arrears FROM bills"
fields = { phone = "text", arrears = "money" }

[trunks.carrier]
uri = "sip:192.0.2.1:5060"

[routes]
default = "hotline"
"#,
    )
    .expect("config");
    std::fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "welcome   = { text = \"欢迎致电客户服务热线\" }\nmain_menu = { text = \"查询请按1，人工服务请按0\" }\ngoodbye   = { text = \"再见\" }\nno_input  = { text = \"没有收到您的按键\" }\n",
    )
    .expect("catalog");
    std::fs::write(
        dir.join("flows/common.flow"),
        "flow common {\n    language zh-CN\n    entry    goodbye\n}\n\nstep goodbye {\n    play goodbye\n    hangup\n}\n",
    )
    .expect("common");
    dir
}

const HOTLINE: &str = "flow hotline {\n    title    \"客户服务热线 😀\"\n    language zh-CN\n    entry    start\n}\n\nimport common\n\n# 开始：查询来电号码\nlookup start {\n    query   customer_by_phone(caller) into customer\n    found   -> main_menu\n    missing -> common.goodbye\n    error   -> common.goodbye\n}\n\nmenu main_menu {\n    prompt   main_menu\n    attempts 3 -> agent\n    no_input play no_input\n    key 1 -> balance\n    key 0 -> agent\n}\n\nstep balance {\n    play welcome  # 余额\n    say money customer.balance\n    served \"balance\"\n    goto main_menu\n}\n\ntransfer agent {\n    queue general\n    max_wait 60s -> common.goodbye\n    no_agents -> common.goodbye\n    after -> common.goodbye\n}\n";

#[test]
fn edits_definition_references_rename_completion_hover_symbols_formatting() {
    let dir = project();
    let flow = dir.join("flows/hotline.flow");
    std::fs::write(&flow, HOTLINE).expect("flow");
    let mut client = Client::start(&dir, None);
    let u = uri(&flow);
    client.open(&flow, HOTLINE);
    assert_eq!(
        client.diagnostics(&u),
        Vec::<Value>::new(),
        "the project checks clean"
    );

    // A mistake typed after Chinese text on the same line: its column in UTF-16 units.
    let line = "    play welcome  # 余额";
    let (l, _) = find(HOTLINE, line, 0);
    let edited = "    if \"中文😀\" == caller -> nowhere\n";
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": u, "version": 2 }, "contentChanges": [
            { "range": { "start": pos((l + 1, 0)), "end": pos((l + 1, 0)) }, "text": edited }
        ] }),
    );
    let diags = client.diagnostics(&u);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let target_col = "    if \"中文😀\" == caller -> ".encode_utf16().count() as u64;
    assert_eq!(
        diags[0]["range"]["start"],
        pos((l + 1, target_col)),
        "{diags:?}"
    );
    assert_eq!(
        diags[0]["range"]["end"],
        pos((l + 1, target_col + 7)),
        "{diags:?}"
    );
    assert!(
        diags[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nowhere")
    );
    // Undone: clean again.
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": u, "version": 3 }, "contentChanges": [
            { "range": { "start": pos((l + 1, 0)), "end": pos((l + 2, 0)) }, "text": "" }
        ] }),
    );
    assert_eq!(client.diagnostics(&u), Vec::<Value>::new());

    let at = |needle: &str, nth: usize, shift: u64| {
        let (l, c) = find(HOTLINE, needle, nth);
        json!({ "textDocument": { "uri": u }, "position": pos((l, c + shift)) })
    };

    // Definition: a node, an imported node, a prompt, a query, a queue, a variable.
    let def = client.request("textDocument/definition", at("-> main_menu", 0, 3));
    assert_eq!(def[0]["uri"], u);
    assert_eq!(
        def[0]["range"]["start"],
        pos(find(HOTLINE, "main_menu {", 0))
    );
    let def = client.request("textDocument/definition", at("common.goodbye", 0, 8));
    assert_eq!(def[0]["uri"], uri(&dir.join("flows/common.flow")), "{def}");
    assert_eq!(def[0]["range"]["start"], pos((5, 5)));
    let def = client.request("textDocument/definition", at("play welcome", 0, 6));
    assert_eq!(
        def[0]["uri"],
        uri(&dir.join("prompts/zh-CN/prompts.toml")),
        "{def}"
    );
    assert_eq!(def[0]["range"]["start"]["line"], 0);
    let def = client.request("textDocument/definition", at("customer_by_phone", 0, 2));
    assert_eq!(def[0]["uri"], uri(&dir.join("ivr.toml")), "{def}");
    assert_eq!(def[0]["range"]["start"]["line"], 1);
    let def = client.request("textDocument/definition", at("queue general", 0, 7));
    assert_eq!(def[0]["uri"], uri(&dir.join("ivr.toml")), "{def}");
    assert_eq!(def[0]["range"]["start"]["line"], 6);
    let def = client.request("textDocument/definition", at("customer.balance", 0, 2));
    assert_eq!(
        def[0]["range"]["start"],
        pos(find(HOTLINE, "customer\n", 0)),
        "{def}"
    );
    let def = client.request("textDocument/definition", at("import common", 0, 8));
    assert_eq!(def[0]["uri"], uri(&dir.join("flows/common.flow")), "{def}");

    // References of a node: its head, the header's entry... here `main_menu`: head and two
    // targets; without the declaration, the two targets.
    let mut params = at("menu main_menu", 0, 6);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = client.request("textDocument/references", params.clone());
    assert_eq!(refs.as_array().map(Vec::len), Some(3), "{refs}");
    params["context"] = json!({ "includeDeclaration": false });
    let refs = client.request("textDocument/references", params);
    assert_eq!(refs.as_array().map(Vec::len), Some(2), "{refs}");
    // An imported node: found in both flows.
    let mut params = at("common.goodbye", 0, 8);
    params["context"] = json!({ "includeDeclaration": true });
    let refs = client.request("textDocument/references", params);
    let uris: Vec<&str> = refs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert_eq!(uris.len(), 7, "{refs}"); // the step, its entry, five targets
    assert!(uris.contains(&uri(&dir.join("flows/common.flow")).as_str()));

    // Rename a node: head and targets.
    let mut params = at("step balance", 0, 6);
    params["newName"] = json!("read_balance");
    let edit = client.request("textDocument/rename", params.clone());
    let edits = edit["changes"][&u].as_array().cloned().unwrap_or_default();
    assert_eq!(edits.len(), 2, "{edit}");
    assert!(edits.iter().all(|e| e["newText"] == "read_balance"));
    params["newName"] = json!("goto");
    let refused = client.request_raw("textDocument/rename", params);
    assert!(!refused["error"].is_null(), "{refused}");
    // Renaming an imported node edits the flow that defines it too.
    let mut params = at("common.goodbye", 1, 8);
    params["newName"] = json!("bye");
    let edit = client.request("textDocument/rename", params);
    let common_edits = edit["changes"][uri(&dir.join("flows/common.flow"))]
        .as_array()
        .map(Vec::len);
    assert_eq!(common_edits, Some(2), "{edit}");
    assert_eq!(
        edit["changes"][&u].as_array().map(Vec::len),
        Some(5),
        "{edit}"
    );

    // Completion.
    let labels = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["label"].as_str().map(String::from))
            .collect()
    };
    let c = client.request("textDocument/completion", at("-> main_menu", 0, 3));
    let l = labels(&c);
    assert!(
        l.contains(&"balance".into())
            && l.contains(&"hangup".into())
            && l.contains(&"common".into()),
        "{l:?}"
    );
    let c = client.request("textDocument/completion", at("play welcome", 0, 5));
    let l = labels(&c);
    assert!(
        l.contains(&"goodbye".into()) && l.contains(&"main_menu".into()),
        "{l:?}"
    );
    let c = client.request("textDocument/completion", at("customer.balance", 0, 9));
    assert!(labels(&c).contains(&"vip".into()), "{c}");
    let c = client.request("textDocument/completion", at("common.goodbye", 0, 7));
    assert_eq!(labels(&c), vec!["goodbye".to_string()], "{c}");
    let c = client.request(
        "textDocument/completion",
        at("    prompt   main_menu", 0, 4),
    );
    let l = labels(&c);
    assert!(
        l.contains(&"no_match".into()) && l.contains(&"key".into()) && !l.contains(&"goto".into()),
        "{l:?}"
    );
    let c = client.request("textDocument/completion", at("customer_by_phone", 0, 0));
    assert!(labels(&c).contains(&"customer_by_phone".into()), "{c}");
    let c = client.request("textDocument/completion", at("queue general", 0, 6));
    assert_eq!(labels(&c), vec!["general".to_string()], "{c}");
    let c = client.request("textDocument/completion", at("(caller)", 0, 1));
    let l = labels(&c);
    assert!(
        l.contains(&"caller".into())
            && l.contains(&"customer".into())
            && l.contains(&"len".into())
            && l.contains(&"contact".into()),
        "{l:?}"
    );

    // Hover.
    let h = client.request("textDocument/hover", at("play welcome", 0, 6));
    assert!(
        h["contents"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("欢迎致电客户服务热线"),
        "{h}"
    );
    let h = client.request("textDocument/hover", at("customer_by_phone", 0, 1));
    assert!(
        h["contents"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("SELECT id, name"),
        "{h}"
    );
    let h = client.request("textDocument/hover", at("menu main_menu", 0, 6));
    let text = h["contents"]["value"].as_str().unwrap_or("");
    assert!(
        text.contains("menu")
            && text.contains("key 1 -> balance")
            && text.contains("attempts -> agent"),
        "{h}"
    );
    let h = client.request("textDocument/hover", at("customer.balance", 0, 10));
    assert!(
        h["contents"]["value"]
            .as_str()
            .unwrap_or("")
            .contains("money"),
        "{h}"
    );

    // Document symbols: the header and the four nodes, in order.
    let s = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": u } }),
    );
    let names: Vec<&str> = s
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, ["hotline", "start", "main_menu", "balance", "agent"]);
    assert_eq!(s[1]["detail"], "lookup");

    // Formatting: the document is laid out as `ivr fmt` does; a formatted one needs no edit.
    let f = client.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": u }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert_eq!(f.as_array().map(Vec::len), Some(1), "{f}");
    let formatted = f[0]["newText"].as_str().unwrap_or("").to_string();
    assert!(
        formatted.contains("    queue    general\n    max_wait 60s -> common.goodbye\n    no_agents -> common.goodbye"),
        "{formatted}"
    );
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": u, "version": 4 }, "contentChanges": [ { "text": formatted } ] }),
    );
    assert_eq!(client.diagnostics(&u), Vec::<Value>::new());
    let f = client.request(
        "textDocument/formatting",
        json!({ "textDocument": { "uri": u }, "options": { "tabSize": 4, "insertSpaces": true } }),
    );
    assert_eq!(f, json!([]));

    client.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mistakes_of_the_configuration_and_catalogs_are_published_for_their_files() {
    let dir = project();
    let flow = dir.join("flows/hotline.flow");
    std::fs::write(&flow, HOTLINE).expect("flow");
    // A route to a flow that does not exist, and a broken catalog line.
    let config = std::fs::read_to_string(dir.join("ivr.toml")).expect("config");
    std::fs::write(
        dir.join("ivr.toml"),
        format!("{config}\"10086\" = \"hotlin\"\n"),
    )
    .expect("config");
    let catalog = dir.join("prompts/zh-CN/prompts.toml");
    let text = std::fs::read_to_string(&catalog).expect("catalog");
    std::fs::write(&catalog, format!("{text}broken = {{ txt = \"x\" }}\n")).expect("catalog");
    let mut client = Client::start(&dir, None);
    client.open(&flow, HOTLINE);
    let mut seen_config = false;
    let mut seen_catalog = false;
    for _ in 0..3 {
        let msg = client.rx.recv_timeout(WAIT).expect("diagnostics");
        if msg["method"] != "textDocument/publishDiagnostics" {
            continue;
        }
        let list = msg["params"]["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if msg["params"]["uri"] == uri(&dir.join("ivr.toml")) {
            assert!(
                list.iter()
                    .any(|d| d["message"].as_str().unwrap_or("").contains("hotlin")),
                "{list:?}"
            );
            assert_eq!(list[0]["range"]["start"]["line"], 23);
            seen_config = true;
        }
        if msg["params"]["uri"] == uri(&catalog) {
            let broken = list
                .iter()
                .find(|d| d["code"] == "catalog")
                .expect("the catalog's mistake");
            assert_eq!(broken["range"]["start"]["line"], 4, "{list:?}");
            seen_catalog = true;
        }
    }
    assert!(seen_config && seen_catalog);
    client.finish();
    let _ = std::fs::remove_dir_all(&dir);
}
