//! `ivr fmt`: lays flows out in the canonical layout (`ivr_dsl::format`).
//!
//! With no path, every flow of the project: the `*.flow` files below the flows folder of the
//! configuration (`[paths] flows` of `ivr.toml`, default `flows/`), as `ivr check` reads them.
//! A folder stands for every `*.flow` below it. `--check` writes nothing and lists the files
//! that would change. `--stdin` formats standard input to standard output (for editors).

use ivr_compiler::project::collect_flow_files;
use ivr_compiler::{LoadError, load_config};
use ivr_dsl::SourceMap;
use ivr_dsl::format::format_flow;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `ivr fmt` was asked to do.
#[derive(Debug)]
pub struct FmtOptions {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// Files or folders; empty means the configured flows folder.
    pub paths: Vec<PathBuf>,
    /// Report, do not write.
    pub check: bool,
    /// Format standard input to standard output.
    pub stdin: bool,
}

/// Why `ivr fmt` could not run.
#[derive(Debug, thiserror::Error)]
pub enum FmtError {
    /// The configuration could not be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A path given does not exist.
    #[error("{0}: no such file or folder")]
    NoSuchPath(PathBuf),
    /// Reading standard input or writing standard output failed.
    #[error("standard input/output: {0}")]
    Stdio(std::io::Error),
}

/// Runs `ivr fmt`. Exit status: 0 when everything is (now) formatted; 1 with `--check` when a
/// file would change; 2 when a file could not be read, formatted (syntax errors) or written.
pub fn run(options: FmtOptions) -> Result<ExitCode, FmtError> {
    if options.stdin {
        return stdin_to_stdout();
    }
    let files = files(&options)?;
    let (mut changed, mut failed) = (0usize, 0usize);
    for path in &files {
        match format_file(path, options.check) {
            Ok(false) => {}
            Ok(true) => {
                changed += 1;
                println!("{}", path.display());
            }
            Err(message) => {
                failed += 1;
                eprintln!("ivr fmt: {}: {message}", path.display());
            }
        }
    }
    if options.check && changed > 0 {
        eprintln!(
            "{changed} of {} flow file(s) are not formatted: run `ivr fmt`",
            files.len()
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else if options.check && changed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The files named (folders walked), sorted; the flows folder when none is named.
fn files(options: &FmtOptions) -> Result<Vec<PathBuf>, FmtError> {
    let roots = if options.paths.is_empty() {
        let (config, _) = load_config(options.config.as_deref(), &mut SourceMap::new())?;
        if !config.flows_dir.is_dir() {
            return Err(LoadError::NoFlowsFolder(config.flows_dir).into());
        }
        vec![config.flows_dir]
    } else {
        options.paths.clone()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_dir() {
            collect_flow_files(&root, &mut files);
        } else if root.is_file() {
            files.push(root);
        } else {
            return Err(FmtError::NoSuchPath(root));
        }
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Why one file was not formatted.
#[derive(Debug, thiserror::Error)]
enum FileError {
    /// Reading or writing it failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Its text cannot be formatted (syntax errors).
    #[error(transparent)]
    Format(#[from] ivr_dsl::format::FormatError),
}

/// Formats one file; `Ok(true)` when it changed (or would change, with `check`).
fn format_file(path: &Path, check: bool) -> Result<bool, FileError> {
    let text = std::fs::read_to_string(path)?;
    let formatted = format_flow(&text)?;
    if formatted == text {
        return Ok(false);
    }
    if !check {
        // Written beside it and renamed over it, so that a reader never sees half a file.
        let tmp = path.with_extension("flow.fmt-tmp");
        std::fs::write(&tmp, &formatted)?;
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    }
    Ok(true)
}

fn stdin_to_stdout() -> Result<ExitCode, FmtError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(FmtError::Stdio)?;
    match format_flow(&text) {
        Ok(formatted) => {
            std::io::stdout()
                .write_all(formatted.as_bytes())
                .map_err(FmtError::Stdio)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("ivr fmt: <stdin>: {e}");
            Ok(ExitCode::from(2))
        }
    }
}
