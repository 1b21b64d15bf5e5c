//! The live flow map, beside the dashboard and under the same access rule (its routes are
//! part of [`crate::dashboard::router`]):
//!
//! - `GET /flows`: the live flows, each with its node count and the calls in it now;
//! - `GET /flows/NAME`: the page (`flow_map.html`) that draws the flow;
//! - `GET /flows/NAME/map.svg`: the drawing ([`ivr_compiler::flow_svg`], laid out here on the
//!   server; made once per flow version and kept);
//! - `GET /flows/NAME/map.json`: what the page needs besides the drawing: each node's kind,
//!   file and source lines (a click shows them), each exit;
//! - `GET /flows/NAME/live`: calls in each node now and today's visits (for scripts; the page
//!   gets the same as `flow_map` in the messages of `GET /dashboard/ws?flow=NAME`).
//!
//! Today's visits come from the call records (`node_visits`, counted since local midnight,
//! at most every [`VISITS_EVERY`] per flow, shared by every page); without a database the
//! map says so and shows calls only. Nothing of a caller goes out: names, kinds, source
//! lines and counts.

use crate::clock::local_now;
use crate::deploy::Deployment;
use crate::live_calls::NodeCount;
use ivr_compiler::flow_svg::{self, escape};
use ivr_data::connect::Pool;
use ivr_engine::Flow;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The page of one flow.
pub const PAGE: &str = include_str!("flow_map.html");
/// Today's visits are read from the records at most this often per flow.
pub const VISITS_EVERY: Duration = Duration::from_secs(10);
/// How long reading today's visits may take before the map goes on without them.
const VISITS_WAIT: Duration = Duration::from_secs(2);
/// Drawings kept (one per flow; a new version replaces its flow's).
const MAX_DRAWN: usize = 256;
/// Lines of a node's source shown at most.
const MAX_SOURCE_LINES: usize = 80;
/// Bytes of a node's source shown at most.
const MAX_SOURCE_BYTES: usize = 8 * 1024;

/// One flow version drawn.
#[derive(Debug)]
pub struct Drawn {
    /// The program's version.
    pub version: String,
    /// The SVG.
    pub svg: String,
    /// `map.json`.
    pub map: Value,
}

/// Today's visits of one flow, as last read.
struct Visits {
    at: Instant,
    since: chrono::NaiveDateTime,
    counts: Arc<BTreeMap<String, u64>>,
    ok: bool,
}

/// The drawings and today's visits, shared by the pages.
pub struct FlowMaps {
    drawn: Mutex<HashMap<String, Arc<Drawn>>>,
    visits: tokio::sync::Mutex<HashMap<String, Visits>>,
    records: Option<Pool>,
}

impl std::fmt::Debug for FlowMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FlowMaps")
    }
}

impl FlowMaps {
    /// The maps of a server whose call records are in `records` (none: no database).
    pub fn new(records: Option<Pool>) -> FlowMaps {
        FlowMaps {
            drawn: Mutex::new(HashMap::new()),
            visits: tokio::sync::Mutex::new(HashMap::new()),
            records,
        }
    }

    /// The drawing of the live version of `name` (made now if it is new).
    pub async fn drawn(&self, deployment: &Arc<Deployment>, name: &str) -> Option<Arc<Drawn>> {
        let flow = deployment.flows.get(name)?;
        if let Some(d) = self.lock().get(name)
            && d.version == flow.program.version
        {
            return Some(Arc::clone(d));
        }
        let (dep, flow) = (Arc::clone(deployment), Arc::clone(flow));
        let drawn = tokio::task::spawn_blocking(move || draw(&dep, &flow))
            .await
            .ok()?;
        let drawn = Arc::new(drawn);
        let mut cache = self.lock();
        if cache.len() >= MAX_DRAWN {
            cache.clear();
        }
        cache.insert(name.to_string(), Arc::clone(&drawn));
        Some(drawn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Drawn>>> {
        self.drawn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Today's visits of each node of `flow` from the records (read again when older than
    /// [`VISITS_EVERY`] or from another day); none without a database.
    async fn visits(&self, flow: &str) -> Option<(Arc<BTreeMap<String, u64>>, bool)> {
        let pool = self.records.as_ref()?;
        let since = ivr_data::records::timestamp(local_now())
            .date()
            .and_time(chrono::NaiveTime::MIN);
        let mut cache = self.visits.lock().await;
        if let Some(v) = cache.get(flow)
            && v.since == since
            && v.at.elapsed() < VISITS_EVERY
        {
            return Some((Arc::clone(&v.counts), v.ok));
        }
        // A slow database must not hold up the pages' live counts.
        let read = tokio::time::timeout(
            VISITS_WAIT,
            ivr_data::visits::node_visits_since(pool, flow, since),
        )
        .await;
        let (counts, ok) = match read {
            Ok(Ok(c)) => (Arc::new(c), true),
            Ok(Err(e)) => {
                tracing::warn!(flow, error = %e, "today's node visits could not be read");
                let old = cache.get(flow).map(|v| Arc::clone(&v.counts));
                (old.unwrap_or_default(), false)
            }
            Err(_) => {
                tracing::warn!(flow, "today's node visits took too long to read");
                let old = cache.get(flow).map(|v| Arc::clone(&v.counts));
                (old.unwrap_or_default(), false)
            }
        };
        if cache.len() >= MAX_DRAWN && !cache.contains_key(flow) {
            cache.clear();
        }
        cache.insert(
            flow.to_string(),
            Visits {
                at: Instant::now(),
                since,
                counts: Arc::clone(&counts),
                ok,
            },
        );
        Some((counts, ok))
    }

    /// What the map of `name` shows now: calls in each node (from `by_node`, the dashboard's
    /// count of calls in progress) and today's visits. Only nodes with either are listed.
    pub async fn live(&self, deployment: &Deployment, name: &str, by_node: &[NodeCount]) -> Value {
        let Some(flow) = deployment.flows.get(name) else {
            return json!({ "flow": name, "live": false });
        };
        let mut nodes: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
        for n in by_node.iter().filter(|n| n.flow == name) {
            let e = nodes.entry(n.node.as_str()).or_default();
            e.0 += n.calls;
            e.1 = e.1.max(n.longest_ms);
        }
        let visits = self.visits(name).await;
        if let Some((counts, _)) = &visits {
            for (node, v) in counts.iter() {
                // Only the nodes of the live version (records keep older ones too).
                if flow.program.node_id(node).is_some() {
                    nodes.entry(node.as_str()).or_default().2 = *v;
                }
            }
        }
        let nodes: serde_json::Map<String, Value> = nodes
            .into_iter()
            .map(|(node, (calls, longest_ms, visits_today))| {
                (
                    node.to_string(),
                    json!({ "calls": calls, "longest_ms": longest_ms, "visits_today": visits_today }),
                )
            })
            .collect();
        json!({
            "flow": name,
            "live": true,
            "version": flow.program.version,
            "nodes": nodes,
            "visits": match visits {
                None => "no database",
                Some((_, true)) => "records",
                Some((_, false)) => "records unavailable",
            },
        })
    }
}

/// Draws one flow and gathers its nodes' source lines.
fn draw(deployment: &Deployment, flow: &Flow) -> Drawn {
    let p = &flow.program;
    let started = Instant::now();
    let out = flow_svg::render(p);
    let layout_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!(flow = %p.name, nodes = p.nodes.len(), layout_ms, bytes = out.svg.len(), "flow map drawn");
    let nodes: Vec<Value> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let file = p
                .files
                .get(n.file as usize)
                .map(String::as_str)
                .unwrap_or("");
            let text = deployment
                .sources
                .iter()
                .find(|(_, path, _)| *path == Path::new(file))
                .map(|(_, _, text)| text);
            let (line, end_line, source) = match text {
                Some(t) => lines(t, n.span.start as usize, n.span.end as usize),
                None => (0, 0, String::new()),
            };
            json!({
                "id": i,
                "name": n.name,
                "kind": n.kind.keyword(),
                "file": shown_path(&deployment.config.base, file),
                "line": line,
                "end_line": end_line,
                "source": source,
            })
        })
        .collect();
    let exits: Vec<Value> = p
        .nodes
        .iter()
        .flat_map(|n| {
            exits_of(p, n)
                .into_iter()
                .map(move |(label, to)| json!({ "from": n.name, "label": label, "to": to }))
        })
        .collect();
    let map = json!({
        "flow": p.name,
        "title": p.title,
        "version": p.version,
        "deployment": deployment.version,
        "entry": p.nodes.get(p.entry as usize).map(|n| n.name.as_str()),
        "nodes": nodes,
        "exits": exits,
        "svg": {
            "width": out.width.round(),
            "height": out.height.round(),
            "bytes": out.svg.len(),
            "layout_ms": (layout_ms * 100.0).round() / 100.0,
        },
    });
    Drawn {
        version: p.version.clone(),
        svg: out.svg,
        map,
    }
}

/// A node's exits: label and where it goes (a node's name, or `hangup`, `back`, `main`,
/// `repeat`), as the drawing has them.
fn exits_of(
    p: &ivr_compiler::program::Program,
    n: &ivr_compiler::program::Node,
) -> Vec<(String, String)> {
    use ivr_compiler::program::Jump;
    let mut out: Vec<(String, String)> = Vec::new();
    for (label, edge) in n.body.edges() {
        let to = match edge.jump {
            Jump::Node(t) => p
                .nodes
                .get(t as usize)
                .map_or_else(|| "?".to_string(), |t| t.name.clone()),
            Jump::Repeat => "repeat".into(),
            Jump::Back => "back".into(),
            Jump::Main => "main".into(),
            Jump::Hangup => "hangup".into(),
        };
        if !out.iter().any(|(l, t)| *l == label && *t == to) {
            out.push((label, to));
        }
    }
    out
}

/// A path as the page shows it: relative to the deployment's folder when inside it.
fn shown_path(base: &Path, file: &str) -> String {
    Path::new(file)
        .strip_prefix(base)
        .map_or_else(|_| file.to_string(), |p| p.display().to_string())
}

/// The whole lines of `text` from byte `start` to byte `end`: first and last line (1-based)
/// and the text, cut at [`MAX_SOURCE_LINES`] lines and [`MAX_SOURCE_BYTES`].
fn lines(text: &str, start: usize, end: usize) -> (usize, usize, String) {
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
    let from = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let to = text[end..].find('\n').map_or(text.len(), |i| end + i);
    let Some(slice) = text.get(from..to) else {
        return (0, 0, String::new());
    };
    let first = text[..from].matches('\n').count() + 1;
    let count = slice.lines().count().max(1);
    let mut out = String::new();
    for (i, l) in slice.lines().enumerate() {
        if i >= MAX_SOURCE_LINES || out.len() + l.len() > MAX_SOURCE_BYTES {
            out.push_str(&format!("… {} more lines\n", count - i));
            break;
        }
        out.push_str(l);
        out.push('\n');
    }
    (first, first + count - 1, out)
}

/// `GET /flows`: the live flows.
pub fn list_page(deployment: &Deployment, by_node: &[NodeCount]) -> String {
    let mut rows = String::new();
    for (name, flow) in &deployment.flows {
        let calls: u64 = by_node
            .iter()
            .filter(|n| n.flow == *name)
            .map(|n| n.calls)
            .sum();
        rows.push_str(&format!(
            "<tr data-flow=\"{n}\"><td><a href=\"/flows/{u}\">{n}</a></td><td>{t}</td>\
             <td class=\"n\">{nodes}</td><td class=\"n calls\">{calls}</td></tr>\n",
            n = escape(name),
            u = escape(&path_segment(name)),
            t = escape(flow.program.title.as_deref().unwrap_or("")),
            nodes = flow.program.nodes.len(),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"4\" class=\"empty\">no live flows</td></tr>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ivr flows</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:60em;color:#222;padding:0 1em}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.3em .6em;border-bottom:1px solid #eee}}\
         td.n,th.n{{text-align:right}}.empty{{color:#888;font-style:italic}}</style></head><body>\
         <h1>Flows <small style=\"font-size:.6em;color:#777\">live version <code>{v}</code></small></h1>\
         <p><a href=\"/dashboard\">dashboard</a></p>\
         <table id=\"flows\"><thead><tr><th>flow</th><th>title</th><th class=\"n\">nodes</th>\
         <th class=\"n\">calls now</th></tr></thead><tbody>\n{rows}</tbody></table></body></html>\n",
        v = escape(&deployment.version),
    )
}

/// A flow name as a URL path segment (names are identifiers; anything else is
/// percent-encoded).
fn path_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_and_numbered() {
        let t = "a\nmenu x {\n  key 1\n}\nb\n";
        let start = t.find("menu").unwrap_or(0);
        let end = t.find('}').unwrap_or(0) + 1;
        assert_eq!(
            lines(t, start, end),
            (2, 4, "menu x {\n  key 1\n}\n".into())
        );
        assert_eq!(lines(t, 99, 120).0, 6);
        let long = "x\n".repeat(200);
        let (_, last, text) = lines(&long, 0, long.len());
        assert_eq!(last, 200);
        assert!(text.ends_with("… 120 more lines\n"), "{text}");
    }

    #[test]
    fn names_become_path_segments() {
        assert_eq!(path_segment("hotline_2"), "hotline_2");
        assert_eq!(path_segment("a b/<"), "a%20b%2F%3C");
    }
}
