//! The ACD's rules, one test each, and a randomised run that checks its indexes after every
//! operation.

use super::queue::CallState;
use super::*;
use ivr_compiler::config::{AgentConfig, Config, QueueConfig};
use std::collections::HashMap;
use std::path::Path;

const S: Millis = 1_000;

/// A queue: name, skills, ring_timeout, wrap_up.
type Q<'a> = (&'a str, &'a [&'a str], Option<u64>, Option<u64>);

fn config(queues: &[Q], agents: &[(&str, &[&str])]) -> Config {
    let mut c = Config::defaults(Path::new("/x"));
    for (name, skills, ring, wrap) in queues {
        c.queues.insert(
            name.to_string(),
            QueueConfig {
                skills: skills.iter().map(|s| s.to_string()).collect(),
                ring_timeout_ms: *ring,
                wrap_up_ms: *wrap,
                strategy: Default::default(),
                ..Default::default()
            },
        );
    }
    for (id, skills) in agents {
        c.agents.insert(
            id.to_string(),
            AgentConfig {
                name: format!("Agent {id}"),
                skills: skills.iter().map(|s| s.to_string()).collect(),
                ha1: String::new(),
                level: None,
            },
        );
    }
    c
}

/// Sets agents' levels (by their index in the configuration) and which queues use
/// `strategy = "best_level"`.
fn with_levels(c: &mut Config, best: &[(&str, bool)], level: impl Fn(usize) -> u8) {
    for (i, agent) in c.agents.values_mut().enumerate() {
        agent.level = Some(level(i));
    }
    for (name, on) in best {
        if let Some(q) = c.queues.get_mut(*name) {
            q.strategy = if *on {
                ivr_compiler::config::Strategy::BestLevel
            } else {
                ivr_compiler::config::Strategy::LongestIdle
            };
        }
    }
}

fn contact(id: &str) -> Contact {
    Contact {
        uri: format!("sip:{id}@10.0.0.1:5060"),
        addr: "10.0.0.1:5060".parse().expect("address"),
        tcp: false,
    }
}

fn skills(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// An ACD with a clock; every operation returns its outputs and checks the invariants.
struct T {
    acd: Acd,
    now: Millis,
}

impl T {
    fn new(queues: &[Q], agents: &[(&str, &[&str])]) -> T {
        T {
            acd: Acd::new(&config(queues, agents)),
            now: 1_000_000,
        }
    }

    fn done(&self, out: Vec<AcdOut>) -> Vec<AcdOut> {
        check_invariants(&self.acd);
        out
    }

    fn register(&mut self, agent: &str) -> Vec<AcdOut> {
        self.register_until(agent, self.now + 3_600 * S)
    }

    fn register_until(&mut self, agent: &str, expires: Millis) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd
            .register(agent, contact(agent), expires, self.now, &mut out)
            .expect("known agent");
        self.done(out)
    }

    fn unregister(&mut self, agent: &str) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.unregister(agent, self.now, &mut out);
        self.done(out)
    }

    fn away(&mut self, agent: &str, away: bool) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd
            .set_away(agent, away, self.now, &mut out)
            .expect("logged in");
        self.done(out)
    }

    fn enqueue(&mut self, call: CallKey, queue: &str, node: &[&str], priority: i64) -> Vec<AcdOut> {
        self.enqueue_with(call, queue, node, priority, &Routing::default())
    }

    fn enqueue_with(
        &mut self,
        call: CallKey,
        queue: &str,
        node: &[&str],
        priority: i64,
        routing: &Routing,
    ) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.enqueue(
            call,
            queue,
            &skills(node),
            priority,
            routing,
            self.now,
            self.now,
            &mut out,
        );
        self.done(out)
    }

    fn feed(&mut self, input: AcdInput) -> Vec<AcdOut> {
        self.acd.handle_input(input, self.now);
        let out = std::iter::from_fn(|| self.acd.poll_output()).collect();
        self.done(out)
    }

    fn restore(
        &mut self,
        call: CallKey,
        queue: &str,
        priority: i64,
        queued_at: Millis,
    ) -> Vec<AcdOut> {
        self.feed(AcdInput::Restore {
            call,
            queue: queue.into(),
            skills: Vec::new(),
            priority,
            routing: Routing::default(),
            queued_at,
        })
    }

    fn leave(&mut self, call: CallKey) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.leave(call, self.now, &mut out);
        self.done(out)
    }

    fn answered(&mut self, call: CallKey) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.answered(call, self.now, &mut out);
        self.done(out)
    }

    fn declined(&mut self, call: CallKey, why: Decline) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.declined(call, why, self.now, &mut out);
        self.done(out)
    }

    fn over(&mut self, call: CallKey) -> Vec<AcdOut> {
        let mut out = Vec::new();
        self.acd.conversation_over(call, self.now, &mut out);
        self.done(out)
    }

    /// Advances the clock by `ms`, handling every timer due on the way at its own time.
    fn advance(&mut self, ms: Millis) -> Vec<AcdOut> {
        let end = self.now + ms;
        let mut out = Vec::new();
        while let Some(at) = self.acd.poll_timeout().filter(|&at| at <= end) {
            self.now = self.now.max(at);
            self.acd.fire_timers(self.now, &mut out);
            check_invariants(&self.acd);
        }
        self.now = end;
        self.acd.fire_timers(self.now, &mut out);
        self.done(out)
    }

    fn state(&self, agent: &str) -> AgentState {
        self.status(agent).state
    }

    fn status(&self, agent: &str) -> AgentStatus {
        self.acd
            .status(self.now)
            .agents
            .into_iter()
            .find(|a| a.id == agent)
            .expect("agent in status")
    }

    fn queue(&self, name: &str) -> QueueStatus {
        self.acd
            .status(self.now)
            .queues
            .into_iter()
            .find(|q| q.name == name)
            .expect("queue in status")
    }

    /// Answers the offer and ends the conversation (in queues without wrap-up).
    fn serve(&mut self, call: CallKey) -> Vec<AcdOut> {
        self.answered(call);
        let mut out = self.over(call);
        out.extend(self.advance(0));
        out
    }
}

fn offer(call: CallKey, agent: &str) -> AcdOut {
    AcdOut::Offer {
        call,
        agent: agent.into(),
        contact: contact(agent),
    }
}

fn cancel(call: CallKey, agent: &str) -> AcdOut {
    AcdOut::Cancel {
        call,
        agent: agent.into(),
    }
}

fn pos(call: CallKey, position: u32) -> AcdOut {
    AcdOut::Position { call, position }
}

fn offers(out: &[AcdOut]) -> Vec<(CallKey, String)> {
    out.iter()
        .filter_map(|o| match o {
            AcdOut::Offer { call, agent, .. } => Some((*call, agent.clone())),
            _ => None,
        })
        .collect()
}

/// Every index agrees with the calls and agents it is built from, and no waiting call could be
/// offered to an available agent under the rules.
fn check_invariants(acd: &Acd) {
    for (ci, class) in acd.classes.iter().enumerate() {
        let qualifying: Vec<usize> = (0..acd.agents.len())
            .filter(|&a| class.admits(&acd.agents[a]))
            .collect();
        let logged_in = qualifying
            .iter()
            .filter(|&&a| acd.agents[a].counted)
            .count();
        assert_eq!(class.logged_in as usize, logged_in, "class {ci} logged in");
        let available: Vec<usize> = qualifying
            .iter()
            .copied()
            .filter(|&a| acd.agents[a].state == AgentState::Available)
            .collect();
        let mut indexed: Vec<usize> = class.available.iter().map(|e| e.3).collect();
        indexed.sort_unstable();
        assert_eq!(indexed, available, "class {ci} available agents");
        for &(_, _, key) in &class.waiting {
            let call = &acd.calls[&key];
            assert!(
                acd.active_classes(key).iter().any(|&(c, _)| c == ci),
                "call {key} waits in class {ci} it is not offered through"
            );
            assert!(matches!(
                call.state,
                CallState::Waiting | CallState::Resting { .. }
            ));
            // A kept callback waits for whoever logs in next.
            assert!(
                acd.reachable(key) || call.kept,
                "call {key} waits with nobody logged in"
            );
            if call.state == CallState::Waiting {
                for &a in &available {
                    assert!(
                        call.tried.contains(&a),
                        "call {key} waits while agent {} is available",
                        acd.agents[a].id
                    );
                }
                assert!(
                    call.tried.is_empty() || !acd.tried_everyone(key),
                    "call {key} waits with every agent tried: {:?} {:?} {:?}",
                    call.tried,
                    call.routes,
                    acd.active_classes(key)
                        .iter()
                        .map(|&(c, q)| (c, q, acd.classes[c].logged_in, acd.classes[c].min_level))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
    for (a, agent) in acd.agents.iter().enumerate() {
        assert_eq!(
            agent.counted,
            agent.configured && agent.expires_at.is_some(),
            "agent {} counted",
            agent.id
        );
        if agent.state == AgentState::Available || agent.state == AgentState::Away {
            assert!(
                agent.counted,
                "agent {} {:?} not logged in",
                agent.id, agent.state
            );
        }
        match agent.state {
            AgentState::Ringing => {
                let call = agent.call.expect("ringing agent has a call");
                assert!(
                    matches!(acd.calls[&call].state, CallState::Ringing { agent: x, .. } if x == a)
                );
            }
            AgentState::OnCall => {
                let call = agent.call.expect("agent on call has a call");
                assert_eq!(acd.calls[&call].state, CallState::Connected { agent: a });
            }
            _ => assert_eq!(agent.call, None, "agent {} {:?}", agent.id, agent.state),
        }
        if agent.state == AgentState::WrapUp {
            let at = agent.wrap_until.expect("wrap-up end");
            assert!(acd.timers.contains(&(at, Timer::WrapUp(a))));
        }
    }
    for (&key, call) in &acd.calls {
        let in_queue = acd.queues[call.queue].order.contains(&call.order_key(key));
        let active = acd.active_classes(key);
        let order = call.order_key(key);
        let in_class = acd.classes[call.class].waiting.contains(&order);
        if matches!(call.state, CallState::Waiting | CallState::Resting { .. }) {
            for &(c, _) in &active {
                assert!(
                    acd.classes[c].waiting.contains(&order),
                    "call {key} missing in {c}: {:?} primary {} {}",
                    call.routes,
                    call.class,
                    acd.classes[call.class].logged_in
                );
            }
        } else {
            for r in &call.routes {
                assert!(!acd.classes[r.class].waiting.contains(&order));
            }
        }
        if let Some(at) = call.overflow_at {
            assert!(acd.timers.contains(&(at, Timer::Overflow(key))));
        }
        match call.state {
            CallState::Waiting => assert!(in_queue && in_class),
            CallState::Resting { until } => {
                assert!(in_queue && in_class);
                assert!(acd.timers.contains(&(until, Timer::Rest(key))));
            }
            CallState::Ringing { agent, until } => {
                assert!(in_queue && !in_class);
                assert_eq!(acd.agents[agent].call, Some(key));
                assert!(acd.timers.contains(&(until, Timer::Ring(key))));
            }
            CallState::Connected { .. } => assert!(!in_queue && !in_class),
        }
        assert_eq!(
            !call.tried.is_empty(),
            acd.retrying.contains(&key),
            "call {key}: a tried set is listed for rechecks"
        );
    }
    assert!(acd.retrying.iter().all(|k| acd.calls.contains_key(k)));
    let queued: usize = acd.queues.iter().map(|q| q.order.len()).sum();
    let not_connected = acd
        .calls
        .values()
        .filter(|c| !matches!(c.state, CallState::Connected { .. }))
        .count();
    assert_eq!(queued, not_connected);
    for q in &acd.queues {
        let counted: u32 = q.per_priority.values().sum();
        assert_eq!(counted as usize, q.order.len());
        assert_eq!(q.arrivals.len(), q.order.len());
    }
}

#[test]
fn vip_calls_first_then_first_come_first_served() {
    let mut t = T::new(&[("general", &[], None, Some(0))], &[("2001", &[])]);
    t.register("2001");
    t.away("2001", true);
    assert_eq!(t.enqueue(1, "general", &[], 0), vec![pos(1, 1)]);
    t.now += 1;
    assert_eq!(t.enqueue(2, "general", &[], 10), vec![pos(2, 1)]);
    t.now += 1;
    assert_eq!(t.enqueue(3, "general", &[], 0), vec![pos(3, 3)]);
    t.now += 1;
    assert_eq!(t.enqueue(4, "general", &[], 10), vec![pos(4, 2)]);
    t.now += 1;
    assert_eq!(t.enqueue(5, "general", &[], 5), vec![pos(5, 3)]);
    let mut order = Vec::new();
    let mut out = t.away("2001", false);
    for _ in 0..5 {
        let o = offers(&out);
        assert_eq!(o.len(), 1, "{out:?}");
        order.push(o[0].0);
        out = t.serve(o[0].0);
    }
    assert_eq!(order, vec![2, 4, 5, 1, 3]);
}

#[test]
fn the_agent_idle_longest_gets_the_call() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[]), ("c", &[])],
    );
    t.register("b");
    t.now += S;
    t.register("a");
    t.now += S;
    t.register("c");
    t.now += S;
    assert_eq!(
        t.enqueue(1, "general", &[], 0),
        vec![pos(1, 1), offer(1, "b")]
    );
    // A call ringing an agent is still in line (it comes back if the agent does not answer).
    assert_eq!(
        t.enqueue(2, "general", &[], 0),
        vec![pos(2, 2), offer(2, "a")]
    );
    t.answered(1);
    t.now += S;
    t.over(1); // b is available again now: behind c
    assert_eq!(
        t.enqueue(3, "general", &[], 0),
        vec![pos(3, 2), offer(3, "c")]
    );
    assert_eq!(
        t.enqueue(4, "general", &[], 0),
        vec![pos(4, 3), offer(4, "b")]
    );
    assert_eq!(t.status("b").since, t.now);
}

#[test]
fn calls_go_only_to_agents_with_every_skill() {
    let mut t = T::new(
        &[
            ("billing", &["billing"], None, Some(0)),
            ("general", &[], None, Some(0)),
        ],
        &[
            ("zh", &["billing", "mandarin"]),
            ("en", &["billing", "english"]),
            ("plain", &["english"]),
        ],
    );
    t.register("plain"); // idle longest, but has no billing skill
    t.now += S;
    t.register("zh");
    t.now += S;
    t.register("en");
    // Queue skills and node skills together.
    let out = t.enqueue(1, "billing", &["english"], 0);
    assert_eq!(offers(&out), vec![(1, "en".into())]);
    let out = t.enqueue(2, "billing", &[], 0);
    assert_eq!(offers(&out), vec![(2, "zh".into())]);
    // Nobody has both billing and cantonese: the flow's no_agents path at once.
    assert_eq!(
        t.enqueue(3, "billing", &["cantonese"], 0),
        vec![AcdOut::NoAgents { call: 3 }]
    );
    // Nor english with mandarin while plain is the only english speaker without mandarin.
    assert_eq!(
        t.enqueue(4, "general", &["english", "mandarin"], 0),
        vec![AcdOut::NoAgents { call: 4 }]
    );
    assert_eq!(
        offers(&t.enqueue(5, "general", &[], 0)),
        vec![(5, "plain".into())]
    );
}

#[test]
fn an_agent_that_becomes_available_takes_the_best_call_it_qualifies_for() {
    let mut t = T::new(
        &[
            ("billing", &["billing"], None, Some(0)),
            ("general", &[], None, Some(0)),
        ],
        &[("zh", &["billing", "mandarin"]), ("en", &["english"])],
    );
    t.register("zh");
    t.register("en");
    t.away("zh", true);
    t.away("en", true);
    t.enqueue(1, "general", &["english"], 0); // zh cannot take it
    t.now += S;
    t.enqueue(2, "billing", &[], 0);
    t.now += S;
    t.enqueue(3, "general", &[], 0);
    t.now += S;
    t.enqueue(4, "general", &["mandarin"], 5);
    // Highest priority first across queues, then the longest waiting it qualifies for.
    let out = t.away("zh", false);
    assert_eq!(offers(&out), vec![(4, "zh".into())]);
    assert_eq!(offers(&t.serve(4)), vec![(2, "zh".into())]);
    assert_eq!(offers(&t.serve(2)), vec![(3, "zh".into())]);
    assert_eq!(offers(&t.serve(3)), vec![]);
    assert_eq!(offers(&t.away("en", false)), vec![(1, "en".into())]);
}

#[test]
fn a_ring_timeout_cancels_and_offers_the_next_agent() {
    let mut t = T::new(
        &[
            ("general", &[], Some(5_000), None),
            ("slow", &[], None, None),
        ],
        &[("a", &[]), ("b", &[])],
    );
    t.register("a");
    t.now += S;
    t.register("b");
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "a".into())]
    );
    assert_eq!(t.acd.agent_of(1), Some("a"));
    assert_eq!(t.acd.poll_timeout(), Some(t.now + 5_000));
    assert_eq!(t.advance(4_999), vec![]);
    assert_eq!(t.advance(1), vec![cancel(1, "a"), offer(1, "b")]);
    assert_eq!(t.acd.agent_of(1), Some("b"));
    assert_eq!(t.state("a"), AgentState::Available);
    assert_eq!(t.status("a").offers_missed, 1);
    // The default ring timeout is 15 s.
    assert_eq!(offers(&t.enqueue(2, "slow", &[], 0)), vec![(2, "a".into())]);
    assert_eq!(t.advance(4_999), vec![]);
    // b rang out too: both have tried call 1, so the round starts over, after a pause, with
    // the only agent available (a is ringing with call 2).
    assert_eq!(t.advance(1), vec![cancel(1, "b")]);
    assert_eq!(t.advance(RETRY_PAUSE_MS), vec![offer(1, "b")]);
    assert_eq!(t.acd.agent_of(2), Some("a"));
    assert_eq!(t.status("b").offers_missed, 1);
}

#[test]
fn a_call_is_not_offered_again_to_an_agent_who_tried_it_until_everyone_has() {
    let mut t = T::new(
        &[("general", &[], Some(10_000), Some(0))],
        &[("a", &[]), ("b", &[]), ("c", &[])],
    );
    t.register("a");
    t.now += S;
    t.register("b");
    t.now += S;
    t.register("c");
    // c is busy with another call.
    t.enqueue(9, "general", &[], 100);
    t.enqueue(8, "general", &[], 100);
    t.enqueue(7, "general", &[], 100);
    t.answered(9);
    t.answered(8);
    t.answered(7);
    assert_eq!(t.state("c"), AgentState::OnCall);
    t.now += S;
    t.over(9);
    t.now += S;
    t.over(8); // a and b available again, a first
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "a".into())]
    );
    // a is busy: the call goes to b.
    assert_eq!(t.declined(1, Decline::Busy), vec![offer(1, "b")]);
    // b fails: a was tried, c (not tried) is on a call: the call waits; a and b stay
    // available but are not offered it.
    assert_eq!(t.declined(1, Decline::Failed), vec![]);
    assert_eq!(t.state("a"), AgentState::Available);
    assert_eq!(t.state("b"), AgentState::Available);
    // They still take other calls.
    assert_eq!(
        offers(&t.enqueue(2, "general", &[], 0)),
        vec![(2, "a".into())]
    );
    t.declined(2, Decline::NoAnswer); // back to b... who is free: ring b
    assert_eq!(t.acd.agent_of(2), Some("b"));
    t.leave(2);
    // c comes free: call 1 goes to c, the only untried agent.
    t.now += S;
    assert_eq!(offers(&t.over(7)), vec![(1, "c".into())]);
    // c lets it ring out: everyone has tried it, the set is cleared, and after a short pause
    // the call starts a new round with the agent idle longest.
    let out = t.advance(10_000);
    assert_eq!(out, vec![cancel(1, "c")]);
    assert_eq!(t.acd.calls[&1].tried, Vec::<usize>::new());
    // b has been idle longest: it failed call 1 before a let call 2 ring out (leaving while
    // ringing kept b's place).
    let out = t.advance(RETRY_PAUSE_MS);
    assert_eq!(offers(&out), vec![(1, "b".into())]);
}

#[test]
fn a_lone_agent_that_fails_at_once_is_not_rung_in_a_loop() {
    let mut t = T::new(&[("general", &[], None, None)], &[("a", &[])]);
    t.register("a");
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "a".into())]
    );
    assert_eq!(t.declined(1, Decline::Busy), vec![]);
    assert_eq!(t.advance(RETRY_PAUSE_MS - 1), vec![]);
    assert_eq!(t.advance(1), vec![offer(1, "a")]);
}

#[test]
fn a_declined_call_keeps_its_place_in_line() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[]), ("c", &[])],
    );
    t.register("a");
    t.register("b");
    t.register("c");
    t.enqueue(1, "general", &[], 0); // a
    t.enqueue(2, "general", &[], 0); // b
    t.enqueue(3, "general", &[], 0); // c
    t.answered(3);
    t.enqueue(4, "general", &[], 0); // waits
    t.now += S;
    // a declines 1: a takes 4 (it has not tried 4); call 1 waits ahead of everything.
    assert_eq!(t.declined(1, Decline::Busy), vec![offer(4, "a")]);
    t.enqueue(5, "general", &[], 0);
    t.advance(S);
    assert_eq!(t.acd.calls[&1].position, 1);
    assert_eq!(t.acd.calls[&5].position, 4);
    // c comes free and gets call 1, not the later call 5.
    assert_eq!(offers(&t.over(3)), vec![(1, "c".into())]);
}

#[test]
fn wrap_up_follows_a_conversation() {
    let mut t = T::new(
        &[
            ("general", &[], None, None),
            ("short", &[], None, Some(3_000)),
        ],
        &[("a", &[])],
    );
    t.register("a");
    t.enqueue(1, "general", &[], 0);
    t.answered(1);
    assert_eq!(t.state("a"), AgentState::OnCall);
    assert_eq!(t.status("a").call, Some(1));
    t.now += 60 * S;
    assert_eq!(t.over(1), vec![]);
    assert_eq!(t.state("a"), AgentState::WrapUp);
    assert_eq!(t.acd.agent_of(1), None);
    assert_eq!(t.enqueue(2, "short", &[], 0), vec![pos(2, 1)]);
    // The default wrap-up is 10 s.
    assert_eq!(t.advance(10_000 - 1), vec![]);
    assert_eq!(t.advance(1), vec![offer(2, "a")]);
    t.answered(2);
    t.over(2);
    // Per queue: 3 s after a call of `short`.
    assert_eq!(t.acd.poll_timeout(), Some(t.now + 3_000));
    t.advance(3_000);
    assert_eq!(t.state("a"), AgentState::Available);
    assert_eq!(t.status("a").calls_answered, 2);
}

#[test]
fn away_agents_take_no_calls_but_count_as_logged_in() {
    let mut t = T::new(
        &[("general", &[], None, Some(2_000))],
        &[("a", &[]), ("b", &[])],
    );
    let mut out = Vec::new();
    assert_eq!(
        t.acd.set_away("a", true, t.now, &mut out),
        Err(AcdError::NotLoggedIn("a".into()))
    );
    assert_eq!(
        t.acd.set_away("x", true, t.now, &mut out),
        Err(AcdError::UnknownAgent("x".into()))
    );
    t.register("a");
    t.away("a", true);
    assert_eq!(t.state("a"), AgentState::Away);
    // The caller waits (max_wait in the flow handles it).
    assert_eq!(t.enqueue(1, "general", &[], 0), vec![pos(1, 1)]);
    assert_eq!(t.away("a", false), vec![offer(1, "a")]);
    // Away while on a call: after the call and its wrap-up.
    t.answered(1);
    t.away("a", true);
    assert_eq!(t.state("a"), AgentState::OnCall);
    t.over(1);
    t.advance(2_000);
    assert_eq!(t.state("a"), AgentState::Away);
    // Away while ringing: the offer goes on; if it rings out the agent is away.
    t.away("a", false);
    t.enqueue(2, "general", &[], 0);
    t.away("a", true);
    assert_eq!(t.state("a"), AgentState::Ringing);
    t.declined(2, Decline::NoAnswer);
    assert_eq!(t.state("a"), AgentState::Away);
    assert_eq!(offers(&t.register("b")), vec![(2, "b".into())]);
}

#[test]
fn registration_refreshes_and_expires() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[])],
    );
    let mut out = Vec::new();
    assert_eq!(
        t.acd
            .register("nobody", contact("x"), t.now + S, t.now, &mut out),
        Err(AcdError::UnknownAgent("nobody".into()))
    );
    let t0 = t.now;
    t.register_until("a", t0 + 60 * S);
    assert_eq!(t.state("a"), AgentState::Available);
    t.now += 30 * S;
    // Registering again only refreshes: a stays available since t0.
    t.register_until("a", t0 + 120 * S);
    assert_eq!(t.status("a").since, t0);
    t.advance(60 * S);
    assert_eq!(t.state("a"), AgentState::Available);
    t.advance(30 * S);
    assert_eq!(t.state("a"), AgentState::Offline);

    // Expiry while ringing: the offer is cancelled and the call goes to b.
    t.register_until("a", t.now + 10 * S);
    t.now += S;
    t.register("b");
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "a".into())]
    );
    let out = t.advance(9 * S);
    assert_eq!(out, vec![cancel(1, "a"), offer(1, "b")]);
    assert_eq!(t.state("a"), AgentState::Offline);

    // Expiry while on a call: the call goes on, then the agent is offline (no wrap-up).
    t.answered(1);
    let deadline = t.now + S;
    t.register_until("b", deadline);
    t.advance(2 * S);
    assert_eq!(t.state("b"), AgentState::OnCall);
    assert_eq!(t.over(1), vec![]);
    assert_eq!(t.state("b"), AgentState::Offline);

    // A registration that is already over logs the agent out.
    t.register("a");
    let now = t.now;
    t.register_until("a", now);
    assert_eq!(t.state("a"), AgentState::Offline);
}

#[test]
fn no_agents_when_nobody_who_could_take_the_call_is_logged_in() {
    let mut t = T::new(
        &[
            ("general", &[], None, Some(0)),
            ("billing", &["billing"], None, Some(0)),
        ],
        &[("a", &["billing"]), ("b", &[])],
    );
    assert_eq!(
        t.enqueue(1, "general", &[], 0),
        vec![AcdOut::NoAgents { call: 1 }]
    );
    assert_eq!(
        t.enqueue(2, "nowhere", &[], 0),
        vec![AcdOut::NoAgents { call: 2 }]
    );
    assert_eq!(t.queue("general").no_agents, 1);
    t.register("a");
    t.register("b");
    t.away("a", true);
    t.away("b", true);
    t.enqueue(3, "billing", &[], 0);
    t.enqueue(4, "general", &[], 0);
    t.enqueue(5, "billing", &[], 0);
    // b leaves: a still serves both queues.
    assert_eq!(t.unregister("b"), vec![]);
    // a leaves too: every waiting call now has nobody.
    let out = t.unregister("a");
    assert_eq!(out.len(), 3, "{out:?}");
    for call in [3, 4, 5] {
        assert!(out.contains(&AcdOut::NoAgents { call }), "{out:?}");
        assert!(!t.acd.contains(call));
    }
    assert_eq!(t.queue("billing").waiting, 0);
    assert_eq!(t.queue("billing").no_agents, 2);
}

#[test]
fn the_last_qualifying_agent_leaving_ends_only_its_calls() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("zh", &["mandarin"]), ("en", &["english"])],
    );
    t.register("zh");
    t.register("en");
    t.away("zh", true);
    t.away("en", true);
    t.enqueue(1, "general", &["english"], 0);
    t.enqueue(2, "general", &["mandarin"], 0);
    t.enqueue(3, "general", &[], 0);
    let out = t.unregister("en");
    assert_eq!(out, vec![AcdOut::NoAgents { call: 1 }]);
    assert!(t.acd.contains(2) && t.acd.contains(3));
    // The positions of the calls behind follow, coalesced.
    assert_eq!(t.advance(S), vec![pos(2, 1), pos(3, 2)]);
}

#[test]
fn a_caller_leaving_while_ringing_cancels_the_offer() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[])],
    );
    t.register("a");
    t.now += S;
    t.register("b");
    t.now += S;
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "a".into())]
    );
    assert_eq!(t.leave(1), vec![cancel(1, "a")]);
    assert!(!t.acd.contains(1));
    assert_eq!(t.acd.agent_of(1), None);
    assert_eq!(
        t.acd.poll_timeout().map(|at| at > t.now + 10 * S),
        Some(true)
    );
    assert_eq!(t.queue("general").abandoned, 1);
    // The agent is free and keeps its place: it was not its doing.
    assert_eq!(t.state("a"), AgentState::Available);
    assert_eq!(
        offers(&t.enqueue(2, "general", &[], 0)),
        vec![(2, "a".into())]
    );
    // A late answer for the cancelled offer is ignored.
    assert_eq!(t.answered(1), vec![]);
    // Leaving while waiting: the agent that comes free later does not get it.
    t.enqueue(3, "general", &[], 0); // b
    t.enqueue(4, "general", &[], 0); // waits
    assert_eq!(t.leave(4), vec![]);
    t.answered(2);
    assert_eq!(offers(&t.over(2)), vec![]);
}

#[test]
fn a_late_answer_after_a_ring_timeout_is_not_taken_for_the_next_agent() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[])],
    );
    t.register("a");
    t.now += S;
    t.register("b");
    t.enqueue(1, "general", &[], 0);
    t.advance(15 * S);
    // The serve layer checks agent_of before reporting a's 200 OK: it is now b's offer.
    assert_eq!(t.acd.agent_of(1), Some("b"));
}

#[test]
fn reconfigure_keeps_states_and_waiting_calls() {
    let agents: &[(&str, &[&str])] = &[("a", &[]), ("b", &["english"]), ("d", &[])];
    let mut t = T::new(&[("general", &[], None, Some(0))], agents);
    t.register("a");
    t.now += S;
    t.register("d");
    t.now += S;
    t.register("b");
    t.enqueue(1, "general", &[], 0); // a
    t.answered(1);
    t.enqueue(2, "general", &[], 0); // d, ringing
    t.away("b", true);
    t.enqueue(3, "general", &["mandarin"], 0); // nobody: NoAgents
    assert!(!t.acd.contains(3));
    t.enqueue(4, "general", &["english"], 5); // waits for b, who is away
    t.away("b", false); // takes 4
    t.enqueue(5, "general", &["mandarin"], 0);
    assert!(!t.acd.contains(5));
    t.enqueue(6, "general", &["english"], 0); // waits: b is ringing
    assert_eq!(t.acd.agent_of(4), Some("b"));

    // New configuration: d removed (its ringing offer is cancelled and the call goes to the
    // next agent), c added, a learns english, the queue rings for 5 s.
    let next = config(
        &[
            ("general", &[], Some(5_000), Some(0)),
            ("vip", &[], None, None),
        ],
        &[("a", &["english"]), ("b", &["english"]), ("c", &[])],
    );
    let mut out = Vec::new();
    t.acd.reconfigure(&next, t.now, &mut out);
    check_invariants(&t.acd);
    assert_eq!(
        out,
        vec![cancel(2, "d")],
        "call 2 waits: a is on a call, b ringing"
    );
    assert_eq!(t.state("a"), AgentState::OnCall);
    assert_eq!(t.state("b"), AgentState::Ringing);
    assert_eq!(t.state("c"), AgentState::Offline);
    assert!(t.acd.status(t.now).agents.iter().all(|a| a.id != "d"));
    assert_eq!(t.queue("general").offered, 6);
    assert_eq!(t.queue("vip").offered, 0);
    // c logs in and takes call 2 with the new ring timeout.
    assert_eq!(offers(&t.register("c")), vec![(2, "c".into())]);
    assert!(
        matches!(t.acd.calls[&2].state, CallState::Ringing { until, .. } if until == t.now + 5_000)
    );
    // a, now with english, takes call 6 after its call.
    assert_eq!(offers(&t.over(1)), vec![(6, "a".into())]);
    let mut out = Vec::new();
    assert_eq!(
        t.acd
            .register("d", contact("d"), t.now + S, t.now, &mut out),
        Err(AcdError::UnknownAgent("d".into()))
    );
}

#[test]
fn reconfigure_gives_waiting_calls_to_agents_who_now_qualify() {
    let agents: &[(&str, &[&str])] = &[("a", &[]), ("b", &["billing", "english"])];
    let mut t = T::new(&[("billing", &["billing"], None, Some(0))], agents);
    t.register("a");
    t.register("b");
    t.away("b", true);
    t.enqueue(1, "billing", &[], 0);
    t.enqueue(2, "billing", &["english"], 0); // waits for b, away
    assert_eq!(t.state("a"), AgentState::Available);
    // The queue no longer needs billing: a takes the first call at once.
    let mut out = Vec::new();
    t.acd.reconfigure(
        &config(&[("billing", &[], None, Some(0))], agents),
        t.now,
        &mut out,
    );
    check_invariants(&t.acd);
    assert_eq!(offers(&out), vec![(1, "a".into())]);
    assert!(t.acd.contains(2));
    // b loses english: nobody logged in can take call 2 any more.
    let mut out = Vec::new();
    t.acd.reconfigure(
        &config(
            &[("billing", &[], None, Some(0))],
            &[("a", &[]), ("b", &["billing"])],
        ),
        t.now,
        &mut out,
    );
    check_invariants(&t.acd);
    assert_eq!(out, vec![AcdOut::NoAgents { call: 2 }]);
    assert_eq!(t.acd.agent_of(1), Some("a"));
}

#[test]
fn reconfigure_removing_an_agent_on_a_call_lets_it_finish() {
    let mut t = T::new(
        &[("general", &[], None, Some(0)), ("old", &[], None, None)],
        &[("a", &[]), ("b", &[])],
    );
    t.register("a");
    t.register("b");
    t.enqueue(1, "general", &[], 0); // a
    t.answered(1);
    t.away("b", true);
    t.enqueue(2, "old", &[], 0);
    // a and the queue `old` leave the configuration; b stays, so call 2 keeps waiting.
    let mut out = Vec::new();
    t.acd.reconfigure(
        &config(&[("general", &[], None, Some(0))], &[("b", &[])]),
        t.now,
        &mut out,
    );
    check_invariants(&t.acd);
    assert_eq!(out, vec![]);
    assert_eq!(t.acd.agent_of(1), Some("a"));
    assert_eq!(t.queue("old").waiting, 1);
    assert_eq!(
        t.enqueue(3, "old", &[], 0),
        vec![AcdOut::NoAgents { call: 3 }]
    );
    assert_eq!(t.over(1), vec![]);
    assert!(t.acd.status(t.now).agents.iter().all(|a| a.id != "a"));
    assert_eq!(offers(&t.away("b", false)), vec![(2, "b".into())]);
    // Removing b, the last agent, sends the call ringing b down its no_agents path.
    let mut out = Vec::new();
    t.acd.reconfigure(&config(&[], &[]), t.now, &mut out);
    check_invariants(&t.acd);
    assert_eq!(out, vec![cancel(2, "b"), AcdOut::NoAgents { call: 2 }]);
    assert!(t.acd.status(t.now).queues.is_empty());
}

#[test]
fn positions_are_sent_at_enqueue_then_coalesced() {
    let mut t = T::new(&[("general", &[], None, Some(0))], &[("a", &[])]);
    t.register("a");
    t.away("a", true);
    for call in 1..=1000u64 {
        let out = t.enqueue(call, "general", &[], 0);
        assert_eq!(out, vec![pos(call, call as u32)]);
    }
    // A VIP goes ahead of everyone: told at once; the others learn it from the next walk.
    assert_eq!(t.enqueue(5000, "general", &[], 10), vec![pos(5000, 1)]);
    t.now += 2 * S;
    let out = t.advance(0);
    assert_eq!(out.len(), 1000);
    assert_eq!(out[0], pos(1, 2));
    // Dequeues emit nothing themselves: one walk a second sends what changed, once per call.
    assert_eq!(t.leave(5000), vec![]);
    assert_eq!(t.leave(1), vec![]);
    assert_eq!(t.leave(500), vec![]);
    assert_eq!(t.advance(S - 1), vec![]);
    let out = t.advance(1);
    assert_eq!(out.len(), 998, "every remaining call moved");
    assert_eq!(out[0], pos(2, 1));
    assert_eq!(out[497], pos(499, 498));
    assert_eq!(out[498], pos(501, 499));
    // Within the next second: nothing, however many leave.
    for call in 2..50 {
        assert_eq!(t.leave(call), vec![]);
    }
    assert_eq!(t.advance(S - 1), vec![]);
    let out = t.advance(1);
    assert_eq!(out.len(), 998 - 48);
    assert_eq!(out[0], pos(50, 1));
    // Nothing changed: nothing sent.
    assert_eq!(t.advance(10 * S), vec![]);
    // A call told at enqueue is not told again within the second.
    t.away("a", false); // takes call 50
    t.enqueue(6000, "general", &[], 0); // position 950
    t.answered(50);
    t.now += 500;
    let out = t.advance(0);
    assert!(
        !out.iter()
            .any(|o| matches!(o, AcdOut::Position { call: 6000, .. }))
    );
    assert_eq!(out.len(), 949, "{:?}", &out[..3]);
    // It is told at the queue's next walk, a second after this one (not at every arrival's
    // own deadline: a queue is walked at most once a second).
    assert_eq!(t.acd.poll_timeout(), Some(t.now + S));
    assert_eq!(t.advance(S - 1), vec![]);
    assert_eq!(t.advance(1), vec![pos(6000, 950)]);
    // Arrivals every 100 ms, each going ahead of the others: walks stay a second apart.
    let mut walks = Vec::new();
    for (i, call) in (7000..7030).enumerate() {
        t.enqueue(call, "general", &[], 1 + i as i64);
        for _ in 0..10 {
            t.advance(10);
            let walk = t.acd.queues[0].last_walk.expect("walked");
            if walks.last() != Some(&walk) {
                walks.push(walk);
            }
        }
    }
    assert!(walks.len() >= 3, "{walks:?}");
    assert!(walks.windows(2).all(|w| w[1] - w[0] >= S), "{walks:?}");
}

#[test]
fn status_reports_agents_and_queues() {
    let mut t = T::new(
        &[("general", &["mandarin"], Some(20_000), Some(5_000))],
        &[("a", &["mandarin"])],
    );
    t.register("a");
    t.enqueue(1, "general", &[], 0);
    t.now += 3 * S;
    t.enqueue(2, "general", &[], 0);
    t.now += 2 * S;
    let s = t.acd.status(t.now);
    assert_eq!(
        s.agents,
        vec![AgentStatus {
            id: "a".into(),
            name: "Agent a".into(),
            skills: vec!["mandarin".into()],
            level: 1,
            state: AgentState::Ringing,
            since: t.now - 5 * S,
            call: Some(1),
            calls_answered: 0,
            offers_missed: 0,
        }]
    );
    assert_eq!(
        s.queues,
        vec![QueueStatus {
            name: "general".into(),
            skills: vec!["mandarin".into()],
            waiting: 2,
            longest_wait_ms: 5_000,
            offered: 2,
            answered: 0,
            abandoned: 0,
            no_agents: 0,
            ring_timeout_ms: 20_000,
            wrap_up_ms: 5_000,
            overflowed: 0,
            overflow_answered: 0,
        }]
    );
    let json = serde_json::to_value(&s).expect("serialises");
    assert_eq!(json["agents"][0]["state"], "ringing");
    t.answered(1);
    t.leave(2);
    let q = t.queue("general");
    assert_eq!(
        (q.waiting, q.answered, q.abandoned, q.longest_wait_ms),
        (0, 1, 1, 0)
    );
    assert_eq!(t.state("a"), AgentState::OnCall);
}

/// A small deterministic generator (xorshift), so that failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_operations_keep_every_index_consistent() {
    let skills = ["billing", "mandarin", "english", "tv"];
    let agent_ids: Vec<String> = (0..12).map(|i| format!("{}", 2000 + i)).collect();
    let agent_skills: Vec<Vec<&str>> = (0..12)
        .map(|i| {
            skills
                .iter()
                .enumerate()
                .filter(|(j, _)| (i >> j) & 1 == 1 || *j == 1)
                .map(|(_, s)| *s)
                .collect()
        })
        .collect();
    let make = |n: usize| {
        let agents: Vec<(&str, &[&str])> = (0..n)
            .map(|i| (agent_ids[i].as_str(), agent_skills[i].as_slice()))
            .collect();
        let mut c = config(
            &[
                ("general", &[], Some(8_000), Some(2_000)),
                ("billing", &["billing"], Some(5_000), Some(0)),
                ("tv", &["tv"], None, None),
            ],
            &agents,
        );
        with_levels(&mut c, &[("tv", true)], |i| (i % 5 + 1) as u8);
        c
    };
    for seed in 1..=20u64 {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ seed);
        let mut t = T {
            acd: Acd::new(&make(12)),
            now: 1_000_000,
        };
        let mut next_call = 1u64;
        for _ in 0..3_000 {
            let agent = agent_ids[rng.below(12) as usize].clone();
            let mut calls: Vec<CallKey> = t.acd.calls.keys().copied().collect();
            calls.sort_unstable();
            let call = if calls.is_empty() {
                0
            } else {
                calls[rng.below(calls.len() as u64) as usize]
            };
            let mut out = Vec::new();
            match rng.below(14) {
                0 | 1 => {
                    let _ = t.acd.register(
                        &agent,
                        contact(&agent),
                        t.now + rng.below(120_000) as i64,
                        t.now,
                        &mut out,
                    );
                }
                2 => t.acd.unregister(&agent, t.now, &mut out),
                3 => {
                    let _ = t.acd.set_away(&agent, rng.below(2) == 0, t.now, &mut out);
                }
                4..=6 => {
                    let queue = ["general", "billing", "tv"][rng.below(3) as usize];
                    let node: Vec<String> = skills
                        .iter()
                        .filter(|_| rng.below(4) == 0)
                        .map(|s| s.to_string())
                        .collect();
                    let mut routing = Routing {
                        level: [0, 0, 3, 5][rng.below(4) as usize],
                        overflow: Vec::new(),
                        transferred: rng.below(8) == 0,
                    };
                    for _ in 0..rng.below(3) {
                        routing.overflow.push(OverflowRule {
                            queue: ["general", "billing", "tv"][rng.below(3) as usize].into(),
                            skills: node.clone(),
                            when: if rng.below(2) == 0 {
                                OverflowWhen::NoneIdle
                            } else {
                                OverflowWhen::After(rng.below(10_000) as i64)
                            },
                        });
                    }
                    t.acd.enqueue(
                        next_call,
                        queue,
                        &node,
                        rng.below(3) as i64 * 5,
                        &routing,
                        t.now,
                        t.now,
                        &mut out,
                    );
                    next_call += 1;
                }
                7 => t.acd.leave(call, t.now, &mut out),
                8 | 9 => t.acd.answered(call, t.now, &mut out),
                10 => t.acd.declined(call, Decline::Busy, t.now, &mut out),
                11 => t.acd.conversation_over(call, t.now, &mut out),
                12 => {
                    out = t.advance(rng.below(6_000) as i64);
                }
                _ => {
                    if rng.below(10) == 0 {
                        t.acd
                            .reconfigure(&make(6 + rng.below(7) as usize), t.now, &mut out);
                    }
                }
            }
            check_invariants(&t.acd);
            // The last offer of each call not cancelled afterwards is the agent ringing now.
            let mut last: HashMap<CallKey, Option<String>> = HashMap::new();
            for o in &out {
                match o {
                    AcdOut::Offer { call, agent, .. } => {
                        last.insert(*call, Some(agent.clone()));
                    }
                    AcdOut::Cancel { call, agent } => {
                        if let Some(offered) = last.get(call) {
                            assert_eq!(offered.as_ref(), Some(agent), "a cancel ends a live offer");
                        }
                        last.insert(*call, None);
                    }
                    AcdOut::NoAgents { call } => {
                        assert!(!t.acd.contains(*call));
                        last.insert(*call, None);
                    }
                    AcdOut::Position { .. } | AcdOut::Refused { .. } => {}
                }
            }
            for (call, agent) in last {
                if let Some(agent) = agent {
                    assert_eq!(t.acd.agent_of(call), Some(agent.as_str()));
                }
            }
            t.now += rng.below(300) as i64;
        }
    }
}

/// The one way in and out: operations through `handle_input`, timers through
/// `handle_timeout`, outputs through `poll_output`; refusals are outputs too.
#[test]
fn the_machine_takes_operations_and_gives_outputs_in_order() {
    use crate::{AcdInput, Machine};
    let mut acd = Acd::new(&config(
        &[("general", &[], None, Some(0))],
        &[("2001", &[])],
    ));
    let now = 1_000_000;
    let contact = Contact {
        uri: "sip:2001@192.0.2.1:5060".into(),
        addr: "192.0.2.1:5060".parse().expect("address"),
        tcp: false,
    };
    acd.handle_input(
        AcdInput::Register {
            agent: "nobody".into(),
            contact: contact.clone(),
            expires_at: now + 60_000,
        },
        now,
    );
    assert_eq!(
        acd.poll_output(),
        Some(AcdOut::Refused {
            agent: "nobody".into(),
            error: AcdError::UnknownAgent("nobody".into()),
        })
    );
    assert_eq!(acd.poll_output(), None);
    acd.handle_input(
        AcdInput::SetAway {
            agent: "2001".into(),
            away: true,
        },
        now,
    );
    assert!(matches!(
        acd.poll_output(),
        Some(AcdOut::Refused {
            error: AcdError::NotLoggedIn(_),
            ..
        })
    ));
    acd.handle_input(
        AcdInput::Register {
            agent: "2001".into(),
            contact,
            expires_at: now + 60_000,
        },
        now,
    );
    assert_eq!(acd.poll_output(), None, "registered, nothing to do");
    acd.handle_input(
        AcdInput::Enqueue {
            call: 7,
            queue: "general".into(),
            skills: Vec::new(),
            priority: 0,
            routing: Routing::default(),
        },
        now,
    );
    let outs: Vec<AcdOut> = std::iter::from_fn(|| acd.poll_output()).collect();
    assert!(
        outs.iter()
            .any(|o| matches!(o, AcdOut::Offer { call: 7, agent, .. } if agent == "2001")),
        "{outs:?}"
    );
    // The ring timeout is the next deadline; when it fires the offer is cancelled.
    let due = acd.poll_timeout().expect("a ring timeout");
    assert!(due > now);
    acd.handle_timeout(due);
    let outs: Vec<AcdOut> = std::iter::from_fn(|| acd.poll_output()).collect();
    assert!(
        outs.iter()
            .any(|o| matches!(o, AcdOut::Cancel { call: 7, .. })),
        "{outs:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Overflow, levels, transferred-in calls

fn overflow(queue: &str, when: OverflowWhen) -> Routing {
    Routing {
        overflow: vec![OverflowRule {
            queue: queue.into(),
            skills: Vec::new(),
            when,
        }],
        ..Routing::default()
    }
}

/// billing (specialists, 2001) and general (2002, who has no billing skill).
fn billing_and_general() -> T {
    T::new(
        &[
            ("billing", &["billing"], None, Some(0)),
            ("general", &[], None, Some(0)),
        ],
        &[("2001", &["billing"]), ("2002", &[])],
    )
}

#[test]
fn overflow_when_none_idle_rings_a_general_agent_at_once() {
    let mut t = billing_and_general();
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    let out = t.enqueue_with(
        1,
        "billing",
        &[],
        0,
        &overflow("general", OverflowWhen::NoneIdle),
    );
    assert_eq!(out, vec![pos(1, 1), offer(1, "2002")]);
    let billing = t.queue("billing");
    assert_eq!(
        (billing.waiting, billing.overflowed),
        (1, 1),
        "its place is kept"
    );
    t.answered(1);
    let (billing, general) = (t.queue("billing"), t.queue("general"));
    assert_eq!((billing.answered, billing.waiting), (1, 0));
    assert_eq!((general.overflow_answered, general.offered), (1, 0));
}

#[test]
fn overflow_when_none_idle_waits_for_the_specialist_who_is_idle() {
    let mut t = billing_and_general();
    t.register("2002");
    t.register("2001");
    let out = t.enqueue_with(
        1,
        "billing",
        &[],
        0,
        &overflow("general", OverflowWhen::NoneIdle),
    );
    assert_eq!(out, vec![pos(1, 1), offer(1, "2001")]);
    assert_eq!(t.queue("billing").overflowed, 0);
}

#[test]
fn overflow_after_offers_general_agents_after_the_wait_keeping_the_billing_place() {
    let mut t = billing_and_general();
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    let rule = overflow("general", OverflowWhen::After(2 * S));
    assert_eq!(t.enqueue_with(1, "billing", &[], 0, &rule), vec![pos(1, 1)]);
    t.now += 1;
    assert_eq!(t.enqueue(2, "billing", &[], 0), vec![pos(2, 2)]);
    assert_eq!(
        offers(&t.advance(2 * S - 2)),
        vec![],
        "not before two seconds"
    );
    let out = t.advance(1);
    assert_eq!(offers(&out), vec![(1, "2002".into())]);
    // The first caller still holds the head of billing while a general agent rings.
    assert_eq!(t.queue("billing").waiting, 2);
    assert_eq!(t.queue("billing").overflowed, 1);
    // The general agent lets it ring out: a billing agent coming back takes it first.
    let out = t.declined(1, Decline::NoAnswer);
    assert_eq!(offers(&out), vec![]);
    let out = t.away("2001", false);
    assert_eq!(offers(&out), vec![(1, "2001".into())]);
}

#[test]
fn an_overflowed_call_keeps_its_time_among_the_other_queues_callers() {
    let mut t = billing_and_general();
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    t.away("2002", true);
    let rule = overflow("general", OverflowWhen::After(5 * S));
    t.enqueue_with(1, "billing", &[], 0, &rule);
    t.now += S;
    t.enqueue(2, "general", &[], 0);
    t.advance(5 * S);
    // Both wait for general agents; the billing caller came first.
    let out = t.away("2002", false);
    assert_eq!(offers(&out), vec![(1, "2002".into())]);
}

#[test]
fn whichever_agent_is_free_first_takes_an_overflowed_call() {
    let mut t = billing_and_general();
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    t.away("2002", true);
    t.enqueue_with(
        1,
        "billing",
        &[],
        0,
        &overflow("general", OverflowWhen::NoneIdle),
    );
    let out = t.away("2001", false);
    assert_eq!(offers(&out), vec![(1, "2001".into())]);
    t.answered(1);
    assert_eq!(t.queue("general").overflow_answered, 0);
}

#[test]
fn a_call_overflowing_to_a_staffed_queue_waits_instead_of_no_agents() {
    let mut t = billing_and_general();
    t.register("2002");
    t.away("2002", true);
    let out = t.enqueue(1, "billing", &[], 0);
    assert_eq!(out, vec![AcdOut::NoAgents { call: 1 }]);
    let rule = overflow("general", OverflowWhen::After(30 * S));
    assert_eq!(t.enqueue_with(2, "billing", &[], 0, &rule), vec![pos(2, 1)]);
    // The last general agent logs out: nobody could take it any more.
    let out = t.unregister("2002");
    assert_eq!(out, vec![AcdOut::NoAgents { call: 2 }]);
    assert!(!t.acd.contains(2));
}

#[test]
fn an_overflow_uses_that_queues_ring_timeout_and_wrap_up() {
    let mut t = T::new(
        &[
            ("billing", &["billing"], Some(20 * S as u64), Some(0)),
            ("general", &[], Some(5 * S as u64), Some(7 * S as u64)),
        ],
        &[("2001", &["billing"]), ("2002", &[])],
    );
    t.register("2002");
    t.register("2001");
    t.away("2001", true);
    t.enqueue_with(
        1,
        "billing",
        &[],
        0,
        &overflow("general", OverflowWhen::NoneIdle),
    );
    let out = t.advance(5 * S);
    assert_eq!(
        out.first(),
        Some(&cancel(1, "2002")),
        "general's 5 s ring timeout"
    );
    // The away billing agent still counts: 2002 is not rung again until 2001 logs out.
    assert_eq!(offers(&t.advance(10 * S)), vec![]);
    t.unregister("2001");
    let out = t.advance(RETRY_PAUSE_MS);
    assert_eq!(offers(&out), vec![(1, "2002".into())]);
    t.answered(1);
    t.over(1);
    assert_eq!(t.state("2002"), AgentState::WrapUp);
    t.advance(7 * S - 1);
    assert_eq!(t.state("2002"), AgentState::WrapUp);
    t.advance(1);
    assert_eq!(t.state("2002"), AgentState::Available);
}

fn leveled(queues: &[Q], agents: &[(&str, &[&str], u8)], best: &[&str]) -> T {
    let plain: Vec<(&str, &[&str])> = agents.iter().map(|(a, s, _)| (*a, *s)).collect();
    let mut c = config(queues, &plain);
    let levels: Vec<u8> = agents.iter().map(|a| a.2).collect();
    let best: Vec<(&str, bool)> = best.iter().map(|q| (*q, true)).collect();
    with_levels(&mut c, &best, |i| levels[i]);
    T {
        acd: Acd::new(&c),
        now: 1_000_000,
    }
}

#[test]
fn best_level_rings_the_highest_level_first_then_the_longest_idle() {
    let mut t = leveled(
        &[("vip", &[], None, Some(0)), ("general", &[], None, Some(0))],
        &[("2001", &[], 1), ("2002", &[], 4), ("2003", &[], 4)],
        &["vip"],
    );
    t.register("2001");
    t.now += 1;
    t.register("2003");
    t.now += 1;
    t.register("2002");
    assert_eq!(t.status("2003").level, 4);
    // best_level: of the two level-4 agents, 2003 has been idle longer; 2001 longest of all.
    assert_eq!(
        offers(&t.enqueue(1, "vip", &[], 0)),
        vec![(1, "2003".into())]
    );
    assert_eq!(
        offers(&t.enqueue(2, "vip", &[], 0)),
        vec![(2, "2002".into())]
    );
    assert_eq!(
        offers(&t.enqueue(3, "vip", &[], 0)),
        vec![(3, "2001".into())]
    );
    // longest_idle (general) ignores levels.
    let mut t = leveled(
        &[("general", &[], None, Some(0))],
        &[("2001", &[], 1), ("2002", &[], 4)],
        &[],
    );
    t.register("2001");
    t.now += 1;
    t.register("2002");
    assert_eq!(
        offers(&t.enqueue(1, "general", &[], 0)),
        vec![(1, "2001".into())]
    );
}

#[test]
fn a_level_holds_while_such_an_agent_is_logged_in() {
    let mut t = leveled(
        &[("general", &[], None, Some(0))],
        &[("2001", &[], 1), ("2002", &[], 4)],
        &[],
    );
    t.register("2001");
    t.register("2002");
    t.away("2002", true);
    let vip = Routing {
        level: 4,
        ..Routing::default()
    };
    // The level-4 agent is away but logged in: the caller waits for them.
    assert_eq!(t.enqueue_with(1, "general", &[], 0, &vip), vec![pos(1, 1)]);
    // A plain caller behind is served by the level-1 agent.
    assert_eq!(
        offers(&t.enqueue(2, "general", &[], 0)),
        vec![(2, "2001".into())]
    );
    t.serve(2);
    assert_eq!(t.state("2001"), AgentState::Available);
    // Back: the level-4 agent takes the VIP.
    assert_eq!(offers(&t.away("2002", false)), vec![(1, "2002".into())]);
    t.serve(1);
    // Without a level-4 agent logged in, anyone takes a VIP.
    t.unregister("2002");
    let out = t.enqueue_with(3, "general", &[], 0, &vip);
    assert_eq!(offers(&out), vec![(3, "2001".into())]);
    t.serve(3);
    t.away("2001", true);
    t.register("2002");
    t.away("2002", true);
    t.enqueue_with(4, "general", &[], 0, &vip);
    t.away("2001", false);
    assert_eq!(
        t.state("2001"),
        AgentState::Available,
        "level 4 holds again"
    );
    // The last level-4 agent logs out while the VIP waits: the level-1 agent is rung.
    assert_eq!(offers(&t.unregister("2002")), vec![(4, "2001".into())]);
}

#[test]
fn a_vip_waits_for_level_four_then_overflows_to_general() {
    let mut t = leveled(
        &[("vip", &[], None, Some(0)), ("general", &[], None, Some(0))],
        &[("2001", &[], 1), ("2002", &[], 4)],
        &["vip"],
    );
    t.register("2001");
    t.register("2002");
    t.away("2002", true);
    let routing = Routing {
        level: 4,
        overflow: vec![OverflowRule {
            queue: "general".into(),
            skills: Vec::new(),
            when: OverflowWhen::After(20 * S),
        }],
        transferred: false,
    };
    assert_eq!(t.enqueue_with(1, "vip", &[], 10, &routing), vec![pos(1, 1)]);
    assert_eq!(offers(&t.advance(20 * S - 1)), vec![]);
    assert_eq!(offers(&t.advance(1)), vec![(1, "2001".into())]);
}

#[test]
fn transferred_calls_are_served_before_any_priority() {
    let mut t = T::new(&[("general", &[], None, Some(0))], &[("2001", &[])]);
    t.register("2001");
    t.away("2001", true);
    t.enqueue(1, "general", &[], 10);
    t.now += 1;
    t.enqueue(2, "general", &[], 0);
    t.now += 1;
    let transferred = Routing {
        transferred: true,
        ..Routing::default()
    };
    assert_eq!(
        t.enqueue_with(3, "general", &[], 0, &transferred),
        vec![pos(3, 1)]
    );
    assert_eq!(offers(&t.away("2001", false)), vec![(3, "2001".into())]);
}

#[test]
fn overflow_routes_survive_a_reload() {
    let mut t = billing_and_general();
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    t.away("2002", true);
    t.enqueue_with(
        1,
        "billing",
        &[],
        0,
        &overflow("general", OverflowWhen::NoneIdle),
    );
    let mut out = Vec::new();
    let c = config(
        &[
            ("billing", &["billing"], None, Some(0)),
            ("general", &[], None, Some(0)),
        ],
        &[("2001", &["billing"]), ("2002", &[]), ("2003", &[])],
    );
    t.acd.reconfigure(&c, t.now, &mut out);
    check_invariants(&t.acd);
    assert_eq!(offers(&t.away("2002", false)), vec![(1, "2002".into())]);
}

/// An agent may transfer to a configured queue with an agent of its skills logged in (away
/// counts); otherwise the transfer is refused and says why.
#[test]
fn transfers_go_to_known_queues_with_an_agent_logged_in() {
    let mut t = T::new(
        &[
            ("general", &[], None, None),
            ("billing", &["billing"], None, None),
        ],
        &[("2001", &[]), ("2002", &["billing"])],
    );
    assert_eq!(
        t.acd.transfer_target("nowhere"),
        Err(TransferRefused::UnknownQueue("nowhere".into()))
    );
    assert_eq!(
        t.acd.transfer_target("general"),
        Err(TransferRefused::NoAgents("general".into()))
    );
    t.register("2001");
    assert_eq!(t.acd.transfer_target("general"), Ok(()));
    assert_eq!(
        t.acd.transfer_target("billing"),
        Err(TransferRefused::NoAgents("billing".into()))
    );
    t.register("2002");
    t.away("2002", true);
    assert_eq!(t.acd.transfer_target("billing"), Ok(()));
}

/// A transfer to an agent goes only to that agent, through a queue whose skills it has,
/// ahead of the calls waiting there; an unknown or logged-out agent is refused.
#[test]
fn a_transfer_to_an_agent_rings_only_that_agent() {
    let mut t = T::new(
        &[
            ("general", &[], None, None),
            ("billing", &["billing"], None, None),
        ],
        &[("2001", &[]), ("2002", &[]), ("2003", &["billing"])],
    );
    assert_eq!(
        t.acd.agent_transfer_target("9999", "general"),
        Err(TransferRefused::UnknownAgent("9999".into()))
    );
    assert_eq!(
        t.acd.agent_transfer_target("2002", "general"),
        Err(TransferRefused::AgentOffline("2002".into()))
    );
    t.register("2001");
    t.register("2002");
    t.register("2003");
    // 2003 has billing's skills: the preferred queue when it fits, else the first that does.
    assert_eq!(
        t.acd.agent_transfer_target("2003", "billing"),
        Ok("billing".into())
    );
    assert_eq!(
        t.acd.agent_transfer_target("2002", "billing"),
        Ok("general".into())
    );
    // 2001 idles longest, yet only 2002 rings for the call transferred to it.
    let routing = Routing {
        transferred: true,
        ..Routing::default()
    };
    let skill = agent_skill("2002");
    let out = t.enqueue_with(7, "general", &[skill.as_str()], 0, &routing);
    assert!(
        out.iter()
            .any(|o| matches!(o, AcdOut::Offer { call: 7, agent, .. } if agent == "2002")),
        "{out:?}"
    );
}

#[test]
fn a_kept_callback_stays_while_nobody_is_logged_in_and_is_offered_in_turn() {
    let mut t = T::new(
        &[("general", &[], None, Some(0))],
        &[("a", &[]), ("b", &[])],
    );
    t.register("a");
    t.away("a", true);
    t.enqueue(1, "general", &[], 0);
    t.advance(5 * S);
    t.enqueue(2, "general", &[], 0);
    assert!(t.acd.keep_callback(1));
    assert!(!t.acd.keep_callback(99));
    // The last agent leaves: the plain call goes, the kept callback keeps its place.
    let out = t.unregister("a");
    assert_eq!(out, vec![AcdOut::NoAgents { call: 2 }], "{out:?}");
    assert!(t.acd.contains(1));
    t.advance(60 * S);
    t.enqueue(3, "general", &[], 0);
    // An agent comes: the callback, first in line, is offered before the newer call.
    let out = t.register("b");
    assert!(
        out.iter()
            .any(|o| matches!(o, AcdOut::Offer { call: 1, agent, .. } if agent == "b")),
        "{out:?}"
    );
}

/// A new leader puts the waiting calls back in their order of arrival with their times: the
/// oldest is offered first, a higher priority still goes ahead, and the queue's longest
/// wait counts from the first arrival, not from the rebuild.
#[test]
fn restored_calls_keep_their_order_and_their_time() {
    let mut t = T::new(
        &[("general", &[], Some(15_000), Some(0))],
        &[("2001", &[]), ("2002", &[])],
    );
    t.register("2001");
    t.register("2002");
    t.away("2001", true);
    t.away("2002", true);
    let now = t.now;
    assert!(offers(&t.restore(7, "general", 0, now - 30 * S)).is_empty());
    assert!(offers(&t.restore(8, "general", 0, now - 20 * S)).is_empty());
    assert!(offers(&t.restore(9, "general", 5, now - 10 * S)).is_empty());
    assert_eq!(t.queue("general").waiting, 3);
    assert_eq!(t.queue("general").longest_wait_ms, 30 * S);
    assert_eq!(offers(&t.away("2001", false)), [(9, "2001".to_string())]);
    assert_eq!(offers(&t.away("2002", false)), [(7, "2002".to_string())]);
}

/// A new leader marks an agent talking: it is not offered a waiting call until the
/// conversation is over, then wraps up as after any call.
#[test]
fn an_agent_put_back_talking_is_offered_nothing_until_its_call_ends() {
    let mut t = T::new(
        &[("general", &[], Some(15_000), Some(5_000))],
        &[("2001", &[])],
    );
    t.register("2001");
    let out = t.feed(AcdInput::Talking {
        call: 42,
        agent: "2001".into(),
        queue: "general".into(),
    });
    assert!(out.is_empty());
    assert_eq!(t.state("2001"), AgentState::OnCall);
    assert_eq!(t.acd.agent_of(42), Some("2001"));
    assert!(offers(&t.enqueue(1, "general", &[], 0)).is_empty());
    t.over(42);
    assert_eq!(t.state("2001"), AgentState::WrapUp);
    assert_eq!(offers(&t.advance(5 * S)), [(1, "2001".to_string())]);
    // Unknown agents, queues, or an agent already busy: nothing changes.
    let busy = t.feed(AcdInput::Talking {
        call: 43,
        agent: "2001".into(),
        queue: "general".into(),
    });
    assert!(busy.is_empty());
    assert_eq!(t.acd.agent_of(43), None);
}

/// A new leader puts an agent back in wrap-up until the time the last leader gave it: no offer
/// before, the oldest waiting call at its end; an agent who asked to be away while on its call
/// is away after it. A wrap-up already over, or of an agent not logged in, changes nothing.
#[test]
fn an_agent_put_back_in_wrap_up_is_offered_nothing_until_it_ends() {
    let mut t = T::new(
        &[("general", &[], Some(15_000), Some(0))],
        &[("2001", &[]), ("2002", &[])],
    );
    t.register("2001");
    let until = t.now + 4 * S;
    assert!(
        t.feed(AcdInput::WrappingUp {
            agent: "2001".into(),
            until
        })
        .is_empty()
    );
    assert_eq!(t.state("2001"), AgentState::WrapUp);
    assert_eq!(t.acd.wrap_up_until("2001"), Some(until));
    assert!(offers(&t.enqueue(1, "general", &[], 0)).is_empty());
    assert!(offers(&t.advance(3 * S)).is_empty());
    assert_eq!(offers(&t.advance(S)), [(1, "2001".to_string())]);
    let past = t.now - S;
    assert!(
        t.feed(AcdInput::WrappingUp {
            agent: "2002".into(),
            until: past + 10 * S
        })
        .is_empty()
    );
    assert_eq!(t.state("2002"), AgentState::Offline);
    // Away asked on a call: kept through Talking, applied after the call.
    t.register("2002");
    t.away("2002", true);
    assert!(t.acd.wants_away("2002"));
    t.feed(AcdInput::Talking {
        call: 9,
        agent: "2002".into(),
        queue: "general".into(),
    });
    assert_eq!(t.state("2002"), AgentState::OnCall);
    t.over(9);
    assert_eq!(t.state("2002"), AgentState::Away);
}
