//! `ivr test`: runs scenario files against the flows and reports `N passed, N failed`, with
//! optional coverage and a JUnit report.

use crate::load::{FlowsError, load};
use indexmap::IndexMap;
use ivr_data::DataError;
use ivr_data::source::ScenarioData;
use ivr_dsl::{SourceMap, parse_scenarios};
use ivr_engine::sim::coverage::FlowCoverage;
use ivr_engine::sim::scenario::{self, ScenarioError, ScenarioResult};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `ivr test`.
pub struct TestOptions {
    /// `--config`
    pub config: Option<PathBuf>,
    /// Scenario files or folders; empty: every `*.scenario` below the flows folder.
    pub paths: Vec<PathBuf>,
    /// `--coverage`
    pub coverage: bool,
    /// `--junit FILE`
    pub junit: Option<PathBuf>,
    /// `--live-data`: keep what scenarios write in the configured database.
    pub live_data: bool,
}

/// Why `ivr test` could not run.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// A path given on the command line does not exist.
    #[error("{}: no such file or folder", .0.display())]
    NoSuchPath(PathBuf),
    /// The configured database cannot be opened.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A scenario file cannot be read, or the JUnit report written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The scenario files to run: those named, else every one below the flows folder.
fn scenario_files(opts: &TestOptions, flows_dir: &Path) -> Result<Vec<PathBuf>, TestError> {
    let roots = if opts.paths.is_empty() {
        vec![flows_dir.to_path_buf()]
    } else {
        opts.paths.clone()
    };
    let mut files = Vec::new();
    for root in &roots {
        if root.is_dir() {
            collect(root, &mut files);
        } else if root.is_file() {
            files.push(root.clone());
        } else {
            return Err(TestError::NoSuchPath(root.clone()));
        }
    }
    files.sort();
    Ok(files)
}

/// When nothing can run (the configuration or a catalog has errors): every scenario fails
/// with the reason, and the run still ends with its `N passed, N failed` line.
fn none_can_run(opts: &TestOptions, why: &FlowsError) -> ExitCode {
    eprintln!("ivr: {why}");
    let mut sources = SourceMap::new();
    let flows_dir = ivr_compiler::project::load_config(opts.config.as_deref(), &mut sources)
        .map(|(c, _)| c.flows_dir)
        .unwrap_or_else(|_| PathBuf::from("flows"));
    let mut failed = 0;
    for path in scenario_files(opts, &flows_dir).unwrap_or_default() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let file = sources.add(&path, text.clone());
        for s in &parse_scenarios(file, &text).file.scenarios {
            println!("FAIL {}: {} (not run: {why})", path.display(), s.name.node);
            failed += 1;
        }
    }
    println!("0 passed, {} failed", failed.max(1));
    ExitCode::FAILURE
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "scenario") {
            out.push(p);
        }
    }
}

struct FileResult {
    path: String,
    results: Vec<ScenarioResult>,
    /// Syntax errors, rendered.
    errors: Vec<String>,
    seconds: f64,
}

/// Runs the command.
pub fn run(opts: TestOptions) -> Result<ExitCode, TestError> {
    crate::logging::init();
    let loaded = match load(opts.config.clone()) {
        Ok(l) => l,
        Err(why) => return Ok(none_can_run(&opts, &why)),
    };
    let crate::load::Loaded {
        checked,
        flows,
        broken,
    } = loaded;
    let files = scenario_files(&opts, &checked.config.flows_dir)?;
    // Queries without a mock run on the configured database's data; each scenario's writes
    // are undone at its end (a transaction rolled back, or a throwaway copy of a SQLite file),
    // unless `--live-data`.
    let data = ScenarioData::new(&checked.config, opts.live_data)?;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (green, red, dim, reset) = if color {
        ("\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };

    let mut coverage: IndexMap<String, FlowCoverage> = IndexMap::new();
    let mut file_results = Vec::new();
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &files {
        let started = Instant::now();
        let text = std::fs::read_to_string(path).map_err(|source| TestError::Io {
            path: path.clone(),
            source,
        })?;
        let mut sources = SourceMap::new();
        let file = sources.add(path, text.clone());
        let parsed = parse_scenarios(file, &text);
        let shown = path.display().to_string();
        let mut fr = FileResult {
            path: shown.clone(),
            results: Vec::new(),
            errors: Vec::new(),
            seconds: 0.0,
        };
        let errors: Vec<_> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .cloned()
            .collect();
        // A scenario with a syntax error fails as a whole (its bad lines would be missing
        // from the run); the others of the file run. An error belongs to the scenario it
        // stands in (before the first one: to the first).
        let mut with_errors = std::collections::HashSet::new();
        if !errors.is_empty() {
            let rendered = sources.render(&errors, color);
            print!("{rendered}");
            fr.errors.push(rendered);
            for e in &errors {
                let i = parsed
                    .file
                    .scenarios
                    .iter()
                    .rposition(|s| s.span.start <= e.span.start)
                    .unwrap_or(0);
                with_errors.insert(i);
            }
            if parsed.file.scenarios.is_empty() {
                println!("{red}FAIL{reset} {shown}: {} syntax error(s)", errors.len());
                failed += 1;
            }
        }
        for (i, s) in parsed.file.scenarios.iter().enumerate() {
            let mut result = if with_errors.contains(&i) {
                let line = line_of(&text, s.span.start as usize);
                ScenarioResult {
                    name: s.name.node.clone(),
                    line,
                    flow: String::new(),
                    failure: Some(ScenarioError::SyntaxErrors {
                        path: shown.clone(),
                        line,
                    }),
                    transcript: Vec::new(),
                    visits: Vec::new(),
                    outcome: None,
                    lookup_failures: Vec::new(),
                    ended_by: None,
                    served: Vec::new(),
                }
            } else {
                let span = tracing::warn_span!("scenario", file = %shown, line = line_of(&text, s.span.start as usize));
                let _entered = span.enter();
                scenario::run(s, &shown, &text, &flows, data.for_scenario())
            };
            if let Some(f) = s.flow.as_ref().filter(|f| broken.contains(&f.node))
                && result.failure.is_some()
            {
                result.failure = Some(ScenarioError::BrokenFlow {
                    path: shown.clone(),
                    line: line_of(&text, f.span.start as usize),
                    flow: f.node.clone(),
                });
            }
            // Only a passing scenario covers what it reached: a failing one proves nothing
            // about the nodes it went through.
            if let Some(sim_flow) = flows.get(&result.flow) {
                let c = coverage
                    .entry(result.flow.clone())
                    .or_insert_with(|| FlowCoverage::new(&sim_flow.flow.program));
                if result.passed() {
                    c.record(&result.visits);
                }
            }
            match &result.failure {
                None => {
                    passed += 1;
                    println!(
                        "{green}ok{reset}   {shown}:{} {dim}{}{reset}",
                        result.line, result.name
                    );
                }
                Some(failure) => {
                    failed += 1;
                    println!("{red}FAIL{reset} {shown}:{} {}", result.line, result.name);
                    for line in failure.to_string().lines() {
                        println!("     {line}");
                    }
                }
            }
            fr.results.push(result);
        }
        fr.seconds = started.elapsed().as_secs_f64();
        file_results.push(fr);
    }

    if opts.coverage {
        println!();
        println!("coverage (nodes, menu keys, lookup outcomes reached by some scenario):");
        for (name, sim_flow) in &flows {
            match coverage.get(name) {
                Some(c) => print!("{}", c.report(&sim_flow.flow.program)),
                None => {
                    let imported = flows.values().any(|f| {
                        f.flow.program.files.len() > 1
                            && f.flow
                                .program
                                .nodes
                                .iter()
                                .any(|n| n.name.starts_with(&format!("{name}.")))
                    });
                    if !imported {
                        println!("{name}: no scenario runs this flow");
                    }
                }
            }
        }
    }
    if let Some(path) = &opts.junit {
        std::fs::write(path, junit(&file_results)).map_err(|source| TestError::Io {
            path: path.clone(),
            source,
        })?;
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |t| t.matches('\n').count() + 1)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JUnit XML report: one test suite per scenario file, one test case per scenario.
fn junit(files: &[FileResult]) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    for f in files {
        let failures = f.results.iter().filter(|r| !r.passed()).count() + f.errors.len();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">",
            xml_escape(&f.path),
            f.results.len() + f.errors.len(),
            f.seconds
        );
        for e in &f.errors {
            let _ = writeln!(
                s,
                "    <testcase name=\"syntax\" classname=\"{}\"><failure message=\"syntax error\">{}</failure></testcase>",
                xml_escape(&f.path),
                xml_escape(e)
            );
        }
        for r in &f.results {
            let _ = write!(
                s,
                "    <testcase name=\"{}\" classname=\"{}:{}\"",
                xml_escape(&r.name),
                xml_escape(&f.path),
                r.line
            );
            match r.failure.as_ref().map(ScenarioError::to_string) {
                None => s.push_str("/>\n"),
                Some(msg) => {
                    let first = msg.lines().nth(1).unwrap_or("failed");
                    let _ = writeln!(
                        s,
                        "><failure message=\"{}\">{}</failure></testcase>",
                        xml_escape(first),
                        xml_escape(&msg)
                    );
                }
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}
