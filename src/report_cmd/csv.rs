//! `ivr report --format csv` and `--csv DIR`: each section of the report a wide CSV table of
//! its own, a header row with the columns, then one row per item (an outcome, a flow version,
//! a node, a queue, an agent, a survey question). `--format csv` prints the tables one after
//! another, a blank line between them, the first column of every row naming its section;
//! `--csv DIR` writes each to `DIR/SECTION.csv`, which a spreadsheet opens as it is. Rates
//! and shares are fractions (0.8500), times RFC 3339 with the server's UTC offset, empty cells
//! where there is no figure.

use super::or_all;
use ivr_data::report::Report;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One section: its name, its columns (after `section`) and its rows.
struct Table {
    name: &'static str,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn q(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn frac(r: Option<f64>) -> String {
    r.map_or_else(String::new, |r| format!("{r:.4}"))
}

fn flag(b: Option<bool>) -> String {
    b.map_or_else(String::new, |b| b.to_string())
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

impl Table {
    fn render(&self) -> String {
        let mut out = String::from("section");
        for c in &self.columns {
            out.push(',');
            out.push_str(&q(c));
        }
        out.push('\n');
        for r in &self.rows {
            out.push_str(self.name);
            for cell in r {
                out.push(',');
                out.push_str(&q(cell));
            }
            out.push('\n');
        }
        out
    }
}

/// Every section of the report as a table.
fn tables(report: &Report) -> Vec<Table> {
    let o = &report.outcomes;
    let mut outcomes = Table {
        name: "outcomes",
        columns: cols(&["outcome", "calls", "share_of_ended"]),
        rows: Vec::new(),
    };
    for (name, n, r) in o.rows() {
        outcomes
            .rows
            .push(vec![name.into(), n.to_string(), frac(r)]);
    }
    outcomes
        .rows
        .push(vec!["(ended)".into(), o.ended.to_string(), String::new()]);
    outcomes.rows.push(vec![
        "(all calls)".into(),
        o.calls.to_string(),
        String::new(),
    ]);
    for (by, n) in &o.ended_by {
        outcomes.rows.push(vec![
            format!("(ended by {by})"),
            n.to_string(),
            String::new(),
        ]);
    }

    let mut tasks = Table {
        name: "tasks",
        columns: cols(&["flow", "task", "completions"]),
        rows: Vec::new(),
    };
    for t in &report.tasks {
        tasks.rows.push(vec![
            t.flow.clone(),
            t.task.clone(),
            t.completions.to_string(),
        ]);
    }

    let mut versions = Table {
        name: "versions",
        columns: cols(&[
            "flow",
            "version",
            "first_call",
            "last_call",
            "calls",
            "ended",
            // The names of version 1 for its four outcomes, as they were.
            "transfer_rate",
            "callback_rate",
            "abandon_rate",
            "message_rate",
            "self_service_rate",
            "failure_rate",
            "not_served_rate",
        ]),
        rows: Vec::new(),
    };
    for v in &report.versions {
        let o = &v.outcomes;
        let mut row = vec![
            v.flow.clone(),
            v.version.clone(),
            opt(&v.first_call),
            opt(&v.last_call),
            o.calls.to_string(),
            o.ended.to_string(),
        ];
        row.extend(o.rows().iter().map(|(_, _, r)| frac(*r)));
        versions.rows.push(row);
    }

    // One column per way out that any node was left by.
    let exits: BTreeSet<&String> = report.nodes.iter().flat_map(|n| n.exits.keys()).collect();
    let mut columns = cols(&["flow", "node", "entries", "hangups"]);
    columns.extend(exits.iter().map(|e| format!("exit {e}")));
    let mut nodes = Table {
        name: "nodes",
        columns,
        rows: Vec::new(),
    };
    for n in &report.nodes {
        let mut row = vec![
            n.flow.clone(),
            n.node.clone(),
            n.entries.to_string(),
            n.hangups.to_string(),
        ];
        row.extend(
            exits
                .iter()
                .map(|e| n.exits.get(*e).map_or_else(String::new, u64::to_string)),
        );
        nodes.rows.push(row);
    }

    let mut service = Table {
        name: "service_level",
        columns: cols(&[
            "queue",
            "queued",
            "answered",
            "answered_within",
            "callbacks",
            "callbacks_connected",
            "callbacks_within",
            "level",
            "meets_target",
        ]),
        rows: Vec::new(),
    };
    for l in &report.service_level {
        service.rows.push(vec![
            or_all(&l.queue, "*"),
            l.queued.to_string(),
            l.answered.to_string(),
            l.answered_within.to_string(),
            l.callbacks.to_string(),
            l.callbacks_connected.to_string(),
            l.callbacks_within.to_string(),
            frac(l.level),
            flag(l.meets_target),
        ]);
    }

    let mut queues = Table {
        name: "queues",
        columns: cols(&[
            "queue",
            "queued",
            "answered",
            "abandoned",
            "left",
            "no_agents",
            "answered_within",
            "level",
            "meets_target",
            "average_wait_ms",
            "p90_wait_ms",
            "offers",
            "offers_per_answer",
            "declined",
            "lost",
            "ring_timeouts",
        ]),
        rows: Vec::new(),
    };
    for f in &report.queues {
        queues.rows.push(vec![
            or_all(&f.queue, "*"),
            f.queued.to_string(),
            f.answered.to_string(),
            f.abandoned.to_string(),
            f.left.to_string(),
            f.no_agents.to_string(),
            f.answered_within.to_string(),
            frac(f.level),
            flag(f.meets_target),
            frac(f.average_wait_ms),
            f.p90_wait_ms.map_or_else(String::new, |w| w.to_string()),
            f.offers.to_string(),
            frac(f.offers_per_answer),
            f.declined.to_string(),
            f.lost.to_string(),
            f.ring_timeouts.to_string(),
        ]);
    }

    let mut agents = Table {
        name: "agents",
        columns: cols(&[
            "agent",
            "name",
            "offers",
            "answered",
            "declined",
            "lost",
            "ring_timeouts",
        ]),
        rows: Vec::new(),
    };
    for a in &report.agents {
        agents.rows.push(vec![
            a.agent.clone(),
            opt(&a.name),
            a.offers.to_string(),
            a.answered.to_string(),
            a.declined.to_string(),
            a.lost.to_string(),
            a.ring_timeouts.to_string(),
        ]);
    }

    let mut surveys = Table {
        name: "surveys",
        columns: cols(&[
            "queue",
            "agent",
            "agent_name",
            "question",
            "asked",
            "answered",
            "scored",
            "average",
            "yes",
            "yes_share",
        ]),
        rows: Vec::new(),
    };
    for f in &report.surveys {
        surveys.rows.push(vec![
            or_all(&f.queue, "*"),
            or_all(&f.agent, "*"),
            opt(&f.agent_name),
            f.question.clone(),
            f.asked.to_string(),
            f.answered.to_string(),
            f.scored.to_string(),
            frac(f.average),
            if f.yes_share.is_some() {
                f.yes.to_string()
            } else {
                String::new()
            },
            frac(f.yes_share),
        ]);
    }
    let mut campaigns = Table {
        name: "campaigns",
        columns: cols(&[
            "campaign",
            "numbers",
            "reached",
            "attempts",
            "no_answer",
            "busy",
            "failed",
            "attempts_per_reach",
            "outcomes",
        ]),
        rows: Vec::new(),
    };
    for c in &report.campaigns {
        let outcomes: Vec<String> = c.outcomes.iter().map(|(o, n)| format!("{o}={n}")).collect();
        campaigns.rows.push(vec![
            c.campaign.clone(),
            c.numbers.to_string(),
            c.reached.to_string(),
            c.attempts.to_string(),
            c.no_answer.to_string(),
            c.busy.to_string(),
            c.failed.to_string(),
            frac(c.attempts_per_reach),
            outcomes.join(";"),
        ]);
    }
    vec![
        outcomes, tasks, versions, nodes, service, queues, agents, surveys, campaigns,
    ]
}

/// The report as CSV: each section's table, a blank line between them.
pub fn render(report: &Report) -> String {
    tables(report)
        .iter()
        .map(Table::render)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes each section to `dir/SECTION.csv` (making `dir`): how many files.
pub fn write_dir(report: &Report, dir: &Path) -> Result<usize, (PathBuf, std::io::Error)> {
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let tables = tables(report);
    for t in &tables {
        let path = dir.join(format!("{}.csv", t.name));
        std::fs::write(&path, t.render()).map_err(|e| (path, e))?;
    }
    Ok(tables.len())
}
