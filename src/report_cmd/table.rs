//! `ivr report --format table` (the default): plain-text tables, for people.

use super::{agent_label, or_all};
use ivr_data::report::Report;
use std::fmt::Write;

fn pct(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn avg(a: Option<f64>) -> String {
    a.map_or_else(|| "-".to_string(), |a| format!("{a:.2}"))
}

/// Milliseconds as seconds with one decimal.
fn secs(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_string(), |ms| format!("{:.1} s", ms / 1000.0))
}

fn target(meets: Option<bool>) -> String {
    match meets {
        Some(true) => "met".into(),
        Some(false) => "BELOW".into(),
        None => "-".into(),
    }
}

/// Pads `s` to `w` columns (Chinese characters count as two).
fn pad(s: &str, w: usize) -> String {
    let width: usize = s
        .chars()
        .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
        .sum();
    format!("{s}{}", " ".repeat(w.saturating_sub(width)))
}

fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let width = |s: &String| -> usize {
        s.chars()
            .map(|c| if (c as u32) >= 0x1100 { 2 } else { 1 })
            .sum()
    };
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, width))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::from("  ");
        for (i, cell) in r.iter().enumerate() {
            let w = widths[i];
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(w.saturating_sub(width(cell))));
                line.push_str(cell);
            } else {
                line.push_str(&pad(cell, w));
            }
            line.push_str("  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The report as plain-text tables.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let mut scope = match &report.flow {
        Some(f) => format!("flow {f}"),
        None => "every flow".to_string(),
    };
    match (&report.since, &report.until) {
        (Some(a), Some(b)) => {
            let _ = write!(scope, ", from {a} to {b}");
        }
        (Some(a), None) => {
            let _ = write!(scope, ", since {a}");
        }
        (None, Some(b)) => {
            let _ = write!(scope, ", before {b}");
        }
        (None, None) => scope.push_str(", all records"),
    }
    if let Some(v) = &report.flow_version {
        let _ = write!(scope, ", version {v}");
    }
    let o = &report.outcomes;
    let _ = writeln!(
        s,
        "IVR report: {scope}: {} call(s), {} ended\n(made {}; times are the server's local time \
         with its UTC offset)\n",
        o.calls, o.ended, report.generated_at
    );

    s.push_str("Outcomes\n");
    let mut rows = vec![vec!["outcome".into(), "calls".into(), "rate".into()]];
    for (name, n, r) in o.rows() {
        rows.push(vec![name.into(), n.to_string(), pct(r)]);
    }
    s.push_str(&table(&rows, &[false, true, true]));
    if !o.ended_by.is_empty() {
        let by: Vec<String> = o.ended_by.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "ended by: {}", by.join(", "));
    }

    s.push_str("\nSelf-service tasks (calls that completed each `served` task)\n");
    let mut rows = vec![vec!["flow".into(), "task".into(), "calls".into()]];
    for t in &report.tasks {
        rows.push(vec![
            t.flow.clone(),
            t.task.clone(),
            t.completions.to_string(),
        ]);
    }
    s.push_str(&table(&rows, &[false, false, true]));

    s.push_str("\nVersions (the oldest first per flow)\n");
    let mut rows = vec![vec![
        "flow".into(),
        "version".into(),
        "first call".into(),
        "last call".into(),
        "calls".into(),
        "transferred".into(),
        "abandoned".into(),
        "message".into(),
        "self_service".into(),
        "failed".into(),
        "not_served".into(),
    ]];
    for v in &report.versions {
        let o = &v.outcomes;
        rows.push(vec![
            v.flow.clone(),
            v.version.clone(),
            v.first_call.clone().unwrap_or_default(),
            v.last_call.clone().unwrap_or_default(),
            o.calls.to_string(),
            pct(o.transfer_rate),
            pct(o.abandon_rate),
            pct(o.message_rate),
            pct(o.self_service_rate),
            pct(o.failure_rate),
            pct(o.not_served_rate),
        ]);
    }
    let right = [
        false, false, false, false, true, true, true, true, true, true, true,
    ];
    s.push_str(&table(&rows, &right));

    let _ = writeln!(
        s,
        "\nService level (queued calls answered by an agent within {} s, callbacks counted apart; target {:.0}%)",
        report.service_level_seconds,
        report.service_level_target * 100.0
    );
    let mut rows = vec![vec![
        "queue".into(),
        "queued".into(),
        "answered".into(),
        format!("within {} s", report.service_level_seconds),
        "callbacks".into(),
        "called back".into(),
        format!("cb within {} s", report.service_level_seconds),
        "level".into(),
        "target".into(),
    ]];
    for l in &report.service_level {
        rows.push(vec![
            or_all(&l.queue, "(all queues)"),
            l.queued.to_string(),
            l.answered.to_string(),
            l.answered_within.to_string(),
            l.callbacks.to_string(),
            l.callbacks_connected.to_string(),
            l.callbacks_within.to_string(),
            pct(l.level),
            target(l.meets_target),
        ]);
    }
    s.push_str(&table(
        &rows,
        &[false, true, true, true, true, true, true, true, false],
    ));

    let _ = writeln!(
        s,
        "\nQueues (ACD events; service level: answered within {} s of entering the queue / queued)",
        report.service_level_seconds
    );
    if report.queues.is_empty() {
        s.push_str("  no queue events (calls served by `ivr serve` record them)\n");
    } else {
        let mut rows = vec![vec![
            "queue".into(),
            "queued".into(),
            "answered".into(),
            "abandoned".into(),
            "left".into(),
            "no agents".into(),
            format!("within {} s", report.service_level_seconds),
            "level".into(),
            "target".into(),
            "avg wait".into(),
            "p90 wait".into(),
            "offers/answer".into(),
        ]];
        for q in &report.queues {
            rows.push(vec![
                or_all(&q.queue, "(all queues)"),
                q.queued.to_string(),
                q.answered.to_string(),
                q.abandoned.to_string(),
                q.left.to_string(),
                q.no_agents.to_string(),
                q.answered_within.to_string(),
                pct(q.level),
                target(q.meets_target),
                secs(q.average_wait_ms),
                secs(q.p90_wait_ms.map(|w| w as f64)),
                avg(q.offers_per_answer),
            ]);
        }
        let right = [
            false, true, true, true, true, true, true, true, false, true, true, true,
        ];
        s.push_str(&table(&rows, &right));
        s.push_str("\nAgents (offers from queues)\n");
        let mut rows = vec![vec![
            "agent".into(),
            "offers".into(),
            "answered".into(),
            "declined".into(),
            "lost".into(),
            "ring timeouts".into(),
        ]];
        for a in &report.agents {
            rows.push(vec![
                agent_label(&a.agent, a.name.as_deref()),
                a.offers.to_string(),
                a.answered.to_string(),
                a.declined.to_string(),
                a.lost.to_string(),
                a.ring_timeouts.to_string(),
            ]);
        }
        s.push_str(&table(&rows, &[false, true, true, true, true, true]));
    }

    s.push_str("\nIVR node traffic\n");
    let mut rows = vec![vec![
        "flow".into(),
        "node".into(),
        "entries".into(),
        "hang-ups".into(),
        "exits".into(),
    ]];
    for n in &report.nodes {
        let exits: Vec<String> = n.exits.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        rows.push(vec![
            n.flow.clone(),
            n.node.clone(),
            n.entries.to_string(),
            n.hangups.to_string(),
            exits.join(", "),
        ]);
    }
    s.push_str(&table(&rows, &[false, false, true, true, false]));

    s.push_str("\nSurveys (scales: the average answer; yes/no questions: the share of yes)\n");
    let mut rows = vec![vec![
        "queue".into(),
        "agent".into(),
        "question".into(),
        "asked".into(),
        "answered".into(),
        "result".into(),
    ]];
    for f in &report.surveys {
        let result = match (f.yes_share, f.average) {
            (Some(share), _) => format!("{} yes ({} of {})", pct(Some(share)), f.yes, f.answered),
            (None, a) => avg(a),
        };
        rows.push(vec![
            or_all(&f.queue, "(all)"),
            f.agent.as_deref().map_or_else(
                || "(all)".to_string(),
                |id| agent_label(id, f.agent_name.as_deref()),
            ),
            f.question.clone(),
            f.asked.to_string(),
            f.answered.to_string(),
            result,
        ]);
    }
    s.push_str(&table(&rows, &[false, false, false, true, true, true]));

    if !report.campaigns.is_empty() {
        s.push_str("\nCampaigns (attempts started in the period)\n");
        let mut rows = vec![vec![
            "campaign".into(),
            "numbers".into(),
            "reached".into(),
            "attempts".into(),
            "no answer".into(),
            "busy".into(),
            "failed".into(),
            "attempts per reach".into(),
            "outcomes".into(),
        ]];
        for c in &report.campaigns {
            let outcomes: Vec<String> =
                c.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            rows.push(vec![
                c.campaign.clone(),
                c.numbers.to_string(),
                c.reached.to_string(),
                c.attempts.to_string(),
                c.no_answer.to_string(),
                c.busy.to_string(),
                c.failed.to_string(),
                c.attempts_per_reach
                    .map_or("–".into(), |a| format!("{a:.2}")),
                outcomes.join(", "),
            ]);
        }
        s.push_str(&table(
            &rows,
            &[false, true, true, true, true, true, true, true, false],
        ));
    }
    s
}
