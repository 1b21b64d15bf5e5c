//! Byte offsets of the compiler and LSP positions (line, UTF-16 code unit) back and forth.
//! Flows hold Chinese text in prompts' comments and strings, and characters beyond the Basic
//! Multilingual Plane count two UTF-16 units: columns are counted in UTF-16, as LSP 3.17
//! requires by default.

use ivr_dsl::Span;
use lsp_types::{Position, Range};

/// The starts of a text's lines.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The position of byte `offset` (clamped to the text, rounded down to a character).
    pub fn position(&self, text: &str, offset: usize) -> Position {
        let offset = floor_boundary(text, offset.min(text.len()));
        let line = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts[line];
        let character: usize = text[start..offset].chars().map(char::len_utf16).sum();
        Position::new(line as u32, character as u32)
    }

    /// The byte offset of `pos` (a column past the line's end means its end).
    pub fn offset(&self, text: &str, pos: Position) -> usize {
        let Some(&start) = self.starts.get(pos.line as usize) else {
            return text.len();
        };
        let end = self
            .starts
            .get(pos.line as usize + 1)
            .map_or(text.len(), |&next| next - 1);
        let mut units = 0u32;
        for (i, c) in text[start..end].char_indices() {
            if units >= pos.character {
                return start + i;
            }
            units += c.len_utf16() as u32;
        }
        end
    }

    /// The range of a span.
    pub fn range(&self, text: &str, span: Span) -> Range {
        Range::new(
            self.position(text, span.start as usize),
            self.position(text, span.end as usize),
        )
    }
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_utf16_units() {
        let text = "a\n  play 欢迎 # 😀x\nend";
        let ix = LineIndex::new(text);
        let x = text.find('x').unwrap_or(0);
        assert_eq!(ix.position(text, x), Position::new(1, 14));
        assert_eq!(ix.offset(text, Position::new(1, 14)), x);
        let huan = text.find('迎').unwrap_or(0);
        assert_eq!(ix.position(text, huan), Position::new(1, 8));
        assert_eq!(ix.offset(text, Position::new(1, 8)), huan);
        assert_eq!(
            ix.offset(text, Position::new(1, 99)),
            text.find("\nend").unwrap_or(0)
        );
        assert_eq!(ix.offset(text, Position::new(9, 0)), text.len());
        assert_eq!(ix.position(text, text.len()), Position::new(2, 3));
    }
}
