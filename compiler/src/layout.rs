//! A layered (Sugiyama-style) layout of a directed graph, top to bottom, for drawing flows:
//!
//! 1. cycles are broken by reversing the edges a depth-first search from the root finds
//!    going back up its stack;
//! 2. nodes are put on layers by the longest path from the sources;
//! 3. every edge gets a chain of dummy vertices, one per row it crosses: a node's row, then a
//!    row of edge labels (the dummy next to the edge's source holds its label, so labels
//!    never overlap one another or a node), then the next node row, ...; an edge spanning
//!    more than [`MAX_SPAN`] layers is not routed but ends in a stub (a small box just below
//!    its source, where the drawing says where it goes): long edges stay few dummies;
//! 4. each row is ordered by barycenters, sweeping down and up, keeping the order with the
//!    fewest crossings (counted with a Fenwick tree);
//! 5. x positions: each row in turn is placed as near as its neighbours' mean as the
//!    separations allow (an isotonic regression solved by pooling adjacent violators).
//!
//! Sizes are in the caller's units (pixels for SVG). Everything is bounded by the input:
//! vertices ≤ nodes + edges × (2 × [`MAX_SPAN`]).

/// Edges spanning more layers than this end in a stub instead of being routed.
pub const MAX_SPAN: usize = 6;
/// Horizontal space between neighbours in a row.
const GAP: f64 = 28.0;
/// Horizontal space next to dummies.
const DUMMY_GAP: f64 = 10.0;
/// Width of an edge's dummy without a label.
const DUMMY_WIDTH: f64 = 6.0;
/// Vertical space between rows.
const ROW_GAP: f64 = 14.0;
/// Ordering sweeps (each one down and one up).
const SWEEPS: usize = 6;
/// Placement sweeps.
const PLACE_SWEEPS: usize = 8;
/// Room around the drawing.
pub const MARGIN: f64 = 16.0;

/// An edge to lay out.
#[derive(Debug, Clone, PartialEq)]
pub struct InEdge {
    /// Source node.
    pub from: usize,
    /// Target node.
    pub to: usize,
    /// Size of its label (width, height); (0, 0) for none.
    pub label: (f64, f64),
    /// Size of the stub it ends in if it is too long to route (or a loop).
    pub stub: (f64, f64),
}

/// Where an edge goes in the drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The points from the source's border to the target's (or the stub's), in order.
    pub points: Vec<(f64, f64)>,
    /// The label's top-left corner.
    pub label: (f64, f64),
    /// The stub's centre, when the edge ends in one.
    pub stub: Option<(f64, f64)>,
}

/// A finished layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Each node's centre.
    pub nodes: Vec<(f64, f64)>,
    /// Each edge's route, in the order of the input.
    pub edges: Vec<Route>,
    /// Size of the whole drawing, margins included.
    pub width: f64,
    /// Height of the whole drawing.
    pub height: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Node,
    Label,
    Dummy,
    Stub,
}

struct Vertex {
    kind: Kind,
    w: f64,
    h: f64,
    rank: usize,
    x: f64,
    y: f64,
}

/// Lays out `sizes.len()` nodes (each (width, height)) with `edges`, starting from `root`.
pub fn layout(sizes: &[(f64, f64)], edges: &[InEdge], root: usize) -> Layout {
    let n = sizes.len();
    if n == 0 {
        return Layout {
            nodes: Vec::new(),
            edges: Vec::new(),
            width: 2.0 * MARGIN,
            height: 2.0 * MARGIN,
        };
    }
    let reversed = back_edges(n, edges, root);
    let layer = layers(n, edges, &reversed);

    // Vertices: the nodes, then per edge its dummies or its stub.
    let mut vs: Vec<Vertex> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| Vertex {
            kind: Kind::Node,
            w,
            h,
            rank: 2 * layer[i],
            x: 0.0,
            y: 0.0,
        })
        .collect();
    // Each edge's chain of vertices from its upper end to its lower end; whether it is drawn
    // upwards; the index of its label vertex in the chain.
    let mut chains: Vec<(Vec<usize>, bool, usize, bool)> = Vec::with_capacity(edges.len());
    for (i, e) in edges.iter().enumerate() {
        let (a, b) = if reversed[i] {
            (e.to, e.from)
        } else {
            (e.from, e.to)
        };
        let span = layer[b].saturating_sub(layer[a]);
        let too_long = e.from == e.to || span == 0 || span > MAX_SPAN;
        if too_long {
            // Label row, then the stub in the next node row, below the source.
            let r = vs[e.from].rank;
            let label = vs.len();
            vs.push(Vertex {
                kind: Kind::Label,
                w: e.label.0 + 8.0,
                h: e.label.1,
                rank: r + 1,
                x: 0.0,
                y: 0.0,
            });
            let stub = vs.len();
            vs.push(Vertex {
                kind: Kind::Stub,
                w: e.stub.0,
                h: e.stub.1,
                rank: r + 2,
                x: 0.0,
                y: 0.0,
            });
            chains.push((vec![e.from, label, stub], false, 1, true));
            continue;
        }
        let (ra, rb) = (vs[a].rank, vs[b].rank);
        let mut chain = vec![a];
        let label_rank = if reversed[i] { rb - 1 } else { ra + 1 };
        let mut label_at = 1;
        for r in ra + 1..rb {
            let is_label = r == label_rank;
            if is_label {
                label_at = chain.len();
            }
            chain.push(vs.len());
            vs.push(Vertex {
                kind: if is_label { Kind::Label } else { Kind::Dummy },
                w: if is_label {
                    e.label.0 + 8.0
                } else {
                    DUMMY_WIDTH
                },
                h: if is_label { e.label.1 } else { 0.0 },
                rank: r,
                x: 0.0,
                y: 0.0,
            });
        }
        chain.push(b);
        chains.push((chain, reversed[i], label_at, false));
    }

    // Adjacency between consecutive rows.
    let total = vs.len();
    let mut down: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut up: Vec<Vec<usize>> = vec![Vec::new(); total];
    for (chain, ..) in &chains {
        for w in chain.windows(2) {
            down[w[0]].push(w[1]);
            up[w[1]].push(w[0]);
        }
    }
    let ranks = vs.iter().map(|v| v.rank).max().unwrap_or(0) + 1;
    let mut rows = initial_order(&vs, &down, root, ranks);
    order(&mut rows, &down, &up, total);
    place_x(&mut vs, &rows, &down, &up);
    place_y(&mut vs, &rows);

    let width = vs.iter().map(|v| v.x + v.w / 2.0).fold(0.0, f64::max) + MARGIN;
    let height = vs.iter().map(|v| v.y + v.h / 2.0).fold(0.0, f64::max) + MARGIN;

    let routes = chains
        .iter()
        .map(|(chain, upwards, label_at, stub)| route(&vs, chain, *upwards, *label_at, *stub))
        .collect();
    Layout {
        nodes: vs[..n].iter().map(|v| (v.x, v.y)).collect(),
        edges: routes,
        width,
        height,
    }
}

/// The points of one edge, its label's corner and its stub.
fn route(vs: &[Vertex], chain: &[usize], upwards: bool, label_at: usize, stub: bool) -> Route {
    let mut points = Vec::with_capacity(chain.len());
    let last = chain.len() - 1;
    for (k, &v) in chain.iter().enumerate() {
        let vx = &vs[v];
        let p = match vx.kind {
            Kind::Node | Kind::Stub if k == 0 => (vx.x, vx.y + vx.h / 2.0),
            Kind::Node | Kind::Stub if k == last => (vx.x, vx.y - vx.h / 2.0),
            Kind::Node | Kind::Stub => (vx.x, vx.y),
            // The line runs along the left of a label's box, the text to its right.
            Kind::Label => (vx.x - vx.w / 2.0 + 2.0, vx.y),
            Kind::Dummy => (vx.x, vx.y),
        };
        points.push(p);
    }
    let l = &vs[chain[label_at]];
    let label = (l.x - l.w / 2.0 + 6.0, l.y - l.h / 2.0);
    if upwards {
        points.reverse();
    }
    let stub = stub.then(|| {
        let s = &vs[chain[last]];
        (s.x, s.y)
    });
    Route {
        points,
        label,
        stub,
    }
}

/// Which edges a depth-first search from `root` (then from every node not yet seen) finds
/// closing a cycle: they are laid out reversed.
fn back_edges(n: usize, edges: &[InEdge], root: usize) -> Vec<bool> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, e) in edges.iter().enumerate() {
        if e.from < n && e.to < n {
            out[e.from].push(i);
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut reversed = vec![false; edges.len()];
    let starts = std::iter::once(root.min(n - 1)).chain(0..n);
    for s in starts {
        if mark[s] != Mark::New {
            continue;
        }
        // Iterative: (node, next edge index).
        let mut stack: Vec<(usize, usize)> = vec![(s, 0)];
        mark[s] = Mark::OnStack;
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            if let Some(&ei) = out[v].get(*k) {
                *k += 1;
                let t = edges[ei].to;
                match mark[t] {
                    Mark::New => {
                        mark[t] = Mark::OnStack;
                        stack.push((t, 0));
                    }
                    Mark::OnStack => reversed[ei] = true,
                    Mark::Done => {}
                }
            } else {
                mark[v] = Mark::Done;
                stack.pop();
            }
        }
    }
    reversed
}

/// Each node's layer: the longest path to it from a source of the graph without its back
/// edges (self loops left out).
fn layers(n: usize, edges: &[InEdge], reversed: &[bool]) -> Vec<usize> {
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for (i, e) in edges.iter().enumerate() {
        if e.from == e.to || e.from >= n || e.to >= n {
            continue;
        }
        let (a, b) = if reversed[i] {
            (e.to, e.from)
        } else {
            (e.from, e.to)
        };
        succ[a].push(b);
        indeg[b] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut ready: Vec<usize> = (0..n).filter(|&v| indeg[v] == 0).collect();
    while let Some(v) = ready.pop() {
        for &t in &succ[v] {
            layer[t] = layer[t].max(layer[v] + 1);
            indeg[t] -= 1;
            if indeg[t] == 0 {
                ready.push(t);
            }
        }
    }
    layer
}

/// Rows in the order a depth-first walk down from the root meets their vertices.
fn initial_order(vs: &[Vertex], down: &[Vec<usize>], root: usize, ranks: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); ranks];
    let mut seen = vec![false; vs.len()];
    let starts = std::iter::once(root.min(vs.len() - 1)).chain(0..vs.len());
    for s in starts {
        if seen[s] {
            continue;
        }
        let mut stack = vec![s];
        seen[s] = true;
        while let Some(v) = stack.pop() {
            rows[vs[v].rank].push(v);
            for &t in down[v].iter().rev() {
                if !seen[t] {
                    seen[t] = true;
                    stack.push(t);
                }
            }
        }
    }
    rows
}

/// Crossings between two consecutive rows.
fn crossings(upper: &[usize], lower: &[usize], down: &[Vec<usize>], pos: &[usize]) -> u64 {
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    for &u in upper {
        for &v in &down[u] {
            pairs.push((pos[u], pos[v]));
        }
    }
    pairs.sort_unstable();
    // Count pairs (i < j) with lower[i] > lower[j]: a Fenwick tree over lower positions.
    let m = lower.len() + 1;
    let mut tree = vec![0u64; m + 1];
    let mut count = 0u64;
    for (seen, &(_, p)) in pairs.iter().enumerate() {
        // How many seen so far are ≤ p.
        let mut i = p + 1;
        let mut le = 0u64;
        while i > 0 {
            le += tree[i];
            i &= i - 1;
        }
        count += seen as u64 - le;
        let mut i = p + 1;
        while i <= m {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    count
}

fn total_crossings(rows: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize]) -> u64 {
    rows.windows(2)
        .map(|w| crossings(&w[0], &w[1], down, pos))
        .sum()
}

fn positions(rows: &[Vec<usize>], pos: &mut [usize]) {
    for row in rows {
        for (i, &v) in row.iter().enumerate() {
            pos[v] = i;
        }
    }
}

/// Barycenter sweeps, keeping the best order seen.
fn order(rows: &mut [Vec<usize>], down: &[Vec<usize>], up: &[Vec<usize>], total: usize) {
    let mut pos = vec![0usize; total];
    positions(rows, &mut pos);
    let mut best = rows.to_vec();
    let mut best_count = total_crossings(rows, down, &pos);
    for _ in 0..SWEEPS {
        if best_count == 0 {
            break;
        }
        for row in rows.iter_mut().skip(1) {
            sort_row(row, up, &mut pos);
        }
        let below = rows.len().saturating_sub(1);
        for row in rows[..below].iter_mut().rev() {
            sort_row(row, down, &mut pos);
        }
        let c = total_crossings(rows, down, &pos);
        if c < best_count {
            best_count = c;
            best = rows.to_vec();
        }
    }
    rows.clone_from_slice(&best);
}

/// Sorts a row by the mean position of each vertex's neighbours in `adj` (vertices without
/// any keep their place), then renumbers it.
fn sort_row(row: &mut [usize], adj: &[Vec<usize>], pos: &mut [usize]) {
    let mut keyed: Vec<(f64, usize, usize)> = row
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ns = &adj[v];
            let key = if ns.is_empty() {
                i as f64
            } else {
                ns.iter().map(|&u| pos[u] as f64).sum::<f64>() / ns.len() as f64
            };
            (key, i, v)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (i, (_, _, v)) in keyed.into_iter().enumerate() {
        row[i] = v;
        pos[v] = i;
    }
}

fn separation(a: &Vertex, b: &Vertex) -> f64 {
    let gap = if a.kind == Kind::Node && b.kind == Kind::Node {
        GAP
    } else {
        DUMMY_GAP
    };
    (a.w + b.w) / 2.0 + gap
}

fn weight(v: &Vertex) -> f64 {
    match v.kind {
        Kind::Node | Kind::Stub => 1.0,
        Kind::Label => 2.0,
        Kind::Dummy => 4.0,
    }
}

/// x positions: packed, then sweeps pulling each row towards its neighbours.
fn place_x(vs: &mut [Vertex], rows: &[Vec<usize>], down: &[Vec<usize>], up: &[Vec<usize>]) {
    for row in rows {
        let mut x = 0.0;
        for (i, &v) in row.iter().enumerate() {
            if i > 0 {
                x += separation(&vs[row[i - 1]], &vs[v]);
            }
            vs[v].x = x;
        }
    }
    for sweep in 0..PLACE_SWEEPS {
        let both = sweep >= PLACE_SWEEPS / 2;
        let order: Vec<usize> = if sweep % 2 == 0 {
            (0..rows.len()).collect()
        } else {
            (0..rows.len()).rev().collect()
        };
        for r in order {
            let row = &rows[r];
            if row.is_empty() {
                continue;
            }
            let targets: Vec<f64> = row
                .iter()
                .map(|&v| {
                    let mut ns: Vec<usize> = Vec::new();
                    if both || sweep % 2 == 0 {
                        ns.extend(&up[v]);
                    }
                    if both || sweep % 2 == 1 {
                        ns.extend(&down[v]);
                    }
                    if ns.is_empty() {
                        vs[v].x
                    } else {
                        ns.iter().map(|&u| vs[u].x).sum::<f64>() / ns.len() as f64
                    }
                })
                .collect();
            let weights: Vec<f64> = row.iter().map(|&v| weight(&vs[v])).collect();
            let seps: Vec<f64> = row
                .windows(2)
                .map(|w| separation(&vs[w[0]], &vs[w[1]]))
                .collect();
            let xs = constrained_fit(&targets, &weights, &seps);
            for (&v, x) in row.iter().zip(xs) {
                vs[v].x = x;
            }
        }
    }
    let min = vs
        .iter()
        .map(|v| v.x - v.w / 2.0)
        .fold(f64::INFINITY, f64::min);
    for v in vs.iter_mut() {
        v.x += MARGIN - min;
    }
}

/// The x positions nearest (weighted least squares) to `targets` with `x[i+1] - x[i] ≥
/// seps[i]`: with offsets c (c[0] = 0, c[i+1] = c[i] + seps[i]) and y = x − c the constraint
/// is y non-decreasing, an isotonic regression of `targets − c`, solved by pooling adjacent
/// violators.
pub fn constrained_fit(targets: &[f64], weights: &[f64], seps: &[f64]) -> Vec<f64> {
    let n = targets.len();
    let mut c = vec![0.0; n];
    for i in 1..n {
        c[i] = c[i - 1] + seps[i - 1];
    }
    // Blocks: (mean, weight, count).
    let mut blocks: Vec<(f64, f64, usize)> = Vec::with_capacity(n);
    for i in 0..n {
        let mut b = (targets[i] - c[i], weights[i], 1usize);
        while let Some(&last) = blocks.last() {
            if last.0 <= b.0 {
                break;
            }
            blocks.pop();
            let w = last.1 + b.1;
            b = ((last.0 * last.1 + b.0 * b.1) / w, w, last.2 + b.2);
        }
        blocks.push(b);
    }
    let mut out = Vec::with_capacity(n);
    for (mean, _, count) in blocks {
        for _ in 0..count {
            let i = out.len();
            out.push(mean + c[i]);
        }
    }
    out
}

/// y positions: each row as high as its tallest vertex, rows [`ROW_GAP`] apart.
fn place_y(vs: &mut [Vertex], rows: &[Vec<usize>]) {
    let mut y = MARGIN;
    for row in rows {
        let h = row.iter().map(|&v| vs[v].h).fold(0.0, f64::max);
        for &v in row {
            vs[v].y = y + h / 2.0;
        }
        y += h + ROW_GAP;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: usize, to: usize) -> InEdge {
        InEdge {
            from,
            to,
            label: (30.0, 12.0),
            stub: (40.0, 16.0),
        }
    }

    fn overlaps(l: &Layout, sizes: &[(f64, f64)]) -> bool {
        for i in 0..sizes.len() {
            for j in i + 1..sizes.len() {
                let (a, b) = (l.nodes[i], l.nodes[j]);
                let dx = (a.0 - b.0).abs() * 2.0;
                let dy = (a.1 - b.1).abs() * 2.0;
                if dx < sizes[i].0 + sizes[j].0 && dy < sizes[i].1 + sizes[j].1 {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn a_tree_goes_down_without_overlaps() {
        let sizes = vec![(80.0, 40.0); 5];
        let edges = vec![edge(0, 1), edge(0, 2), edge(1, 3), edge(2, 4)];
        let l = layout(&sizes, &edges, 0);
        assert!(l.nodes[1].1 > l.nodes[0].1);
        assert!(l.nodes[3].1 > l.nodes[1].1);
        assert!(!overlaps(&l, &sizes));
        for (r, e) in l.edges.iter().zip(&edges) {
            let first = r.points[0];
            let last = *r.points.last().expect("points");
            assert!((first.0 - l.nodes[e.from].0).abs() < 1e-6);
            assert!((last.0 - l.nodes[e.to].0).abs() < 1e-6);
            assert!(r.stub.is_none());
        }
    }

    #[test]
    fn cycles_and_loops_are_laid_out() {
        let sizes = vec![(60.0, 30.0); 3];
        let edges = vec![edge(0, 1), edge(1, 2), edge(2, 0), edge(1, 1)];
        let l = layout(&sizes, &edges, 0);
        // The back edge is drawn from 2 up to 0.
        let back = &l.edges[2];
        assert!(back.points[0].1 > back.points.last().expect("points").1);
        // The loop ends in a stub below its node.
        let stub = l.edges[3].stub.expect("a stub");
        assert!(stub.1 > l.nodes[1].1);
        assert!(!overlaps(&l, &sizes));
    }

    #[test]
    fn long_edges_end_in_stubs() {
        let n = MAX_SPAN + 3;
        let sizes = vec![(50.0, 30.0); n];
        let mut edges: Vec<InEdge> = (0..n - 1).map(|i| edge(i, i + 1)).collect();
        edges.push(edge(0, n - 1));
        let l = layout(&sizes, &edges, 0);
        assert!(l.edges[n - 1].stub.is_some());
        assert!(l.edges[0].stub.is_none());
    }

    #[test]
    fn the_fit_keeps_separations() {
        let xs = constrained_fit(&[0.0, 0.0, 0.0], &[1.0, 1.0, 1.0], &[10.0, 10.0]);
        assert_eq!(xs, vec![-10.0, 0.0, 10.0]);
        let xs = constrained_fit(&[0.0, 100.0], &[1.0, 1.0], &[10.0]);
        assert_eq!(xs, vec![0.0, 100.0]);
    }

    #[test]
    fn crossings_are_counted() {
        // Upper a b, lower c d with a–d and b–c: one crossing.
        let down = vec![vec![3], vec![2], vec![], vec![]];
        let pos = vec![0, 1, 0, 1];
        assert_eq!(crossings(&[0, 1], &[2, 3], &down, &pos), 1);
        let down = vec![vec![2], vec![3], vec![], vec![]];
        assert_eq!(crossings(&[0, 1], &[2, 3], &down, &pos), 0);
    }
}
