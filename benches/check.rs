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
use ivr_compiler::catalog::{Catalog, Catalogs};
use ivr_compiler::config::Config;
use ivr_compiler::{FlowSource, finish, parse_source};
use ivr_dsl::{FileId, SourceMap, parse_flow};
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

#[path = "../dsl/tests/support/big_flow.rs"]
mod big_flow;
use big_flow::{CONFIG, MENU_PROMPTS, PROMPTS, flow_text};

/// Nodes in the generated flow.
const NODES: usize = 5_000;

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

fn bench(c: &mut Criterion) {
    let fx = fixture();

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
