//! How long the flow map takes to lay out and draw (`ivr_compiler::flow_svg`, the SVG of
//! `ivr serve`'s `/flows/NAME` and `ivr graph --format svg`): the reference hotline, and a
//! generated 1,000-node flow (the generator of `benches/check.rs`: menus with keys, inputs,
//! lookups, transfers, surveys, records and steps). Prints each drawing's size once.
//!
//! Run with `cargo bench -p ivr-compiler --bench flow_map`; results and the machine they were
//! taken on are in docs/performance.md.

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ivr_compiler::catalog::{Catalog, Catalogs};
use ivr_compiler::config::Config;
use ivr_compiler::flow_svg;
use ivr_compiler::{FlowSource, finish, parse_source};
use ivr_dsl::SourceMap;
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

#[path = "../../dsl/tests/support/big_flow.rs"]
mod big_flow;
use big_flow::{CONFIG, MENU_PROMPTS, PROMPTS, flow_text};
use ivr_compiler::program::Program;

/// Nodes in the generated flow.
const NODES: usize = 1_000;

const BASE: &str = "/nonexistent/ivr-bench";

/// The configuration and both catalogs, with the flow's file path.
struct Fixture {
    sources: SourceMap,
    config: Config,
    catalogs: Catalogs,
    text: String,
}

fn fixture() -> Fixture {
    let base = Path::new(BASE);
    let mut sources = SourceMap::new();
    let file = sources.add(base.join("ivr.toml"), CONFIG);
    let (config, diags) = Config::parse(file, base, CONFIG);
    assert!(diags.is_empty(), "{diags:?}");
    let mut catalogs = Catalogs::default();
    for lang in ["zh-CN", "en-US"] {
        let dir = config.prompts_dir.join(lang);
        let mut text = String::new();
        let ids = PROMPTS
            .iter()
            .map(|p| p.to_string())
            .chain((0..MENU_PROMPTS).map(|i| format!("menu_{i}")));
        for id in ids {
            writeln!(text, "{id} = {{ text = \"{id} ({lang})\" }}").expect("writing to a String");
        }
        let file = sources.add(dir.join("prompts.toml"), text.clone());
        let (mut catalog, d) = Catalog::parse(file, lang, &dir, &text);
        assert!(d.is_empty(), "{d:?}");
        // As if every prompt were recorded: no `missing-audio` warnings.
        for entry in catalog.entries.values_mut() {
            entry.has_audio = true;
        }
        catalogs.languages.insert(lang.to_string(), catalog);
    }
    Fixture {
        sources,
        config,
        catalogs,
        text: flow_text(NODES),
    }
}

impl Fixture {
    /// What `finish` consumes, freshly copied.
    fn inputs(&self) -> (SourceMap, Config, Catalogs) {
        (
            self.sources.clone(),
            self.config.clone(),
            self.catalogs.clone(),
        )
    }

    fn parse(&self, sources: &mut SourceMap) -> FlowSource {
        let mut diags = Vec::new();
        let flow = parse_source(
            &self.config.flows_dir.join("big.flow"),
            self.text.clone(),
            true,
            sources,
            &mut diags,
        );
        assert!(diags.is_empty());
        flow
    }

    fn parse_and_check(&self) -> ivr_compiler::Checked {
        let (mut sources, config, catalogs) = self.inputs();
        let flow = self.parse(&mut sources);
        finish(sources, config, catalogs, vec![flow], Vec::new())
    }
}

fn hotline() -> Program {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ivr.toml");
    let checked = ivr_compiler::check(&ivr_compiler::CheckOptions {
        config: Some(config),
        paths: Vec::new(),
    })
    .expect("the reference deployment");
    checked.programs["hotline"].clone()
}

fn bench(c: &mut Criterion) {
    let fx = fixture();
    let checked = fx.parse_and_check();
    let big = checked.programs["big"].clone();
    assert_eq!(big.nodes.len(), NODES);
    let hotline = hotline();
    for p in [&hotline, &big] {
        let out = flow_svg::render(p);
        eprintln!(
            "{}: {} nodes, {} exits; SVG {} bytes, {:.0} x {:.0} px",
            p.name,
            out.nodes,
            out.edges,
            out.svg.len(),
            out.width,
            out.height
        );
    }
    let mut group = c.benchmark_group("flow_map");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("hotline_layout", |b| {
        b.iter(|| flow_svg::lay_out(black_box(&hotline)))
    });
    group.bench_function("hotline_svg", |b| {
        b.iter(|| flow_svg::render(black_box(&hotline)))
    });
    group.bench_function("1000_nodes_layout", |b| {
        b.iter(|| flow_svg::lay_out(black_box(&big)))
    });
    group.bench_function("1000_nodes_svg", |b| {
        b.iter(|| flow_svg::render(black_box(&big)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
