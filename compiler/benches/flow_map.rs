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
use ivr_compiler::flow_svg;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

#[path = "../../dsl/tests/support/big_flow.rs"]
mod big_flow;
use ivr_compiler::program::Program;

/// Nodes in the generated flow.
const NODES: usize = 1_000;

#[path = "support/big_fixture.rs"]
mod big_fixture;
use big_fixture::fixture;

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
    let fx = fixture(NODES);
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
