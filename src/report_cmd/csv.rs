//! `ivr report --format csv`: one CSV table, `section,flow,node,queue,agent,question,metric,value`.

use super::or_all;
use ivr_data::report::Report;
use std::fmt::Write;

/// The report as one CSV table: `section,flow,node,queue,agent,question,metric,value`.
pub fn render(report: &Report) -> String {
    fn q(s: &str) -> String {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut s = String::from("section,flow,node,queue,agent,question,metric,value\n");
    let mut row = |section: &str,
                   flow: &str,
                   node: &str,
                   queue: &str,
                   agent: &str,
                   question: &str,
                   metric: &str,
                   value: String| {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{}",
            q(section),
            q(flow),
            q(node),
            q(queue),
            q(agent),
            q(question),
            q(metric),
            q(&value)
        );
    };
    let rate = |r: Option<f64>| r.map_or_else(String::new, |r| format!("{r:.4}"));
    let o = &report.outcomes;
    row("outcomes", "", "", "", "", "", "calls", o.calls.to_string());
    row("outcomes", "", "", "", "", "", "ended", o.ended.to_string());
    for (name, n, r) in o.rows() {
        row("outcomes", "", "", "", "", "", name, n.to_string());
        row(
            "outcomes",
            "",
            "",
            "",
            "",
            "",
            &format!("{name}_rate"),
            rate(r),
        );
    }
    for (by, n) in &o.ended_by {
        row(
            "outcomes",
            "",
            "",
            "",
            "",
            "",
            &format!("ended_by_{by}"),
            n.to_string(),
        );
    }
    for t in &report.tasks {
        row(
            "tasks",
            &t.flow,
            "",
            "",
            "",
            "",
            &t.task,
            t.completions.to_string(),
        );
    }
    for v in &report.versions {
        let o = &v.outcomes;
        let (flow, version) = (v.flow.as_str(), v.version.as_str());
        let first = v.first_call.clone().unwrap_or_default();
        let last = v.last_call.clone().unwrap_or_default();
        row("versions", flow, version, "", "", "", "first_call", first);
        row("versions", flow, version, "", "", "", "last_call", last);
        row(
            "versions",
            flow,
            version,
            "",
            "",
            "",
            "calls",
            o.calls.to_string(),
        );
        row(
            "versions",
            flow,
            version,
            "",
            "",
            "",
            "ended",
            o.ended.to_string(),
        );
        for (name, _, r) in o.rows() {
            // The names of version 1 for its four outcomes, as they were.
            let metric = match name {
                "transferred" => "transfer_rate".to_string(),
                "abandoned" => "abandon_rate".to_string(),
                "failed" => "failure_rate".to_string(),
                other => format!("{other}_rate"),
            };
            row("versions", flow, version, "", "", "", &metric, rate(r));
        }
    }
    for l in &report.service_level {
        let queue = or_all(&l.queue, "*");
        row(
            "service_level",
            "",
            "",
            &queue,
            "",
            "",
            "queued",
            l.queued.to_string(),
        );
        row(
            "service_level",
            "",
            "",
            &queue,
            "",
            "",
            "answered",
            l.answered.to_string(),
        );
        row(
            "service_level",
            "",
            "",
            &queue,
            "",
            "",
            "answered_within",
            l.answered_within.to_string(),
        );
        row(
            "service_level",
            "",
            "",
            &queue,
            "",
            "",
            "level",
            rate(l.level),
        );
    }
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.4}"));
    for f in &report.queues {
        let queue = or_all(&f.queue, "*");
        for (metric, value) in [
            ("queued", f.queued.to_string()),
            ("answered", f.answered.to_string()),
            ("abandoned", f.abandoned.to_string()),
            ("left", f.left.to_string()),
            ("no_agents", f.no_agents.to_string()),
            ("answered_within", f.answered_within.to_string()),
            ("level", rate(f.level)),
            ("average_wait_ms", num(f.average_wait_ms)),
            (
                "p90_wait_ms",
                f.p90_wait_ms.map_or_else(String::new, |w| w.to_string()),
            ),
            ("offers", f.offers.to_string()),
            ("offers_per_answer", num(f.offers_per_answer)),
            ("declined", f.declined.to_string()),
            ("ring_timeouts", f.ring_timeouts.to_string()),
        ] {
            row("queues", "", "", &queue, "", "", metric, value);
        }
    }
    for a in &report.agents {
        for (metric, value) in [
            ("offers", a.offers),
            ("answered", a.answered),
            ("declined", a.declined),
            ("ring_timeouts", a.ring_timeouts),
        ] {
            row(
                "agents",
                "",
                "",
                "",
                &a.agent,
                "",
                metric,
                value.to_string(),
            );
        }
    }
    for n in &report.nodes {
        row(
            "nodes",
            &n.flow,
            &n.node,
            "",
            "",
            "",
            "entries",
            n.entries.to_string(),
        );
        row(
            "nodes",
            &n.flow,
            &n.node,
            "",
            "",
            "",
            "hangups",
            n.hangups.to_string(),
        );
        for (k, v) in &n.exits {
            row(
                "nodes",
                &n.flow,
                &n.node,
                "",
                "",
                "",
                &format!("exit {k}"),
                v.to_string(),
            );
        }
    }
    for f in &report.surveys {
        let (queue, agent) = (or_all(&f.queue, "*"), or_all(&f.agent, "*"));
        row(
            "surveys",
            "",
            "",
            &queue,
            &agent,
            &f.question,
            "asked",
            f.asked.to_string(),
        );
        row(
            "surveys",
            "",
            "",
            &queue,
            &agent,
            &f.question,
            "answered",
            f.answered.to_string(),
        );
        row(
            "surveys",
            "",
            "",
            &queue,
            &agent,
            &f.question,
            "average",
            f.average.map_or_else(String::new, |a| format!("{a:.4}")),
        );
    }
    s
}
