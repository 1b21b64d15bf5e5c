//! A checking run over a deployment: reads `ivr.toml`, the prompt catalogs and the flows, parses
//! and compiles every flow, runs the graph checks, and gathers all diagnostics of all files.

use crate::analysis::{analyse, reachable};
use crate::catalog::Catalogs;
use crate::config::Config;
use crate::lower::{Env, Unit, compile, named_on_broken_line};
use crate::program::{NodeId, Program};
use crate::suggest::did_you_mean;
use indexmap::IndexMap;
use ivr_dsl::ast::FlowFile;
use ivr_dsl::{Diagnostic, FileId, SourceMap, Span, parse_flow};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Failures that stop a run before any file can be checked.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `--config FILE` names a file that cannot be read.
    #[error("cannot read the configuration {path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A path given on the command line does not exist.
    #[error("{0}: no such file or folder")]
    NoSuchPath(PathBuf),
    /// The configured flows folder does not exist.
    #[error("the flows folder {0} does not exist (`[paths] flows` of ivr.toml, default `flows`)")]
    NoFlowsFolder(PathBuf),
    /// A flow file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No flow of that name.
    #[error("there is no flow `{name}`{hint}")]
    UnknownFlow {
        /// The name asked for.
        name: String,
        /// ``; did you mean `x`?`` or where flows were looked for.
        hint: String,
    },
}

/// One flow file read and parsed.
#[derive(Debug, Clone)]
pub struct FlowSource {
    /// The file in the run's source map.
    pub file: FileId,
    /// The path as given.
    pub path: PathBuf,
    /// The flow's name: the header's, else the file name.
    pub name: String,
    /// The syntax tree.
    pub ast: FlowFile,
    /// Whether the file was asked for (as opposed to loaded because another flow imports it).
    pub requested: bool,
}

/// The result of a run: every source, every compiled program and every diagnostic.
#[derive(Debug)]
pub struct Checked {
    /// The files read, for rendering diagnostics.
    pub sources: SourceMap,
    /// The configuration in force.
    pub config: Config,
    /// The prompt catalogs.
    pub catalogs: Catalogs,
    /// The flows read.
    pub flows: Vec<FlowSource>,
    /// Compiled programs by flow name (also those with errors).
    pub programs: IndexMap<String, Program>,
    /// All diagnostics, sorted by file and position, without duplicates.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    /// Number of warnings.
    pub fn warning_count(&self) -> usize {
        self.diagnostics.len() - self.error_count()
    }

    /// The flows that cannot run for their errors: an error in a flow's own file or in a flow
    /// it imports. `None` when an error is outside the flows (the configuration, a catalog):
    /// then nothing can be trusted.
    pub fn broken_flows(&self) -> Option<HashSet<String>> {
        let path = |file| self.sources.path(file).display().to_string();
        let flow_files: HashSet<String> = self.flows.iter().map(|f| path(f.file)).collect();
        let mut error_files = HashSet::new();
        for d in self.diagnostics.iter().filter(|d| d.is_error()) {
            let p = path(d.file);
            if !flow_files.contains(&p) {
                return None;
            }
            error_files.insert(p);
        }
        let mut broken: HashSet<String> = self
            .flows
            .iter()
            .filter(|f| error_files.contains(&path(f.file)))
            .map(|f| f.name.clone())
            .collect();
        for (name, program) in &self.programs {
            if program.files.iter().any(|f| error_files.contains(f)) {
                broken.insert(name.clone());
            }
        }
        Some(broken)
    }

    /// Diagnostics whose file is one of `flow`'s sources or a configuration file.
    pub fn diagnostics_of(&self, flow: &str) -> Vec<&Diagnostic> {
        let files: HashSet<FileId> = self
            .flows
            .iter()
            .filter(|f| f.name == flow)
            .map(|f| f.file)
            .collect();
        self.diagnostics
            .iter()
            .filter(|d| files.contains(&d.file))
            .collect()
    }
}

/// Reads the configuration: `path` when given (it must exist), else `./ivr.toml` when present,
/// else the built-in defaults relative to the current folder.
pub fn load_config(
    path: Option<&Path>,
    sources: &mut SourceMap,
) -> Result<(Config, Vec<Diagnostic>), LoadError> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("ivr.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let file = sources.add(&path, text.clone());
            Ok(Config::parse(file, &base, &text))
        }
        Err(e) if required || e.kind() != std::io::ErrorKind::NotFound => {
            Err(LoadError::Config { path, source: e })
        }
        Err(_) => Ok((Config::defaults(Path::new(".")), Vec::new())),
    }
}

/// Options of a checking run.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// Files or folders to check; empty means the configured flows folder.
    pub paths: Vec<PathBuf>,
}

/// Checks and compiles the flows named by `options`.
pub fn check(options: &CheckOptions) -> Result<Checked, LoadError> {
    let mut sources = SourceMap::new();
    let (config, mut diags) = load_config(options.config.as_deref(), &mut sources)?;
    // A configuration that cannot be read at all: its mistake alone (the flows checked
    // against the defaults would only show it again as missing queries, queues, calendars).
    if config.unreadable {
        return Ok(Checked {
            sources,
            config,
            catalogs: Catalogs::default(),
            flows: Vec::new(),
            programs: IndexMap::new(),
            diagnostics: diags,
        });
    }
    let (catalogs, catalog_diags) = Catalogs::load(&config.prompts_dir, &mut sources);
    diags.extend(catalog_diags);

    // The files asked for.
    let whole_folder = options.paths.is_empty();
    let roots = if whole_folder {
        vec![config.flows_dir.clone()]
    } else {
        options.paths.clone()
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for root in &roots {
        if root.is_dir() {
            collect_flow_files(root, &mut files);
        } else if root.is_file() {
            files.push(root.clone());
        } else if whole_folder {
            return Err(LoadError::NoFlowsFolder(root.clone()));
        } else {
            return Err(LoadError::NoSuchPath(root.clone()));
        }
    }
    files.sort();
    files.dedup();

    let mut flows: Vec<FlowSource> = Vec::new();
    for path in &files {
        flows.push(read_flow(path, true, &mut sources, &mut diags)?);
    }
    // Imports not among the requested files: looked up beside the importer, then in the flows
    // folder, until every import is loaded or known missing.
    let mut i = 0;
    while i < flows.len() {
        let dir = flows[i]
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let imports: Vec<String> = flows[i]
            .ast
            .imports
            .iter()
            .map(|x| x.name.clone())
            .collect();
        for name in imports {
            if flows.iter().any(|f| f.name == name) {
                continue;
            }
            let candidates = [
                dir.join(format!("{name}.flow")),
                config.flows_dir.join(format!("{name}.flow")),
            ];
            if let Some(path) = candidates.iter().find(|p| p.is_file()) {
                flows.push(read_flow(path, false, &mut sources, &mut diags)?);
            }
        }
        i += 1;
    }

    Ok(finish(sources, config, catalogs, flows, diags))
}

/// Checks flows already read into `sources` (the in-memory core of [`check`], also used by
/// benchmarks and fuzzing): names, compilation, graph checks, routes.
pub fn finish(
    sources: SourceMap,
    config: Config,
    catalogs: Catalogs,
    flows: Vec<FlowSource>,
    mut diags: Vec<Diagnostic>,
) -> Checked {
    // Flow names: unique, and equal to the file name.
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (ix, f) in flows.iter().enumerate() {
        if let Some(h) = &f.ast.header {
            let stem = f.path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if h.name.name != stem {
                diags.push(
                    Diagnostic::error(
                        "flow-name",
                        f.file,
                        h.name.span,
                        format!("flow `{}` is in the file `{}`", h.name.name, f.path.display()),
                    )
                    .with_hint(format!("a flow's name must match its file name: rename the file to `{}.flow` or the flow to `{stem}`", h.name.name)),
                );
            }
        }
        if let Some(&first) = by_name.get(&f.name) {
            diags.push(
                Diagnostic::error(
                    "duplicate-flow",
                    f.file,
                    f.ast
                        .header
                        .as_ref()
                        .map_or(Span::default(), |h| h.name.span),
                    format!("two files define flow `{}`", f.name),
                )
                .with_related(
                    flows[first].file,
                    flows[first]
                        .ast
                        .header
                        .as_ref()
                        .map_or(Span::default(), |h| h.name.span),
                    "the other one",
                ),
            );
        } else {
            by_name.insert(f.name.clone(), ix);
        }
    }

    let env = Env {
        config: &config,
        catalogs: &catalogs,
    };
    let units: HashMap<String, Unit> = by_name
        .iter()
        .map(|(name, &ix)| {
            let f = &flows[ix];
            (
                name.clone(),
                Unit {
                    file: f.file,
                    path: path_str(&f.path),
                    source: sources.source(f.file),
                    ast: &f.ast,
                    name: f.name.as_str(),
                },
            )
        })
        .collect();

    let mut programs: IndexMap<String, Program> = IndexMap::new();
    let mut order: Vec<&String> = by_name.keys().collect();
    order.sort();
    for name in order {
        let unit = units[name];
        let program = compile(&env, unit, &units, &mut diags);
        let unit_files: Vec<FileId> = program
            .files
            .iter()
            .map(|p| {
                flows
                    .iter()
                    .find(|f| path_str(&f.path) == p)
                    .map_or(unit.file, |f| f.file)
            })
            .collect();
        analyse(&program, &unit_files, &mut diags);
        programs.insert(name.clone(), program);
    }

    unreachable_nodes(&programs, &flows, &by_name, &sources, &mut diags);
    flows_without_served(&programs, &flows, &by_name, &mut diags);

    // Routes name flows of the flows folder.
    if let Some(cfg_file) = config.file {
        let known: Vec<String> = flow_names_in(&config.flows_dir)
            .into_iter()
            .chain(flows.iter().map(|f| f.name.clone()))
            .collect();
        for (number, flow) in &config.routes {
            if !known.contains(flow) {
                let span = config.route_spans.get(number).copied().unwrap_or_default();
                diags.push(
                    Diagnostic::error(
                        "unknown-flow",
                        cfg_file,
                        span,
                        format!("route `{number}` goes to flow `{flow}`, which does not exist"),
                    )
                    .with_opt_hint(did_you_mean(flow, known.iter().map(String::as_str))),
                );
            }
        }
        // Campaigns name flows too.
        for (name, campaign) in &config.campaigns {
            if !known.contains(&campaign.flow) {
                diags.push(
                    Diagnostic::error(
                        "unknown-flow",
                        cfg_file,
                        campaign.flow_span,
                        format!(
                            "campaign `{name}` runs flow `{}`, which does not exist",
                            campaign.flow
                        ),
                    )
                    .with_opt_hint(did_you_mean(
                        &campaign.flow,
                        known.iter().map(String::as_str),
                    )),
                );
            }
        }
    }

    let mut seen = HashSet::new();
    diags.retain(|d| seen.insert((d.file, d.span, d.code, d.message.clone())));
    // A flow imported by others is compiled with each of them, in the languages of each: a
    // prompt missing in several catalogs is reported once, naming all of them (the longest
    // message of those at the same place).
    let mut longest: HashMap<(FileId, Span), usize> = HashMap::new();
    for d in diags.iter().filter(|d| d.code == "unknown-prompt") {
        let n = longest.entry((d.file, d.span)).or_default();
        *n = (*n).max(d.message.len());
    }
    diags.retain(|d| {
        d.code != "unknown-prompt" || longest.get(&(d.file, d.span)) == Some(&d.message.len())
    });
    diags.sort_by_key(|d| (d.file, d.span.start, d.span.end));
    Checked {
        sources,
        config,
        catalogs,
        flows,
        programs,
        diagnostics: diags,
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or("?")
}

/// Reads and parses one flow file.
fn read_flow(
    path: &Path,
    requested: bool,
    sources: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> Result<FlowSource, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(parse_source(path, text, requested, sources, diags)),
        Err(e) => {
            // Reported at the first byte that is not UTF-8, like any other problem of the
            // file; the other files are still checked.
            let at = e.utf8_error().valid_up_to();
            // The text up to there is unchanged by the lossy conversion: same offsets.
            let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let start = at;
            let mut ignored = Vec::new();
            let flow = parse_source(path, text, requested, sources, &mut ignored);
            diags.push(
                Diagnostic::error(
                    "encoding",
                    flow.file,
                    Span::new(start, start + 1),
                    "this file is not UTF-8 text",
                )
                .with_hint("save it as UTF-8 (flows are plain text; Chinese included)"),
            );
            Ok(flow)
        }
    }
}

/// Adds a flow's text to `sources` and parses it; syntax errors go to `diags`.
pub fn parse_source(
    path: &Path,
    text: String,
    requested: bool,
    sources: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> FlowSource {
    let file = sources.add(path, text);
    let parsed = parse_flow(file, sources.source(file));
    diags.extend(parsed.diagnostics);
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("flow")
        .to_string();
    let name = parsed
        .flow
        .header
        .as_ref()
        .map_or(stem, |h| h.name.name.clone());
    FlowSource {
        file,
        path: path.to_path_buf(),
        name,
        ast: parsed.flow,
        requested,
    }
}

/// Every `*.flow` below `dir`.
pub fn collect_flow_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_flow_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "flow") {
            out.push(path);
        }
    }
}

fn flow_names_in(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    collect_flow_files(dir, &mut files);
    files
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
        .collect()
}

/// Warns about a flow with no `served` action anywhere (its imports included): every call of
/// it that ends in the IVR would count as `not_served`. A flow that another flow imports is
/// not warned about (its nodes count in the importer's calls), nor one whose file has errors.
fn flows_without_served(
    programs: &IndexMap<String, Program>,
    flows: &[FlowSource],
    by_name: &HashMap<String, usize>,
    diags: &mut Vec<Diagnostic>,
) {
    let imported: HashSet<&str> = flows
        .iter()
        .flat_map(|f| f.ast.imports.iter().map(|i| i.name.as_str()))
        .collect();
    for (name, program) in programs {
        let Some(&ix) = by_name.get(name) else {
            continue;
        };
        let flow = &flows[ix];
        if imported.contains(name.as_str()) || !program.served_tasks().is_empty() {
            continue;
        }
        if diags
            .iter()
            .any(|d| d.file == flow.file && d.severity == ivr_dsl::Severity::Error)
        {
            continue;
        }
        let span = flow
            .ast
            .header
            .as_ref()
            .map_or_else(Span::default, |h| h.name.span);
        diags.push(
            Diagnostic::warning(
                "no-served",
                flow.file,
                span,
                format!(
                    "flow `{name}` has no `served` action: every call that ends in the IVR will count as `not_served`"
                ),
            )
            .with_hint(
                "add `served \"TASK\"` to each step where a caller's task is done (e.g. `served \"bill_inquiry\"` after the bill is read out); a flow that only hands callers to agents may keep the warning: its calls that no agent takes are not served",
            ),
        );
    }
}

/// Warns about nodes that no path reaches: from the flow's entry, or, for a flow others
/// import, from the places where they jump into it.
fn unreachable_nodes(
    programs: &IndexMap<String, Program>,
    flows: &[FlowSource],
    by_name: &HashMap<String, usize>,
    sources: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) {
    // Nodes of each flow that importers reach: "flow.node" names in reachable parts of others.
    let mut used_from_outside: HashMap<&str, HashSet<&str>> = HashMap::new();
    for program in programs.values() {
        let seen = reachable(program, &[program.entry]);
        for (i, node) in program.nodes.iter().enumerate() {
            if node.file != 0
                && seen[i]
                && let Some((flow, local)) = node.name.split_once('.')
            {
                used_from_outside.entry(flow).or_default().insert(local);
            }
        }
    }
    for (name, program) in programs {
        let Some(&ix) = by_name.get(name) else {
            continue;
        };
        let outside = used_from_outside.get(name.as_str());
        let mut roots: Vec<NodeId> = vec![program.entry];
        for (i, node) in program.nodes.iter().enumerate() {
            if node.file == 0 && outside.is_some_and(|s| s.contains(node.name.as_str())) {
                roots.push(i as NodeId);
            }
        }
        let seen = reachable(program, &roots);
        for (i, node) in program.nodes.iter().enumerate() {
            // A node named on a line that did not parse (`key 1 bye`) is not reported: the
            // syntax error is the problem.
            if node.file == 0
                && !seen[i]
                && !named_on_broken_line(
                    diags,
                    flows[ix].file,
                    sources.source(flows[ix].file),
                    &node.name,
                )
            {
                diags.push(
                    Diagnostic::warning(
                        "unreachable-node",
                        flows[ix].file,
                        node.name_span,
                        format!("no path reaches {} `{}`", node.kind.keyword(), node.name),
                    )
                    .with_hint("lead a key, `goto` or outcome to it, or delete it"),
                );
            }
        }
    }
}

/// Finds a flow by name (or by path to its file) and compiles it with the configuration,
/// for `ivr compile`, `ivr graph`, `ivr simulate` and the server.
pub fn compile_flow(config: Option<&Path>, flow: &str) -> Result<(Checked, String), LoadError> {
    let as_path = PathBuf::from(flow);
    let mut sources = SourceMap::new();
    let (cfg, _) = load_config(config, &mut sources)?;
    let path = if as_path.extension().is_some_and(|e| e == "flow") && as_path.is_file() {
        as_path
    } else {
        let mut files = Vec::new();
        collect_flow_files(&cfg.flows_dir, &mut files);
        match files
            .iter()
            .find(|p| p.file_stem().and_then(|s| s.to_str()) == Some(flow))
        {
            Some(p) => p.clone(),
            None => {
                let names: Vec<String> = files
                    .iter()
                    .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(String::from))
                    .collect();
                let hint = did_you_mean(flow, names.iter().map(String::as_str))
                    .map(|h| format!("; {h}"))
                    .unwrap_or_else(|| format!(" in {}", cfg.flows_dir.display()));
                return Err(LoadError::UnknownFlow {
                    name: flow.to_string(),
                    hint,
                });
            }
        }
    };
    let checked = check(&CheckOptions {
        config: config.map(Path::to_path_buf),
        paths: vec![path.clone()],
    })?;
    let name = checked
        .flows
        .iter()
        .find(|f| f.path == path)
        .map_or_else(|| flow.to_string(), |f| f.name.clone());
    Ok((checked, name))
}
