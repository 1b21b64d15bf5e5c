//! The project the server checks: the configuration and prompt catalogs (reloaded when their
//! files change on disk), every flow of the flows folder and every open document, parsed once
//! per change of its text. A keystroke re-parses the edited file only and re-runs the checker
//! (`ivr_compiler::finish`) over the cached trees.

use crate::position::LineIndex;
use crate::refs::Index;
use ivr_compiler::catalog::Catalogs;
use ivr_compiler::config::Config;
use ivr_compiler::project::collect_flow_files;
use ivr_compiler::{FlowSource, finish, load_config};
use ivr_dsl::ast::FlowFile;
use ivr_dsl::outline::Outline;
use ivr_dsl::{Diagnostic, FileId, SourceMap, parse_flow_outline};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// Files and open documents at most this large are checked (a flow is a few hundred
/// kilobytes at most; the generated 5,000-node flow of the benchmark is 1.1 MB).
pub const MAX_FILE: usize = 16 * 1024 * 1024;
/// Flows of one project at most (the rest are not checked).
const MAX_FLOWS: usize = 2_000;

/// One flow file, parsed.
#[derive(Debug)]
pub struct FlowFileState {
    /// Its text.
    pub text: String,
    /// Its lines.
    pub lines: LineIndex,
    /// Its syntax tree.
    pub ast: FlowFile,
    /// Where its items and clauses are.
    pub outline: Outline,
    /// Its names.
    pub index: Index,
    /// The parser's diagnostics (file id 0).
    pub diags: Vec<Diagnostic>,
    /// The flow's name: the header's, else the file name.
    pub name: String,
}

impl FlowFileState {
    fn new(path: &Path, text: String) -> FlowFileState {
        let (parsed, outline) = parse_flow_outline(FileId(0), &text);
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("flow");
        let name = parsed
            .flow
            .header
            .as_ref()
            .map_or_else(|| stem.to_string(), |h| h.name.name.clone());
        FlowFileState {
            lines: LineIndex::new(&text),
            index: Index::new(&parsed.flow),
            ast: parsed.flow,
            outline,
            diags: parsed.diagnostics,
            name,
            text,
        }
    }
}

/// The configuration, the catalogs, and the files they were read from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration in force.
    pub config: Config,
    /// The prompt catalogs.
    pub catalogs: Catalogs,
    /// `ivr.toml` and every `prompts.toml`, in the order of their file ids.
    pub sources: SourceMap,
    /// Their diagnostics.
    pub diags: Vec<Diagnostic>,
    /// Sizes and times of those files when read.
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
}

/// The diagnostics of one run, by file.
#[derive(Debug, Default)]
pub struct Report {
    /// Every file of the run (flows, `ivr.toml`, catalogs) with its diagnostics (maybe none)
    /// and its text.
    pub files: BTreeMap<PathBuf, (Vec<Diagnostic>, Arc<str>)>,
    /// The path of each file id of the run (for diagnostics' related places).
    pub paths: Vec<PathBuf>,
}

/// The state of the server's project.
#[derive(Debug)]
pub struct Project {
    /// `ivr.toml` (it may not exist: then the defaults relative to `root`).
    pub config_path: PathBuf,
    /// Open documents' texts, by path.
    pub open: HashMap<PathBuf, String>,
    /// Parsed flows, by path.
    files: HashMap<PathBuf, Arc<FlowFileState>>,
    /// The configuration and catalogs.
    settings: Option<Arc<Settings>>,
    /// Flows of the last run: name and path.
    pub flows: Vec<(String, PathBuf)>,
}

impl Project {
    /// A project whose configuration is `config_path`.
    pub fn new(config_path: PathBuf) -> Project {
        Project {
            config_path,
            open: HashMap::new(),
            files: HashMap::new(),
            settings: None,
            flows: Vec::new(),
        }
    }

    /// The configuration and catalogs, read again when a file of theirs changed.
    pub fn settings(&mut self) -> Arc<Settings> {
        if let Some(s) = &self.settings
            && s.stamp == stamp(&self.config_path, &s.config.prompts_dir)
        {
            return s.clone();
        }
        let mut sources = SourceMap::new();
        let (config, mut diags) = if self.config_path.is_file() {
            match load_config(Some(&self.config_path), &mut sources) {
                Ok(x) => x,
                Err(_) => (defaults(&self.config_path), Vec::new()),
            }
        } else {
            (defaults(&self.config_path), Vec::new())
        };
        let catalogs = if config.unreadable {
            Catalogs::default()
        } else {
            let (catalogs, more) = Catalogs::load(&config.prompts_dir, &mut sources);
            diags.extend(more);
            catalogs
        };
        let settings = Arc::new(Settings {
            stamp: stamp(&self.config_path, &config.prompts_dir),
            config,
            catalogs,
            sources,
            diags,
        });
        self.settings = Some(settings.clone());
        settings
    }

    /// The text of a file: the open document's, else the file's on disk.
    fn text_of(&self, path: &Path) -> Option<String> {
        if let Some(t) = self.open.get(path) {
            return Some(t.clone());
        }
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > MAX_FILE as u64 {
            return None;
        }
        std::fs::read_to_string(path).ok()
    }

    /// A flow file parsed from its current text.
    pub fn file(&mut self, path: &Path) -> Option<Arc<FlowFileState>> {
        let text = self.text_of(path)?;
        if let Some(f) = self.files.get(path)
            && f.text == text
        {
            return Some(f.clone());
        }
        let state = Arc::new(FlowFileState::new(path, text));
        self.files.insert(path.to_path_buf(), state.clone());
        Some(state)
    }

    /// The path of the flow named `name` (of the last run, else in the flows folder).
    pub fn flow_path(&mut self, name: &str) -> Option<PathBuf> {
        if let Some((_, p)) = self.flows.iter().find(|(n, _)| n == name) {
            return Some(p.clone());
        }
        let dir = self.settings().config.flows_dir.clone();
        let p = dir.join(format!("{name}.flow"));
        p.is_file().then_some(p)
    }

    /// Checks every flow of the project and every open flow, as `ivr check` would.
    pub fn check(&mut self) -> Report {
        let settings = self.settings();
        let mut paths = Vec::new();
        if !settings.config.unreadable {
            collect_flow_files(&settings.config.flows_dir, &mut paths);
        }
        paths.extend(
            self.open
                .keys()
                .filter(|p| p.extension().is_some_and(|e| e == "flow"))
                .cloned(),
        );
        paths.sort();
        paths.dedup();
        paths.truncate(MAX_FLOWS);
        let mut states: Vec<(PathBuf, Arc<FlowFileState>)> = paths
            .iter()
            .filter_map(|p| self.file(p).map(|f| (p.clone(), f)))
            .collect();
        // Imports not among them: beside the importer, then in the flows folder.
        let mut i = 0;
        while i < states.len() && states.len() < MAX_FLOWS {
            let dir = states[i]
                .0
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let imports: Vec<String> = states[i]
                .1
                .ast
                .imports
                .iter()
                .map(|x| x.name.clone())
                .collect();
            for name in imports {
                if states.iter().any(|(_, f)| f.name == name) {
                    continue;
                }
                let candidates = [
                    dir.join(format!("{name}.flow")),
                    settings.config.flows_dir.join(format!("{name}.flow")),
                ];
                if let Some(p) = candidates.iter().find(|p| p.is_file())
                    && let Some(f) = self.file(p)
                {
                    states.push((p.clone(), f));
                }
            }
            i += 1;
        }
        let mut sources = settings.sources.clone();
        let mut diags = settings.diags.clone();
        let mut flows = Vec::with_capacity(states.len());
        self.flows = states
            .iter()
            .map(|(p, f)| (f.name.clone(), p.clone()))
            .collect();
        for (path, state) in states {
            let file = sources.add(&path, state.text.clone());
            diags.extend(state.diags.iter().cloned().map(|mut d| {
                d.file = file;
                d.related.iter_mut().for_each(|r| r.file = file);
                d
            }));
            // The checker consumes the tree: it is lent (moved in and taken back from the
            // result) rather than copied, unless a request still holds the file.
            drop(state);
            let ast = match self.files.get_mut(&path).and_then(Arc::get_mut) {
                Some(own) => std::mem::replace(&mut own.ast, empty_flow()),
                None => self
                    .files
                    .get(&path)
                    .map_or_else(empty_flow, |f| f.ast.clone()),
            };
            let name = self
                .files
                .get(&path)
                .map_or_else(String::new, |f| f.name.clone());
            flows.push(FlowSource {
                file,
                path,
                name,
                ast,
                requested: true,
            });
        }
        let mut checked = finish(
            sources,
            settings.config.clone(),
            settings.catalogs.clone(),
            flows,
            diags,
        );
        for flow in std::mem::take(&mut checked.flows) {
            if let Some(own) = self.files.get_mut(&flow.path).and_then(Arc::get_mut) {
                own.ast = flow.ast;
            }
        }
        let mut report = Report::default();
        for (_, path, text) in checked.sources.iter() {
            report.paths.push(path.to_path_buf());
            report
                .files
                .entry(path.to_path_buf())
                .or_insert_with(|| (Vec::new(), Arc::from(text)));
        }
        for d in checked.diagnostics {
            let path = checked.sources.path(d.file).to_path_buf();
            if let Some((list, _)) = report.files.get_mut(&path) {
                list.push(d);
            }
        }
        report
    }
}

fn empty_flow() -> FlowFile {
    FlowFile {
        header: None,
        imports: Vec::new(),
        nodes: Vec::new(),
    }
}

fn defaults(config_path: &Path) -> Config {
    let base = config_path.parent().unwrap_or(Path::new("."));
    Config::defaults(base)
}

/// Sizes and modification times of `ivr.toml` and every `prompts.toml`.
fn stamp(config: &Path, prompts: &Path) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let one = |p: PathBuf| {
        let meta = std::fs::metadata(&p).ok();
        let time = meta.as_ref().and_then(|m| m.modified().ok());
        (p, time, meta.map_or(0, |m| m.len()))
    };
    let mut out = vec![one(config.to_path_buf())];
    if let Ok(entries) = std::fs::read_dir(prompts) {
        let mut langs: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path().join("prompts.toml"))
            .collect();
        langs.sort();
        out.extend(langs.into_iter().map(one));
    }
    out
}
