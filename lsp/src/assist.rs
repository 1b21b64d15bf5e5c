//! Hover, completion, document symbols and formatting.

use crate::navigate::at_cursor;
use crate::project::{FlowFileState, Project};
use crate::refs::{Kind, exits};
use crate::reply::Failure;
use crate::uri;
use ivr_dsl::ast::{Node, NodeKind};
use ivr_dsl::outline::ItemKind;
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionParams, DocumentFormattingParams, DocumentSymbol,
    DocumentSymbolParams, Hover, HoverContents, HoverParams, MarkupContent, MarkupKind, SymbolKind,
    TextEdit,
};
use serde_json::Value;
use std::fmt::Write;

/// Built-in variables and what they hold.
const BUILTIN_VARS: &[(&str, &str)] = &[
    ("caller", "the calling number"),
    ("called", "the dialled number"),
    (
        "call",
        "the call: `call.id`, `call.channel` (`sip`, `webrtc`, `sim`)",
    ),
    ("language", "the language callers hear"),
    ("flow", "this flow: `flow.version`"),
];
/// Functions of expressions.
const FUNCTIONS: &[(&str, &str)] = &[
    ("len", "`len(x)`: the number of characters of a text"),
    (
        "in_hours",
        "`in_hours(NAME)`: whether a calendar of ivr.toml is open now",
    ),
    ("now", "`now()`: the current date and time"),
];
const TOP_WORDS: &[&str] = &[
    "flow", "import", "step", "menu", "input", "lookup", "transfer", "survey", "record",
];
const TARGETS: &[&str] = &["repeat", "back", "main", "hangup"];

/// The clause words a block takes.
fn clause_words(kind: ItemKind) -> &'static [&'static str] {
    match kind {
        ItemKind::Header => &["title", "language", "entry"],
        ItemKind::Import => &[],
        ItemKind::Node(k) => match k {
            NodeKind::Step => &[
                "play", "say", "set", "pause", "if", "goto", "hangup", "served", "record",
            ],
            NodeKind::Menu => &[
                "prompt",
                "timeout",
                "inter_digit",
                "attempts",
                "no_input",
                "no_match",
                "barge_in",
                "key",
            ],
            NodeKind::Input => &[
                "prompt",
                "digits",
                "terminator",
                "timeout",
                "inter_digit",
                "attempts",
                "mask",
                "no_input",
                "no_match",
                "barge_in",
                "valid",
                "into",
                "next",
            ],
            NodeKind::Lookup => &["query", "timeout", "found", "missing", "error"],
            NodeKind::Transfer => &[
                "queue",
                "to",
                "skills",
                "priority",
                "attach",
                "music",
                "announce",
                "max_wait",
                "no_agents",
                "after",
                "overflow",
                "level",
                "callback",
            ],
            NodeKind::Survey => &[
                "question",
                "timeout",
                "inter_digit",
                "attempts",
                "no_input",
                "no_match",
                "barge_in",
                "save",
                "next",
            ],
            NodeKind::Record => &[
                "prompt",
                "beep",
                "max",
                "silence",
                "terminator",
                "save",
                "next",
            ],
        },
    }
}

fn markdown(text: String) -> HoverContents {
    HoverContents::Markup(MarkupContent {
        kind: MarkupKind::Markdown,
        value: text,
    })
}

fn node_summary(node: &Node, flow: &str) -> String {
    let mut s = format!("**{}** `{}`", node.kind().keyword(), node.name.name);
    if !flow.is_empty() {
        let _ = write!(s, " (flow `{flow}`)");
    }
    let exits = exits(node);
    if !exits.is_empty() {
        s.push_str("\n\nexits:\n");
        for e in exits {
            let _ = writeln!(s, "- `{e}`");
        }
    }
    s
}

/// `textDocument/hover`
pub(crate) fn hover(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: HoverParams = serde_json::from_value(params)?;
    let Some((_, file, occ)) = at_cursor(project, &p.text_document_position_params) else {
        return Ok(Value::Null);
    };
    let settings = project.settings();
    let text = match &occ.kind {
        Kind::Node => file
            .ast
            .nodes
            .iter()
            .find(|n| n.name.name == occ.name)
            .map(|n| node_summary(n, "")),
        Kind::ImportedNode { flow } => project
            .flow_path(flow)
            .and_then(|p| project.file(&p))
            .and_then(|f| {
                f.ast
                    .nodes
                    .iter()
                    .find(|n| n.name.name == occ.name)
                    .map(|n| node_summary(n, flow))
            }),
        Kind::Flow => project
            .flow_path(&occ.name)
            .and_then(|p| project.file(&p))
            .map(|f| {
                let title = f
                    .ast
                    .header
                    .as_ref()
                    .and_then(|h| h.title.as_ref())
                    .map_or(String::new(), |t| format!(": {}", t.node));
                format!(
                    "**flow** `{}`{title}\n\n{} nodes",
                    occ.name,
                    f.ast.nodes.len()
                )
            }),
        Kind::Prompt => {
            let mut s = format!("**prompt** `{}`\n", occ.name);
            for (lang, c) in &settings.catalogs.languages {
                match c.entries.get(&occ.name) {
                    Some(e) => {
                        let audio = if e.has_audio { "" } else { " (no audio file)" };
                        let _ = write!(s, "\n- {lang}: {}{audio}", e.text);
                    }
                    None => {
                        let _ = write!(s, "\n- {lang}: *missing*");
                    }
                }
            }
            Some(s)
        }
        Kind::Query => settings.config.queries.get(&occ.name).map(|q| {
            let mut s = format!("**query** `{}`({})", occ.name, q.args.join(", "));
            if q.transaction {
                s.push_str(" (transaction)");
            }
            let _ = write!(s, "\n\n```sql\n{}\n```", q.statements.join(";\n"));
            if !q.fields.is_empty() {
                s.push_str("\n\nfields: ");
                let fields: Vec<String> = q
                    .fields
                    .iter()
                    .map(|(f, t)| format!("`{f}` {}", t.name()))
                    .collect();
                s.push_str(&fields.join(", "));
            }
            s
        }),
        Kind::Queue => settings.config.queues.get(&occ.name).map(|q| {
            format!(
                "**queue** `{}`\n\nskills: {}\n\nring timeout {} ms, wrap-up {} ms",
                occ.name,
                if q.skills.is_empty() {
                    "none".to_string()
                } else {
                    q.skills.join(", ")
                },
                q.ring_timeout(),
                q.wrap_up()
            )
        }),
        Kind::Var => {
            if let Some((_, what)) = BUILTIN_VARS.iter().find(|(n, _)| *n == occ.name) {
                Some(format!("**built-in variable** `{}`: {what}", occ.name))
            } else if let Some(i) = file.index.intos.iter().find(|i| i.var == occ.name) {
                Some(format!(
                    "**variable** `{}`: a row of query `{}`",
                    occ.name, i.query
                ))
            } else {
                Some(format!("**variable** `{}`", occ.name))
            }
        }
        Kind::Field { var } => file
            .index
            .intos
            .iter()
            .find(|i| &i.var == var)
            .and_then(|i| settings.config.queries.get(&i.query).map(|q| (i, q)))
            .and_then(|(i, q)| {
                q.fields.get(&occ.name).map(|t| {
                    format!(
                        "**field** `{}.{}`: {} (query `{}`)",
                        var,
                        occ.name,
                        t.name(),
                        i.query
                    )
                })
            }),
        Kind::Function => FUNCTIONS
            .iter()
            .find(|(n, _)| *n == occ.name)
            .map(|(_, d)| d.to_string()),
    };
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    let hover = Hover {
        contents: markdown(text),
        range: Some(file.lines.range(&file.text, occ.span)),
    };
    Ok(serde_json::to_value(hover)?)
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..Default::default()
    }
}

/// `textDocument/completion`: what may be written at the cursor, from the words before it on
/// its line.
pub(crate) fn completion(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: CompletionParams = serde_json::from_value(params)?;
    let pos = &p.text_document_position;
    let Some(path) = uri::to_path(&pos.text_document.uri) else {
        return Ok(Value::Null);
    };
    let Some(file) = project.file(&path) else {
        return Ok(Value::Null);
    };
    let settings = project.settings();
    let offset = file.lines.offset(&file.text, pos.position);
    let line_start = file.text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &file.text[line_start..offset];
    // The word being typed, and the words before it.
    let partial_start = before
        .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
        .map_or(0, |i| {
            i + before[i..].chars().next().map_or(1, char::len_utf8)
        });
    let head = &before[..partial_start];
    let words: Vec<&str> = head.split_whitespace().collect();
    let first = words.first().copied().unwrap_or("");
    let mut items = Vec::new();
    let nodes = |items: &mut Vec<CompletionItem>, f: &FlowFileState| {
        for n in &f.ast.nodes {
            items.push(item(
                &n.name.name,
                CompletionItemKind::FUNCTION,
                Some(n.kind().keyword().into()),
            ));
        }
    };
    let prompts = |items: &mut Vec<CompletionItem>| {
        let mut seen = std::collections::HashSet::new();
        for c in settings.catalogs.languages.values() {
            for (id, e) in &c.entries {
                if seen.insert(id.clone()) {
                    items.push(item(id, CompletionItemKind::VALUE, Some(e.text.clone())));
                }
            }
        }
    };
    if let Some(dotted) = head.strip_suffix('.') {
        // `x.`: the nodes of an imported flow, a row's fields, or a built-in's.
        let var = dotted
            .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        if file.ast.imports.iter().any(|i| i.name == var) {
            if let Some(f) = project.flow_path(var).and_then(|p| project.file(&p)) {
                nodes(&mut items, &f);
            }
        } else if let Some(i) = file.index.intos.iter().find(|i| i.var == var) {
            if let Some(q) = settings.config.queries.get(&i.query) {
                for (f, t) in &q.fields {
                    items.push(item(f, CompletionItemKind::FIELD, Some(t.name().into())));
                }
            }
        } else if var == "contact" {
            // A campaign's flow: the fields of its list query.
            let list = file.ast.header.as_ref().and_then(|h| {
                ivr_compiler::config::CampaignConfig::of_flow(
                    &settings.config.campaigns,
                    &h.name.name,
                )
            });
            if let Some(q) = list.and_then(|(_, c)| settings.config.queries.get(&c.list)) {
                for (f, t) in &q.fields {
                    items.push(item(f, CompletionItemKind::FIELD, Some(t.name().into())));
                }
            }
        } else if var == "call" {
            items.push(item("id", CompletionItemKind::FIELD, None));
            items.push(item("channel", CompletionItemKind::FIELD, None));
        } else if var == "flow" {
            items.push(item("version", CompletionItemKind::FIELD, None));
        }
    } else if words.is_empty() {
        // The start of a line: clause words of the enclosing block, or items at the top.
        let enclosing =
            file.outline.items.iter().find(|i| {
                i.head.end as usize <= offset && (offset < i.span.end as usize || !i.closed)
            });
        let words = enclosing.map_or(TOP_WORDS, |i| clause_words(i.kind));
        for w in words {
            items.push(item(w, CompletionItemKind::KEYWORD, None));
        }
    } else if words.last() == Some(&"->")
        || (words.len() == 1 && matches!(first, "goto" | "entry" | "next"))
    {
        nodes(&mut items, &file);
        for t in TARGETS {
            items.push(item(
                t,
                CompletionItemKind::KEYWORD,
                Some("built-in target".into()),
            ));
        }
        for i in &file.ast.imports {
            items.push(item(
                &i.name,
                CompletionItemKind::MODULE,
                Some("imported flow".into()),
            ));
        }
    } else if matches!(first, "play" | "prompt" | "music")
        || (matches!(first, "no_input" | "no_match") && words.len() >= 2)
        || (first == "question" && words.len() == 2)
    {
        prompts(&mut items);
    } else if matches!(first, "no_input" | "no_match") {
        items.push(item("play", CompletionItemKind::KEYWORD, None));
    } else if first == "query" && words.len() == 1 {
        for (name, q) in &settings.config.queries {
            items.push(item(
                name,
                CompletionItemKind::METHOD,
                Some(format!("({})", q.args.join(", "))),
            ));
        }
    } else if first == "queue" && words.len() == 1 {
        for name in settings.config.queues.keys() {
            items.push(item(
                name,
                CompletionItemKind::ENUM_MEMBER,
                Some("queue".into()),
            ));
        }
    } else if first == "say" && words.len() == 1 {
        for k in ["money", "number", "digits", "date", "time"] {
            items.push(item(k, CompletionItemKind::KEYWORD, None));
        }
    } else {
        // An expression: variables, built-ins and functions.
        let mut seen = std::collections::HashSet::new();
        for o in &file.index.occurrences {
            if o.kind == Kind::Var && o.decl && seen.insert(o.name.clone()) {
                items.push(item(&o.name, CompletionItemKind::VARIABLE, None));
            }
        }
        for (n, d) in BUILTIN_VARS {
            items.push(item(n, CompletionItemKind::VARIABLE, Some(d.to_string())));
        }
        let campaign = file.ast.header.as_ref().and_then(|h| {
            ivr_compiler::config::CampaignConfig::of_flow(&settings.config.campaigns, &h.name.name)
        });
        if let Some((name, _)) = campaign {
            let detail = format!("the list row of campaign `{name}`");
            items.push(item("contact", CompletionItemKind::VARIABLE, Some(detail)));
        }
        for (n, d) in FUNCTIONS {
            items.push(item(n, CompletionItemKind::FUNCTION, Some(d.to_string())));
        }
        if first == "if" || first == "valid" || words.contains(&"if") {
            for w in ["and", "or", "not", "true", "false"] {
                items.push(item(w, CompletionItemKind::KEYWORD, None));
            }
        }
    }
    Ok(serde_json::to_value(items)?)
}

/// `textDocument/documentSymbol`: the header and every node, in the order written.
pub(crate) fn symbols(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: DocumentSymbolParams = serde_json::from_value(params)?;
    let Some(file) = uri::to_path(&p.text_document.uri).and_then(|path| project.file(&path)) else {
        return Ok(Value::Null);
    };
    let mut out = Vec::new();
    #[allow(deprecated)]
    let symbol = |name: &str, detail: String, kind: SymbolKind, span, sel| DocumentSymbol {
        name: name.to_string(),
        detail: Some(detail),
        kind,
        tags: None,
        deprecated: None,
        range: file.lines.range(&file.text, span),
        selection_range: file.lines.range(&file.text, sel),
        children: None,
    };
    if let Some(h) = &file.ast.header {
        out.push(symbol(
            &h.name.name,
            "flow".into(),
            SymbolKind::MODULE,
            h.span,
            h.name.span,
        ));
    }
    for n in &file.ast.nodes {
        let kind = match n.kind() {
            NodeKind::Menu | NodeKind::Input | NodeKind::Survey => SymbolKind::ENUM,
            NodeKind::Lookup => SymbolKind::METHOD,
            NodeKind::Transfer => SymbolKind::EVENT,
            _ => SymbolKind::FUNCTION,
        };
        out.push(symbol(
            &n.name.name,
            n.kind().keyword().into(),
            kind,
            n.span,
            n.name.span,
        ));
    }
    Ok(serde_json::to_value(out)?)
}

/// `textDocument/formatting`: `ivr fmt` of the document; nothing when it has syntax errors.
pub(crate) fn formatting(project: &mut Project, params: Value) -> Result<Value, Failure> {
    let p: DocumentFormattingParams = serde_json::from_value(params)?;
    let Some(file) = uri::to_path(&p.text_document.uri).and_then(|path| project.file(&path)) else {
        return Ok(Value::Null);
    };
    match ivr_dsl::format::format_flow(&file.text) {
        Ok(formatted) if formatted == file.text => {
            Ok(serde_json::to_value(Vec::<TextEdit>::new())?)
        }
        Ok(formatted) => {
            let whole = file
                .lines
                .range(&file.text, ivr_dsl::Span::new(0, file.text.len()));
            Ok(serde_json::to_value(vec![TextEdit::new(whole, formatted)])?)
        }
        Err(e) => {
            tracing::info!("not formatted: {e}");
            Ok(Value::Null)
        }
    }
}
