//! The exits of a node as labelled edges, shared by the graph exports (`graph.rs`: dot and
//! Mermaid) and the SVG drawing (`flow_svg.rs`).

use crate::program::{Body, Jump};

/// The edges of a node with a printable label, skipping duplicates of the same label and target.
pub(crate) fn labelled_edges(body: &Body) -> Vec<(String, Jump)> {
    let mut out: Vec<(String, Jump)> = Vec::new();
    for (label, edge) in body.edges() {
        if !out.iter().any(|(l, j)| *l == label && *j == edge.jump) {
            out.push((label, edge.jump));
        }
    }
    out
}
