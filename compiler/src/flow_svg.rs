//! A compiled flow drawn as SVG (the flow map of `ivr serve`'s `/flows/NAME`, and
//! `ivr graph --format svg`): the nodes laid out top to bottom by [`crate::layout`], each a
//! box with its name, its kind and a line of figures the page fills in (calls in it now,
//! visits today); each exit an arrow labelled with its key or outcome (`key 1`, `found`,
//! `attempts`, ...). Exits that go nowhere in the graph (hang up, back, main, repeat) and
//! edges too long to route end in a small box saying where they go.
//!
//! Every element a page may want carries data attributes: a node's `<g>` has
//! `class="node idle kind-KIND"`, `id="node-I"`, `data-node` (its name), `data-kind`; its
//! figures are the `<text class="stats">`; an exit's `<g class="edge">` has `data-from`,
//! `data-to` (a node's name, or `hangup`, `back`, `main`, `repeat`) and `data-label`. Every
//! text and attribute is escaped. Nothing but the program goes in: no caller data.

use crate::edges::labelled_edges;
use crate::layout::{self, InEdge, Layout};
use crate::program::{Jump, Program};
use std::fmt::Write;

/// Height of a node's box.
const NODE_H: f64 = 54.0;
/// Narrowest node box.
const NODE_MIN_W: f64 = 130.0;
/// Width of a character of a node's name (13 px sans-serif, generous).
const NAME_CHAR: f64 = 7.8;
/// Width of a character of a small text (11 px).
const SMALL_CHAR: f64 = 6.6;
/// Height of an edge label.
const LABEL_H: f64 = 14.0;
/// Height of a stub.
const STUB_H: f64 = 20.0;
/// The start marker's size.
const START: f64 = 14.0;

/// The drawing and what was drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSvg {
    /// The SVG document.
    pub svg: String,
    /// Node boxes drawn.
    pub nodes: usize,
    /// Exits drawn (arrows).
    pub edges: usize,
    /// Width of the drawing (px).
    pub width: f64,
    /// Height of the drawing (px).
    pub height: f64,
}

/// Escapes text for SVG/XML text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn text_width(s: &str, per_char: f64) -> f64 {
    s.chars().count() as f64 * per_char
}

/// One exit of a node.
struct Exit {
    from: usize,
    label: String,
    /// The node it goes to, if it goes to one.
    to: Option<usize>,
    /// `data-to`: the target's name or what it does.
    to_name: String,
    /// What its stub says, if it ends in one.
    stub_text: String,
}

fn exits(program: &Program) -> Vec<Exit> {
    let mut out = Vec::new();
    for (i, node) in program.nodes.iter().enumerate() {
        for (label, jump) in labelled_edges(&node.body) {
            let (to, to_name, stub_text) = match jump {
                Jump::Node(t) if (t as usize) < program.nodes.len() => {
                    let name = program.nodes[t as usize].name.clone();
                    let stub = format!("→ {name}");
                    (Some(t as usize), name, stub)
                }
                Jump::Node(_) => (None, "?".into(), "→ ?".into()),
                Jump::Repeat => (None, "repeat".into(), "↻ repeat".into()),
                Jump::Back => (None, "back".into(), "← back".into()),
                Jump::Main => (None, "main".into(), "→ main".into()),
                Jump::Hangup => (None, "hangup".into(), "hang up".into()),
            };
            out.push(Exit {
                from: i,
                label,
                to,
                to_name,
                stub_text,
            });
        }
    }
    out
}

/// Lays the program out (without drawing): for measuring, and for [`render`].
pub fn lay_out(program: &Program) -> Layout {
    let (sizes, edges, root) = graph(program, &exits(program));
    layout::layout(&sizes, &edges, root)
}

/// The layout's input: node sizes (the program's nodes, then the start marker), edges (the
/// exits, then start → entry), the root.
fn graph(program: &Program, exits: &[Exit]) -> (Vec<(f64, f64)>, Vec<InEdge>, usize) {
    let mut sizes: Vec<(f64, f64)> = program
        .nodes
        .iter()
        .map(|n| {
            let w = text_width(&n.name, NAME_CHAR)
                .max(text_width("0000 now · 00000 today", SMALL_CHAR));
            ((w + 24.0).max(NODE_MIN_W), NODE_H)
        })
        .collect();
    let start = sizes.len();
    sizes.push((START, START));
    let mut edges: Vec<InEdge> = exits
        .iter()
        .map(|e| InEdge {
            from: e.from,
            // An exit to no node is a loop: the layout ends it in a stub.
            to: e.to.unwrap_or(e.from),
            label: (text_width(&e.label, SMALL_CHAR), LABEL_H),
            stub: (text_width(&e.stub_text, SMALL_CHAR) + 16.0, STUB_H),
        })
        .collect();
    if !program.nodes.is_empty() {
        edges.push(InEdge {
            from: start,
            to: program.entry as usize,
            label: (0.0, 0.0),
            stub: (0.0, 0.0),
        });
    }
    (sizes, edges, start)
}

/// A path through the points: vertical S-curves between consecutive points.
fn path(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    let Some(&(x0, y0)) = points.first() else {
        return d;
    };
    let _ = write!(d, "M{x0:.1},{y0:.1}");
    for w in points.windows(2) {
        let ((ax, ay), (bx, by)) = (w[0], w[1]);
        let my = (ay + by) / 2.0;
        let _ = write!(d, " C{ax:.1},{my:.1} {bx:.1},{my:.1} {bx:.1},{by:.1}");
    }
    d
}

const STYLE: &str = "\
.node rect{fill:#fff;stroke:#8a8f98;stroke-width:1.5}\
.node.kind-menu rect{stroke:#3b6ea8}.node.kind-input rect{stroke:#5a8f3c}\
.node.kind-lookup rect{stroke:#7a5aa8}.node.kind-transfer rect{stroke:#b5482f}\
.node.kind-survey rect{stroke:#a88a2f}.node.kind-record rect{stroke:#2f8fa8}\
.node.busy rect{fill:#ffd27a;stroke:#c77700;stroke-width:3}\
.node.busy.many rect{fill:#ffa94d}\
.node.selected rect{stroke:#000;stroke-dasharray:4 2}\
.node{cursor:pointer}\
.node .name{font:600 13px sans-serif;fill:#222}\
.node .kind{font:italic 11px sans-serif;fill:#666}\
.node .stats{font:11px sans-serif;fill:#333}\
.edge path{fill:none;stroke:#9aa0a8;stroke-width:1.3}\
.edge text{font:11px sans-serif;fill:#555}\
.stub rect{fill:#f3f4f6;stroke:#c4c8ce}\
.stub text{font:11px sans-serif;fill:#555}\
.start circle{fill:#444}";

/// Draws the program.
pub fn render(program: &Program) -> FlowSvg {
    let exits = exits(program);
    let (sizes, edges, root) = graph(program, &exits);
    let l = layout::layout(&sizes, &edges, root);
    let mut s = String::with_capacity(1024 + program.nodes.len() * 700);
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"flow-map\" width=\"{w:.0}\" height=\"{h:.0}\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" data-flow=\"{name}\" data-version=\"{version}\" role=\"img\" \
         aria-label=\"Flow {name}\">\n<title>Flow {name}</title>\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#9aa0a8\"/></marker></defs>\n\
         <style>{STYLE}</style>\n",
        w = l.width,
        h = l.height,
        name = escape(&program.name),
        version = escape(&program.version),
    );
    s.push_str("<g class=\"edges\">\n");
    for (e, r) in exits.iter().zip(&l.edges) {
        let from = escape(&program.nodes[e.from].name);
        let _ = writeln!(
            s,
            "<g class=\"edge\" data-from=\"{from}\" data-to=\"{to}\" data-label=\"{label}\">\
             <path d=\"{d}\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{lx:.1}\" y=\"{ly:.1}\">{label}</text></g>",
            to = escape(&e.to_name),
            label = escape(&e.label),
            d = path(&r.points),
            lx = r.label.0,
            ly = r.label.1 + 11.0,
        );
        if let Some((cx, cy)) = r.stub {
            let w = text_width(&e.stub_text, SMALL_CHAR) + 16.0;
            let _ = writeln!(
                s,
                "<g class=\"stub\" data-from=\"{from}\" data-to=\"{to}\">\
                 <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{STUB_H}\" rx=\"10\"/>\
                 <text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{text}</text></g>",
                to = escape(&e.to_name),
                x = cx - w / 2.0,
                y = cy - STUB_H / 2.0,
                ty = cy + 4.0,
                text = escape(&e.stub_text),
            );
        }
    }
    if let Some(r) = l.edges.get(exits.len()) {
        let _ = writeln!(
            s,
            "<g class=\"edge start-edge\"><path d=\"{}\" marker-end=\"url(#arrow)\"/></g>",
            path(&r.points)
        );
    }
    s.push_str("</g>\n<g class=\"nodes\">\n");
    for (i, node) in program.nodes.iter().enumerate() {
        let (cx, cy) = l.nodes[i];
        let (w, h) = sizes[i];
        let (x, y) = (cx - w / 2.0, cy - h / 2.0);
        let kind = node.kind.keyword();
        let _ = writeln!(
            s,
            "<g class=\"node idle kind-{kind}\" id=\"node-{i}\" data-node=\"{name}\" data-kind=\"{kind}\" tabindex=\"0\">\
             <rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" rx=\"6\"/>\
             <text class=\"name\" x=\"{cx:.1}\" y=\"{y1:.1}\" text-anchor=\"middle\">{name}</text>\
             <text class=\"kind\" x=\"{cx:.1}\" y=\"{y2:.1}\" text-anchor=\"middle\">{kind}</text>\
             <text class=\"stats\" x=\"{cx:.1}\" y=\"{y3:.1}\" text-anchor=\"middle\">0 now</text></g>",
            name = escape(&node.name),
            y1 = y + 17.0,
            y2 = y + 32.0,
            y3 = y + 47.0,
        );
    }
    if let Some(&(cx, cy)) = l.nodes.get(program.nodes.len()) {
        let _ = writeln!(
            s,
            "<g class=\"start\"><circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"{}\"/></g>",
            START / 2.0
        );
    }
    s.push_str("</g>\n</svg>\n");
    FlowSvg {
        svg: s,
        nodes: program.nodes.len(),
        edges: exits.len(),
        width: l.width,
        height: l.height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("a<b>&\"c\"'d'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39; "
        );
    }

    fn hotline() -> Program {
        let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ivr.toml");
        let checked = crate::check(&crate::CheckOptions {
            config: Some(config),
            paths: Vec::new(),
        })
        .expect("the reference deployment");
        checked.programs.get("hotline").expect("hotline").clone()
    }

    /// Every node and every exit of the reference hotline is drawn with its name and label,
    /// and the drawing is well-formed as far as its tags go.
    #[test]
    fn the_hotline_is_drawn_whole() {
        let p = hotline();
        let out = render(&p);
        assert_eq!(out.nodes, p.nodes.len());
        let mut want_edges = 0;
        for (i, node) in p.nodes.iter().enumerate() {
            let g = format!(
                "id=\"node-{i}\" data-node=\"{}\" data-kind=\"{}\"",
                escape(&node.name),
                node.kind.keyword()
            );
            assert!(out.svg.contains(&g), "node {} missing", node.name);
            let name = format!(">{}</text>", escape(&node.name));
            assert!(out.svg.contains(&name), "name of {} missing", node.name);
            for (label, _) in labelled_edges(&node.body) {
                want_edges += 1;
                let e = format!("data-from=\"{}\" data-to=", escape(&node.name));
                assert!(out.svg.contains(&e), "exits of {} missing", node.name);
                let l = format!("data-label=\"{}\"", escape(&label));
                assert!(
                    out.svg.contains(&l),
                    "label {label} of {} missing",
                    node.name
                );
                assert!(out.svg.contains(&format!(">{}</text>", escape(&label))));
            }
        }
        assert_eq!(out.edges, want_edges);
        assert_eq!(out.svg.matches("<g class=\"edge\" ").count(), want_edges);
        assert_eq!(out.svg.matches("<g class=\"node ").count(), p.nodes.len());
        // Tags balance: every <g> closes.
        assert_eq!(
            out.svg.matches("<g").count(),
            out.svg.matches("</g>").count()
        );
        assert!(out.svg.starts_with("<svg ") && out.svg.trim_end().ends_with("</svg>"));
        // Node boxes do not overlap.
        let l = lay_out(&p);
        assert_eq!(l.nodes.len(), p.nodes.len() + 1);
    }

    #[test]
    fn names_and_labels_are_escaped() {
        let mut p = hotline();
        p.nodes[0].name = "<script>alert('x')</script>&".into();
        p.name = "a\"b".into();
        let out = render(&p);
        assert!(!out.svg.contains("<script>"));
        assert!(
            out.svg
                .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;")
        );
        assert!(out.svg.contains("data-flow=\"a&quot;b\""));
    }

    #[test]
    fn paths_start_at_the_first_point() {
        assert_eq!(path(&[]), "");
        let d = path(&[(0.0, 0.0), (10.0, 20.0)]);
        assert_eq!(d, "M0.0,0.0 C0.0,10.0 10.0,10.0 10.0,20.0");
    }
}
