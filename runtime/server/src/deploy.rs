//! A deployment: everything `ivr serve` runs at one moment — the checked flows, the prompt
//! store and the configuration — with a version (a content hash). Calls take the deployment
//! that is live when they start and keep it until they end; a reload builds a new one off the
//! hot path (see [`crate::live`]).

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use ivr_compiler::config::Config;
use ivr_compiler::program::Program;
use ivr_compiler::{CheckOptions, check};
use ivr_engine::Flow;
use ivr_media::audio::{ProblemKind, PromptStore};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A checked, loaded deployment.
#[derive(Debug)]
pub struct Deployment {
    /// The deployment's identity: a content hash of the configuration, catalogs, every flow
    /// and the prompt audio (16 hex digits). Not a flow's version: each flow has its own
    /// ([`Program::version`], what call records and `ivr report` carry).
    pub version: String,
    /// When it was built.
    pub loaded_at: DateTime<Utc>,
    /// The configuration.
    pub config: Config,
    /// Runnable flows by name.
    pub flows: IndexMap<String, Arc<Flow>>,
    /// Every prompt's audio, shared by every call.
    pub prompts: Arc<PromptStore>,
    /// Warnings of the check (rendered like `ivr check`), for logs.
    pub warnings: String,
    /// The same warnings as `ivr check --format json` gives them (`GET /status`).
    pub warnings_json: serde_json::Value,
    /// Why flows were not started (their errors, or each prompt without audio, rendered like
    /// `ivr check`); empty when every flow runs. Never a flow that was live before.
    pub left_out: String,
    /// The flows not started, by name.
    pub not_started: Vec<String>,
    /// The files the deployment was built from (the flow map shows a node's lines).
    pub sources: Arc<ivr_dsl::SourceMap>,
}

/// Why a deployment could not be built: the diagnostics, rendered as `ivr check` prints them
/// and as JSON.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{rendered}{errors} error(s)")]
pub struct LoadFailure {
    /// Diagnostics as `ivr check` prints them (no colour).
    pub rendered: String,
    /// Diagnostics as `ivr check --format json` prints them.
    pub json: serde_json::Value,
    /// Number of errors.
    pub errors: usize,
}

impl Deployment {
    /// Checks and loads everything `config` (or `./ivr.toml`) names. Decoded audio of files
    /// that did not change since `previous` is reused. A flow with check errors of its own,
    /// or whose prompt has no playable audio in a language it speaks, is left out
    /// ([`Self::not_started`]; [`Self::left_out`] says why); that fails the load when it
    /// leaves no flow, or when the flow is live in `previous`. Errors outside the flows (the
    /// configuration, a catalog) fail it.
    pub fn load(
        config: Option<&Path>,
        previous: Option<&Deployment>,
    ) -> Result<Deployment, LoadFailure> {
        let checked = check(&CheckOptions {
            config: config.map(Path::to_path_buf),
            paths: Vec::new(),
        })
        .map_err(|e| LoadFailure {
            rendered: format!("{e}\n"),
            json: serde_json::json!([{ "severity": "error", "code": "load", "message": e.to_string() }]),
            errors: 1,
        })?;
        // Flows with errors of their own are not started, the others are, unless one of them
        // is live now (an edit that breaks a live flow is refused whole) or none is left.
        let mut not_started: Vec<String> = Vec::new();
        let mut left_out = String::new();
        if checked.error_count() > 0 {
            let errors: Vec<_> = checked
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .cloned()
                .collect();
            match checked.broken_flows() {
                Some(broken)
                    if broken.len() < checked.programs.len()
                        && broken
                            .iter()
                            .all(|f| previous.is_none_or(|p| !p.flows.contains_key(f))) =>
                {
                    left_out.push_str(&checked.sources.render(&errors, false));
                    not_started.extend(broken);
                    not_started.sort();
                }
                _ => {
                    return Err(LoadFailure {
                        rendered: checked.sources.render(&errors, false),
                        json: checked.sources.to_json(&errors),
                        errors: errors.len(),
                    });
                }
            }
        }
        let (store, report) = match previous {
            Some(p) => p.prompts.reload(&checked.catalogs),
            None => PromptStore::load(&checked.catalogs),
        };
        // Prompts a flow plays must have audio in each language it speaks.
        let mut missing = Vec::new();
        let broken = not_started.len();
        for program in checked.programs.values() {
            if not_started.contains(&program.name) {
                continue;
            }
            let before = missing.len();
            for lang in &program.languages {
                for id in &program.prompts {
                    if store.get(lang, id).is_none() {
                        let why = report
                            .problems
                            .iter()
                            .find(|p| p.language == *lang && p.id == *id)
                            .map_or_else(
                                || "not in the catalog".to_string(),
                                |p| match &p.kind {
                                    ProblemKind::Missing => {
                                        format!("{} does not exist", p.path.display())
                                    }
                                    ProblemKind::Unreadable(r) => {
                                        format!("{}: {r}", p.path.display())
                                    }
                                },
                            );
                        missing.push(format!(
                            "flow `{}`: prompt `{id}` ({lang}) has no audio: {why}",
                            program.name
                        ));
                    }
                }
            }
            if missing.len() > before {
                not_started.push(program.name.clone());
            }
        }
        // A flow without its audio is not started and the others are (each missing prompt
        // named), unless it is live now: an edit that takes a live flow's audio away is
        // refused whole, as any broken edit.
        let partial = not_started.len() < checked.programs.len()
            && not_started[broken..]
                .iter()
                .all(|f| previous.is_none_or(|p| !p.flows.contains_key(f)));
        if partial {
            for m in &missing {
                left_out.push_str(&format!("error[missing-audio]: {m}\n"));
            }
            missing.clear();
        }
        if partial && !not_started.is_empty() {
            let mut names = not_started.clone();
            names.sort();
            left_out.push_str(&format!(
                "flow(s) not started: {} (their calls are refused until they are mended)\n",
                names.join(", ")
            ));
        }
        if !missing.is_empty() {
            let json = serde_json::Value::Array(
                missing
                    .iter()
                    .map(|m| serde_json::json!({ "severity": "error", "code": "missing-audio", "message": m }))
                    .collect(),
            );
            return Err(LoadFailure {
                rendered: missing
                    .iter()
                    .map(|m| format!("error[missing-audio]: {m}\n"))
                    .collect(),
                json,
                errors: missing.len(),
            });
        }
        let warnings = checked.sources.render(&checked.diagnostics, false);
        let warnings_json = checked.sources.to_json(&checked.diagnostics);
        let version = content_version(&checked.sources, &checked.catalogs, &checked.programs);
        let flows = checked
            .programs
            .iter()
            .filter(|(name, _)| !not_started.contains(name))
            .map(|(name, program)| {
                (
                    name.clone(),
                    Arc::new(Flow::new(program.clone(), &checked.config)),
                )
            })
            .collect();
        Ok(Deployment {
            version,
            loaded_at: Utc::now(),
            config: checked.config,
            flows,
            prompts: Arc::new(store),
            warnings,
            warnings_json,
            left_out,
            not_started,
            sources: Arc::new(checked.sources),
        })
    }

    /// Each flow's name and version, `hotline 1a2b…, common 3c4d… (library)`, for logs.
    pub fn flow_versions(&self) -> String {
        let list: Vec<String> = self
            .flows
            .iter()
            .map(|(name, f)| {
                let lib = if self.is_library(name) {
                    " (library)"
                } else {
                    ""
                };
                format!("{name} {}{lib}", f.program.version)
            })
            .collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    }

    /// Whether `name` is a library flow: imported by another flow and named by no route of
    /// `[routes]` (neither as the flow a number runs nor as a route key). Library flows are
    /// checked and their nodes run inside their importers, but nobody calls them directly,
    /// so the phone page does not offer them.
    pub fn is_library(&self, name: &str) -> bool {
        if self.config.routes.values().any(|f| f == name) || self.config.routes.contains_key(name) {
            return false;
        }
        let Some(own) = self.flows.get(name).and_then(|f| f.program.files.first()) else {
            return false;
        };
        self.flows.iter().any(|(other, f)| {
            other != name && f.program.files.iter().skip(1).any(|file| file == own)
        })
    }

    /// The flow a call to `called` runs: the route of that number, else the `default` route.
    pub fn flow_for(&self, called: &str) -> Option<(&str, &Arc<Flow>)> {
        let name = self.routed(called)?;
        self.flows.get_key_value(name).map(|(k, v)| (k.as_str(), v))
    }

    /// The flow name `[routes]` gives `called`: its own route, else `default`.
    fn routed(&self, called: &str) -> Option<&str> {
        self.config
            .routes
            .get(called)
            .or_else(|| self.config.routes.get("default"))
            .map(String::as_str)
    }

    /// Whether the flow that `called` (or a WHIP route) would run is one this deployment left
    /// out (`not_started`): the call is refused as temporarily unavailable, not unknown.
    pub fn routes_to_not_started(&self, called: &str) -> bool {
        let name = self.routed(called).unwrap_or(called);
        self.not_started.iter().any(|n| n == name)
    }

    /// The flow a route names (`POST /calls/ROUTE`): the route key, else a flow name, else
    /// the `default` route (as for a dialled number no route names).
    pub fn flow_for_route(&self, route: &str) -> Option<(&str, &Arc<Flow>)> {
        match self.config.routes.get(route) {
            Some(name) => self.flows.get_key_value(name).map(|(k, v)| (k.as_str(), v)),
            None => self
                .flows
                .get_key_value(route)
                .map(|(k, v)| (k.as_str(), v))
                .or_else(|| self.flow_for(route)),
        }
    }
}

/// A hash of every source read (configuration, catalogs, flows), every audio file's size and
/// modification time, and every program's version.
fn content_version(
    sources: &ivr_dsl::SourceMap,
    catalogs: &ivr_compiler::catalog::Catalogs,
    programs: &IndexMap<String, Program>,
) -> String {
    let mut h = Sha256::new();
    let mut files: Vec<(&Path, &str)> = sources.iter().map(|(_, p, s)| (p, s)).collect();
    files.sort();
    for (path, text) in files {
        h.update(path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(text.as_bytes());
        h.update([0]);
    }
    let mut audio: Vec<&PathBuf> = catalogs
        .languages
        .values()
        .flat_map(|c| c.entries.values().map(|e| &e.file))
        .collect();
    audio.sort();
    audio.dedup();
    for path in audio {
        h.update(path.to_string_lossy().as_bytes());
        if let Ok(meta) = std::fs::metadata(path) {
            h.update(meta.len().to_le_bytes());
            if let Ok(t) = meta.modified()
                && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
            {
                h.update(d.as_nanos().to_le_bytes());
            }
        }
    }
    for (name, p) in programs {
        h.update(name.as_bytes());
        h.update(p.version.as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
