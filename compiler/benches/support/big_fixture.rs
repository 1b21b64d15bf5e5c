//! The generated flow of `dsl/tests/support/big_flow.rs` with its configuration and zh-CN +
//! en-US catalogs, all in memory, ready for `finish`: shared by the benchmarks of `ivr check`
//! (`benches/check.rs`) and of the flow map (`compiler/benches/flow_map.rs`). The including
//! file declares `mod big_flow` beside this module.

use super::big_flow::{CONFIG, MENU_PROMPTS, PROMPTS, flow_text};
use ivr_compiler::catalog::{Catalog, Catalogs};
use ivr_compiler::config::Config;
use ivr_compiler::{FlowSource, finish, parse_source};
use ivr_dsl::SourceMap;
use std::fmt::Write;
use std::path::Path;

const BASE: &str = "/nonexistent/ivr-bench";

/// The configuration and both catalogs, with the flow's file path.
pub struct Fixture {
    pub sources: SourceMap,
    pub config: Config,
    pub catalogs: Catalogs,
    pub text: String,
}

/// The fixture of a generated flow of `nodes` nodes.
pub fn fixture(nodes: usize) -> Fixture {
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
        text: flow_text(nodes),
    }
}

impl Fixture {
    /// What `finish` consumes, freshly copied.
    pub fn inputs(&self) -> (SourceMap, Config, Catalogs) {
        (
            self.sources.clone(),
            self.config.clone(),
            self.catalogs.clone(),
        )
    }

    /// The flow parsed into `sources`.
    pub fn parse(&self, sources: &mut SourceMap) -> FlowSource {
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

    /// Parsed and checked.
    pub fn parse_and_check(&self) -> ivr_compiler::Checked {
        let (mut sources, config, catalogs) = self.inputs();
        let flow = self.parse(&mut sources);
        finish(sources, config, catalogs, vec![flow], Vec::new())
    }
}
