//! The main loop: initialisation, document synchronisation, diagnostics, request dispatch.

use crate::position::LineIndex;
use crate::project::{Project, Report};
use crate::reply::Failure;
use crate::{assist, navigate, uri};
use ivr_dsl::Severity;
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use lsp_types::{
    CompletionOptions, Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity,
    DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
    InitializeParams, Location, OneOf, PublishDiagnosticsParams, ServerCapabilities, ServerInfo,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextDocumentSyncOptions,
    TextDocumentSyncSaveOptions, notification, request,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum LspError {
    /// The client broke the protocol (or went away before `exit`).
    #[error("protocol: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    /// The connection's threads failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A message could not be encoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// The client went away.
    #[error("the client closed the connection")]
    Closed,
}

/// Serves one client on standard input and output until it says `exit`. `config` is
/// `--config FILE`; without it, `ivr.toml` in the workspace's root folder (the current
/// folder when the client names none).
pub fn run_stdio(config: Option<PathBuf>) -> Result<(), LspError> {
    let (connection, io) = Connection::stdio();
    serve(&connection, config)?;
    drop(connection);
    io.join()?;
    Ok(())
}

/// Serves one client on `connection` (also the in-memory connections of tests).
pub fn serve(connection: &Connection, config: Option<PathBuf>) -> Result<(), LspError> {
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Options(
            TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(TextDocumentSyncKind::INCREMENTAL),
                save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                ..Default::default()
            },
        )),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Left(true)),
        hover_provider: Some(lsp_types::HoverProviderCapability::Simple(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), " ".into(), ">".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let result = serde_json::json!({
        "capabilities": capabilities,
        "serverInfo": ServerInfo { name: "ivr".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    let (id, params) = connection.initialize_start()?;
    let params: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    connection.initialize_finish(id, result)?;
    let config = config
        .map(|c| std::path::absolute(&c).unwrap_or(c))
        .unwrap_or_else(|| root(&params).join("ivr.toml"));
    tracing::info!(config = %config.display(), "language server started");
    let mut server = Server {
        conn: connection,
        project: Project::new(config),
        published: HashSet::new(),
    };
    server.run()
}

/// The workspace's root folder: the first workspace folder, else the root URI, else the
/// current folder.
#[allow(deprecated)]
fn root(params: &InitializeParams) -> PathBuf {
    params
        .workspace_folders
        .as_ref()
        .and_then(|f| f.first())
        .and_then(|f| uri::to_path(&f.uri))
        .or_else(|| params.root_uri.as_ref().and_then(uri::to_path))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

struct Server<'c> {
    conn: &'c Connection,
    project: Project,
    /// Files that have diagnostics on the client now, or were open since the last check.
    published: HashSet<PathBuf>,
}

impl Server<'_> {
    fn run(&mut self) -> Result<(), LspError> {
        loop {
            let Ok(first) = self.conn.receiver.recv() else {
                return Err(LspError::Closed);
            };
            let mut dirty = false;
            let mut next = Some(first);
            // Everything already waiting is handled before the project is checked again, so
            // that a burst of keystrokes costs one check.
            while let Some(msg) = next {
                match msg {
                    Message::Request(req) => {
                        if self.conn.handle_shutdown(&req)? {
                            return Ok(());
                        }
                        let resp = self.request(req);
                        self.send(Message::Response(resp))?;
                    }
                    Message::Notification(n) => {
                        if n.method == notification::Exit::METHOD {
                            return Ok(());
                        }
                        dirty |= self.notification(n);
                    }
                    Message::Response(_) => {}
                }
                next = self.conn.receiver.try_recv().ok();
            }
            if dirty {
                self.publish()?;
            }
        }
    }

    fn send(&self, msg: Message) -> Result<(), LspError> {
        self.conn.sender.send(msg).map_err(|_| LspError::Closed)
    }

    /// Handles a notification; true when the project changed.
    fn notification(&mut self, n: Notification) -> bool {
        match n.method.as_str() {
            notification::DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) else {
                    return false;
                };
                let Some(path) = uri::to_path(&p.text_document.uri) else {
                    return false;
                };
                if p.text_document.text.len() > crate::project::MAX_FILE {
                    tracing::warn!(path = %path.display(), "document too large: not checked");
                    return false;
                }
                self.project.open.insert(path, p.text_document.text);
                true
            }
            notification::DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) else {
                    return false;
                };
                let Some(path) = uri::to_path(&p.text_document.uri) else {
                    return false;
                };
                let Some(text) = self.project.open.get_mut(&path) else {
                    return false;
                };
                for change in p.content_changes {
                    match change.range {
                        Some(range) => {
                            let ix = LineIndex::new(text);
                            let start = ix.offset(text, range.start);
                            let end = ix.offset(text, range.end).max(start);
                            text.replace_range(start..end, &change.text);
                        }
                        None => *text = change.text,
                    }
                }
                if text.len() > crate::project::MAX_FILE {
                    tracing::warn!(path = %path.display(), "document too large: not checked");
                    self.project.open.remove(&path);
                }
                true
            }
            notification::DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params)
                    && let Some(path) = uri::to_path(&p.text_document.uri)
                {
                    self.project.open.remove(&path);
                    // Its diagnostics are cleared if it is no longer part of the project.
                    self.published.insert(path);
                }
                true
            }
            notification::DidSaveTextDocument::METHOD
            | notification::DidChangeWatchedFiles::METHOD => true,
            _ => false,
        }
    }

    /// Checks the project and sends every file's diagnostics (empty lists for files that had
    /// some and have none now).
    fn publish(&mut self) -> Result<(), LspError> {
        let report = self.project.check();
        let mut now = HashSet::new();
        for (path, (diags, text)) in &report.files {
            if diags.is_empty()
                && !self.published.contains(path)
                && !self.project.open.contains_key(path)
            {
                continue;
            }
            let ix = LineIndex::new(text);
            let list: Vec<Diagnostic> = diags
                .iter()
                .map(|d| to_lsp(d, &ix, text, &report))
                .collect();
            if !list.is_empty() {
                now.insert(path.clone());
            }
            self.send_diagnostics(path, list)?;
        }
        for gone in self.published.difference(&now).cloned().collect::<Vec<_>>() {
            if !report.files.contains_key(&gone) {
                self.send_diagnostics(&gone, Vec::new())?;
            }
        }
        self.published = now;
        Ok(())
    }

    fn send_diagnostics(&self, path: &Path, diagnostics: Vec<Diagnostic>) -> Result<(), LspError> {
        let Some(uri) = uri::from_path(path) else {
            return Ok(());
        };
        let params = PublishDiagnosticsParams {
            uri,
            diagnostics,
            version: None,
        };
        self.send(Message::Notification(Notification::new(
            notification::PublishDiagnostics::METHOD.into(),
            params,
        )))
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            request::GotoDefinition::METHOD => navigate::definition(&mut self.project, req.params),
            request::References::METHOD => navigate::references(&mut self.project, req.params),
            request::Rename::METHOD => navigate::rename(&mut self.project, req.params),
            request::HoverRequest::METHOD => assist::hover(&mut self.project, req.params),
            request::Completion::METHOD => assist::completion(&mut self.project, req.params),
            request::DocumentSymbolRequest::METHOD => {
                assist::symbols(&mut self.project, req.params)
            }
            request::Formatting::METHOD => assist::formatting(&mut self.project, req.params),
            _ => {
                return Response::new_err(
                    id,
                    ErrorCode::MethodNotFound as i32,
                    format!("unsupported request {}", req.method),
                );
            }
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err(Failure::Params(e)) => {
                Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string())
            }
            Err(Failure::Refused(message)) => {
                Response::new_err(id, ErrorCode::RequestFailed as i32, message)
            }
        }
    }
}

/// A related place of a diagnostic (`the first header`, `the other one`) as a location.
fn related(r: &ivr_dsl::Related, report: &Report) -> Option<DiagnosticRelatedInformation> {
    let path = report.paths.get(r.file.0 as usize)?;
    let (_, text) = report.files.get(path)?;
    let range = LineIndex::new(text).range(text, r.span);
    Some(DiagnosticRelatedInformation {
        location: Location::new(uri::from_path(path)?, range),
        message: r.message.clone(),
    })
}

fn to_lsp(d: &ivr_dsl::Diagnostic, ix: &LineIndex, text: &str, report: &Report) -> Diagnostic {
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    Diagnostic {
        range: ix.range(text, d.span),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            _ => DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp_types::NumberOrString::String(d.code.to_string())),
        source: Some("ivr".into()),
        message,
        related_information: (!d.related.is_empty()).then(|| {
            d.related
                .iter()
                .filter_map(|r| related(r, report))
                .collect()
        }),
        ..Default::default()
    }
}
