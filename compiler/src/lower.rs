//! From syntax trees to a [`Program`]: resolves every name (nodes, imported nodes, prompts,
//! queries, fields, queues, calendars, variables), types every expression, checks ranges and
//! fills in defaults. Graph-wide checks run afterwards on the result (see `analysis`).

use crate::catalog::Catalogs;
use crate::config::{Config, FieldType};
use crate::program::{self as p, Builtin, Edge, Expr, ExprKind, Jump, Literal, Type};
use crate::suggest::did_you_mean;
use ivr_dsl::ast::{
    self, BinaryOp, NodeBody, NodeKind, SayKind, StatementKind, TargetKind, UnaryOp,
};
use ivr_dsl::{Diagnostic, FileId, Span};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Default wait for the first key.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Default wait between keys.
pub const DEFAULT_INTER_DIGIT_MS: u64 = 3_000;
/// Default attempts of a collecting node.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Most `overflow` clauses in one transfer node.
pub const MAX_OVERFLOW: usize = 8;
/// Default lookup timeout when neither the node nor the query sets one.
pub const DEFAULT_LOOKUP_TIMEOUT_MS: u64 = 3_000;
/// Default longest recording.
pub const DEFAULT_RECORD_MAX_MS: u64 = 60_000;
/// Most digits an `input` may collect.
pub const MAX_DIGITS: u32 = 32;

/// What the compiler checks names against.
pub struct Env<'a> {
    /// `ivr.toml`.
    pub config: &'a Config,
    /// The prompt catalogs.
    pub catalogs: &'a Catalogs,
}

/// One parsed flow file.
#[derive(Clone, Copy)]
pub struct Unit<'a> {
    /// Its file in the source map.
    pub file: FileId,
    /// Its path as shown to people.
    pub path: &'a str,
    /// Its text.
    pub source: &'a str,
    /// Its syntax tree.
    pub ast: &'a ast::FlowFile,
    /// The flow's name (from the header, else the file name).
    pub name: &'a str,
}

/// The read-only variable of a campaign's calls: the row of its list query.
pub const CONTACT: &str = "contact";

/// Compiles `main` with every flow it imports (found in `flows` by name). Diagnostics go to
/// `diags`; the program is returned even when there were errors, for graphs and debugging.
pub fn compile(
    env: &Env,
    main: Unit,
    flows: &HashMap<String, Unit>,
    diags: &mut Vec<Diagnostic>,
) -> p::Program {
    let mut units = vec![main];
    // Transitive imports, each once, in the order first met.
    let mut i = 0;
    while i < units.len() {
        let unit = units[i];
        for imp in &unit.ast.imports {
            if imp.name == unit.name {
                diags.push(
                    Diagnostic::error(
                        "unknown-import",
                        unit.file,
                        imp.span,
                        format!("flow `{}` imports itself", imp.name),
                    )
                    .with_hint("remove this line: a flow's own nodes are named without a prefix"),
                );
                continue;
            }
            match flows.get(&imp.name) {
                Some(u) => {
                    if !units.iter().any(|x| x.name == u.name) {
                        units.push(*u);
                    }
                }
                None => diags.push(
                    Diagnostic::error(
                        "unknown-import",
                        unit.file,
                        imp.span,
                        format!("there is no flow `{}` to import", imp.name),
                    )
                    .with_opt_hint(
                        did_you_mean(
                            &imp.name,
                            importable_flows(env.config, unit.path, flows)
                                .iter()
                                .map(String::as_str)
                                .filter(|n| *n != unit.name),
                        )
                        .or_else(|| {
                            Some(format!(
                                "imports are looked up as `{}.flow` in the flows folder",
                                imp.name
                            ))
                        }),
                    ),
                ),
            }
        }
        i += 1;
    }

    let mut l = Lowerer {
        env,
        diags,
        prompts: Vec::new(),
        prompt_ix: HashMap::new(),
        prompt_uses: Vec::new(),
        vars: Vec::new(),
        var_ix: HashMap::new(),
        node_ix: HashMap::new(),
        unit_index: 0,
        units: &units,
        languages: Vec::new(),
    };

    // Languages: the main flow's default, then every `set language` anywhere.
    let default_language = match main.ast.header.as_ref().and_then(|h| h.language.as_ref()) {
        Some(lang) => {
            l.check_language(main.file, &lang.node, lang.span);
            lang.node.clone()
        }
        None => {
            if let Some(h) = &main.ast.header
                && !has_syntax_error(l.diags, main.file, h.span)
            {
                l.diags.push(
                    Diagnostic::error(
                        "missing-clause",
                        main.file,
                        h.name.span,
                        format!("flow `{}` does not say its `language`", h.name.name),
                    )
                    .with_hint("add `language zh-CN` (or the tag of another prompt folder) to the flow header"),
                );
            }
            "zh-CN".to_string()
        }
    };
    l.languages.push(default_language.clone());

    // Node ids: every unit's nodes, main flow first; duplicates reported and skipped.
    let mut order: Vec<(usize, &ast::Node)> = Vec::new();
    for (ui, unit) in units.iter().enumerate() {
        let mut first: HashMap<&str, Span> = HashMap::new();
        for node in &unit.ast.nodes {
            if let Some(prev) = first.get(node.name.name.as_str()) {
                l.diags.push(
                    Diagnostic::error(
                        "duplicate-node",
                        unit.file,
                        node.name.span,
                        format!("there are two nodes named `{}`", node.name.name),
                    )
                    .with_related(unit.file, *prev, "first defined here")
                    .with_hint("node names must be unique within a flow; rename one of them"),
                );
                continue;
            }
            first.insert(&node.name.name, node.name.span);
            let id = order.len() as p::NodeId;
            l.node_ix.insert((ui, node.name.name.clone()), id);
            order.push((ui, node));
        }
        for node in &unit.ast.nodes {
            for stmt in step_statements(node) {
                if let StatementKind::SetLanguage { language } = &stmt.kind {
                    l.check_language(unit.file, &language.node, language.span);
                    if !l.languages.contains(&language.node) {
                        l.languages.push(language.node.clone());
                    }
                }
            }
        }
    }

    // Variables and their types, before any expression is typed.
    l.declare_variables(&order);

    let mut nodes = Vec::with_capacity(order.len());
    for (ui, node) in &order {
        l.unit_index = *ui;
        let prefix = if *ui == 0 {
            String::new()
        } else {
            format!("{}.", units[*ui].name)
        };
        let body = l.lower_body(node);
        nodes.push(p::Node {
            name: format!("{prefix}{}", node.name.name),
            kind: node.kind(),
            file: *ui as u32,
            span: node.span,
            name_span: node.name.span,
            body,
        });
    }

    l.unit_index = 0;
    let entry = match main.ast.header.as_ref() {
        None => {
            // Point at the first node (or the start of an empty file).
            let at = main
                .ast
                .nodes
                .first()
                .map_or(Span::new(0, 0), |n| n.keyword_span);
            l.diags.push(
                Diagnostic::error(
                    "missing-header",
                    main.file,
                    at,
                    "this file has no flow header",
                )
                .with_hint(format!(
                    "start the file with `flow {} {{ language zh-CN  entry FIRST_NODE }}`",
                    main.name
                )),
            );
            0
        }
        Some(h) => match &h.entry {
            None => {
                if !has_syntax_error(l.diags, main.file, h.span) {
                    l.diags.push(
                        Diagnostic::error(
                            "missing-clause",
                            main.file,
                            h.name.span,
                            format!("flow `{}` does not say its `entry` node", h.name.name),
                        )
                        .with_hint(
                            "add `entry NODE` to the flow header: the node every call starts at",
                        ),
                    );
                }
                0
            }
            Some(e) => match l.node_ix.get(&(0, e.name.clone())) {
                Some(id) => *id,
                None if named_on_broken_line(l.diags, main.file, main.source, &e.name) => 0,
                None => {
                    // Only nodes can be the entry (not `main`, `hangup`, ...).
                    let nearest = crate::suggest::nearest(
                        &e.name,
                        l.node_ix
                            .keys()
                            .filter(|(u, _)| *u == 0)
                            .map(|(_, n)| n.as_str()),
                    )
                    .map(String::from);
                    l.diags.push(
                        Diagnostic::error(
                            "unknown-target",
                            main.file,
                            e.span,
                            format!("the entry node `{}` does not exist", e.name),
                        )
                        .with_opt_hint(nearest.as_ref().map(|n| format!("did you mean `{n}`?"))),
                    );
                    // Go on from the suggested node, else from the first one.
                    nearest
                        .and_then(|n| l.node_ix.get(&(0, n)).copied())
                        .unwrap_or(0)
                }
            },
        },
    };

    l.check_prompts();

    let version = flow_version(&units, &l.languages, &l.prompts, env.catalogs);

    p::Program {
        name: main.name.to_string(),
        title: main
            .ast
            .header
            .as_ref()
            .and_then(|h| h.title.as_ref())
            .map(|t| t.node.clone()),
        language: default_language,
        languages: l.languages.clone(),
        version,
        entry,
        nodes,
        prompts: l.prompts,
        vars: l.vars,
        files: units.iter().map(|u| u.path.to_string()).collect(),
    }
}

/// A flow's version, its one identity wherever it is shown (`ivr compile`, `flow.version`,
/// the start-up line of `ivr serve`, `GET /status`, the dashboard, call records, `ivr
/// report`): the first 16 hex digits of a SHA-256 over the flow's own text and the text of
/// every flow it imports (each with its name), then, per language it speaks, each prompt it
/// plays with the catalog's text and audio file name. The same files give the same version
/// on any machine and in any folder; an edit of the flow, of an imported flow, or of one of
/// its prompts' text or file makes a new one. (The deployment's identity, which also covers
/// `ivr.toml`, other flows and audio content, is `ivr serve`'s.)
pub fn flow_version(
    units: &[Unit],
    languages: &[String],
    prompts: &[String],
    catalogs: &Catalogs,
) -> String {
    let mut hasher = Sha256::new();
    for u in units {
        hasher.update(u.name.as_bytes());
        hasher.update([0]);
        hasher.update(u.source.as_bytes());
        hasher.update([0]);
    }
    let mut ids: Vec<&String> = prompts.iter().collect();
    ids.sort();
    for lang in languages {
        let Some(cat) = catalogs.languages.get(lang) else {
            continue;
        };
        for id in &ids {
            let Some(entry) = cat.entries.get(id.as_str()) else {
                continue;
            };
            let file = entry.file.strip_prefix(&cat.dir).unwrap_or(&entry.file);
            for part in [
                lang.as_str(),
                id.as_str(),
                entry.text.as_str(),
                &file.to_string_lossy(),
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `file` has a syntax error within `span`: then a clause there may have been written
/// but not understood, and "it has no X" would be a second, misleading report of one mistake.
fn has_syntax_error(diags: &[Diagnostic], file: FileId, span: Span) -> bool {
    diags.iter().any(|d| {
        d.file == file
            && matches!(d.code, "syntax" | "reserved-name")
            && span.start <= d.span.start
            && d.span.start <= span.end
    })
}

/// Whether `name` is written on a line of `file` that has a syntax error: a node named there
/// may be "missing" or "unreached" only because that line was not understood.
pub(crate) fn named_on_broken_line(
    diags: &[Diagnostic],
    file: FileId,
    source: &str,
    name: &str,
) -> bool {
    diags.iter().any(|d| {
        if d.file != file || !matches!(d.code, "syntax" | "reserved-name") {
            return false;
        }
        let at = (d.span.start as usize).min(source.len());
        let start = source[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = source[at..].find('\n').map_or(source.len(), |i| at + i);
        source[start..end]
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == name)
    })
}

/// The names of the flows an `import` can find: those already read, and the `*.flow` files
/// beside the importing file and in the flows folder (where imports are looked up).
fn importable_flows(config: &Config, importer: &str, flows: &HashMap<String, Unit>) -> Vec<String> {
    let mut names: Vec<String> = flows.keys().cloned().collect();
    let beside = std::path::Path::new(importer)
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for dir in [beside, config.flows_dir.clone()] {
        let dir = if dir.as_os_str().is_empty() {
            std::path::PathBuf::from(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "flow")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && !names.iter().any(|n| n == stem)
            {
                names.push(stem.to_string());
            }
        }
    }
    names.sort();
    names
}

fn step_statements(node: &ast::Node) -> &[ast::Statement] {
    match &node.body {
        NodeBody::Step(s) => &s.statements,
        _ => &[],
    }
}

struct Lowerer<'a, 'd> {
    env: &'a Env<'a>,
    diags: &'d mut Vec<Diagnostic>,
    prompts: Vec<String>,
    prompt_ix: HashMap<String, p::PromptId>,
    /// Every use of a prompt: id, file, span (checked against the catalogs at the end).
    prompt_uses: Vec<(p::PromptId, FileId, Span)>,
    vars: Vec<p::VarInfo>,
    var_ix: HashMap<String, p::VarId>,
    /// (unit index, node name) -> node id.
    node_ix: HashMap<(usize, String), p::NodeId>,
    unit_index: usize,
    units: &'a [Unit<'a>],
    languages: Vec<String>,
}

impl Lowerer<'_, '_> {
    fn file(&self) -> FileId {
        self.units[self.unit_index].file
    }

    fn err(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::error(code, self.file(), span, msg);
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    fn warn(&mut self, code: &'static str, span: Span, msg: impl Into<String>) -> &mut Diagnostic {
        let d = Diagnostic::warning(code, self.file(), span, msg);
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    /// Whether the node has a syntax error inside: its "has no X" reports are left out.
    fn broken(&self, node: &ast::Node) -> bool {
        has_syntax_error(self.diags, self.file(), node.span)
    }

    fn check_language(&mut self, file: FileId, lang: &str, span: Span) {
        // zh-CN and en-US have the spoken-value fragments built in: a flow that only `say`s
        // needs no catalog of its own (a prompt it plays is reported by name if missing).
        if !self.env.catalogs.languages.contains_key(lang)
            && !crate::catalog::BUILT_IN_LANGUAGES.contains(&lang)
        {
            let known: Vec<&str> = self
                .env
                .catalogs
                .languages
                .keys()
                .map(String::as_str)
                .collect();
            let hint = did_you_mean(lang, known.iter().copied()).unwrap_or_else(|| {
                if known.is_empty() {
                    format!(
                        "no prompt catalogs were found in {}",
                        self.env.config.prompts_dir.display()
                    )
                } else {
                    format!("the prompt languages are {}", known.join(", "))
                }
            });
            self.diags.push(
                Diagnostic::error(
                    "unknown-language",
                    file,
                    span,
                    format!("there is no prompt catalog for language `{lang}`"),
                )
                .with_hint(hint),
            );
        }
    }

    // -----------------------------------------------------------------------------------------
    // Variables

    fn declare_variables(&mut self, order: &[(usize, &ast::Node)]) {
        // Inputs and lookups have known types; `set` types are inferred in rounds so that a
        // `set` may copy a variable assigned elsewhere.
        for (ui, node) in order {
            self.unit_index = *ui;
            match &node.body {
                NodeBody::Input(i) => {
                    if let Some(into) = &i.into {
                        self.declare(into, Type::Text, i.mask.is_some());
                    }
                }
                NodeBody::Lookup(lk) => {
                    if let Some(q) = &lk.query
                        && let Some(into) = &q.into
                        && self.env.config.queries.contains_key(&q.name.name)
                    {
                        self.declare(into, Type::Row(q.name.name.clone()), false);
                    }
                }
                _ => {}
            }
        }
        for _round in 0..3 {
            for (ui, node) in order {
                self.unit_index = *ui;
                for stmt in step_statements(node) {
                    if let StatementKind::Set { name, value } = &stmt.kind {
                        let ty = self.peek_type(value);
                        if ty != Type::Unknown && !self.var_ix.contains_key(&name.name) {
                            self.declare(name, ty, false);
                        }
                    }
                }
            }
        }
        for (ui, node) in order {
            self.unit_index = *ui;
            for stmt in step_statements(node) {
                if let StatementKind::Set { name, .. } = &stmt.kind
                    && !self.var_ix.contains_key(&name.name)
                {
                    self.declare(name, Type::Unknown, false);
                }
            }
        }
    }

    fn declare(&mut self, name: &ast::Ident, ty: Type, masked: bool) {
        if name.name == CONTACT {
            self.err(
                "builtin-variable",
                name.span,
                "`contact` is the campaign's list row and cannot be assigned",
            )
            .hint = Some(
                "the platform sets it for calls a campaign places; choose another name".into(),
            );
            return;
        }
        if let Some((b, _)) = Builtin::ALL
            .iter()
            .find(|(b, _)| b.split('.').next() == Some(name.name.as_str()))
        {
            self.err(
                "builtin-variable",
                name.span,
                format!(
                    "`{}` is a built-in variable and cannot be assigned",
                    name.name
                ),
            )
            .hint = Some(if b.contains('.') {
                let fields: Vec<String> = Builtin::ALL
                    .iter()
                    .filter(|(p, _)| p.split('.').next() == Some(name.name.as_str()))
                    .map(|(p, _)| format!("`{p}`"))
                    .collect();
                format!(
                    "{} are set by the platform for every call; choose another name",
                    fields.join(" and ")
                )
            } else {
                format!("`{b}` is set by the platform for every call; choose another name")
            });
            return;
        }
        match self.var_ix.get(&name.name) {
            Some(&id) => {
                let v = &mut self.vars[id as usize];
                v.masked |= masked;
                if v.ty == Type::Unknown {
                    v.ty = ty;
                } else if ty != Type::Unknown
                    && v.ty != ty
                    && !(v.ty.is_numeric() && ty.is_numeric())
                {
                    let (old, new) = (v.ty.describe(), ty.describe());
                    self.err(
                        "type-mismatch",
                        name.span,
                        format!("`{}` is {old} elsewhere but {new} here", name.name),
                    )
                    .hint = Some(
                        "a variable keeps one type for the whole call; use another name".into(),
                    );
                }
            }
            None => {
                self.var_ix
                    .insert(name.name.clone(), self.vars.len() as p::VarId);
                self.vars.push(p::VarInfo {
                    name: name.name.clone(),
                    ty,
                    masked,
                });
            }
        }
    }

    /// The type of an expression without reporting anything (used while declaring).
    fn peek_type(&mut self, e: &ast::Expr) -> Type {
        let saved = self.diags.len();
        let t = self.expr(e).ty;
        self.diags.truncate(saved);
        t
    }

    // -----------------------------------------------------------------------------------------
    // Names

    fn node_hint(&self, name: &str) -> Option<String> {
        self.nearest_target(name)
            .map(|n| format!("did you mean `{n}`?"))
    }

    /// The node of the current flow (or built-in target) nearest to a misspelt name.
    fn nearest_target(&self, name: &str) -> Option<&str> {
        let ui = self.unit_index;
        let names = self
            .node_ix
            .keys()
            .filter(|(u, _)| *u == ui)
            .map(|(_, n)| n.as_str())
            .chain(["repeat", "back", "main", "hangup"]);
        crate::suggest::nearest(name, names)
    }

    fn target(&mut self, t: &ast::Target, from: NodeKind) -> Edge {
        let jump = match &t.kind {
            TargetKind::Node(name) => match self.node_ix.get(&(self.unit_index, name.clone())) {
                Some(&id) => Jump::Node(id),
                None => {
                    let unit = self.units[self.unit_index];
                    if named_on_broken_line(self.diags, unit.file, unit.source, name) {
                        // The node is written on a line that did not parse.
                        return Edge {
                            jump: Jump::Hangup,
                            span: t.span,
                        };
                    }
                    let hint = self.node_hint(name);
                    self.err(
                        "unknown-target",
                        t.span,
                        format!("there is no node `{name}`"),
                    )
                    .hint = hint;
                    // Go on as if the suggested name had been written, so that the graph
                    // checks do not add consequences of the typo (a node "no path reaches").
                    match self.nearest_target(name) {
                        Some("repeat") => Jump::Repeat,
                        Some("back") => Jump::Back,
                        Some("main") => Jump::Main,
                        Some("hangup") | None => Jump::Hangup,
                        Some(n) => self
                            .node_ix
                            .get(&(self.unit_index, n.to_string()))
                            .map_or(Jump::Hangup, |&id| Jump::Node(id)),
                    }
                }
            },
            TargetKind::Imported { flow, node } => {
                let unit = self.units[self.unit_index];
                if !unit.ast.imports.iter().any(|i| &i.name == flow) {
                    self.err(
                        "unknown-import",
                        t.span,
                        format!(
                            "`{flow}.{node}` names flow `{flow}`, which this flow does not import"
                        ),
                    )
                    .hint = Some(format!("add `import {flow}` near the top of the file"));
                    Jump::Hangup
                } else if let Some(ui) = self.units.iter().position(|u| u.name == flow) {
                    match self.node_ix.get(&(ui, node.clone())) {
                        Some(&id) => Jump::Node(id),
                        None => {
                            let names = self
                                .node_ix
                                .keys()
                                .filter(|(u, _)| *u == ui)
                                .map(|(_, n)| n.as_str());
                            let nearest = crate::suggest::nearest(node, names).map(String::from);
                            self.err(
                                "unknown-target",
                                t.span,
                                format!("flow `{flow}` has no node `{node}`"),
                            )
                            .hint = nearest
                                .as_ref()
                                .map(|n| format!("did you mean `{flow}.{n}`?"));
                            // As for local targets: go on with the suggested node.
                            nearest
                                .and_then(|n| self.node_ix.get(&(ui, n)).copied())
                                .map_or(Jump::Hangup, Jump::Node)
                        }
                    }
                } else {
                    // The import itself is reported where it is written.
                    Jump::Hangup
                }
            }
            TargetKind::Repeat => {
                if !matches!(from, NodeKind::Menu | NodeKind::Input | NodeKind::Survey) {
                    self.err(
                        "bad-target",
                        t.span,
                        format!(
                            "`repeat` replays a menu, input or survey; a {} has nothing to repeat",
                            from.keyword()
                        ),
                    )
                    .hint = Some("name the node to go to instead".into());
                }
                Jump::Repeat
            }
            TargetKind::Back => Jump::Back,
            TargetKind::Main => Jump::Main,
            TargetKind::Hangup => Jump::Hangup,
        };
        Edge { jump, span: t.span }
    }

    fn prompt_list(&mut self, ids: &[ast::Ident]) -> Vec<p::PromptId> {
        ids.iter().map(|i| self.prompt(i)).collect()
    }

    fn prompt(&mut self, id: &ast::Ident) -> p::PromptId {
        let pid = match self.prompt_ix.get(&id.name) {
            Some(&pid) => pid,
            None => {
                let pid = self.prompts.len() as p::PromptId;
                self.prompts.push(id.name.clone());
                self.prompt_ix.insert(id.name.clone(), pid);
                pid
            }
        };
        self.prompt_uses.push((pid, self.file(), id.span));
        pid
    }

    /// Every prompt used must exist in every language the flow may speak; prompts without
    /// audio are warned about once, at their catalog entry.
    fn check_prompts(&mut self) {
        let langs = self.languages.clone();
        let mut warned_audio: Vec<(String, p::PromptId)> = Vec::new();
        for (pid, file, span) in std::mem::take(&mut self.prompt_uses) {
            let id = &self.prompts[pid as usize];
            let mut missing = Vec::new();
            let mut hint = None;
            for lang in &langs {
                let Some(cat) = self.env.catalogs.languages.get(lang) else {
                    continue; // reported as an unknown language
                };
                match cat.entries.get(id) {
                    None => {
                        missing.push(lang.as_str());
                        if hint.is_none() {
                            hint = did_you_mean(id, cat.entries.keys().map(String::as_str));
                        }
                    }
                    Some(entry) => {
                        let problem = if !entry.has_audio {
                            Some((
                                "missing-audio",
                                format!(
                                    "has no audio file: {} does not exist",
                                    entry.file.display()
                                ),
                                "record it, or run `ivr prompts generate` for a synthetic voice"
                                    .to_string(),
                            ))
                        } else if let Some(why) = &entry.not_audio {
                            Some((
                                "missing-audio",
                                format!("has no playable audio: {} {why}", entry.file.display()),
                                "record it again, or run `ivr prompts generate --force` for a synthetic voice"
                                    .to_string(),
                            ))
                        } else {
                            entry.stale_audio.as_ref().map(|stale| {
                                let hint = if stale.made_by == "recorded" {
                                    format!(
                                        "record the new text, then `ivr prompts stamp {id} --language {lang}`"
                                    )
                                } else {
                                    format!(
                                        "run `ivr prompts generate --language {lang}` to make it again, or record it and `ivr prompts stamp {id} --language {lang}`"
                                    )
                                };
                                (
                                    "stale-audio",
                                    format!(
                                        "text changed after its audio {} was made ({}): callers hear the old words",
                                        entry.file.display(),
                                        stale.made_by
                                    ),
                                    hint,
                                )
                            })
                        };
                        if let Some((code, what, hint)) = problem
                            && !warned_audio.contains(&(lang.clone(), pid))
                        {
                            warned_audio.push((lang.clone(), pid));
                            self.diags.push(
                                Diagnostic::warning(
                                    code,
                                    cat.file,
                                    entry.span,
                                    format!("prompt `{id}` ({lang}) {what}"),
                                )
                                .with_hint(hint),
                            );
                        }
                    }
                }
            }
            if !missing.is_empty() {
                let hint = hint.unwrap_or_else(|| {
                    format!(
                        "add `{id} = {{ text = \"...\" }}` to {}",
                        missing
                            .iter()
                            .map(|l| {
                                self.env
                                    .config
                                    .prompts_dir
                                    .join(l)
                                    .join("prompts.toml")
                                    .display()
                                    .to_string()
                            })
                            .collect::<Vec<_>>()
                            .join(" and ")
                    )
                });
                self.diags.push(
                    Diagnostic::error(
                        "unknown-prompt",
                        file,
                        span,
                        format!(
                            "there is no prompt `{id}` in the {} catalog{}",
                            missing.join(" and "),
                            if missing.len() > 1 { "s" } else { "" }
                        ),
                    )
                    .with_hint(hint),
                );
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Nodes

    fn lower_body(&mut self, node: &ast::Node) -> p::Body {
        let kind = node.kind();
        match &node.body {
            NodeBody::Step(s) => self.step(node, s),
            NodeBody::Menu(m) => p::Body::Menu(self.menu(node, m)),
            NodeBody::Input(i) => p::Body::Input(self.input(node, i)),
            NodeBody::Lookup(lk) => p::Body::Lookup(self.lookup(node, lk)),
            NodeBody::Transfer(t) => p::Body::Transfer(self.transfer(node, t)),
            NodeBody::Survey(s) => p::Body::Survey(self.survey(node, s, kind)),
            NodeBody::Record(r) => p::Body::Record(self.record(node, r)),
        }
    }

    fn missing(&mut self, node: &ast::Node, clause: &str, what: &str) {
        if self.broken(node) {
            return;
        }
        self.err(
            "missing-clause",
            node.name.span,
            format!(
                "{} `{}` has no `{clause}`",
                node.kind().keyword(),
                node.name.name
            ),
        )
        .hint = Some(what.to_string());
    }

    fn no_way_out(&mut self, node: &ast::Node, clause: &str) -> Edge {
        if !self.broken(node) {
            self.err(
                "no-transition",
                node.name.span,
                format!(
                    "{} `{}` has no way out: it needs `{clause}`",
                    node.kind().keyword(),
                    node.name.name
                ),
            )
            .hint = Some(format!("add `{clause}` with the node to go to next"));
        }
        Edge {
            jump: Jump::Hangup,
            span: node.name.span,
        }
    }

    /// A `served` task name: a word of lower-case ASCII letters, digits and `_` that starts
    /// with a letter, at most [`p::TASK_NAME_MAX`] characters (reports and metrics label
    /// completions with it).
    fn check_task(&mut self, task: &ast::Spanned<String>) {
        if p::is_task_name(&task.node) {
            return;
        }
        let suggestion: String = task
            .node
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(p::TASK_NAME_MAX)
            .collect();
        let message = if task.node.is_empty() {
            "a task needs a name".to_string()
        } else {
            format!("`{}` is not a task name", task.node)
        };
        let d = self.err("bad-task", task.span, message);
        d.hint = Some(if p::is_task_name(&suggestion) {
            format!(
                "a task name is lower-case letters, digits and `_`, starting with a letter: `served \"{suggestion}\"`"
            )
        } else {
            format!(
                "a task name is lower-case letters, digits and `_`, starting with a letter, at most {} characters: `served \"bill_inquiry\"`",
                p::TASK_NAME_MAX
            )
        });
    }

    fn step(&mut self, node: &ast::Node, s: &ast::Step) -> p::Body {
        let mut ops = Vec::new();
        let mut ended: Option<Span> = None;
        for stmt in &s.statements {
            if let Some(end) = ended {
                let file = self.file();
                self.err(
                    "dead-statement",
                    stmt.span,
                    "this line never runs: the step has already left",
                )
                .related
                .push(ivr_dsl::Related {
                    file,
                    span: end,
                    message: "the step leaves here".into(),
                });
                break;
            }
            let op = match &stmt.kind {
                StatementKind::Play { prompts } => p::Op::Play {
                    prompts: self.prompt_list(prompts),
                },
                StatementKind::Say { kind, value } => {
                    let value = self.expr(value);
                    self.check_say(kind.node, &value);
                    p::Op::Say {
                        kind: kind.node,
                        value,
                    }
                }
                StatementKind::Set { name, value } => {
                    let value = self.expr(value);
                    match self.var_ix.get(&name.name) {
                        Some(&var) => {
                            self.check_set_type(name, var, &value);
                            p::Op::Set { var, value }
                        }
                        None => continue, // a built-in: reported when declaring
                    }
                }
                StatementKind::SetLanguage { language } => p::Op::SetLanguage {
                    language: language.node.clone(),
                },
                StatementKind::Pause { duration } => {
                    self.positive(duration, "pause");
                    p::Op::Pause {
                        millis: duration.node.millis,
                    }
                }
                StatementKind::If { condition, target } => {
                    let condition = self.condition(condition, "an `if`");
                    p::Op::If {
                        condition,
                        target: self.target(target, NodeKind::Step),
                    }
                }
                StatementKind::Goto { target } => {
                    ended = Some(stmt.span);
                    p::Op::Goto {
                        target: self.target(target, NodeKind::Step),
                    }
                }
                StatementKind::Hangup => {
                    ended = Some(stmt.span);
                    p::Op::Hangup { span: stmt.span }
                }
                StatementKind::Served { task } => {
                    self.check_task(task);
                    p::Op::Served {
                        task: task.node.clone(),
                    }
                }
                StatementKind::RecordCall => p::Op::RecordCall,
            };
            ops.push(op);
        }
        if ended.is_none() {
            if !self.broken(node) {
                self.err(
                    "no-transition",
                    node.name.span,
                    format!("step `{}` has no way out", node.name.name),
                )
                .hint = Some(
                    "a step never falls through to the next node: end it with `goto NODE` or `hangup`"
                        .into(),
                );
            }
            ops.push(p::Op::Hangup {
                span: node.name.span,
            });
        }
        p::Body::Step { ops }
    }

    #[allow(clippy::too_many_arguments)]
    fn collect(
        &mut self,
        node: &ast::Node,
        prompt: Option<&Vec<ast::Ident>>,
        timeout: Option<&ast::Spanned<ast::Duration>>,
        inter_digit: Option<&ast::Spanned<ast::Duration>>,
        attempts: Option<&ast::Attempts>,
        no_input: Option<&Vec<ast::Ident>>,
        no_match: Option<&Vec<ast::Ident>>,
        barge_in: Option<&ast::Switch>,
    ) -> p::Collect {
        let kind = node.kind();
        if let Some(t) = timeout {
            self.positive(t, "timeout");
        }
        if let Some(t) = inter_digit {
            self.positive(t, "inter_digit");
        }
        let (count, target) = match attempts {
            Some(a) => {
                if a.count.node == 0 {
                    self.err(
                        "out-of-range",
                        a.count.span,
                        "`attempts 0` gives the caller no chance at all",
                    )
                    .hint = Some("give at least 1 attempt (3 is usual)".into());
                }
                let target = match &a.target {
                    Some(t) => self.target(t, kind),
                    None => {
                        if kind != NodeKind::Survey && !self.broken(node) {
                            self.warn(
                                "default-attempts",
                                a.span,
                                format!(
                                    "callers who fail {} `{}` {} times are cut off",
                                    kind.keyword(),
                                    node.name.name,
                                    a.count.node
                                ),
                            )
                            .hint = Some(format!(
                                "say where they go: `attempts {} -> agent`",
                                a.count.node
                            ));
                        }
                        Edge {
                            jump: Jump::Hangup,
                            span: a.span,
                        }
                    }
                };
                (a.count.node, target)
            }
            None => {
                if matches!(kind, NodeKind::Menu | NodeKind::Input) && !self.broken(node) {
                    self.warn(
                        "default-attempts",
                        node.name.span,
                        format!(
                            "{} `{}` has no `attempts`: callers who fail {DEFAULT_ATTEMPTS} times are cut off",
                            kind.keyword(),
                            node.name.name
                        ),
                    )
                    .hint = Some(format!("add e.g. `attempts {DEFAULT_ATTEMPTS} -> agent`"));
                }
                (
                    DEFAULT_ATTEMPTS,
                    Edge {
                        jump: Jump::Hangup,
                        span: node.name.span,
                    },
                )
            }
        };
        let prompts = match prompt {
            Some(ids) => self.prompt_list(ids),
            None => Vec::new(),
        };
        p::Collect {
            prompts,
            timeout_ms: timeout.map_or(DEFAULT_TIMEOUT_MS, |t| t.node.millis),
            inter_digit_ms: inter_digit.map_or(DEFAULT_INTER_DIGIT_MS, |t| t.node.millis),
            attempts: count,
            attempts_target: target,
            no_input: no_input.map(|v| self.prompt_list(v)).unwrap_or_default(),
            no_match: no_match.map(|v| self.prompt_list(v)).unwrap_or_default(),
            barge_in: barge_in.is_none_or(|b| b.node),
        }
    }

    fn menu(&mut self, node: &ast::Node, m: &ast::Menu) -> p::Menu {
        if m.prompt.is_none() {
            self.missing(
                node,
                "prompt",
                "add `prompt ID`: the choices the caller hears",
            );
        }
        let collect = self.collect(
            node,
            m.prompt.as_ref(),
            m.timeout.as_ref(),
            m.inter_digit.as_ref(),
            m.attempts.as_ref(),
            m.no_input.as_ref(),
            m.no_match.as_ref(),
            m.barge_in.as_ref(),
        );
        if m.keys.is_empty() {
            self.missing(
                node,
                "key",
                "add `key 1 -> NODE` lines: the choices of the menu",
            );
        }
        let mut keys = Vec::new();
        let mut seen: Vec<(char, Span)> = Vec::new();
        for k in &m.keys {
            let Some(c) = self.key(&k.key) else { continue };
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == c) {
                let first = *first;
                let file = self.file();
                let d = self.err(
                    "duplicate-key",
                    k.key.span,
                    format!("key `{c}` is used twice in menu `{}`", node.name.name),
                );
                d.related.push(ivr_dsl::Related {
                    file,
                    span: first,
                    message: "first used here".into(),
                });
                d.hint = Some(
                    "each key may lead to one place; combine the guards into one condition".into(),
                );
                continue;
            }
            seen.push((c, k.key.span));
            let target = self.target(&k.target, NodeKind::Menu);
            let guard = k.guard.as_ref().map(|g| self.condition(g, "a key guard"));
            keys.push(p::MenuKey {
                key: c,
                target,
                guard,
            });
        }
        p::Menu { collect, keys }
    }

    fn key(&mut self, k: &ast::KeyLit) -> Option<char> {
        let key = k.key();
        if key.is_none() {
            self.err("bad-key", k.span, format!("`{}` is not a key", k.text))
                .hint = Some("a key is one of 0-9, * or # (one key per line)".into());
        }
        key
    }

    fn input(&mut self, node: &ast::Node, i: &ast::Input) -> p::Input {
        if i.prompt.is_none() {
            self.missing(
                node,
                "prompt",
                "add `prompt ID`: what the caller should enter",
            );
        }
        let collect = self.collect(
            node,
            i.prompt.as_ref(),
            i.timeout.as_ref(),
            i.inter_digit.as_ref(),
            i.attempts.as_ref(),
            i.no_input.as_ref(),
            i.no_match.as_ref(),
            i.barge_in.as_ref(),
        );
        let (min, max) = match &i.digits {
            None => {
                self.missing(
                    node,
                    "digits",
                    "add `digits 6` (exactly six) or `digits 6..18` (a range)",
                );
                (1, MAX_DIGITS)
            }
            Some(d) => {
                if d.min == 0 || d.max == 0 {
                    self.err("out-of-range", d.span, "`digits` must be at least 1")
                        .hint = Some("an input collects one digit or more".into());
                } else if d.min > d.max {
                    self.err(
                        "out-of-range",
                        d.span,
                        format!("`digits {}..{}` runs backwards", d.min, d.max),
                    )
                    .hint = Some(format!("write `digits {}..{}`", d.max, d.min));
                } else if d.max > MAX_DIGITS {
                    self.err(
                        "out-of-range",
                        d.span,
                        format!(
                            "an input collects at most {MAX_DIGITS} digits, not {}",
                            d.max
                        ),
                    );
                }
                (d.min.max(1), d.max.clamp(1, MAX_DIGITS))
            }
        };
        let terminator = i.terminator.as_ref().and_then(|t| self.key(t));
        if let Some(t) = terminator
            && t.is_ascii_digit()
            && let Some(span) = i.terminator.as_ref().map(|t| t.span)
        {
            self.err(
                "bad-key",
                span,
                format!("the terminator `{t}` is a digit, so it could never be entered as one"),
            )
            .hint = Some("use `#` or `*`".into());
        }
        let into = match &i.into {
            Some(v) => self.var_ix.get(&v.name).copied(),
            None => {
                self.missing(
                    node,
                    "into",
                    "add `into NAME`: the variable that receives the digits",
                );
                None
            }
        };
        let valid = i.valid.as_ref().map(|v| self.condition(v, "`valid`"));
        let next = match &i.next {
            Some(t) => self.target(t, NodeKind::Input),
            None => self.no_way_out(node, "next"),
        };
        p::Input {
            collect,
            min_digits: min,
            max_digits: max,
            terminator,
            mask: i.mask.is_some(),
            valid,
            into: into.unwrap_or(0),
            next,
        }
    }

    fn lookup(&mut self, node: &ast::Node, lk: &ast::Lookup) -> p::Lookup {
        let mut query_name = String::new();
        let mut args = Vec::new();
        let mut into = None;
        let mut query_timeout = None;
        match &lk.query {
            None => self.missing(
                node,
                "query",
                "add `query NAME(ARGS) into VAR`: a query of the data catalog in ivr.toml",
            ),
            Some(q) => {
                query_name = q.name.name.clone();
                args = q.args.iter().map(|a| self.expr(a)).collect();
                for a in &args {
                    if matches!(a.ty, Type::Row(_)) {
                        self.err(
                            "type-mismatch",
                            a.span,
                            "a whole row cannot be passed to a query",
                        )
                        .hint = Some("pass one of its fields, e.g. `customer.id`".into());
                    }
                }
                match self.env.config.queries.get(&q.name.name) {
                    None => {
                        let hint = did_you_mean(
                            &q.name.name,
                            self.env.config.queries.keys().map(String::as_str),
                        )
                        .unwrap_or_else(|| {
                            "queries are declared as [queries.NAME] in ivr.toml".into()
                        });
                        self.err(
                            "unknown-query",
                            q.name.span,
                            format!("there is no query `{}` in the data catalog", q.name.name),
                        )
                        .hint = Some(hint);
                    }
                    Some(def) => {
                        query_timeout = def.timeout_ms;
                        if def.args.len() != args.len() {
                            let n = def.args.len();
                            self.err(
                                "query-arguments",
                                q.span,
                                format!(
                                    "query `{}` takes {n} argument{} ({}), not {}",
                                    q.name.name,
                                    if n == 1 { "" } else { "s" },
                                    def.args.join(", "),
                                    args.len()
                                ),
                            );
                        }
                    }
                }
                into = q
                    .into
                    .as_ref()
                    .and_then(|v| self.var_ix.get(&v.name).copied());
            }
        }
        if let Some(t) = &lk.timeout {
            self.positive(t, "timeout");
        }
        let found = match &lk.found {
            Some(t) => self.target(t, NodeKind::Lookup),
            None => self.no_way_out(node, "found -> NODE"),
        };
        let missing = match &lk.missing {
            Some(t) => self.target(t, NodeKind::Lookup),
            None => self.no_way_out(node, "missing -> NODE"),
        };
        let error = match &lk.error {
            Some(t) => Some(self.target(t, NodeKind::Lookup)),
            None => {
                if !self.broken(node) {
                    self.warn(
                        "no-error-path",
                        node.name.span,
                        format!("lookup `{}` has no `error` path: if the query fails, the call ends as failed", node.name.name),
                    )
                    .hint = Some("add `error -> NODE`, e.g. a step that apologises and offers an agent".into());
                }
                None
            }
        };
        p::Lookup {
            query: query_name,
            args,
            into,
            timeout_ms: lk
                .timeout
                .as_ref()
                .map(|t| t.node.millis)
                .or(query_timeout)
                .unwrap_or(DEFAULT_LOOKUP_TIMEOUT_MS),
            found,
            missing,
            error,
        }
    }

    fn transfer(&mut self, node: &ast::Node, t: &ast::Transfer) -> p::Transfer {
        let mut skills: Vec<String> = Vec::new();
        let destination = match &t.destination {
            None => {
                self.missing(
                    node,
                    "queue",
                    "add `queue NAME` (an ACD queue of ivr.toml) or `to \"sip:...\"`",
                );
                p::Destination::Queue(String::new())
            }
            Some(ast::Destination::Queue { name }) => {
                match self.env.config.queues.get(&name.name) {
                    Some(q) => skills.extend(q.skills.iter().cloned()),
                    None => {
                        let hint = did_you_mean(
                            &name.name,
                            self.env.config.queues.keys().map(String::as_str),
                        )
                        .unwrap_or_else(|| {
                            "queues are declared as [queues.NAME] in ivr.toml".into()
                        });
                        self.err(
                            "unknown-queue",
                            name.span,
                            format!("there is no queue `{}`", name.name),
                        )
                        .hint = Some(hint);
                    }
                }
                p::Destination::Queue(name.name.clone())
            }
            Some(ast::Destination::To { uri }) => {
                let u = uri.node.trim();
                let ok = u.starts_with("sip:")
                    || u.starts_with("sips:")
                    || u.starts_with("tel:")
                    || (!u.is_empty() && u.chars().all(|c| c.is_ascii_digit() || c == '+'));
                if !ok {
                    self.err(
                        "bad-uri",
                        uri.span,
                        format!("`{u}` is not a number or SIP address"),
                    )
                    .hint = Some(
                        "write e.g. `to \"sip:95500@pbx.example.com\"` or `to \"95500\"`".into(),
                    );
                }
                p::Destination::To(u.to_string())
            }
        };
        for s in &t.skills {
            if !skills.contains(&s.node) {
                skills.push(s.node.clone());
            }
        }
        let priority = t.priority.as_ref().map(|pr| {
            let v = self.expr(&pr.value);
            if !v.ty.is_numeric() && v.ty != Type::Unknown {
                self.err(
                    "type-mismatch",
                    v.span,
                    format!("a priority is a number, but this is {}", v.ty.describe()),
                );
            }
            v
        });
        let priority_guard = t
            .priority
            .as_ref()
            .and_then(|pr| pr.guard.as_ref())
            .map(|g| self.condition(g, "a priority guard"));
        let attach = t
            .attach
            .iter()
            .map(|a| {
                let label = self.units[self.unit_index]
                    .source
                    .get(a.span.range())
                    .unwrap_or("?")
                    .trim()
                    .to_string();
                (label, self.expr(a))
            })
            .collect();
        let music = t
            .music
            .as_ref()
            .map(|m| self.prompt_list(m))
            .unwrap_or_default();
        if let Some(a) = &t.announce {
            self.positive(a, "announce position every");
        }
        let max_wait = t.max_wait.as_ref().map(|mw| {
            self.positive(&mw.duration, "max_wait");
            (
                mw.duration.node.millis,
                self.target(&mw.target, NodeKind::Transfer),
            )
        });
        let no_agents = t
            .no_agents
            .as_ref()
            .map(|x| self.target(x, NodeKind::Transfer));
        let after = t.after.as_ref().map(|x| self.target(x, NodeKind::Transfer));
        if matches!(destination, p::Destination::Queue(_))
            && max_wait.is_none()
            && no_agents.is_none()
            && !self.broken(node)
        {
            self.warn(
                "endless-wait",
                node.name.span,
                format!(
                    "transfer `{}` has neither `max_wait` nor `no_agents`: with no agent, callers wait forever",
                    node.name.name
                ),
            )
            .hint = Some("add `max_wait 120s -> NODE` and `no_agents -> NODE`".into());
        }
        if matches!(destination, p::Destination::To(_))
            && max_wait.is_none()
            && no_agents.is_none()
            && !self.broken(node)
        {
            self.warn(
                "unhandled-busy",
                node.name.span,
                format!(
                    "transfer `{}` has no `no_agents`: when the number is busy, does not answer or cannot be reached, the call ends as `failed`",
                    node.name.name
                ),
            )
            .hint = Some("add `no_agents -> NODE` (a message, another number, voice mail)".into());
        }
        let overflow = self.overflow(t, &destination, max_wait.as_ref().map(|m| m.0));
        let level = t.level.as_ref().and_then(|l| {
            let guard = l.guard.as_ref().map(|g| self.condition(g, "a level guard"));
            if !matches!(destination, p::Destination::Queue(_)) {
                self.err(
                    "level-without-queue",
                    l.span,
                    "`level` asks the ACD for agents of a level, but this transfer calls a number",
                )
                .hint = Some("use `level` with `queue NAME`".into());
                return None;
            }
            match u8::try_from(l.level.node) {
                Ok(n @ 1..=5) => Some((n, guard)),
                _ => {
                    self.err(
                        "bad-level",
                        l.level.span,
                        format!("agent levels go from 1 to 5, not {}", l.level.node),
                    )
                    .hint = Some(
                        "e.g. `level 4 if vip == true` ([agents.ID] level in ivr.toml)".into(),
                    );
                    None
                }
            }
        });
        let callback = t
            .callback
            .as_ref()
            .and_then(|c| self.callback(c, &destination, max_wait.as_ref().map(|m| m.0)));
        p::Transfer {
            destination,
            skills,
            priority,
            priority_guard,
            attach,
            music,
            announce_ms: t.announce.as_ref().map(|a| a.node.millis),
            max_wait,
            no_agents,
            after,
            overflow,
            level,
            callback,
        }
    }

    /// The `callback after D -> T` clause: the transfer waits in a queue with a trunk to dial
    /// back through, the wait is positive and shorter than `max_wait`, and the prompts
    /// `callback_offer` and `callback_confirm` exist in every catalog the flow uses (an
    /// unknown prompt is reported at the clause).
    fn callback(
        &mut self,
        c: &ast::CallbackOffer,
        destination: &p::Destination,
        max_wait_ms: Option<u64>,
    ) -> Option<Box<p::CallbackOffer>> {
        let target = self.target(&c.target, NodeKind::Transfer);
        let queue = match destination {
            p::Destination::Queue(q) => q.clone(),
            p::Destination::To(_) => {
                self.err(
                    "callback-without-queue",
                    c.span,
                    "`callback` keeps a caller's place in a queue, but this transfer calls a number",
                )
                .hint = Some("use `callback after 60s -> NODE` with `queue NAME`".into());
                return None;
            }
        };
        self.positive(&c.after, "callback after");
        if let Some(max) = max_wait_ms
            && c.after.node.millis >= max
        {
            self.warn(
                "callback-after-max-wait",
                c.after.span,
                format!(
                    "the caller leaves after `max_wait` ({} s), before the callback offer ({} s) plays",
                    max / 1000,
                    c.after.node.millis / 1000
                ),
            )
            .hint = Some("make the callback wait shorter than `max_wait`".into());
        }
        if let Some(q) = self.env.config.queues.get(&queue)
            && q.callback_trunk(&self.env.config.trunks).is_none()
        {
            let msg = match &q.trunk {
                Some(t) => format!(
                    "queue `{queue}` dials callbacks through trunk `{t}`, which is not a working `[trunks.*]`"
                ),
                None => format!(
                    "queue `{queue}` has no `trunk` and there is no `[trunks.default]`: a kept callback could not be dialled"
                ),
            };
            self.err("callback-without-trunk", c.span, msg).hint = Some(format!(
                "add `trunk = \"NAME\"` to [queues.{queue}] or declare `[trunks.default]` in ivr.toml"
            ));
        }
        // The prompts are checked like any other, at the clause's words.
        // (Two places on the clause's line, so that both can be reported.)
        let offer = self.prompt(&ast::Ident {
            name: "callback_offer".into(),
            span: c.span,
        });
        let confirm = self.prompt(&ast::Ident {
            name: "callback_confirm".into(),
            span: c.target.span,
        });
        Some(Box::new(p::CallbackOffer {
            after_ms: c.after.node.millis,
            offer,
            confirm,
            target,
        }))
    }

    /// The `overflow` clauses of a transfer: their queues exist, differ from the node's own,
    /// and their waits are positive and shorter than `max_wait`.
    fn overflow(
        &mut self,
        t: &ast::Transfer,
        destination: &p::Destination,
        max_wait_ms: Option<u64>,
    ) -> Vec<p::Overflow> {
        let own = t
            .skills
            .iter()
            .map(|s| s.node.clone())
            .fold(Vec::new(), |mut v, s| {
                if !v.contains(&s) {
                    v.push(s);
                }
                v
            });
        let mut out: Vec<p::Overflow> = Vec::new();
        for o in &t.overflow {
            let first = match destination {
                p::Destination::Queue(q) => q,
                p::Destination::To(_) => {
                    self.err(
                        "overflow-without-queue",
                        o.span,
                        "`overflow` offers a waiting call to another queue, but this transfer calls a number",
                    )
                    .hint = Some("use `overflow` with `queue NAME`".into());
                    continue;
                }
            };
            let name = &o.queue.name;
            if !self.env.config.queues.contains_key(name) {
                let hint = did_you_mean(name, self.env.config.queues.keys().map(String::as_str))
                    .unwrap_or_else(|| "queues are declared as [queues.NAME] in ivr.toml".into());
                self.err(
                    "unknown-queue",
                    o.queue.span,
                    format!("there is no queue `{name}` to overflow to"),
                )
                .hint = Some(hint);
                continue;
            }
            if name == first {
                self.err(
                    "overflow-same-queue",
                    o.queue.span,
                    format!("the call already waits in `{name}`: it cannot overflow to it"),
                )
                .hint = Some("name another queue, e.g. `overflow general after 30s`".into());
                continue;
            }
            let after_ms = match &o.when {
                ast::OverflowWhen::After { duration } => {
                    self.positive(duration, "overflow ... after");
                    if let Some(max) = max_wait_ms
                        && duration.node.millis >= max
                    {
                        self.warn(
                            "overflow-after-max-wait",
                            duration.span,
                            format!(
                                "the caller leaves after `max_wait` ({} s), before this overflow ({} s) can apply",
                                max / 1000,
                                duration.node.millis / 1000
                            ),
                        )
                        .hint = Some("make the overflow wait shorter than `max_wait`".into());
                    }
                    Some(duration.node.millis)
                }
                ast::OverflowWhen::NoneIdle { .. } => None,
            };
            let rule = p::Overflow {
                queue: name.clone(),
                skills: own.clone(),
                after_ms,
            };
            if out.contains(&rule) {
                self.warn(
                    "repeated-overflow",
                    o.span,
                    format!("this overflow to `{name}` is written twice"),
                )
                .hint = Some("remove one of them".into());
                continue;
            }
            if out.len() >= MAX_OVERFLOW {
                self.err(
                    "too-many-overflows",
                    o.span,
                    format!("a transfer has at most {MAX_OVERFLOW} `overflow` clauses"),
                );
                continue;
            }
            out.push(rule);
        }
        out
    }

    fn survey(&mut self, node: &ast::Node, s: &ast::Survey, kind: NodeKind) -> p::Survey {
        let next = match &s.next {
            Some(t) => self.target(t, kind),
            None => self.no_way_out(node, "next"),
        };
        let mut collect = self.collect(
            node,
            None,
            s.timeout.as_ref(),
            s.inter_digit.as_ref(),
            s.attempts.as_ref(),
            s.no_input.as_ref(),
            s.no_match.as_ref(),
            s.barge_in.as_ref(),
        );
        // A survey never leaves after failed attempts: the question is stored as not answered
        // and the survey goes on (the engine ignores an `attempts` target).
        if let Some(t) = s.attempts.as_ref().and_then(|a| a.target.as_ref()) {
            self.err(
                "bad-target",
                t.span,
                "a survey does not leave after failed attempts: the question is stored as not answered and the survey goes on",
            )
            .hint = Some("remove the target: `attempts 2`".into());
        }
        collect.attempts_target = next;
        if s.questions.is_empty() {
            self.missing(node, "question", "add `question NAME PROMPT scale 1..5`");
        }
        let mut questions: Vec<p::Question> = Vec::new();
        let mut seen: Vec<(&str, Span)> = Vec::new();
        for q in &s.questions {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == q.name.name) {
                let first = *first;
                let file = self.file();
                let d = self.err(
                    "duplicate-question",
                    q.name.span,
                    format!("survey `{}` asks `{}` twice", node.name.name, q.name.name),
                );
                d.related.push(ivr_dsl::Related {
                    file,
                    span: first,
                    message: "first asked here".into(),
                });
                d.hint = Some(
                    "answers are stored by question name: give each question its own name".into(),
                );
                continue;
            }
            seen.push((&q.name.name, q.name.span));
            let prompt = self.prompt(&q.prompt);
            let answers = match &q.answers {
                ast::Answers::Scale { min, max } => {
                    if min.node > max.node {
                        self.err(
                            "out-of-range",
                            min.span.to(max.span),
                            format!("`scale {}..{}` runs backwards", min.node, max.node),
                        )
                        .hint = Some(format!("write `scale {}..{}`", max.node, min.node));
                    } else if min.node < 0 || max.node > 9 {
                        self.err(
                            "out-of-range",
                            min.span.to(max.span),
                            format!(
                                "`scale {}..{}` cannot be answered with one key",
                                min.node, max.node
                            ),
                        )
                        .hint = Some("a scale runs within 0..9, e.g. `scale 1..5`".into());
                    }
                    p::Answers::Scale {
                        min: min.node.clamp(0, 9) as u8,
                        max: max.node.clamp(0, 9) as u8,
                    }
                }
                ast::Answers::Choices { choices } => {
                    let mut out: Vec<(char, String)> = Vec::new();
                    let mut spans: Vec<Span> = Vec::new();
                    for (k, label) in choices {
                        let Some(c) = self.key(k) else { continue };
                        if let Some(i) = out.iter().position(|(x, _)| *x == c) {
                            let (file, first) = (self.file(), spans[i]);
                            let d = self.err(
                                "duplicate-key",
                                k.span,
                                format!("key `{c}` is used twice in question `{}`", q.name.name),
                            );
                            d.related.push(ivr_dsl::Related {
                                file,
                                span: first,
                                message: "first used here".into(),
                            });
                            d.hint = Some("each key stands for one answer; use another key".into());
                            continue;
                        }
                        out.push((c, label.node.clone()));
                        spans.push(k.span);
                    }
                    p::Answers::Choices { choices: out }
                }
            };
            questions.push(p::Question {
                name: q.name.name.clone(),
                prompt,
                answers,
            });
        }
        // Without `save`, the answers go where the spec's example keeps them: `surveys`.
        let save = s
            .save
            .as_ref()
            .map_or_else(|| "surveys".to_string(), |t| t.name.clone());
        p::Survey {
            collect,
            questions,
            save,
            next,
        }
    }

    fn record(&mut self, node: &ast::Node, r: &ast::Record) -> p::Record {
        if let Some(m) = &r.max {
            self.positive(m, "max");
        }
        if let Some(s) = &r.silence {
            self.positive(s, "silence");
        }
        let prompts = r
            .prompt
            .as_ref()
            .map(|v| self.prompt_list(v))
            .unwrap_or_default();
        let terminator = r.terminator.as_ref().and_then(|t| self.key(t));
        let save = match &r.save {
            Some(t) => t.name.clone(),
            None => {
                self.missing(
                    node,
                    "save",
                    "add `save TABLE`: where recordings are listed (e.g. `save messages`)",
                );
                String::new()
            }
        };
        let next = match &r.next {
            Some(t) => self.target(t, NodeKind::Record),
            None => self.no_way_out(node, "next"),
        };
        p::Record {
            prompts,
            beep: r.beep.is_some(),
            max_ms: r
                .max
                .as_ref()
                .map_or(DEFAULT_RECORD_MAX_MS, |m| m.node.millis),
            silence_ms: r.silence.as_ref().map(|s| s.node.millis),
            terminator,
            save,
            next,
        }
    }

    fn positive(&mut self, d: &ast::Spanned<ast::Duration>, what: &str) {
        if d.node.millis == 0 {
            self.err(
                "out-of-range",
                d.span,
                format!("a zero `{what}` cannot be right"),
            )
            .hint = Some("give a duration above zero, e.g. `5s` or `500ms`".into());
        }
    }

    // -----------------------------------------------------------------------------------------
    // Expressions

    fn condition(&mut self, e: &ast::Expr, what: &str) -> Expr {
        let e = self.expr(e);
        if e.ty != Type::Bool && e.ty != Type::Unknown {
            self.err(
                "type-mismatch",
                e.span,
                format!(
                    "{what} needs a condition (true or false), but this is {}",
                    e.ty.describe()
                ),
            )
            .hint = Some("compare it, e.g. `x == 1`".into());
        }
        e
    }

    /// A variable keeps the type it was declared with (its first `into` or `set`): a `set`
    /// of a value of another type is a mistake.
    fn check_set_type(&mut self, name: &ast::Ident, var: p::VarId, value: &Expr) {
        let var_ty = &self.vars[var as usize].ty;
        if *var_ty == Type::Unknown
            || value.ty == Type::Unknown
            || *var_ty == value.ty
            || (var_ty.is_numeric() && value.ty.is_numeric())
        {
            return;
        }
        let (old, new) = (var_ty.describe(), value.ty.describe());
        self.err(
            "type-mismatch",
            value.span,
            format!("`{}` holds {old} elsewhere, but this is {new}", name.name),
        )
        .hint = Some("a variable keeps one type for the whole call; use another name".into());
    }

    fn check_say(&mut self, kind: SayKind, value: &Expr) {
        let ok = match kind {
            SayKind::Money | SayKind::Number => value.ty.is_numeric(),
            SayKind::Digits => value.ty.is_numeric() || value.ty == Type::Text,
            SayKind::Date => matches!(value.ty, Type::Date | Type::DateTime),
            SayKind::Time => matches!(value.ty, Type::Time | Type::DateTime),
        };
        if !ok && value.ty != Type::Unknown {
            let wants = match kind {
                SayKind::Money | SayKind::Number => "a number or money",
                SayKind::Digits => "text or a number",
                SayKind::Date => "a date",
                SayKind::Time => "a time",
            };
            let hint = if value.ty == Type::Text && kind != SayKind::Digits {
                Some("text cannot be spoken as a value; `say digits` reads it out one character at a time".to_string())
            } else {
                None
            };
            self.err(
                "type-mismatch",
                value.span,
                format!(
                    "`say {}` needs {wants}, but this is {}",
                    kind.keyword(),
                    value.ty.describe()
                ),
            )
            .hint = hint;
        }
    }

    fn expr(&mut self, e: &ast::Expr) -> Expr {
        let (kind, ty) = match &e.kind {
            ast::ExprKind::Str(s) => (
                ExprKind::Lit {
                    value: Literal::Text(s.clone()),
                },
                Type::Text,
            ),
            ast::ExprKind::Number(n) => (
                ExprKind::Lit {
                    value: Literal::Number(*n),
                },
                Type::Number,
            ),
            ast::ExprKind::Bool(b) => (
                ExprKind::Lit {
                    value: Literal::Bool(*b),
                },
                Type::Bool,
            ),
            ast::ExprKind::Duration(d) => (
                ExprKind::Lit {
                    value: Literal::Duration(d.millis),
                },
                Type::Duration,
            ),
            ast::ExprKind::Path(parts) => return self.path(parts, e.span),
            ast::ExprKind::Call { name, args } => return self.call(name, args, e.span),
            ast::ExprKind::Unary { op, operand } => {
                let operand = self.expr(operand);
                let ty = match op {
                    UnaryOp::Not => {
                        if operand.ty != Type::Bool && operand.ty != Type::Unknown {
                            self.err(
                                "type-mismatch",
                                operand.span,
                                format!(
                                    "`not` needs true/false, but this is {}",
                                    operand.ty.describe()
                                ),
                            );
                        }
                        Type::Bool
                    }
                    UnaryOp::Neg => {
                        if !operand.ty.is_numeric() && operand.ty != Type::Unknown {
                            self.err(
                                "type-mismatch",
                                operand.span,
                                format!(
                                    "`-` needs a number, but this is {}",
                                    operand.ty.describe()
                                ),
                            );
                            Type::Unknown
                        } else {
                            operand.ty.clone()
                        }
                    }
                };
                (
                    ExprKind::Unary {
                        op: *op,
                        operand: Box::new(operand),
                    },
                    ty,
                )
            }
            ast::ExprKind::Binary { op, lhs, rhs } => {
                let lhs = self.expr(lhs);
                let rhs = self.expr(rhs);
                let ty = self.binary_type(*op, &lhs, &rhs, e.span);
                (
                    ExprKind::Binary {
                        op: *op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    ty,
                )
            }
        };
        Expr {
            kind,
            ty,
            span: e.span,
        }
    }

    fn binary_type(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, span: Span) -> Type {
        let (lt, rt) = (&lhs.ty, &rhs.ty);
        let unknown = *lt == Type::Unknown || *rt == Type::Unknown;
        match op {
            BinaryOp::And | BinaryOp::Or => {
                for side in [lhs, rhs] {
                    if side.ty != Type::Bool && side.ty != Type::Unknown {
                        self.err(
                            "type-mismatch",
                            side.span,
                            format!(
                                "`{}` needs true/false on both sides, but this is {}",
                                op.symbol(),
                                side.ty.describe()
                            ),
                        );
                    }
                }
                Type::Bool
            }
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => {
                let ordering = !matches!(op, BinaryOp::Eq | BinaryOp::Ne);
                let comparable = unknown
                    || (lt.is_numeric() && rt.is_numeric())
                    || (lt == rt && !matches!(lt, Type::Row(_)))
                    || matches!(
                        (lt, rt),
                        (Type::DateTime, Type::Date | Type::Time)
                            | (Type::Date | Type::Time, Type::DateTime)
                    );
                if !comparable {
                    let hint = match (lt, rt) {
                        (Type::Text, t) | (t, Type::Text) if t.is_numeric() => {
                            let (text, num) = if *lt == Type::Text {
                                (lhs, rhs)
                            } else {
                                (rhs, lhs)
                            };
                            Some(match (&text.kind, &num.kind) {
                                // `balance > "100"`: the quotes are the mistake.
                                (ExprKind::Lit { value: Literal::Text(t) }, _)
                                    if t.trim().parse::<rust_decimal::Decimal>().is_ok() =>
                                {
                                    format!("write the number without quotes: `{}`", t.trim())
                                }
                                // `caller == 10086`: the number should be text.
                                (_, ExprKind::Lit { value: Literal::Number(n) }) => format!(
                                    "text and numbers never compare equal: quote the number, `\"{n}\"`"
                                ),
                                _ => "text and numbers never compare equal: compare text with quoted text, numbers with numbers".to_string(),
                            })
                        }
                        (Type::Row(_), _) | (_, Type::Row(_)) => {
                            Some("compare one of its fields, e.g. `customer.id`".to_string())
                        }
                        _ => None,
                    };
                    self.err(
                        "type-mismatch",
                        span,
                        format!("cannot compare {} with {}", lt.describe(), rt.describe()),
                    )
                    .hint = hint;
                } else if ordering && (*lt == Type::Bool || *rt == Type::Bool) {
                    self.err(
                        "type-mismatch",
                        span,
                        format!("`{}` does not apply to true/false", op.symbol()),
                    );
                }
                Type::Bool
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => {
                if unknown {
                    return Type::Unknown;
                }
                if lt.is_numeric() && rt.is_numeric() {
                    if *lt == Type::Money || *rt == Type::Money {
                        Type::Money
                    } else {
                        Type::Number
                    }
                } else if *lt == Type::Duration
                    && *rt == Type::Duration
                    && matches!(op, BinaryOp::Add | BinaryOp::Sub)
                {
                    Type::Duration
                } else {
                    let bad = if lt.is_numeric() { rhs } else { lhs };
                    self.err(
                        "type-mismatch",
                        bad.span,
                        format!(
                            "`{}` needs numbers, but this is {}",
                            op.symbol(),
                            bad.ty.describe()
                        ),
                    );
                    Type::Unknown
                }
            }
        }
    }

    fn path(&mut self, parts: &[ast::Ident], span: Span) -> Expr {
        let joined: String = parts
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(".");
        if let Some((_, b)) = Builtin::ALL.iter().find(|(p, _)| *p == joined) {
            return Expr {
                kind: ExprKind::Builtin { builtin: *b },
                ty: Type::Text,
                span,
            };
        }
        let unknown = Expr {
            kind: ExprKind::Lit {
                value: Literal::Bool(false),
            },
            ty: Type::Unknown,
            span,
        };
        let Some(head) = parts.first() else {
            return unknown;
        };
        if head.name == CONTACT {
            return self.contact(parts, span).unwrap_or(unknown);
        }
        if matches!(head.name.as_str(), "caller" | "called" | "language")
            && let Some(field) = parts.get(1)
        {
            self.err(
                "unknown-field",
                field.span,
                format!("`{}` is text, which has no fields", head.name),
            )
            .hint = Some(format!(
                "`{}` is a built-in variable; use it whole, e.g. `len({})`",
                head.name, head.name
            ));
            return unknown;
        }
        if matches!(head.name.as_str(), "call" | "flow") {
            let fields: Vec<&str> = Builtin::ALL
                .iter()
                .filter_map(|(p, _)| {
                    p.strip_prefix(head.name.as_str())
                        .and_then(|r| r.strip_prefix('.'))
                })
                .collect();
            let field = parts.get(1).map_or("", |f| f.name.as_str());
            let hint = crate::suggest::nearest(field, fields.iter().copied())
                .map(|f| format!("did you mean `{}.{f}`?", head.name))
                .unwrap_or_else(|| {
                    format!(
                        "`{}` has {}",
                        head.name,
                        fields
                            .iter()
                            .map(|f| format!("`{}.{f}`", head.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            self.err(
                "unknown-field",
                span,
                format!("`{joined}` is not a built-in variable"),
            )
            .hint = Some(hint);
            return unknown;
        }
        let Some(&var) = self.var_ix.get(&head.name) else {
            let candidates: Vec<String> = self
                .var_ix
                .keys()
                .cloned()
                .chain(Builtin::ALL.iter().map(|(p, _)| p.to_string()))
                .collect();
            let hint = did_you_mean(&head.name, candidates.iter().map(String::as_str)).unwrap_or_else(|| {
                "variables are assigned by `set NAME = ...`, an input's `into` or a lookup's `into`".into()
            });
            self.err(
                "unknown-variable",
                head.span,
                format!("`{}` is never assigned", head.name),
            )
            .hint = Some(hint);
            return unknown;
        };
        let var_ty = self.vars[var as usize].ty.clone();
        match parts {
            [_] => Expr {
                kind: ExprKind::Var { var },
                ty: var_ty,
                span,
            },
            [_, field] => match &var_ty {
                Type::Row(query) => {
                    let Some(def) = self.env.config.queries.get(query) else {
                        return unknown;
                    };
                    match def.fields.get_full(&field.name) {
                        Some((index, _, ty)) => Expr {
                            kind: ExprKind::Field {
                                var,
                                index: index as u32,
                                name: field.name.clone(),
                            },
                            ty: field_type(*ty),
                            span,
                        },
                        None => {
                            let hint =
                                did_you_mean(&field.name, def.fields.keys().map(String::as_str))
                                    .unwrap_or_else(|| {
                                        format!(
                                            "query `{query}` returns {}",
                                            def.fields
                                                .keys()
                                                .map(|f| format!("`{f}`"))
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        )
                                    });
                            self.err(
                                "unknown-field",
                                field.span,
                                format!(
                                    "`{}` has no field `{}`: query `{query}` does not return it",
                                    head.name, field.name
                                ),
                            )
                            .hint = Some(hint);
                            unknown
                        }
                    }
                }
                Type::Unknown => unknown,
                other => {
                    self.err(
                        "unknown-field",
                        field.span,
                        format!(
                            "`{}` is {}, which has no fields",
                            head.name,
                            other.describe()
                        ),
                    );
                    unknown
                }
            },
            _ => {
                self.err(
                    "unknown-field",
                    span,
                    format!("`{joined}` goes too deep: a row has fields, fields have none"),
                );
                unknown
            }
        }
    }

    /// `contact.FIELD`: a field of the list row of the campaign that runs the main flow,
    /// typed as its list query declares it. Every campaign that runs the flow must return it.
    fn contact(&mut self, parts: &[ast::Ident], span: Span) -> Option<Expr> {
        let flow = self.units.first()?.name;
        let campaigns: Vec<(&str, &crate::config::CampaignConfig)> = self
            .env
            .config
            .campaigns
            .iter()
            .filter(|(_, c)| c.flow == flow)
            .map(|(n, c)| (n.as_str(), c))
            .collect();
        let Some(&(first, campaign)) = campaigns.first() else {
            if self
                .env
                .config
                .refused_campaign_flows
                .iter()
                .any(|f| f == flow)
            {
                // The campaign that runs this flow has errors of its own, reported at its
                // place in ivr.toml; saying "no campaign runs it" again would mislead.
                return None;
            }
            self.err(
                "contact-without-campaign",
                parts[0].span,
                format!(
                    "flow `{flow}` reads `contact`, but no campaign runs it: `contact` is the list row of an outbound call"
                ),
            )
            .hint = Some(format!(
                "add `[campaigns.NAME]` with `flow = \"{flow}\"` and `list = \"QUERY\"` to ivr.toml (see docs/outbound.md)"
            ));
            return None;
        };
        let field = match parts {
            [_, field] => field,
            [_] => {
                self.err(
                    "unknown-field",
                    span,
                    "`contact` is a row: read one of its fields, e.g. `contact.phone`",
                );
                return None;
            }
            _ => {
                self.err(
                    "unknown-field",
                    span,
                    "this goes too deep: `contact` has fields, fields have none",
                );
                return None;
            }
        };
        // The list query missing is reported in ivr.toml.
        let def = self.env.config.queries.get(&campaign.list)?;
        let Some(ty) = def.fields.get(&field.name).copied() else {
            let hint = did_you_mean(&field.name, def.fields.keys().map(String::as_str))
                .unwrap_or_else(|| {
                    format!(
                        "query `{}` returns {}",
                        campaign.list,
                        def.fields
                            .keys()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            self.err(
                "unknown-field",
                field.span,
                format!(
                    "`contact` has no field `{}`: query `{}`, the list of campaign `{first}`, does not return it",
                    field.name, campaign.list
                ),
            )
            .hint = Some(hint);
            return None;
        };
        for &(other, c) in &campaigns[1..] {
            let Some(def) = self.env.config.queries.get(&c.list) else {
                continue;
            };
            match def.fields.get(&field.name) {
                Some(t) if field_type(*t) == field_type(ty) => {}
                found => {
                    let what = match found {
                        Some(t) => format!("returns it as {}", t.name()),
                        None => "does not return it".to_string(),
                    };
                    self.err(
                        "unknown-field",
                        field.span,
                        format!(
                            "campaign `{other}` also runs this flow, and its list `{}` {what} (`{first}`'s returns {})",
                            c.list,
                            ty.name()
                        ),
                    )
                    .hint = Some(
                        "every campaign that runs a flow must return the contact fields it reads, with the same types".into(),
                    );
                }
            }
        }
        Some(Expr {
            kind: ExprKind::Contact {
                field: field.name.clone(),
            },
            ty: field_type(ty),
            span,
        })
    }

    fn call(&mut self, name: &ast::Ident, args: &[ast::Expr], span: Span) -> Expr {
        let unknown = Expr {
            kind: ExprKind::Lit {
                value: Literal::Bool(false),
            },
            ty: Type::Unknown,
            span,
        };
        let arity = |l: &mut Self, n: usize| {
            if args.len() != n {
                l.err(
                    "function-arguments",
                    span,
                    format!(
                        "`{}` takes {n} argument{}, not {}",
                        name.name,
                        if n == 1 { "" } else { "s" },
                        args.len()
                    ),
                );
                false
            } else {
                true
            }
        };
        match name.name.as_str() {
            "len" => {
                if !arity(self, 1) {
                    return unknown;
                }
                let arg = self.expr(&args[0]);
                if !matches!(arg.ty, Type::Text | Type::Number | Type::Unknown) {
                    self.err(
                        "type-mismatch",
                        arg.span,
                        format!(
                            "`len` counts the characters of text, but this is {}",
                            arg.ty.describe()
                        ),
                    );
                }
                Expr {
                    kind: ExprKind::Len { arg: Box::new(arg) },
                    ty: Type::Number,
                    span,
                }
            }
            "now" => {
                if !arity(self, 0) {
                    return unknown;
                }
                Expr {
                    kind: ExprKind::Now,
                    ty: Type::DateTime,
                    span,
                }
            }
            "in_hours" => {
                if !arity(self, 1) {
                    return unknown;
                }
                let ast::ExprKind::Path(parts) = &args[0].kind else {
                    self.err(
                        "bad-argument",
                        args[0].span,
                        "`in_hours` takes the name of a calendar",
                    )
                    .hint =
                        Some("e.g. `in_hours(agents)`, with [calendars.agents] in ivr.toml".into());
                    return unknown;
                };
                let cal = parts
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(".");
                if !self.env.config.calendars.contains_key(&cal) {
                    let hint =
                        did_you_mean(&cal, self.env.config.calendars.keys().map(String::as_str))
                            .unwrap_or_else(|| {
                                "calendars are declared as [calendars.NAME] in ivr.toml".into()
                            });
                    self.err(
                        "unknown-calendar",
                        args[0].span,
                        format!("there is no calendar `{cal}`"),
                    )
                    .hint = Some(hint);
                }
                Expr {
                    kind: ExprKind::InHours { calendar: cal },
                    ty: Type::Bool,
                    span,
                }
            }
            other => {
                let hint = did_you_mean(other, ["len", "in_hours", "now"]).unwrap_or_else(|| {
                    "the functions are `len(x)`, `in_hours(CALENDAR)` and `now()`".into()
                });
                self.err(
                    "unknown-function",
                    name.span,
                    format!("there is no function `{other}`"),
                )
                .hint = Some(hint);
                for a in args {
                    self.expr(a);
                }
                unknown
            }
        }
    }
}

/// The expression type of a catalog field type.
pub fn field_type(t: FieldType) -> Type {
    match t {
        FieldType::Number => Type::Number,
        FieldType::Money => Type::Money,
        FieldType::Text => Type::Text,
        FieldType::Bool => Type::Bool,
        FieldType::Date => Type::Date,
        FieldType::Time => Type::Time,
    }
}
