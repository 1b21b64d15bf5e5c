//! The contact-centre series of `/metrics` that are observed where things happen (not read
//! from a snapshot): how long callers waited in each queue (a histogram per queue and
//! result), lookups by query and result with their duration (a histogram per query), and the
//! SIP responses sent, by status code. Also the build's facts (`ivr_build_info`).
//!
//! The figures live in one process-wide [`Registry`] ([`registry`]), like the RTP latch's
//! count of foreign packets: the ACD task, the call tasks and the SIP task add to it without
//! a handle (SIP responses are counted where the SIP task hands them to a transport and where
//! the transport answers an unreadable message itself). Every family is bounded: queues and queries come from the configuration (at most
//! [`MAX_LABELS`] names each; more share the label [`OTHER`]), SIP codes are the 600 codes
//! 100-699 (anything else is not a status line and is not counted).
//!
//! Buckets follow the Prometheus conventions: seconds, cumulative `le` buckets ending in
//! `+Inf`, a `_sum` and a `_count`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Most names per labelled family (queues, queries).
pub const MAX_LABELS: usize = 256;
/// The label of names beyond [`MAX_LABELS`].
pub const OTHER: &str = "_other";
/// Upper bounds (seconds) of the queue wait buckets: up to the domain's 20 s service level
/// and well beyond (callers give up after minutes).
pub const WAIT_BUCKETS: [f64; 12] = [
    1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0,
];
/// Upper bounds (seconds) of the lookup duration buckets.
pub const LOOKUP_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// How a wait in a queue ended.
pub const WAIT_RESULTS: [&str; 3] = ["answered", "abandoned", "left"];
/// How a lookup ended.
pub const LOOKUP_RESULTS: [&str; 3] = ["found", "missing", "error"];

/// A histogram with fixed buckets (observations in milliseconds or microseconds, kept as
/// integers; rendered in seconds).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative; summed when rendered).
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum of the observations, in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `us` microseconds.
    pub fn observe_us(&self, us: u64) {
        let secs = us as f64 / 1e6;
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples of family `name` with the labels
    /// `labels` (already rendered: `queue="general"`).
    pub fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        if labels.is_empty() {
            let _ = writeln!(out, "{name}_sum {sum}");
            let _ = writeln!(out, "{name}_count {count}");
        } else {
            let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// One queue's waits, by result.
#[derive(Debug)]
struct QueueWaits([Histogram; 3]);

impl Default for QueueWaits {
    fn default() -> Self {
        QueueWaits(std::array::from_fn(|_| Histogram::new(&WAIT_BUCKETS)))
    }
}

/// One query's lookups: how many by result, and how long they took.
#[derive(Debug)]
struct Lookups {
    results: [AtomicU64; 3],
    duration: Histogram,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups {
            results: Default::default(),
            duration: Histogram::new(&LOOKUP_BUCKETS),
        }
    }
}

/// The process-wide figures (see the module documentation).
#[derive(Debug)]
pub struct Registry {
    waits: Mutex<BTreeMap<String, std::sync::Arc<QueueWaits>>>,
    lookups: Mutex<BTreeMap<String, std::sync::Arc<Lookups>>>,
    /// SIP responses sent, by code 100..=699 (index code - 100).
    sip_responses: Vec<AtomicU64>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            waits: Mutex::new(BTreeMap::new()),
            lookups: Mutex::new(BTreeMap::new()),
            sip_responses: (100..700).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

/// The entry of `name` in a bounded map (a new one while there is room, else [`OTHER`]).
fn entry<T: Default>(
    map: &Mutex<BTreeMap<String, std::sync::Arc<T>>>,
    name: &str,
) -> std::sync::Arc<T> {
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = m.get(name) {
        return std::sync::Arc::clone(v);
    }
    let key = if m.len() < MAX_LABELS { name } else { OTHER };
    std::sync::Arc::clone(m.entry(key.to_string()).or_default())
}

/// A label value in the Prometheus text format (backslash, quote and newline escaped).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Registry {
    /// Makes the series of `queue` exist (at zero) before its first call.
    pub fn know_queue(&self, queue: &str) {
        entry(&self.waits, queue);
    }

    /// A call finished waiting in `queue` after `ms`: `result` is `answered`, `abandoned`
    /// or `left` (others are not counted).
    pub fn observe_wait(&self, queue: &str, result: &str, ms: i64) {
        let Some(i) = WAIT_RESULTS.iter().position(|r| *r == result) else {
            return;
        };
        let w = entry(&self.waits, queue);
        w.0[i].observe_us(u64::try_from(ms).unwrap_or(0).saturating_mul(1000));
    }

    /// A lookup of `query` ended with `result` (`found`, `missing`, `error`) after `us`.
    pub fn observe_lookup(&self, query: &str, result: &str, us: u64) {
        let l = entry(&self.lookups, query);
        if let Some(i) = LOOKUP_RESULTS.iter().position(|r| *r == result) {
            l.results[i].fetch_add(1, Ordering::Relaxed);
        }
        l.duration.observe_us(us);
    }

    /// Lookups that ended in an error (a database error or a timeout), every query.
    pub fn lookup_errors(&self) -> u64 {
        let m = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        m.values()
            .map(|l| l.results[2].load(Ordering::Relaxed))
            .sum()
    }

    /// Counts the message in `bytes` when it is a response (`SIP/2.0 NNN ...`).
    pub fn count_sip_message(&self, bytes: &[u8]) {
        let Some(code) = bytes
            .strip_prefix(b"SIP/2.0 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<usize>().ok())
        else {
            return;
        };
        if let Some(slot) = code
            .checked_sub(100)
            .and_then(|i| self.sip_responses.get(i))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes every family of the registry (with HELP and TYPE), and `ivr_build_info`.
    pub fn write(&self, out: &mut String) {
        let _ = write!(
            out,
            "# HELP ivr_build_info The running build of ivr (always 1).\n\
             # TYPE ivr_build_info gauge\n\
             ivr_build_info{{version=\"{}\",os=\"{}\",arch=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
        );
        out.push_str(
            "# HELP ivr_queue_wait_seconds How long callers waited in each queue, by how the wait ended (answered, abandoned, left: max_wait or no agents).\n\
             # TYPE ivr_queue_wait_seconds histogram\n",
        );
        let waits: Vec<(String, std::sync::Arc<QueueWaits>)> = {
            let m = self.waits.lock().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
                .collect()
        };
        for (queue, w) in &waits {
            for (result, h) in WAIT_RESULTS.iter().zip(&w.0) {
                let labels = format!("queue=\"{}\",result=\"{result}\"", label(queue));
                h.write(out, "ivr_queue_wait_seconds", &labels);
            }
        }
        let lookups: Vec<(String, std::sync::Arc<Lookups>)> = {
            let m = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .map(|(k, v)| (k.clone(), std::sync::Arc::clone(v)))
                .collect()
        };
        out.push_str(
            "# HELP ivr_lookups_total Lookups run by calls, by query and result (found, missing, error: a database error or a timeout).\n\
             # TYPE ivr_lookups_total counter\n",
        );
        for (query, l) in &lookups {
            for (result, n) in LOOKUP_RESULTS.iter().zip(&l.results) {
                let _ = writeln!(
                    out,
                    "ivr_lookups_total{{query=\"{}\",result=\"{result}\"}} {}",
                    label(query),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        out.push_str(
            "# HELP ivr_lookup_duration_seconds How long the lookups of each query took (to the answer or the timeout).\n\
             # TYPE ivr_lookup_duration_seconds histogram\n",
        );
        for (query, l) in &lookups {
            let labels = format!("query=\"{}\"", label(query));
            l.duration
                .write(out, "ivr_lookup_duration_seconds", &labels);
        }
        out.push_str(
            "# HELP ivr_sip_responses_sent_total SIP responses sent, by status code (retransmissions included).\n\
             # TYPE ivr_sip_responses_sent_total counter\n",
        );
        for (i, n) in self.sip_responses.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "ivr_sip_responses_sent_total{{code=\"{}\"}} {n}",
                    i + 100
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_in_seconds() {
        let h = Histogram::new(&WAIT_BUCKETS);
        h.observe_us(500_000);
        h.observe_us(19_000_000);
        h.observe_us(400_000_000);
        let mut out = String::new();
        h.write(&mut out, "x_seconds", "queue=\"q\"");
        assert!(
            out.contains("x_seconds_bucket{queue=\"q\",le=\"1\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{queue=\"q\",le=\"20\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{queue=\"q\",le=\"300\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{queue=\"q\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_sum{queue=\"q\"} 419.5\n"), "{out}");
        assert!(out.contains("x_seconds_count{queue=\"q\"} 3\n"), "{out}");
    }

    #[test]
    fn sip_codes_and_bounded_labels() {
        let r = Registry::default();
        r.count_sip_message(b"SIP/2.0 200 OK\r\n");
        r.count_sip_message(b"SIP/2.0 486 Busy Here\r\n");
        r.count_sip_message(b"SIP/2.0 486 Busy Here\r\n");
        r.count_sip_message(b"INVITE sip:x SIP/2.0\r\n");
        r.count_sip_message(b"SIP/2.0 999 Nope\r\n");
        for i in 0..MAX_LABELS + 5 {
            r.observe_lookup(&format!("q{i}"), "found", 10);
        }
        r.observe_lookup("q0", "error", 10);
        let mut out = String::new();
        r.write(&mut out);
        assert!(
            out.contains("ivr_sip_responses_sent_total{code=\"200\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("ivr_sip_responses_sent_total{code=\"486\"} 2\n"),
            "{out}"
        );
        assert!(!out.contains("code=\"999\""), "{out}");
        assert!(out.contains("ivr_lookups_total{query=\"_other\",result=\"found\"} 5\n"));
        assert_eq!(r.lookup_errors(), 1);
        assert!(out.contains("ivr_build_info{version=\""), "{out}");
    }
}
