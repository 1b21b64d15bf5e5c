//! Go to definition, find references, rename a node.

use crate::project::{FlowFileState, Project};
use crate::refs::{Kind, Occurrence};
use crate::reply::Failure;
use crate::uri;
use ivr_dsl::Span;
use lsp_types::{
    GotoDefinitionParams, Location, ReferenceParams, RenameParams, TextDocumentPositionParams,
    TextEdit, WorkspaceEdit,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file, and the name under the cursor.
pub(crate) fn at_cursor(
    project: &mut Project,
    pos: &TextDocumentPositionParams,
) -> Option<(PathBuf, Arc<FlowFileState>, Occurrence)> {
    let path = uri::to_path(&pos.text_document.uri)?;
    let file = project.file(&path)?;
    let offset = file.lines.offset(&file.text, pos.position);
    let occ = file.index.at(offset)?.clone();
    Some((path, file, occ))
}

fn location(
    path: &Path,
    text: &str,
    lines: &crate::position::LineIndex,
    span: Span,
) -> Option<Location> {
    Some(Location::new(
        uri::from_path(path)?,
        lines.range(text, span),
    ))
}

/// A location in a file that is not a flow (`ivr.toml`, `prompts.toml`).
fn location_in(path: &Path, text: &str, span: Span) -> Option<Location> {
    let lines = crate::position::LineIndex::new(text);
    location(path, text, &lines, span)
}

/// Where a name is defined.
pub(crate) fn definitions(
    project: &mut Project,
    path: &Path,
    file: &FlowFileState,
    occ: &Occurrence,
) -> Vec<Location> {
    let settings = project.settings();
    let decl_in = |path: &Path, f: &FlowFileState, kind: &Kind, name: &str| {
        f.index
            .occurrences
            .iter()
            .find(|o| o.decl && &o.kind == kind && o.name == name)
            .and_then(|o| location(path, &f.text, &f.lines, o.span))
    };
    match &occ.kind {
        Kind::Node | Kind::Var => decl_in(path, file, &occ.kind, &occ.name)
            .into_iter()
            .collect(),
        Kind::ImportedNode { flow } => project
            .flow_path(flow)
            .and_then(|p| project.file(&p).map(|f| (p, f)))
            .and_then(|(p, f)| decl_in(&p, &f, &Kind::Node, &occ.name))
            .into_iter()
            .collect(),
        Kind::Flow => project
            .flow_path(&occ.name)
            .and_then(|p| project.file(&p).map(|f| (p, f)))
            .and_then(|(p, f)| {
                let span = f
                    .ast
                    .header
                    .as_ref()
                    .map_or(Span::default(), |h| h.name.span);
                location(&p, &f.text, &f.lines, span)
            })
            .into_iter()
            .collect(),
        Kind::Prompt => settings
            .catalogs
            .languages
            .values()
            .filter_map(|c| {
                let entry = c.entries.get(&occ.name)?;
                let p = settings.sources.path(c.file);
                location_in(p, settings.sources.source(c.file), entry.span)
            })
            .collect(),
        Kind::Query | Kind::Field { .. } => {
            let query = match &occ.kind {
                Kind::Field { var } => file
                    .index
                    .intos
                    .iter()
                    .find(|i| &i.var == var)
                    .map(|i| i.query.clone()),
                _ => Some(occ.name.clone()),
            };
            let (Some(q), Some(cfg)) = (
                query.and_then(|q| settings.config.queries.get(&q).cloned()),
                settings.config.file,
            ) else {
                return Vec::new();
            };
            location_in(
                settings.sources.path(cfg),
                settings.sources.source(cfg),
                q.span,
            )
            .into_iter()
            .collect()
        }
        Kind::Queue => {
            let Some(cfg) = settings.config.file else {
                return Vec::new();
            };
            let text = settings.sources.source(cfg);
            toml_table(text, "queues", &occ.name)
                .and_then(|span| location_in(settings.sources.path(cfg), text, span))
                .into_iter()
                .collect()
        }
        Kind::Function => Vec::new(),
    }
}

/// The `[SECTION.NAME]` header line of a TOML file.
pub(crate) fn toml_table(text: &str, section: &str, name: &str) -> Option<Span> {
    let wanted = [
        format!("[{section}.{name}]"),
        format!("[{section}.\"{name}\"]"),
    ];
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if wanted.iter().any(|w| t.starts_with(w.as_str())) {
            let start = at + (line.len() - line.trim_start().len());
            return Some(Span::new(start, start + t.len()));
        }
        at += line.len();
    }
    None
}

/// `textDocument/definition`
pub(crate) fn definition(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: GotoDefinitionParams = serde_json::from_value(params)?;
    let Some((path, file, occ)) = at_cursor(project, &p.text_document_position_params) else {
        return Ok(Value::Null);
    };
    let found = definitions(project, &path, &file, &occ);
    Ok(serde_json::to_value(found)?)
}

/// Every occurrence of what `occ` names, in every flow of the project.
fn occurrences_of(
    project: &mut Project,
    path: &Path,
    file: &FlowFileState,
    occ: &Occurrence,
) -> Vec<(PathBuf, Span)> {
    let mut out = Vec::new();
    // Nodes: this flow's own names, and `thisflow.node` in the flows that import it.
    let (home, home_path) = match &occ.kind {
        Kind::ImportedNode { flow } => (flow.clone(), project.flow_path(flow)),
        _ => (file.name.clone(), Some(path.to_path_buf())),
    };
    let local = matches!(occ.kind, Kind::Var | Kind::Field { .. });
    if local {
        for o in &file.index.occurrences {
            if o.kind == occ.kind && o.name == occ.name {
                out.push((path.to_path_buf(), o.span));
            }
        }
        return out;
    }
    if project.flows.is_empty() {
        project.check();
    }
    let mut paths: Vec<PathBuf> = project.flows.iter().map(|(_, p)| p.clone()).collect();
    paths.push(path.to_path_buf());
    paths.sort();
    paths.dedup();
    for p in paths {
        let Some(f) = project.file(&p) else { continue };
        for o in &f.index.occurrences {
            if o.name != occ.name {
                continue;
            }
            let same = match (&occ.kind, &o.kind) {
                (Kind::Node | Kind::ImportedNode { .. }, Kind::Node) => {
                    Some(&p) == home_path.as_ref()
                }
                (Kind::Node | Kind::ImportedNode { .. }, Kind::ImportedNode { flow }) => {
                    *flow == home
                }
                (a, b) => a == b,
            };
            if same {
                out.push((p.clone(), o.span));
            }
        }
    }
    out
}

/// `textDocument/references`
pub(crate) fn references(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: ReferenceParams = serde_json::from_value(params)?;
    let Some((path, file, occ)) = at_cursor(project, &p.text_document_position) else {
        return Ok(Value::Null);
    };
    let mut out = Vec::new();
    for (p2, span) in occurrences_of(project, &path, &file, &occ) {
        let Some(f) = project.file(&p2) else { continue };
        let is_decl = f.index.occurrences.iter().any(|o| o.span == span && o.decl);
        if is_decl && !p.context.include_declaration {
            continue;
        }
        out.extend(location(&p2, &f.text, &f.lines, span));
    }
    Ok(serde_json::to_value(out)?)
}

/// `textDocument/rename`: a node, everywhere it is named (`entry`, targets, and
/// `flow.node` in importing flows).
// `lsp_types::Uri` caches parts of the parsed URI in cells, but hashes and compares by its
// text, which never changes: a sound key (and what `WorkspaceEdit` takes).
#[allow(clippy::mutable_key_type)]
pub(crate) fn rename(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: RenameParams = serde_json::from_value(params)?;
    let Some((path, file, occ)) = at_cursor(project, &p.text_document_position) else {
        return Err(Failure::Refused("there is no node name here".into()));
    };
    if !matches!(occ.kind, Kind::Node | Kind::ImportedNode { .. }) {
        return Err(Failure::Refused("only nodes can be renamed".into()));
    }
    let new = p.new_name.trim();
    let valid = new
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && new.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !ivr_dsl::ast::is_keyword(new);
    if !valid {
        return Err(Failure::Refused(format!("`{new}` is not a node name")));
    }
    let mut changes: HashMap<lsp_types::Uri, Vec<TextEdit>> = HashMap::new();
    for (p2, span) in occurrences_of(project, &path, &file, &occ) {
        let Some(f) = project.file(&p2) else { continue };
        if let Some(loc) = location(&p2, &f.text, &f.lines, span) {
            changes
                .entry(loc.uri)
                .or_default()
                .push(TextEdit::new(loc.range, new.to_string()));
        }
    }
    Ok(serde_json::to_value(WorkspaceEdit::new(changes))?)
}
