//! Graph-wide checks on a lowered [`Program`]: loops that never wait for the caller, variables
//! read before they are assigned on some path (a must-be-assigned data-flow analysis), nodes no
//! path reaches, and menus with no way to an agent or a repeat.

use crate::program::{Body, Edge, Expr, ExprKind, Jump, NodeId, Op, Program, VarId};
use ivr_dsl::{Diagnostic, FileId, Related, Span};

/// A set of variables as a bit set.
#[derive(Clone, PartialEq, Eq, Debug)]
struct VarSet(Vec<u64>);

impl VarSet {
    fn empty(n: usize) -> Self {
        VarSet(vec![0; n.div_ceil(64)])
    }
    fn full(n: usize) -> Self {
        VarSet(vec![u64::MAX; n.div_ceil(64)])
    }
    fn insert(&mut self, v: VarId) {
        if let Some(w) = self.0.get_mut(v as usize / 64) {
            *w |= 1 << (v % 64);
        }
    }
    fn contains(&self, v: VarId) -> bool {
        self.0
            .get(v as usize / 64)
            .is_some_and(|w| w & (1 << (v % 64)) != 0)
    }
    /// Intersects in place; true when something changed.
    fn meet(&mut self, other: &VarSet) -> bool {
        let mut changed = false;
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            let n = *a & *b;
            changed |= n != *a;
            *a = n;
        }
        changed
    }
}

/// The node ids each node can jump to directly (`main` counts as the entry).
pub fn successors(program: &Program, id: NodeId) -> Vec<NodeId> {
    let mut out = Vec::new();
    if let Some(node) = program.nodes.get(id as usize) {
        for (_, e) in node.body.edges() {
            match e.jump {
                Jump::Node(n) => out.push(n),
                Jump::Main => out.push(program.entry),
                _ => {}
            }
        }
    }
    out
}

/// Nodes reachable from `roots` (following every edge).
pub fn reachable(program: &Program, roots: &[NodeId]) -> Vec<bool> {
    let mut seen = vec![false; program.nodes.len()];
    let mut stack: Vec<NodeId> = roots.to_vec();
    while let Some(n) = stack.pop() {
        let Some(s) = seen.get_mut(n as usize) else {
            continue;
        };
        if *s {
            continue;
        }
        *s = true;
        stack.extend(successors(program, n));
    }
    seen
}

/// Runs every graph check and appends its diagnostics. `files` maps [`crate::program::Node::file`]
/// to the file id of that source.
pub fn analyse(program: &Program, files: &[FileId], diags: &mut Vec<Diagnostic>) {
    endless_loops(program, files, diags);
    unassigned_reads(program, files, diags);
    menus_without_help(program, files, diags);
}

fn file_of(program: &Program, files: &[FileId], id: NodeId) -> FileId {
    program
        .nodes
        .get(id as usize)
        .and_then(|n| files.get(n.file as usize))
        .copied()
        .unwrap_or(FileId(0))
}

/// Cycles made only of nodes that do not wait for the caller (steps and lookups): the caller
/// could never leave them. Tarjan's strongly connected components over that subgraph.
fn endless_loops(program: &Program, files: &[FileId], diags: &mut Vec<Diagnostic>) {
    let n = program.nodes.len();
    let passive: Vec<bool> = program
        .nodes
        .iter()
        .map(|x| !x.body.waits_for_caller())
        .collect();
    let succ: Vec<Vec<NodeId>> = (0..n as NodeId)
        .map(|i| {
            if passive[i as usize] {
                successors(program, i)
                    .into_iter()
                    .filter(|s| passive.get(*s as usize).copied().unwrap_or(false))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    for scc in tarjan(&succ) {
        let is_cycle = scc.len() > 1 || succ[scc[0] as usize].contains(&scc[0]);
        if !is_cycle {
            continue;
        }
        let mut members = scc.clone();
        members.sort_unstable();
        if can_leave(program, &members) {
            continue;
        }
        let first = members[0];
        let path = cycle_path(&succ, first, &members)
            .iter()
            .map(|i| program.nodes[*i as usize].name.as_str())
            .collect::<Vec<_>>()
            .join(" → ");
        let file = file_of(program, files, first);
        let mut d = Diagnostic::error(
            "endless-loop",
            file,
            name_span(program, first),
            format!("these nodes loop forever without waiting for the caller: {path}"),
        )
        .with_hint("put a menu or input in the loop, or leave it by a condition the loop changes (a retry counter: `set tries = tries + 1`, `if tries >= 3 -> NODE`)");
        for m in members.iter().skip(1) {
            d.related.push(Related {
                file: file_of(program, files, *m),
                span: name_span(program, *m),
                message: format!("`{}` is part of the loop", program.nodes[*m as usize].name),
            });
        }
        diags.push(d);
    }
}

/// Whether a loop of steps and lookups can end by itself: some step in it has a way out of the
/// loop and decides between its ways with a condition that the loop changes (a retry counter
/// set in the loop, a row a lookup in the loop reads again, the clock). Otherwise every round
/// takes the same way and the loop never ends (a lookup's `error` way out is no plan for that).
fn can_leave(program: &Program, members: &[NodeId]) -> bool {
    let nv = program.vars.len();
    let mut changed = VarSet::empty(nv);
    for &m in members {
        match &program.nodes[m as usize].body {
            Body::Step { ops } => {
                for op in ops {
                    if let Op::Set { var, .. } = op {
                        changed.insert(*var);
                    }
                }
            }
            Body::Lookup(l) => {
                if let Some(v) = l.into {
                    changed.insert(v);
                }
            }
            _ => {}
        }
    }
    let leaves = |e: &Edge| match e.jump {
        Jump::Node(t) => !members.contains(&t),
        Jump::Main => !members.contains(&program.entry),
        Jump::Repeat => false,
        Jump::Back | Jump::Hangup => true,
    };
    let varies = |e: &Expr| {
        let mut v = false;
        e.walk(&mut |x| match &x.kind {
            ExprKind::Var { var } | ExprKind::Field { var, .. } => v |= changed.contains(*var),
            ExprKind::Now | ExprKind::InHours { .. } => v = true,
            _ => {}
        });
        v
    };
    members.iter().any(|&m| {
        let Body::Step { ops } = &program.nodes[m as usize].body else {
            return false;
        };
        let exits = ops.iter().any(|op| match op {
            Op::If { target, .. } | Op::Goto { target } => leaves(target),
            Op::Hangup { .. } => true,
            _ => false,
        });
        let decides = ops.iter().any(|op| match op {
            Op::If { condition, .. } => varies(condition),
            _ => false,
        });
        exits && decides
    })
}

/// One cycle through `start` within `members`, as node ids ending back at `start`.
fn cycle_path(succ: &[Vec<NodeId>], start: NodeId, members: &[NodeId]) -> Vec<NodeId> {
    // Breadth-first search back to start, staying inside the component.
    let mut prev: Vec<Option<NodeId>> = vec![None; succ.len()];
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(x) = queue.pop_front() {
        for &s in &succ[x as usize] {
            if !members.contains(&s) {
                continue;
            }
            if s == start {
                let mut path = vec![start];
                let mut cur = x;
                while cur != start {
                    path.push(cur);
                    cur = prev[cur as usize].unwrap_or(start);
                }
                path.push(start);
                let last = path.len() - 1;
                path[1..last].reverse();
                return path;
            }
            if prev[s as usize].is_none() {
                prev[s as usize] = Some(x);
                queue.push_back(s);
            }
        }
    }
    vec![start, start]
}

/// Strongly connected components, iteratively (no recursion on deep graphs).
fn tarjan(succ: &[Vec<NodeId>]) -> Vec<Vec<NodeId>> {
    let n = succ.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0usize;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if *i == 0 {
                index[v] = next;
                low[v] = next;
                next += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = succ[v].get(*i) {
                *i += 1;
                let w = w as usize;
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w as NodeId);
                    if w == v {
                        break;
                    }
                }
                out.push(comp);
            }
        }
    }
    out
}

fn name_span(program: &Program, id: NodeId) -> Span {
    program
        .nodes
        .get(id as usize)
        .map_or(Span::default(), |n| n.name_span)
}

/// What a node assigns on each way out, for the data-flow analysis.
fn transfer_out(program: &Program, id: NodeId, input: &VarSet) -> Vec<(Edge, VarSet)> {
    let node = &program.nodes[id as usize];
    let mut out = Vec::new();
    match &node.body {
        Body::Step { ops } => {
            let mut cur = input.clone();
            for op in ops {
                match op {
                    Op::Set { var, .. } => cur.insert(*var),
                    Op::If { target, .. } | Op::Goto { target } => out.push((*target, cur.clone())),
                    _ => {}
                }
            }
        }
        Body::Input(i) => {
            let mut with = input.clone();
            with.insert(i.into);
            out.push((i.next, with));
            out.push((i.collect.attempts_target, input.clone()));
        }
        Body::Lookup(l) => {
            let mut with = input.clone();
            if let Some(v) = l.into {
                with.insert(v);
            }
            out.push((l.found, with));
            out.push((l.missing, input.clone()));
            if let Some(e) = l.error {
                out.push((e, input.clone()));
            }
        }
        other => {
            for (_, e) in other.edges() {
                out.push((e, input.clone()));
            }
        }
    }
    out
}

/// Every variable read must be assigned on every path from the entry to the read. Forward
/// must-analysis: a node's "in" set is the intersection over its predecessors' "out" sets on
/// the edges into it. `back`, `repeat` and `main` are left out: they return to a node already
/// visited, where at most the variables assigned since then have been added.
fn unassigned_reads(program: &Program, files: &[FileId], diags: &mut Vec<Diagnostic>) {
    let n = program.nodes.len();
    if n == 0 {
        return;
    }
    let nv = program.vars.len();
    let mut ins: Vec<VarSet> = vec![VarSet::full(nv); n];
    let mut visited = vec![false; n];
    let entry = program.entry as usize;
    if entry >= n {
        return;
    }
    ins[entry] = VarSet::empty(nv);
    visited[entry] = true;
    let mut work = vec![program.entry];
    let mut queued = vec![false; n];
    queued[entry] = true;
    while let Some(id) = work.pop() {
        queued[id as usize] = false;
        let input = ins[id as usize].clone();
        for (edge, out) in transfer_out(program, id, &input) {
            if let Jump::Node(t) = edge.jump {
                let t = t as usize;
                let changed = if !visited[t] {
                    visited[t] = true;
                    ins[t] = out;
                    true
                } else {
                    ins[t].meet(&out)
                };
                if changed && !queued[t] {
                    queued[t] = true;
                    work.push(t as NodeId);
                }
            }
        }
    }
    // How each variable is assigned, to explain the paths that miss it.
    let mut by_lookup = VarSet::empty(nv);
    let mut by_input = VarSet::empty(nv);
    for node in &program.nodes {
        match &node.body {
            Body::Lookup(l) => {
                if let Some(v) = l.into {
                    by_lookup.insert(v);
                }
            }
            Body::Input(i) => by_input.insert(i.into),
            _ => {}
        }
    }
    // Second pass: check every read against the set in force where it happens.
    let mut reported: Vec<(VarId, Span)> = Vec::new();
    for (i, node) in program.nodes.iter().enumerate() {
        if !visited[i] {
            continue;
        }
        let file = files.get(node.file as usize).copied().unwrap_or(FileId(0));
        let mut check = |e: &Expr, set: &VarSet, diags: &mut Vec<Diagnostic>| {
            e.walk(&mut |x| {
                let var = match &x.kind {
                    ExprKind::Var { var } | ExprKind::Field { var, .. } => *var,
                    _ => return,
                };
                if set.contains(var) || reported.contains(&(var, x.span)) {
                    return;
                }
                reported.push((var, x.span));
                let name = &program.vars[var as usize].name;
                let why = if by_lookup.contains(var) {
                    " (a lookup assigns its `into` only on its `found` path)"
                } else if by_input.contains(var) {
                    " (an input assigns its `into` only on its `next` path, not when the attempts run out)"
                } else {
                    ""
                };
                diags.push(
                    Diagnostic::error(
                        "unassigned-variable",
                        file,
                        x.span,
                        format!("`{name}` may be read here before it is assigned"),
                    )
                    .with_hint(format!(
                        "on some path to node `{}`, nothing assigns `{name}` before this{why}",
                        node.name
                    )),
                );
            });
        };
        let input = &ins[i];
        match &node.body {
            Body::Step { ops } => {
                let mut cur = input.clone();
                for op in ops {
                    match op {
                        Op::Say { value, .. } => check(value, &cur, diags),
                        Op::Set { var, value } => {
                            check(value, &cur, diags);
                            cur.insert(*var);
                        }
                        Op::If { condition, .. } => check(condition, &cur, diags),
                        _ => {}
                    }
                }
            }
            Body::Menu(m) => {
                for k in &m.keys {
                    if let Some(g) = &k.guard {
                        check(g, input, diags);
                    }
                }
            }
            Body::Input(inp) => {
                if let Some(v) = &inp.valid {
                    let mut with = input.clone();
                    with.insert(inp.into);
                    check(v, &with, diags);
                }
            }
            Body::Lookup(l) => {
                for a in &l.args {
                    check(a, input, diags);
                }
            }
            Body::Transfer(t) => {
                for e in t
                    .priority
                    .iter()
                    .chain(t.priority_guard.iter())
                    .chain(t.attach.iter().map(|(_, e)| e))
                {
                    check(e, input, diags);
                }
            }
            Body::Survey(_) | Body::Record(_) => {}
        }
    }
}

/// A menu should let the caller reach an agent (a path to a transfer node) or hear it again.
fn menus_without_help(program: &Program, files: &[FileId], diags: &mut Vec<Diagnostic>) {
    // Nodes from which some transfer node can be reached: found backwards from the transfers,
    // in time linear in the size of the graph.
    let n = program.nodes.len();
    let succ: Vec<Vec<NodeId>> = (0..n as NodeId).map(|i| successors(program, i)).collect();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, targets) in succ.iter().enumerate() {
        for &t in targets {
            preds[t as usize].push(i);
        }
    }
    let mut leads_to_agent: Vec<bool> = program
        .nodes
        .iter()
        .map(|x| matches!(x.body, Body::Transfer(_)))
        .collect();
    let mut work: Vec<usize> = (0..n).filter(|&i| leads_to_agent[i]).collect();
    while let Some(t) = work.pop() {
        for &p in &preds[t] {
            if !leads_to_agent[p] {
                leads_to_agent[p] = true;
                work.push(p);
            }
        }
    }
    // Nodes that a menu leading to an agent reaches (in one step or more): from them, `back`
    // returns to such a menu.
    let after_agent_menu = {
        let roots: Vec<NodeId> = program
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, x)| matches!(x.body, Body::Menu(_)) && leads_to_agent[*j])
            .flat_map(|(j, _)| succ[j].iter().copied())
            .collect();
        reachable(program, &roots)
    };
    for (i, node) in program.nodes.iter().enumerate() {
        let Body::Menu(m) = &node.body else { continue };
        if leads_to_agent[i] {
            // Through one of its keys or its attempts target.
            continue;
        }
        let helps = |e: &Edge| match e.jump {
            Jump::Repeat => true,
            Jump::Node(t) => leads_to_agent[t as usize],
            Jump::Main => leads_to_agent[program.entry as usize],
            // The previous menu: some other menu before this one that leads to an agent.
            Jump::Back => after_agent_menu[i],
            Jump::Hangup => false,
        };
        if m.keys.iter().any(|k| helps(&k.target)) || helps(&m.collect.attempts_target) {
            continue;
        }
        diags.push(
            Diagnostic::warning(
                "no-help",
                file_of(program, files, i as NodeId),
                name_span(program, i as NodeId),
                format!(
                    "menu `{}` offers no way to an agent and no way to hear it again",
                    node.name
                ),
            )
            .with_hint("add e.g. `key 0 -> agent` or `key * -> repeat`"),
        );
    }
}
