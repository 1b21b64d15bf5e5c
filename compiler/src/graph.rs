//! A compiled flow as a graph for review and documentation: Graphviz `dot`, Mermaid, or SVG
//! drawn here ([`crate::flow_svg`]).
//! Nodes are shaped by kind; edges are labelled by key or outcome.

use crate::edges::labelled_edges;
use crate::program::{Jump, Program};
use ivr_dsl::ast::NodeKind;
use std::fmt::Write;

/// Output formats of `ivr graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// SVG, laid out here ([`crate::flow_svg`]).
    Svg,
}

fn dot_shape(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Step => "box",
        NodeKind::Menu => "diamond",
        NodeKind::Input => "parallelogram",
        NodeKind::Lookup => "cylinder",
        NodeKind::Transfer => "doubleoctagon",
        NodeKind::Survey => "hexagon",
        NodeKind::Record => "note",
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn mermaid_id(i: usize) -> String {
    format!("n{i}")
}

fn mermaid_label(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// Renders the program as a graph.
pub fn render(program: &Program, format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => dot(program),
        GraphFormat::Mermaid => mermaid(program),
        GraphFormat::Svg => crate::flow_svg::render(program).svg,
    }
}

fn dot(program: &Program) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", escape(&program.name));
    let _ = writeln!(s, "  rankdir=LR;");
    let _ = writeln!(s, "  node [fontname=\"Helvetica\"];");
    let _ = writeln!(s, "  edge [fontname=\"Helvetica\", fontsize=10];");
    let _ = writeln!(s, "  start [shape=point];");
    let _ = writeln!(s, "  hangup [shape=doublecircle, label=\"hang up\"];");
    let _ = writeln!(s, "  back [shape=plaintext, label=\"back\"];");
    for (i, node) in program.nodes.iter().enumerate() {
        let _ = writeln!(
            s,
            "  n{i} [shape={}, label=\"{}\\n({})\"];",
            dot_shape(node.kind),
            escape(&node.name),
            node.kind.keyword()
        );
    }
    let _ = writeln!(s, "  start -> n{};", program.entry);
    for (i, node) in program.nodes.iter().enumerate() {
        for (label, jump) in labelled_edges(&node.body) {
            let to = match jump {
                Jump::Node(t) => format!("n{t}"),
                Jump::Repeat => format!("n{i}"),
                Jump::Main => format!("n{}", program.entry),
                Jump::Back => "back".to_string(),
                Jump::Hangup => "hangup".to_string(),
            };
            let label = match jump {
                Jump::Repeat => format!("{label} (repeat)"),
                Jump::Main => format!("{label} (main)"),
                _ => label,
            };
            let _ = writeln!(s, "  n{i} -> {to} [label=\"{}\"];", escape(&label));
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid(program: &Program) -> String {
    let mut s = String::from("flowchart LR\n");
    let _ = writeln!(s, "  start(((start)))");
    let _ = writeln!(s, "  hangup((hang up))");
    let _ = writeln!(s, "  back>back]");
    for (i, node) in program.nodes.iter().enumerate() {
        let label = mermaid_label(&format!("{}<br/><i>{}</i>", node.name, node.kind.keyword()));
        let id = mermaid_id(i);
        let shaped = match node.kind {
            NodeKind::Step => format!("{id}[\"{label}\"]"),
            NodeKind::Menu => format!("{id}{{\"{label}\"}}"),
            NodeKind::Input => format!("{id}[/\"{label}\"/]"),
            NodeKind::Lookup => format!("{id}[(\"{label}\")]"),
            NodeKind::Transfer => format!("{id}[[\"{label}\"]]"),
            NodeKind::Survey => format!("{id}{{{{\"{label}\"}}}}"),
            NodeKind::Record => format!("{id}>\"{label}\"]"),
        };
        let _ = writeln!(s, "  {shaped}");
    }
    let _ = writeln!(s, "  start --> {}", mermaid_id(program.entry as usize));
    for (i, node) in program.nodes.iter().enumerate() {
        for (label, jump) in labelled_edges(&node.body) {
            let to = match jump {
                Jump::Node(t) => mermaid_id(t as usize),
                Jump::Repeat => mermaid_id(i),
                Jump::Main => mermaid_id(program.entry as usize),
                Jump::Back => "back".to_string(),
                Jump::Hangup => "hangup".to_string(),
            };
            let _ = writeln!(
                s,
                "  {} -->|\"{}\"| {to}",
                mermaid_id(i),
                mermaid_label(&label)
            );
        }
    }
    s
}
