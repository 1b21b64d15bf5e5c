//! The `.scenario` parser must not panic or hang, whatever the input.
#![no_main]

use ivr_dsl::{FileId, parse_scenarios};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_scenarios(FileId(0), text);
    for d in &parsed.diagnostics {
        let (start, end) = (d.span.start as usize, d.span.end as usize);
        assert!(
            start <= end
                && end <= text.len()
                && text.is_char_boundary(start)
                && text.is_char_boundary(end),
            "span {start}..{end} is not a place in the input ({} bytes): {d:?}",
            text.len()
        );
    }
});
