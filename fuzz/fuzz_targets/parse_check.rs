//! Parse + check: the input is parsed as the flow `fuzz.flow` and run through the whole checker
//! (`finish`) with a small fixed configuration and zh-CN + en-US prompt catalogs. Neither may
//! panic or hang, whatever the input.
#![no_main]

use ivr_compiler::catalog::{Catalog, Catalogs};
use ivr_compiler::config::Config;
use ivr_compiler::{finish, parse_source};
use ivr_dsl::SourceMap;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// A folder that does not exist: no audio files, no flows on disk.
const BASE: &str = "/nonexistent/ivr-fuzz";

const CONFIG: &str = r#"
[queries.customer_by_phone]
args   = ["phone"]
sql    = "SELECT id, name, vip, balance, plan FROM customers WHERE phone = $1"
fields = { id = "number", name = "text", vip = "bool", balance = "money", plan = "text" }

[queries.current_bill]
args   = ["phone"]
sql    = "SELECT month, amount, due, paid FROM bills WHERE phone = $1"
fields = { month = "text", amount = "money", due = "date", paid = "bool" }

[queries.redeem_card]
args        = ["phone", "pin"]
transaction = [
  "UPDATE cards SET used_by = $1 WHERE pin = $2 AND used_by IS NULL RETURNING value",
  "UPDATE customers SET balance = balance + $value WHERE phone = $1 RETURNING balance",
]
fields = { value = "money", balance = "money" }

[queues.general]
skills = ["mandarin", "english"]

[calendars.agents]
"mon-fri" = "08:00-20:00"
"sat-sun" = "09:00-18:00"

[routes]
"10010" = "fuzz"
default = "hotline"
"#;

const PROMPTS: &[&str] = &[
    "welcome",
    "main_menu",
    "no_input",
    "invalid_choice",
    "enter_card_pin",
    "balance_is",
    "hold_music",
    "survey_overall",
    "survey_solved",
    "goodbye",
    "leave_message_prompt",
];

fn catalog_text(lang: &str) -> String {
    PROMPTS
        .iter()
        .map(|p| format!("{p} = {{ text = \"{p} ({lang})\" }}\n"))
        .collect()
}

/// The configuration and catalogs, read once; every run checks against a copy.
fn fixture() -> &'static (SourceMap, Config, Catalogs) {
    static FIXTURE: OnceLock<(SourceMap, Config, Catalogs)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let base = Path::new(BASE);
        let mut sources = SourceMap::new();
        let cfg_file = sources.add(base.join("ivr.toml"), CONFIG);
        let (config, diags) = Config::parse(cfg_file, base, CONFIG);
        assert!(
            diags.is_empty(),
            "the fixed configuration is broken: {diags:?}"
        );
        let mut catalogs = Catalogs::default();
        for lang in ["zh-CN", "en-US"] {
            let dir = config.prompts_dir.join(lang);
            let text = catalog_text(lang);
            let file = sources.add(dir.join("prompts.toml"), text.clone());
            let (catalog, d) = Catalog::parse(file, lang, &dir, &text);
            assert!(d.is_empty(), "the fixed catalog is broken: {d:?}");
            catalogs.languages.insert(lang.to_string(), catalog);
        }
        (sources, config, catalogs)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (sources, config, catalogs) = fixture();
    let (mut sources, config, catalogs) = (sources.clone(), config.clone(), catalogs.clone());
    let mut diags = Vec::new();
    let flow = parse_source(
        &config.flows_dir.join("fuzz.flow"),
        text.to_string(),
        true,
        &mut sources,
        &mut diags,
    );
    let checked = finish(sources, config, catalogs, vec![flow], diags);
    // Every place a diagnostic names lies inside its file, on character boundaries (rendering
    // slices the text by it), and the diagnostics render as `ivr check` prints them.
    for d in &checked.diagnostics {
        let places =
            std::iter::once((d.file, d.span)).chain(d.related.iter().map(|r| (r.file, r.span)));
        for (file, span) in places {
            let src = checked.sources.source(file);
            let (start, end) = (span.start as usize, span.end as usize);
            assert!(
                start <= end
                    && end <= src.len()
                    && src.is_char_boundary(start)
                    && src.is_char_boundary(end),
                "span {start}..{end} is not a place in its file ({} bytes): {d:?}",
                src.len()
            );
        }
    }
    let _ = checked.sources.render(&checked.diagnostics, false);
    let _ = checked.sources.to_json(&checked.diagnostics);
});
