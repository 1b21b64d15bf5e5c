//! The graph checks of `analysis.rs` on whole flows, run through a checking run
//! (`project::finish`) as `ivr check` does.

use ivr_compiler::catalog::Catalogs;
use ivr_compiler::config::Config;
use ivr_compiler::project::{finish, parse_source};
use ivr_dsl::SourceMap;
use std::path::Path;

/// The names of the menus warned about as `no-help` in a flow `f`.
fn no_help(text: &str) -> Vec<String> {
    let mut sources = SourceMap::new();
    let mut diags = Vec::new();
    let flow = parse_source(
        Path::new("f.flow"),
        text.to_string(),
        true,
        &mut sources,
        &mut diags,
    );
    let config = Config::defaults(Path::new("/nonexistent"));
    let checked = finish(sources, config, Catalogs::default(), vec![flow], diags);
    checked
        .diagnostics
        .iter()
        .filter(|d| d.code == "no-help")
        .map(|d| d.message.split('`').nth(1).unwrap_or("").to_string())
        .collect()
}

const HEAD: &str = "flow f {\n language zh-CN\n entry top\n}\n";

#[test]
fn back_helps_only_below_a_menu_that_leads_to_an_agent() {
    // `sub` is reached from `top`, which leads to an agent: `back` is help enough.
    let text = format!(
        "{HEAD}menu top {{\n prompt p\n attempts 3 -> hangup\n key 1 -> sub\n key 0 -> agent\n}}\n\
         menu sub {{\n prompt p\n attempts 3 -> hangup\n key 1 -> bye\n key # -> back\n}}\n\
         transfer agent {{\n queue q\n}}\n\
         step bye {{\n hangup\n}}\n"
    );
    assert_eq!(no_help(&text), Vec::<String>::new());
    // Without the agent, neither `top` nor `sub` (whose `back` leads to `top`) helps.
    let text = format!(
        "{HEAD}menu top {{\n prompt p\n attempts 3 -> hangup\n key 1 -> sub\n key 0 -> bye\n}}\n\
         menu sub {{\n prompt p\n attempts 3 -> hangup\n key 1 -> bye\n key # -> back\n}}\n\
         step bye {{\n hangup\n}}\n"
    );
    assert_eq!(no_help(&text), vec!["top", "sub"]);
}

#[test]
fn a_long_way_to_an_agent_counts() {
    // menu m0 -> step s1 -> step s2 ... -> transfer, written in reverse order.
    let n = 300;
    let mut text =
        String::from("flow f {\n language zh-CN\n entry m0\n}\ntransfer agent {\n queue q\n}\n");
    for i in (1..=n).rev() {
        let next = if i == n {
            "agent".to_string()
        } else {
            format!("s{}", i + 1)
        };
        text.push_str(&format!("step s{i} {{\n goto {next}\n}}\n"));
    }
    text.push_str("menu m0 {\n prompt p\n attempts 3 -> hangup\n key 1 -> s1\n}\n");
    text.push_str(
        "menu lost {\n prompt p\n attempts 3 -> hangup\n key 1 -> m0\n key 2 -> back\n}\n",
    );
    // `lost` leads to an agent through `m0`; nothing is warned about.
    assert_eq!(no_help(&text), Vec::<String>::new());
}
