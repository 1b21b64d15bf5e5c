//! Every name written in a flow, with what it names: the index that definition, references,
//! rename, hover and completion look things up in.

use ivr_dsl::Span;
use ivr_dsl::ast::{
    Attempts, Destination, Expr, ExprKind, FlowFile, Ident, Node, NodeBody, StatementKind, Target,
    TargetKind,
};

/// What a name names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A node of this flow.
    Node,
    /// A node of an imported flow (`common.goodbye`: the `goodbye` part).
    ImportedNode {
        /// The imported flow.
        flow: String,
    },
    /// A flow: an `import` line, the `common` of `common.goodbye`, the header's name.
    Flow,
    /// A prompt id of the catalogs.
    Prompt,
    /// A query of `[queries.*]`.
    Query,
    /// A queue of `[queues.*]`.
    Queue,
    /// A variable.
    Var,
    /// A field of a variable (`customer.balance`: `balance`).
    Field {
        /// The variable.
        var: String,
    },
    /// A function of expressions (`len`, `in_hours`, `now`).
    Function,
}

/// One name as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// What it names.
    pub kind: Kind,
    /// The name.
    pub name: String,
    /// Where.
    pub span: Span,
    /// Whether this is where it is defined (a node's head, a variable's assignment).
    pub decl: bool,
}

/// A lookup's `into` variable and its query (for the fields a flow may read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntoQuery {
    /// The variable.
    pub var: String,
    /// The query.
    pub query: String,
}

/// The names of one file.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// In the order met.
    pub occurrences: Vec<Occurrence>,
    /// Lookups' `into` variables.
    pub intos: Vec<IntoQuery>,
}

impl Index {
    /// Indexes a syntax tree.
    pub fn new(flow: &FlowFile) -> Index {
        let mut ix = Index::default();
        if let Some(h) = &flow.header {
            ix.push(Kind::Flow, &h.name, true);
            if let Some(entry) = &h.entry {
                ix.push(Kind::Node, entry, false);
            }
        }
        for import in &flow.imports {
            ix.push(Kind::Flow, import, false);
        }
        for node in &flow.nodes {
            ix.node(node);
        }
        ix
    }

    /// The occurrence at byte `offset` (its end included, so that a cursor after a name finds it).
    pub fn at(&self, offset: usize) -> Option<&Occurrence> {
        let o = offset as u32;
        self.occurrences
            .iter()
            .find(|x| x.span.start <= o && o < x.span.end)
            .or_else(|| self.occurrences.iter().find(|x| x.span.end == o))
    }

    fn push(&mut self, kind: Kind, id: &Ident, decl: bool) {
        self.occurrences.push(Occurrence {
            kind,
            name: id.name.clone(),
            span: id.span,
            decl,
        });
    }

    fn prompts(&mut self, ids: Option<&Vec<Ident>>) {
        for id in ids.into_iter().flatten() {
            self.push(Kind::Prompt, id, false);
        }
    }

    fn target(&mut self, target: Option<&Target>) {
        let Some(t) = target else { return };
        match &t.kind {
            TargetKind::Node(name) => self.occurrences.push(Occurrence {
                kind: Kind::Node,
                name: name.clone(),
                span: t.span,
                decl: false,
            }),
            TargetKind::Imported { flow, node } => {
                let dot = t.span.start + flow.len() as u32;
                self.occurrences.push(Occurrence {
                    kind: Kind::Flow,
                    name: flow.clone(),
                    span: Span::new(t.span.start as usize, dot as usize),
                    decl: false,
                });
                self.occurrences.push(Occurrence {
                    kind: Kind::ImportedNode { flow: flow.clone() },
                    name: node.clone(),
                    span: Span::new(dot as usize + 1, t.span.end as usize),
                    decl: false,
                });
            }
            _ => {}
        }
    }

    fn attempts(&mut self, a: Option<&Attempts>) {
        self.target(a.and_then(|a| a.target.as_ref()));
    }

    fn expr(&mut self, e: &Expr) {
        match &e.kind {
            ExprKind::Path(parts) => {
                if let Some((first, fields)) = parts.split_first() {
                    self.push(Kind::Var, first, false);
                    for f in fields {
                        self.push(
                            Kind::Field {
                                var: first.name.clone(),
                            },
                            f,
                            false,
                        );
                    }
                }
            }
            ExprKind::Call { name, args } => {
                self.push(Kind::Function, name, false);
                args.iter().for_each(|a| self.expr(a));
            }
            ExprKind::Unary { operand, .. } => self.expr(operand),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            _ => {}
        }
    }

    fn node(&mut self, node: &Node) {
        self.push(Kind::Node, &node.name, true);
        match &node.body {
            NodeBody::Step(s) => {
                for st in &s.statements {
                    match &st.kind {
                        StatementKind::Play { prompts } => self.prompts(Some(prompts)),
                        StatementKind::Say { value, .. } => self.expr(value),
                        StatementKind::Set { name, value } => {
                            self.expr(value);
                            self.push(Kind::Var, name, true);
                        }
                        StatementKind::If { condition, target } => {
                            self.expr(condition);
                            self.target(Some(target));
                        }
                        StatementKind::Goto { target } => self.target(Some(target)),
                        _ => {}
                    }
                }
            }
            NodeBody::Menu(m) => {
                self.prompts(m.prompt.as_ref());
                self.attempts(m.attempts.as_ref());
                self.prompts(m.no_input.as_ref());
                self.prompts(m.no_match.as_ref());
                for k in &m.keys {
                    self.target(Some(&k.target));
                    if let Some(g) = &k.guard {
                        self.expr(g);
                    }
                }
            }
            NodeBody::Input(i) => {
                self.prompts(i.prompt.as_ref());
                self.attempts(i.attempts.as_ref());
                self.prompts(i.no_input.as_ref());
                self.prompts(i.no_match.as_ref());
                if let Some(into) = &i.into {
                    self.push(Kind::Var, into, true);
                }
                if let Some(v) = &i.valid {
                    self.expr(v);
                }
                self.target(i.next.as_ref());
            }
            NodeBody::Lookup(l) => {
                if let Some(q) = &l.query {
                    self.push(Kind::Query, &q.name, false);
                    q.args.iter().for_each(|a| self.expr(a));
                    if let Some(into) = &q.into {
                        self.push(Kind::Var, into, true);
                        self.intos.push(IntoQuery {
                            var: into.name.clone(),
                            query: q.name.name.clone(),
                        });
                    }
                }
                self.target(l.found.as_ref());
                self.target(l.missing.as_ref());
                self.target(l.error.as_ref());
            }
            NodeBody::Transfer(t) => {
                if let Some(Destination::Queue { name }) = &t.destination {
                    self.push(Kind::Queue, name, false);
                }
                if let Some(p) = &t.priority {
                    self.expr(&p.value);
                    if let Some(g) = &p.guard {
                        self.expr(g);
                    }
                }
                t.attach.iter().for_each(|a| self.expr(a));
                self.prompts(t.music.as_ref());
                self.target(t.max_wait.as_ref().map(|m| &m.target));
                self.target(t.no_agents.as_ref());
                self.target(t.after.as_ref());
                self.target(t.callback.as_ref().map(|c| &c.target));
            }
            NodeBody::Survey(s) => {
                for q in &s.questions {
                    self.push(Kind::Prompt, &q.prompt, false);
                }
                self.attempts(s.attempts.as_ref());
                self.prompts(s.no_input.as_ref());
                self.prompts(s.no_match.as_ref());
                self.target(s.next.as_ref());
            }
            NodeBody::Record(r) => {
                self.prompts(r.prompt.as_ref());
                self.target(r.next.as_ref());
            }
        }
    }
}

/// A node's exits as written: `key 1 -> bill`, `found -> known`, `goto main_menu`.
pub fn exits(node: &Node) -> Vec<String> {
    fn t(target: &Target) -> String {
        match &target.kind {
            TargetKind::Node(n) => n.clone(),
            TargetKind::Imported { flow, node } => format!("{flow}.{node}"),
            TargetKind::Repeat => "repeat".into(),
            TargetKind::Back => "back".into(),
            TargetKind::Main => "main".into(),
            TargetKind::Hangup => "hangup".into(),
        }
    }
    let mut out = Vec::new();
    let mut add = |label: &str, target: Option<&Target>| match target {
        Some(target) => out.push(format!("{label} -> {}", t(target))),
        None if label == "hangup" => out.push(label.to_string()),
        None => {}
    };
    let attempts = |a: &Option<Attempts>| a.as_ref().and_then(|a| a.target.clone());
    match &node.body {
        NodeBody::Step(s) => {
            for st in &s.statements {
                match &st.kind {
                    StatementKind::If { target, .. } => add("if", Some(target)),
                    StatementKind::Goto { target } => add("goto", Some(target)),
                    StatementKind::Hangup => add("hangup", None),
                    _ => {}
                }
            }
        }
        NodeBody::Menu(m) => {
            for k in &m.keys {
                add(&format!("key {}", k.key.text), Some(&k.target));
            }
            add("attempts", attempts(&m.attempts).as_ref());
        }
        NodeBody::Input(i) => {
            add("next", i.next.as_ref());
            add("attempts", attempts(&i.attempts).as_ref());
        }
        NodeBody::Lookup(l) => {
            add("found", l.found.as_ref());
            add("missing", l.missing.as_ref());
            add("error", l.error.as_ref());
        }
        NodeBody::Transfer(t) => {
            add("max_wait", t.max_wait.as_ref().map(|m| &m.target));
            add("no_agents", t.no_agents.as_ref());
            add("after", t.after.as_ref());
            add("callback", t.callback.as_ref().map(|c| &c.target));
        }
        NodeBody::Survey(s) => {
            add("next", s.next.as_ref());
            add("attempts", attempts(&s.attempts).as_ref());
        }
        NodeBody::Record(r) => add("next", r.next.as_ref()),
    }
    out
}
