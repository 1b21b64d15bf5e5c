//! Diagnostics: what a parser or checker reports, with the file and span it concerns, and how
//! they are rendered for people (source line with a caret) and for tools (JSON).

use crate::span::{Span, line_col};
use codespan_reporting::diagnostic as cr;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Identifies one source file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileId(pub u32);

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; the flow still runs.
    Warning,
    /// The flow cannot run.
    Error,
}

/// One problem found in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable kebab-case name of the check, e.g. `unknown-target` (documented in
    /// `docs/language.md`).
    pub code: &'static str,
    /// The file the span points into.
    pub file: FileId,
    /// Where the problem is.
    pub span: Span,
    /// What is wrong, in words an analyst understands.
    pub message: String,
    /// A suggestion, e.g. ``did you mean `balance`?``.
    pub hint: Option<String>,
    /// Further places that explain the problem (e.g. the first definition of a duplicate).
    pub related: Vec<Related>,
}

/// A secondary place mentioned by a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    /// The file the span points into.
    pub file: FileId,
    /// The place.
    pub span: Span,
    /// What it is.
    pub message: String,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: &'static str, file: FileId, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            code,
            file,
            span,
            message: message.into(),
            hint: None,
            related: Vec::new(),
        }
    }

    /// A new warning.
    pub fn warning(
        code: &'static str,
        file: FileId,
        span: Span,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, span, message)
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint when there is one.
    pub fn with_opt_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    /// Adds a related place.
    pub fn with_related(mut self, file: FileId, span: Span, message: impl Into<String>) -> Self {
        self.related.push(Related {
            file,
            span,
            message: message.into(),
        });
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// The source files of one run, so that diagnostics can be shown with their lines.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<(PathBuf, String)>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, path: impl Into<PathBuf>, source: impl Into<String>) -> FileId {
        self.files.push((path.into(), source.into()));
        FileId(self.files.len() as u32 - 1)
    }

    /// The path of a file.
    pub fn path(&self, id: FileId) -> &Path {
        &self.files[id.0 as usize].0
    }

    /// The text of a file.
    pub fn source(&self, id: FileId) -> &str {
        &self.files[id.0 as usize].1
    }

    /// Every file with its id.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &Path, &str)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (p, s))| (FileId(i as u32), p.as_path(), s.as_str()))
    }

    /// 1-based line and column of a span's start.
    pub fn line_col(&self, id: FileId, span: Span) -> (usize, usize) {
        line_col(self.source(id), span.start as usize)
    }

    fn files(&self) -> SimpleFiles<String, &str> {
        let mut files = SimpleFiles::new();
        for (path, source) in &self.files {
            files.add(path.display().to_string(), source.as_str());
        }
        files
    }

    /// Renders diagnostics the way `ivr check` prints them: `error[code]: message`, the file,
    /// line and column, the source line with a caret, and the hint. `color` adds ANSI colours.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        let files = self.files();
        let config = term::Config::default();
        let mut out: Vec<u8> = Vec::new();
        for d in diagnostics {
            let cd = to_codespan(d);
            let result = if color {
                let mut w = term::termcolor::Ansi::new(&mut out);
                term::emit(&mut w, &config, &files, &cd)
            } else {
                let mut w = term::termcolor::NoColor::new(&mut out);
                term::emit(&mut w, &config, &files, &cd)
            };
            if let Err(e) = result {
                out.extend_from_slice(
                    format!("{}: {}\n", self.path(d.file).display(), e).as_bytes(),
                );
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The diagnostics as JSON objects for editors and CI: file, line, column, end line and
    /// column, severity, code, message, hint, related places.
    pub fn to_json(&self, diagnostics: &[Diagnostic]) -> serde_json::Value {
        serde_json::Value::Array(diagnostics.iter().map(|d| self.json_one(d)).collect())
    }

    fn json_one(&self, d: &Diagnostic) -> serde_json::Value {
        let (line, column) = self.line_col(d.file, d.span);
        let (end_line, end_column) = line_col(self.source(d.file), d.span.end as usize);
        let related: Vec<_> = d
            .related
            .iter()
            .map(|r| {
                let (line, column) = self.line_col(r.file, r.span);
                serde_json::json!({
                    "file": self.path(r.file).display().to_string(),
                    "line": line,
                    "column": column,
                    "message": r.message,
                })
            })
            .collect();
        serde_json::json!({
            "file": self.path(d.file).display().to_string(),
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "severity": d.severity,
            "code": d.code,
            "message": d.message,
            "hint": d.hint,
            "related": related,
        })
    }
}

fn to_codespan(d: &Diagnostic) -> cr::Diagnostic<usize> {
    let base = match d.severity {
        Severity::Error => cr::Diagnostic::error(),
        Severity::Warning => cr::Diagnostic::warning(),
    };
    let mut labels = vec![cr::Label::primary(d.file.0 as usize, d.span.range())];
    for r in &d.related {
        labels
            .push(cr::Label::secondary(r.file.0 as usize, r.span.range()).with_message(&r.message));
    }
    let mut notes = Vec::new();
    if let Some(h) = &d.hint {
        notes.push(format!("hint: {h}"));
    }
    base.with_code(d.code)
        .with_message(&d.message)
        .with_labels(labels)
        .with_notes(notes)
}
