//! How long `ivr check` takes on a large flow: a generated 5,000-node flow (menus with keys and
//! guards, inputs, lookups with found/missing/error, transfers, surveys, records and steps that
//! assign and read variables), with a matching configuration and zh-CN + en-US catalogs, all in
//! memory. Measures parsing alone, checking alone (`finish` on the parsed flow) and both.
//!
//! Run with `cargo bench --bench check`; results and the machine they were taken on are in
//! docs/performance.md.

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ivr_compiler::finish;
use ivr_dsl::{FileId, parse_flow};
use std::hint::black_box;
use std::time::Duration;

#[path = "../dsl/tests/support/big_flow.rs"]
mod big_flow;

/// Nodes in the generated flow.
const NODES: usize = 5_000;

#[path = "../compiler/benches/support/big_fixture.rs"]
mod big_fixture;
use big_fixture::fixture;

fn bench(c: &mut Criterion) {
    let fx = fixture(NODES);

    // Once, before measuring: the flow is what it claims to be and checks clean.
    let checked = fx.parse_and_check();
    let program = &checked.programs["big"];
    assert_eq!(program.nodes.len(), NODES);
    assert!(
        checked.diagnostics.is_empty(),
        "the generated flow does not check clean:\n{}",
        checked.sources.render(&checked.diagnostics, false)
    );
    eprintln!(
        "flow: {} nodes, {} lines, {} bytes, {} variables, {} prompts, {} languages; 0 diagnostics",
        program.nodes.len(),
        fx.text.lines().count(),
        fx.text.len(),
        program.vars.len(),
        program.prompts.len(),
        program.languages.len(),
    );
    drop(checked);

    let mut group = c.benchmark_group("check_5000_nodes");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("parse", |b| {
        b.iter(|| parse_flow(FileId(3), black_box(&fx.text)))
    });
    group.bench_function("check", |b| {
        b.iter_batched(
            || {
                let (mut sources, config, catalogs) = fx.inputs();
                let flow = fx.parse(&mut sources);
                (sources, config, catalogs, flow)
            },
            |(sources, config, catalogs, flow)| {
                finish(sources, config, catalogs, vec![flow], Vec::new())
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("parse_and_check", |b| {
        b.iter_batched(
            || fx.inputs(),
            |(mut sources, config, catalogs)| {
                let flow = fx.parse(&mut sources);
                finish(sources, config, catalogs, vec![flow], Vec::new())
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
