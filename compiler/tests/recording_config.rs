//! `[recording]` in `ivr.toml`, read through `Config::parse` as `ivr check` reads it.

use ivr_compiler::config::Config;
use ivr_compiler::recording::RecordCalls;
use ivr_dsl::{Diagnostic, FileId};
use std::path::Path;

fn parse(text: &str) -> (Config, Vec<Diagnostic>) {
    Config::parse(FileId(0), Path::new("/srv/ivr"), text)
}

fn line_of(text: &str, d: &Diagnostic) -> usize {
    text[..d.span.start as usize].matches('\n').count() + 1
}

#[test]
fn defaults_and_a_full_table() {
    let (c, d) = parse("");
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(c.recording.calls, RecordCalls::None);
    assert_eq!(c.recording.keep_days, 90);
    let (c, d) =
        parse("[recording]\ncalls = \"transferred\"\nfolder = \"rec/calls\"\nkeep = \"120d\"\n");
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(c.recording.calls, RecordCalls::Transferred);
    assert_eq!(c.recording.folder, Path::new("/srv/ivr/rec/calls"));
    assert_eq!(c.recording.keep_days, 120);
}

#[test]
fn mistakes_are_errors_at_their_line() {
    let text = "[recording]\ncalls = \"some\"\nkeep = \"3 months\"\ncolour = 1\n";
    let (_, d) = parse(text);
    let lines: Vec<(usize, &str)> = d
        .iter()
        .map(|d| (line_of(text, d), d.message.as_str()))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 2 && m.contains("recording policy")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, m)| *l == 3 && m.contains("number of days")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|(l, _)| *l == 4), "{lines:?}");
    let text = "[recording]\ncalls = 3\n";
    let (_, d) = parse(text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(line_of(text, &d[0]), 2);
}
