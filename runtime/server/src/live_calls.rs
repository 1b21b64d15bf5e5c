//! The calls in progress, for `/metrics` and the dashboard: for each call its channel, flow and
//! node, kept up to date by the call driver ([`super::call`]) when the engine enters a node and
//! when the call ends; and counters: calls started, calls ended by flow and outcome, and the calls
//! started in each of the last seconds (calls per second).
//!
//! The driver touches the registry once when the call starts, once per node change and once at
//! the end (a short lock, no allocation but the entry's own); nothing per RTP packet. Readers
//! take the same lock only to count calls by flow version and node (names are looked up after
//! it). Each change bumps a [`watch`] generation, so the dashboard's WebSockets can push at
//! once.

use ivr_compiler::program::NodeId;
use ivr_engine::{Channel, Flow, Outcome};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;

/// Calls started per second are counted over this many seconds.
pub const RATE_WINDOW_S: u64 = 10;

/// The outcomes in the order of [`LiveCalls::ended`] (their order of precedence).
pub const OUTCOMES: [Outcome; 7] = Outcome::ALL;

/// Most flows counted by name in [`LiveCalls::ended_by_flow`]; calls of further flows count
/// under [`OTHER_FLOW`] (flows come from the configuration, so this is never reached in
/// practice; it bounds the series of `/metrics`).
pub const MAX_FLOWS: usize = 256;
/// The flow label of calls beyond [`MAX_FLOWS`].
pub const OTHER_FLOW: &str = "_other";

fn outcome_index(o: Outcome) -> usize {
    OUTCOMES
        .iter()
        .position(|x| *x == o)
        .unwrap_or(OUTCOMES.len() - 1)
}

struct Entry {
    channel: Channel,
    flow: Arc<Flow>,
    node: Option<NodeId>,
    since: Instant,
    /// The call's id and calling number ([`LiveCalls::identify`]), for the supervisors.
    who: Option<Box<(String, String)>>,
}

/// A call as [`LiveCalls::calls`] copies it under the lock: since, flow, node, channel, id,
/// caller.
type Picked = (Instant, Arc<Flow>, Option<NodeId>, Channel, String, String);

/// Most calls [`LiveCalls::calls`] lists (the longest first).
pub const MAX_LISTED: usize = 2_000;

/// One call in progress, for the supervisors' page (with caller data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveCall {
    /// The call's id (as in its records and recordings).
    pub call_id: String,
    /// The calling number.
    pub caller: String,
    /// `sip` or `webrtc`.
    pub channel: &'static str,
    /// The flow's name.
    pub flow: String,
    /// The node it is in (`-` before the first).
    pub node: String,
    /// The queue of the transfer node it is in, if it is in one.
    pub queue: Option<String>,
    /// How long it has been in the call, ms.
    pub duration_ms: u64,
}

/// Calls of one flow version in one node: the flow, how many, since when the oldest.
type Group = (Arc<Flow>, u64, Instant);

struct Inner {
    calls: HashMap<u64, Entry>,
    /// Calls started per second: (second since `epoch`, count), the last [`RATE_WINDOW_S`] + 1.
    buckets: [(u64, u64); RATE_WINDOW_S as usize + 1],
    /// Calls ended since the server started, by flow name and outcome.
    by_flow: BTreeMap<String, [u64; OUTCOMES.len()]>,
}

/// The registry of calls in progress (one per server).
pub struct LiveCalls {
    inner: Mutex<Inner>,
    next: AtomicU64,
    started: AtomicU64,
    ended: [AtomicU64; OUTCOMES.len()],
    epoch: Instant,
    changes: watch::Sender<u64>,
}

impl std::fmt::Debug for LiveCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LiveCalls({} started)", self.started())
    }
}

/// Calls in one node of one flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCount {
    /// The flow's name.
    pub flow: String,
    /// The node's name (`-` before the first node).
    pub node: String,
    /// Calls there now.
    pub calls: u64,
    /// How long the longest of them has been in the call, ms.
    pub longest_ms: u64,
}

/// The registry at one instant (no caller data).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallsSnapshot {
    /// Calls in progress.
    pub in_progress: u64,
    /// Calls in progress by channel (`sip`, `webrtc`).
    pub by_channel: BTreeMap<&'static str, u64>,
    /// Calls in progress by flow and node, sorted by flow and node.
    pub by_node: Vec<NodeCount>,
    /// Calls started since the server started.
    pub started: u64,
    /// Calls ended since the server started, by outcome.
    pub ended: BTreeMap<&'static str, u64>,
    /// Calls ended since the server started, by flow and outcome (flows sorted by name).
    pub ended_by_flow: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Calls started per second over the last [`RATE_WINDOW_S`] seconds.
    pub per_second: f64,
}

impl Default for LiveCalls {
    fn default() -> Self {
        LiveCalls {
            inner: Mutex::new(Inner {
                calls: HashMap::new(),
                buckets: [(u64::MAX, 0); RATE_WINDOW_S as usize + 1],
                by_flow: BTreeMap::new(),
            }),
            next: AtomicU64::new(1),
            started: AtomicU64::new(0),
            ended: Default::default(),
            epoch: Instant::now(),
            changes: watch::channel(0).0,
        }
    }
}

impl LiveCalls {
    /// An empty registry.
    pub fn new() -> Arc<LiveCalls> {
        Arc::new(LiveCalls::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// A call starts (its flow is about to run): its key for [`Self::enter`] and [`Self::end`].
    pub fn start(&self, channel: Channel, flow: &Arc<Flow>) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let second = now.duration_since(self.epoch).as_secs();
        {
            let mut inner = self.lock();
            inner.calls.insert(
                key,
                Entry {
                    channel,
                    flow: Arc::clone(flow),
                    node: None,
                    since: now,
                    who: None,
                },
            );
            let slot = &mut inner.buckets[(second % (RATE_WINDOW_S + 1)) as usize];
            if slot.0 == second {
                slot.1 += 1;
            } else {
                *slot = (second, 1);
            }
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        self.changed();
        key
    }

    /// The call's id and calling number (once, after [`Self::start`]), for
    /// [`Self::calls`].
    pub fn identify(&self, key: u64, call_id: &str, caller: &str) {
        if let Some(e) = self.lock().calls.get_mut(&key) {
            e.who = Some(Box::new((call_id.to_string(), caller.to_string())));
        }
    }

    /// The calls in progress, the longest first (at most [`MAX_LISTED`]): for the
    /// supervisors.
    pub fn calls(&self) -> Vec<LiveCall> {
        let now = Instant::now();
        let mut picked: Vec<Picked> = {
            let inner = self.lock();
            let mut all: Vec<&Entry> = inner.calls.values().collect();
            all.sort_by_key(|e| e.since);
            all.into_iter()
                .take(MAX_LISTED)
                .map(|e| {
                    let (id, caller) = e.who.as_deref().cloned().unwrap_or_default();
                    (e.since, Arc::clone(&e.flow), e.node, e.channel, id, caller)
                })
                .collect()
        };
        picked
            .drain(..)
            .map(|(since, flow, node, channel, call_id, caller)| {
                let n = node.and_then(|n| flow.program.nodes.get(n as usize));
                let queue = n.and_then(|n| match &n.body {
                    ivr_compiler::program::Body::Transfer(t) => match &t.destination {
                        ivr_compiler::program::Destination::Queue(q) => Some(q.clone()),
                        ivr_compiler::program::Destination::To(_) => None,
                    },
                    _ => None,
                });
                LiveCall {
                    call_id,
                    caller,
                    channel: channel.as_str(),
                    flow: flow.program.name.clone(),
                    node: n.map_or("-", |n| n.name.as_str()).to_string(),
                    queue,
                    duration_ms: u64::try_from(now.duration_since(since).as_millis())
                        .unwrap_or(u64::MAX),
                }
            })
            .collect()
    }

    /// The call entered `node`.
    pub fn enter(&self, key: u64, node: NodeId) {
        {
            let mut inner = self.lock();
            match inner.calls.get_mut(&key) {
                Some(e) if e.node != Some(node) => e.node = Some(node),
                _ => return,
            }
        }
        self.changed();
    }

    /// The call is over; `outcome` is how its flow ended (none: it ended without the engine
    /// saying, which cannot happen once the flow started, but is counted as failed).
    pub fn end(&self, key: u64, outcome: Option<Outcome>) {
        let i = outcome_index(outcome.unwrap_or(Outcome::Failed));
        {
            let mut inner = self.lock();
            let Some(entry) = inner.calls.remove(&key) else {
                return;
            };
            let name = &entry.flow.program.name;
            let slot = if inner.by_flow.contains_key(name) || inner.by_flow.len() < MAX_FLOWS {
                inner.by_flow.entry(name.clone()).or_default()
            } else {
                inner.by_flow.entry(OTHER_FLOW.to_string()).or_default()
            };
            slot[i] += 1;
        }
        self.ended[i].fetch_add(1, Ordering::Relaxed);
        self.changed();
    }

    /// Calls ended since the server started, by flow (sorted by name) and outcome (in the
    /// order of [`OUTCOMES`]).
    pub fn ended_by_flow(&self) -> Vec<(String, [u64; OUTCOMES.len()])> {
        self.lock()
            .by_flow
            .iter()
            .map(|(f, n)| (f.clone(), *n))
            .collect()
    }

    /// Calls started since the server started.
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    /// Calls ended since the server started, by outcome (in the order of [`OUTCOMES`]).
    pub fn ended(&self) -> [u64; OUTCOMES.len()] {
        std::array::from_fn(|i| self.ended[i].load(Ordering::Relaxed))
    }

    /// Calls in progress now.
    pub fn in_progress(&self) -> usize {
        self.lock().calls.len()
    }

    /// A receiver that sees every change (its value is a generation number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The registry now.
    pub fn snapshot(&self) -> CallsSnapshot {
        let now = Instant::now();
        let second = now.duration_since(self.epoch).as_secs();
        // Under the lock only counting, by flow version and node id (no names, no strings);
        // calls on the same node of different versions of a flow are merged after it.
        let inner = self.lock();
        let mut by_channel: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut groups: HashMap<(usize, Option<NodeId>), Group> = HashMap::new();
        for e in inner.calls.values() {
            *by_channel.entry(e.channel.as_str()).or_default() += 1;
            let key = (Arc::as_ptr(&e.flow) as usize, e.node);
            let g = groups
                .entry(key)
                .or_insert_with(|| (Arc::clone(&e.flow), 0, e.since));
            g.1 += 1;
            g.2 = g.2.min(e.since);
        }
        // The last RATE_WINDOW_S whole seconds (not the one running now).
        let recent: u64 = inner
            .buckets
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s < second && second - s <= RATE_WINDOW_S)
            .map(|(_, n)| n)
            .sum();
        let in_progress = inner.calls.len() as u64;
        let ended_by_flow = inner
            .by_flow
            .iter()
            .map(|(f, n)| {
                let by: BTreeMap<&'static str, u64> = OUTCOMES
                    .iter()
                    .zip(n)
                    .map(|(o, n)| (o.as_str(), *n))
                    .collect();
                (f.clone(), by)
            })
            .collect();
        drop(inner);
        let mut by_node: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for ((_, node), (flow, calls, since)) in groups {
            let name = node
                .and_then(|n| flow.program.nodes.get(n as usize))
                .map_or("-", |n| n.name.as_str());
            let slot = by_node
                .entry((flow.program.name.clone(), name.to_string()))
                .or_default();
            slot.0 += calls;
            slot.1 = slot.1.max(now.duration_since(since).as_millis() as u64);
        }
        let ended = self.ended();
        CallsSnapshot {
            in_progress,
            by_channel,
            by_node: by_node
                .into_iter()
                .map(|((flow, node), (calls, longest_ms))| NodeCount {
                    flow,
                    node,
                    calls,
                    longest_ms,
                })
                .collect(),
            started: self.started(),
            ended: OUTCOMES
                .iter()
                .zip(ended)
                .map(|(o, n)| (o.as_str(), n))
                .collect(),
            ended_by_flow,
            per_second: recent as f64 / RATE_WINDOW_S as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference hotline (its first two nodes stand for any).
    fn flow() -> Arc<Flow> {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ivr.toml");
        let checked = ivr_compiler::check(&ivr_compiler::CheckOptions {
            config: Some(config),
            paths: Vec::new(),
        })
        .expect("the reference deployment");
        let program = checked.programs.get("hotline").expect("hotline").clone();
        Arc::new(Flow::new(program, &checked.config))
    }

    #[test]
    fn calls_are_listed_longest_first_with_the_queue_of_their_transfer_node() {
        let reg = LiveCalls::new();
        let f = flow();
        let transfer = f
            .program
            .nodes
            .iter()
            .position(|n| {
                matches!(&n.body, ivr_compiler::program::Body::Transfer(t)
                    if matches!(t.destination, ivr_compiler::program::Destination::Queue(_)))
            })
            .expect("the hotline transfers to a queue");
        let a = reg.start(Channel::Sip, &f);
        reg.identify(a, "call-a", "13800000001");
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = reg.start(Channel::Webrtc, &f);
        reg.identify(b, "call-b", "13800000002");
        reg.enter(a, transfer as NodeId);
        reg.enter(b, 0);
        let list = reg.calls();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].call_id, "call-a", "the longest first");
        assert_eq!(list[0].caller, "13800000001");
        assert_eq!(list[0].channel, "sip");
        assert_eq!(list[0].node, f.program.nodes[transfer].name);
        assert!(list[0].queue.is_some(), "{:?}", list[0]);
        assert!(list[0].duration_ms >= list[1].duration_ms);
        assert_eq!(list[1].call_id, "call-b");
        assert_eq!(list[1].flow, "hotline");
        reg.end(a, None);
        assert_eq!(reg.calls().len(), 1);
    }

    #[test]
    fn counts_calls_by_flow_and_node_and_outcome() {
        let reg = LiveCalls::new();
        let f = flow();
        let rx = reg.subscribe();
        let a = reg.start(Channel::Sip, &f);
        let b = reg.start(Channel::Webrtc, &f);
        assert!(rx.has_changed().unwrap_or(false));
        reg.enter(a, 0);
        reg.enter(b, 0);
        reg.enter(b, 1);
        let s = reg.snapshot();
        assert_eq!(s.in_progress, 2);
        assert_eq!(s.by_channel.get("sip"), Some(&1));
        let nodes: Vec<(&str, &str, u64)> = s
            .by_node
            .iter()
            .map(|n| (n.flow.as_str(), n.node.as_str(), n.calls))
            .collect();
        let name = |i: usize| f.program.nodes[i].name.as_str();
        let mut want = vec![("hotline", name(0), 1), ("hotline", name(1), 1)];
        want.sort();
        assert_eq!(nodes, want);
        // A call on the same node of another version of the flow counts with them.
        let newer = Arc::new(Flow {
            program: f.program.clone(),
            calendars: f.calendars.clone(),
            queries: f.queries.clone(),
            contact_list: f.contact_list.clone(),
        });
        let c = reg.start(Channel::Sip, &newer);
        reg.enter(c, 1);
        let s = reg.snapshot();
        assert_eq!(s.by_node.len(), 2, "{s:?}");
        assert_eq!(s.by_node.iter().map(|n| n.calls).sum::<u64>(), 3);
        reg.end(c, Some(Outcome::Transferred));
        reg.end(a, Some(Outcome::SelfService));
        reg.end(a, Some(Outcome::SelfService));
        reg.end(b, Some(Outcome::NotServed));
        let d = reg.start(Channel::Sip, &f);
        reg.end(d, None);
        let s = reg.snapshot();
        assert_eq!((s.in_progress, s.started), (0, 4));
        assert_eq!(s.ended.get("transferred"), Some(&1));
        assert_eq!(s.ended.get("self_service"), Some(&1));
        assert_eq!(s.ended.get("not_served"), Some(&1));
        assert_eq!(s.ended.get("failed"), Some(&1));
        assert_eq!(s.ended.get("message"), Some(&0));
        let hotline = &s.ended_by_flow["hotline"];
        assert_eq!(hotline.get("not_served"), Some(&1));
        assert_eq!(hotline.values().sum::<u64>(), 4);
        let by_flow = reg.ended_by_flow();
        assert_eq!(by_flow.len(), 1);
        assert_eq!(by_flow[0].1[outcome_index(Outcome::Transferred)], 1);
        assert!(s.by_node.is_empty());
    }
}
