//! Scenario coverage: which nodes, menu keys and lookup outcomes of a flow some scenario
//! reached.

use crate::Exit;
use ivr_compiler::program::{Body, NodeId, Program};
use std::fmt::Write;

/// One thing a scenario can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A node was entered.
    Node(NodeId),
    /// A menu was left by a key.
    Key(NodeId, char),
    /// A lookup was left by an outcome (`Found`, `Missing` or `Error`).
    Outcome(NodeId, Exit),
}

/// What the scenarios of one flow reached.
#[derive(Debug, Clone)]
pub struct FlowCoverage {
    targets: Vec<(Target, bool)>,
}

impl FlowCoverage {
    /// Every node, menu key and lookup outcome of `program`, none reached yet. Nodes of an
    /// imported flow count only when the flow can reach them: the entry of `common`, say, is
    /// reached by calls routed to `common` itself, never through a flow that imports it.
    pub fn new(program: &Program) -> FlowCoverage {
        let mut targets = Vec::new();
        let reachable = ivr_compiler::analysis::reachable(program, &[program.entry]);
        for (i, node) in program.nodes.iter().enumerate() {
            let id = i as NodeId;
            if node.file != 0 && !reachable.get(i).copied().unwrap_or(true) {
                continue;
            }
            targets.push((Target::Node(id), false));
            match &node.body {
                Body::Menu(m) => {
                    for k in &m.keys {
                        targets.push((Target::Key(id, k.key), false));
                    }
                }
                Body::Lookup(l) => {
                    targets.push((Target::Outcome(id, Exit::Found), false));
                    targets.push((Target::Outcome(id, Exit::Missing), false));
                    if l.error.is_some() {
                        targets.push((Target::Outcome(id, Exit::Error), false));
                    }
                }
                _ => {}
            }
        }
        FlowCoverage { targets }
    }

    /// Marks what one call reached: its node visits and how it left each.
    pub fn record(&mut self, visits: &[(NodeId, Option<Exit>)]) {
        for (node, exit) in visits {
            self.mark(&Target::Node(*node));
            match exit {
                Some(Exit::Key(c)) => self.mark(&Target::Key(*node, *c)),
                Some(e @ (Exit::Found | Exit::Missing | Exit::Error)) => {
                    self.mark(&Target::Outcome(*node, *e))
                }
                _ => {}
            }
        }
    }

    fn mark(&mut self, t: &Target) {
        if let Some(entry) = self.targets.iter_mut().find(|(x, _)| x == t) {
            entry.1 = true;
        }
    }

    /// Reached and total counts.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.targets.iter().filter(|(_, r)| *r).count(),
            self.targets.len(),
        )
    }

    /// The share reached, in percent.
    pub fn percent(&self) -> f64 {
        let (r, t) = self.counts();
        if t == 0 {
            100.0
        } else {
            r as f64 * 100.0 / t as f64
        }
    }

    /// What no scenario reached, described for people.
    pub fn unreached(&self, program: &Program) -> Vec<String> {
        let name = |n: NodeId| {
            program
                .nodes
                .get(n as usize)
                .map_or("?", |x| x.name.as_str())
        };
        self.targets
            .iter()
            .filter(|(_, r)| !r)
            .map(|(t, _)| match t {
                Target::Node(n) => format!("node {}", name(*n)),
                Target::Key(n, c) => format!("menu {} key {c}", name(*n)),
                Target::Outcome(n, e) => format!("lookup {} {}", name(*n), e.label()),
            })
            .collect()
    }

    /// A report block: `flow: 97.5% (39/40)` and the unreached items.
    pub fn report(&self, program: &Program) -> String {
        let (r, t) = self.counts();
        let mut s = format!("{}: {:.1}% ({r}/{t})\n", program.name, self.percent());
        for u in self.unreached(program) {
            let _ = writeln!(s, "  not reached: {u}");
        }
        s
    }
}
