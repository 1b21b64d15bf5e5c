//! The ACD core at the scale of one call centre: 200 agents, all busy, and 1,000 callers
//! waiting across 3 queues (mixed priorities 0, 5 and 10; queue skills and node skills drawn
//! from billing, tv, mandarin, english, so calls fall into a dozen requirement classes).
//!
//! - `available_to_offer/conversation_over`: an agent's conversation ends (queue without
//!   wrap-up): the time of that one `conversation_over`, in which the agent becomes available,
//!   gets the best waiting call it qualifies for, and the `Offer` is output.
//! - `available_to_offer/wrap_up_end`: the same through a wrap-up (100 ms): the time of the
//!   `handle_timeout` in which the wrap-up ends and the `Offer` is output.
//! - `queue_operations`: a mix, per iteration: a new caller is queued, a waiting caller
//!   hangs up, a conversation ends (the agent is offered the next call), the agent answers, and
//!   another caller is queued (5 operations), with `handle_timeout` whenever a timer is due
//!   (coalesced position updates). Throughput in operations per second.
//!
//! - `positions/walk_1000_callers`: the head of a queue of 1,000 callers leaves; the time of
//!   the `handle_timeout` a second later that sends the 999 new positions (the coalesced
//!   update, at most one per queue per second).
//!
//! Each is run twice: as above, and with the routing rules of issue 18 on (`_routing`):
//! agents of levels 1 to 5, `tv` and `billing` with `strategy = "best_level"`, one caller in
//! five asking for `level 4`, billing callers overflowing to `general` `when none_idle` (with
//! every agent busy: at once, so they wait in two classes) and tv callers to `general`
//! `after 500ms` (the clock advances 1 ms per step, so a steady share of them overflow while
//! they wait).
//!
//! Between timed steps the state is put back to 200 busy agents and 1,000 waiting callers
//! (offers answered, callers replaced), untimed where the step measures latency. Before
//! criterion, each latency is also sampled one operation at a time (p50, p99, max).
//!
//!     cargo bench -p ivr-acd --bench acd

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use indexmap::IndexMap;
use ivr_acd::{
    Acd, AcdInput, AcdOut, CallKey, Contact, Machine, OverflowRule, OverflowWhen, Routing,
};
use ivr_compiler::config::{AgentConfig, Config, QueueConfig, Strategy};
use ivr_engine::Millis;
use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

const AGENTS: usize = 200;
const WAITING: usize = 1_000;
const QUEUES: [&str; 3] = ["general", "billing", "tv"];

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn config(wrap_up_ms: u64, routing: bool) -> Config {
    let mut c = Config::defaults(Path::new("."));
    for (name, skills) in [
        ("general", vec![]),
        ("billing", vec!["billing"]),
        ("tv", vec!["tv"]),
    ] {
        c.queues.insert(
            name.into(),
            QueueConfig {
                skills: skills.into_iter().map(String::from).collect(),
                ring_timeout_ms: None,
                wrap_up_ms: Some(wrap_up_ms),
                strategy: if routing && name != "general" {
                    Strategy::BestLevel
                } else {
                    Strategy::LongestIdle
                },
                ..Default::default()
            },
        );
    }
    for i in 0..AGENTS {
        // Everyone speaks mandarin, one in four english; half do billing, half tv (a quarter
        // both, a quarter neither).
        let mut skills = vec!["mandarin".to_string()];
        if i % 4 == 0 {
            skills.push("english".into());
        }
        if i % 2 == 0 {
            skills.push("billing".into());
        }
        if i % 4 < 2 {
            skills.push("tv".into());
        }
        c.agents.insert(
            format!("{}", 2000 + i),
            AgentConfig {
                name: format!("Agent {i}"),
                skills,
                ha1: String::new(),
                level: routing.then_some((i % 5 + 1) as u8),
            },
        );
    }
    c
}

/// What a caller asks for.
#[derive(Debug, Clone, Copy)]
struct Caller {
    queue: &'static str,
    skill: Option<&'static str>,
    priority: i64,
    /// `level 4` (VIPs) or none.
    level: u8,
}

/// The ACD with its driver's book-keeping.
struct Centre {
    acd: Acd,
    now: Millis,
    next_call: CallKey,
    rng: Rng,
    /// The routing rules on.
    routing: bool,
    /// Callers waiting (not offered), with what they asked for.
    waiting: IndexMap<CallKey, Caller>,
    /// What answered callers asked for: their replacements ask for the same, so that every
    /// requirement class keeps its share of the waiting callers.
    replace: Vec<Caller>,
    /// Calls connected to an agent, oldest first.
    connected: VecDeque<CallKey>,
    out: Vec<AcdOut>,
    /// The outputs being handled.
    scratch: Vec<AcdOut>,
}

impl Centre {
    fn new(wrap_up_ms: u64, routing: bool) -> Centre {
        let mut c = Centre {
            acd: Acd::new(&config(wrap_up_ms, routing)),
            routing,
            now: 1_700_000_000_000,
            next_call: 1,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
            waiting: IndexMap::new(),
            replace: Vec::new(),
            connected: VecDeque::new(),
            out: Vec::with_capacity(2_048),
            scratch: Vec::with_capacity(2_048),
        };
        for i in 0..AGENTS {
            let id = format!("{}", 2000 + i);
            let contact = Contact {
                uri: format!("sip:{id}@10.0.0.{}:5060", i % 250),
                addr: format!("10.0.0.{}:5060", i % 250).parse().expect("address"),
                tcp: false,
            };
            let expires_at = c.now + 100 * 365 * 86_400_000;
            op(
                &mut c.acd,
                AcdInput::Register {
                    agent: id,
                    contact,
                    expires_at,
                },
                c.now,
                &mut c.out,
            );
        }
        // Every agent takes a call, then 1,000 more callers wait.
        while c.connected.len() < AGENTS || c.waiting.len() < WAITING {
            c.enqueue();
            c.answer_offers();
            if c.next_call > 100_000 {
                panic!("agents did not fill up: {} connected", c.connected.len());
            }
        }
        c.settle();
        assert_eq!(c.connected.len(), AGENTS);
        c
    }

    /// Queues a new caller (queue, node skill and priority drawn at random).
    fn enqueue(&mut self) {
        let caller = Caller {
            queue: QUEUES[self.rng.below(3) as usize],
            skill: match self.rng.below(10) {
                0..=5 => Some("mandarin"),
                6 | 7 => Some("english"),
                _ => None,
            },
            priority: [0, 0, 0, 5, 10][self.rng.below(5) as usize],
            level: if self.routing && self.rng.below(5) == 0 {
                4
            } else {
                0
            },
        };
        self.enqueue_caller(caller);
    }

    /// Queues a caller asking for what `caller` asks for.
    fn enqueue_caller(&mut self, caller: Caller) {
        let call = self.next_call;
        self.next_call += 1;
        let skills: Vec<String> = caller.skill.iter().map(|s| s.to_string()).collect();
        let routing = self.routing_of(caller, skills.clone());
        op(
            &mut self.acd,
            AcdInput::Enqueue {
                call,
                queue: caller.queue.to_string(),
                skills,
                priority: caller.priority,
                routing,
            },
            self.now,
            &mut self.out,
        );
        self.waiting.insert(call, caller);
    }

    /// The routing of a caller: its level, and billing and tv's overflow to general.
    fn routing_of(&self, caller: Caller, skills: Vec<String>) -> Routing {
        if !self.routing {
            return Routing::default();
        }
        let when = match caller.queue {
            "billing" => Some(OverflowWhen::NoneIdle),
            "tv" => Some(OverflowWhen::After(500)),
            _ => None,
        };
        Routing {
            level: caller.level,
            overflow: when
                .map(|when| OverflowRule {
                    queue: "general".into(),
                    skills,
                    when,
                })
                .into_iter()
                .collect(),
            transferred: false,
        }
    }

    /// Answers every offer output so far; forgets calls sent to `no_agents`.
    fn answer_offers(&mut self) -> usize {
        let mut offers = 0;
        std::mem::swap(&mut self.out, &mut self.scratch);
        for o in self.scratch.drain(..) {
            match o {
                AcdOut::Offer { call, .. } => {
                    offers += 1;
                    if let Some(caller) = self.waiting.swap_remove(&call) {
                        self.replace.push(caller);
                    }
                    op(
                        &mut self.acd,
                        AcdInput::Answered(call),
                        self.now,
                        &mut self.out,
                    );
                    self.connected.push_back(call);
                }
                AcdOut::NoAgents { call } => {
                    self.waiting.swap_remove(&call);
                }
                AcdOut::Cancel { .. } | AcdOut::Position { .. } | AcdOut::Refused { .. } => {}
            }
        }
        offers
    }

    /// Handles every timer due now (position walks), untimed.
    fn settle(&mut self) {
        timeout(&mut self.acd, self.now, &mut self.out);
        self.answer_offers();
    }

    /// Tops the waiting callers back up to 1,000, first with callers like those answered.
    fn refill(&mut self) {
        while self.waiting.len() < WAITING {
            match self.replace.pop() {
                Some(caller) => self.enqueue_caller(caller),
                None => self.enqueue(),
            }
            self.answer_offers();
        }
        self.replace.clear();
    }
}

fn has_offer(out: &[AcdOut]) -> bool {
    out.iter().any(|o| matches!(o, AcdOut::Offer { .. }))
}

/// One conversation ends in a queue without wrap-up; returns the time until the offer.
fn end_conversation(c: &mut Centre) -> Duration {
    c.now += 1;
    c.settle();
    let call = c.connected.pop_front().expect("a connected call");
    let start = Instant::now();
    op(
        &mut c.acd,
        AcdInput::ConversationOver(call),
        c.now,
        &mut c.out,
    );
    let took = start.elapsed();
    assert!(has_offer(&c.out), "the agent got a call");
    c.answer_offers();
    c.refill();
    took
}

/// One wrap-up (100 ms) ends in `handle_timeout`; returns its time. One conversation ends
/// per simulated millisecond, so about 100 agents are in wrap-up and one ends per step.
fn end_wrap_up(c: &mut Centre) -> Duration {
    c.now += 1;
    let call = c.connected.pop_front().expect("a connected call");
    op(
        &mut c.acd,
        AcdInput::ConversationOver(call),
        c.now,
        &mut c.out,
    );
    c.answer_offers();
    let start = Instant::now();
    timeout(&mut c.acd, c.now, &mut c.out);
    let took = start.elapsed();
    c.answer_offers();
    c.refill();
    took
}

/// The operation mix; returns the time of its 5 operations (and any due timers).
fn operation_mix(c: &mut Centre) -> Duration {
    c.now += 1;
    let start = Instant::now();
    // A caller arrives.
    c.enqueue();
    // A waiting caller hangs up.
    let i = c.rng.below(c.waiting.len() as u64) as usize;
    if let Some((call, _)) = c.waiting.swap_remove_index(i) {
        op(&mut c.acd, AcdInput::Leave(call), c.now, &mut c.out);
    }
    // A conversation ends: the agent is offered the next call and answers it.
    let call = c.connected.pop_front().expect("a connected call");
    op(
        &mut c.acd,
        AcdInput::ConversationOver(call),
        c.now,
        &mut c.out,
    );
    c.answer_offers();
    // Another caller arrives.
    c.enqueue();
    if c.acd.poll_timeout().is_some_and(|at| at <= c.now) {
        timeout(&mut c.acd, c.now, &mut c.out);
    }
    let took = start.elapsed();
    c.answer_offers();
    c.refill();
    took
}

/// One queue of 1,000 callers (its one agent away): the head leaves, a caller joins at the
/// end, and a second later the coalesced walk tells the 999 who moved up their new place.
struct Line {
    acd: Acd,
    now: Millis,
    head: CallKey,
    next: CallKey,
    out: Vec<AcdOut>,
}

impl Line {
    fn new() -> Line {
        let mut acd = Acd::new(&config(0, false));
        let mut out = Vec::new();
        let now = 1_700_000_000_000;
        let contact = Contact {
            uri: "sip:2000@10.0.0.1:5060".into(),
            addr: "10.0.0.1:5060".parse().expect("address"),
            tcp: false,
        };
        let expires_at = now + 100 * 365 * 86_400_000;
        let agent = "2000".to_string();
        op(
            &mut acd,
            AcdInput::Register {
                agent: agent.clone(),
                contact,
                expires_at,
            },
            now,
            &mut out,
        );
        op(
            &mut acd,
            AcdInput::SetAway { agent, away: true },
            now,
            &mut out,
        );
        assert!(!out.iter().any(|o| matches!(o, AcdOut::Refused { .. })));
        for call in 1..=WAITING as CallKey {
            op(&mut acd, general(call), now, &mut out);
        }
        Line {
            acd,
            now,
            head: 1,
            next: WAITING as CallKey + 1,
            out,
        }
    }
}

/// Hands `input` to the ACD at `now` and appends what it answers to `out`.
fn op(acd: &mut Acd, input: AcdInput, now: Millis, out: &mut Vec<AcdOut>) {
    acd.handle_input(input, now);
    out.extend(std::iter::from_fn(|| acd.poll_output()));
}

/// Fires the ACD's timers due at `now` and appends what it answers to `out`.
fn timeout(acd: &mut Acd, now: Millis, out: &mut Vec<AcdOut>) {
    acd.handle_timeout(now);
    out.extend(std::iter::from_fn(|| acd.poll_output()));
}

/// A caller for the `general` queue.
fn general(call: CallKey) -> AcdInput {
    AcdInput::Enqueue {
        call,
        queue: "general".to_string(),
        skills: Vec::new(),
        priority: 0,
        routing: Routing::default(),
    }
}

/// The walk after the head of a 1,000-caller queue left; returns its time.
fn walk(l: &mut Line) -> Duration {
    op(&mut l.acd, AcdInput::Leave(l.head), l.now, &mut l.out);
    l.head += 1;
    op(&mut l.acd, general(l.next), l.now, &mut l.out);
    l.next += 1;
    l.now += 1_000;
    l.out.clear();
    let start = Instant::now();
    timeout(&mut l.acd, l.now, &mut l.out);
    let took = start.elapsed();
    assert!(l.out.len() >= WAITING - 1, "{} positions", l.out.len());
    took
}

/// Samples one operation at a time and prints p50, p99 and max.
fn sample<C>(name: &str, c: &mut C, n: usize, step: fn(&mut C) -> Duration) {
    let mut times: Vec<Duration> = (0..n).map(|_| step(c)).collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "{name}: {n} samples, p50 {:.2} µs, p99 {:.2} µs, max {:.2} µs",
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
    );
}

fn bench(cr: &mut Criterion) {
    let mut line = Line::new();
    sample("position walk, 1,000 callers", &mut line, 2_000, walk);
    let mut g = cr.benchmark_group("positions");
    g.bench_function("walk_1000_callers", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| walk(&mut line)).sum())
    });
    g.finish();
    for routing in [false, true] {
        let suffix = if routing { "_routing" } else { "" };
        let mut no_wrap = Centre::new(0, routing);
        let mut wrap = Centre::new(100, routing);
        let mut mix = Centre::new(0, routing);
        sample(
            &format!("conversation_over -> Offer{suffix}"),
            &mut no_wrap,
            100_000,
            end_conversation,
        );
        sample(
            &format!("wrap-up end (handle_timeout) -> Offer{suffix}"),
            &mut wrap,
            100_000,
            end_wrap_up,
        );
        sample(
            &format!("operation mix (5 operations){suffix}"),
            &mut mix,
            100_000,
            operation_mix,
        );
        for c in [&no_wrap, &wrap, &mix] {
            assert_eq!(c.waiting.len(), WAITING);
            assert_eq!(c.acd.status(c.now).agents.len(), AGENTS);
        }

        let mut g = cr.benchmark_group("available_to_offer");
        g.bench_function(format!("conversation_over{suffix}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| end_conversation(&mut no_wrap)).sum())
        });
        g.bench_function(format!("wrap_up_end{suffix}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| end_wrap_up(&mut wrap)).sum())
        });
        g.finish();

        let mut g = cr.benchmark_group("queue_operations");
        g.throughput(Throughput::Elements(5));
        g.bench_function(format!("mix{suffix}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| operation_mix(&mut mix)).sum())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
