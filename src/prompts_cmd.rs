//! `ivr prompts`: every prompt with its duration, the missing files and the prompts no flow
//! uses; `ivr prompts render`: what a caller hears, as a WAV file.

use ivr_compiler::{CheckOptions, Checked, LoadError, check};
use ivr_engine::say::{self, Language};
use ivr_media::audio::render::{RenderError, render};
use ivr_media::audio::{Law, Problem, ProblemKind, PromptSource, PromptStore, WavError, write_wav};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// What `ivr prompts` was asked.
pub struct PromptsOptions {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--language`: only this language (default: every catalog).
    pub language: Option<String>,
    /// `render WHAT -o FILE`.
    pub render: Option<(String, PathBuf)>,
}

/// Why `ivr prompts` could not list or render.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    /// The configuration or a flow cannot be read.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The prompt to render has a catalog entry but its file is missing or unreadable.
    #[error("{0}")]
    Audio(Problem),
    /// The prompt to render is in no catalog (nor a built-in fragment).
    #[error(
        "there is no prompt `{id}` in the {tag} catalog{}",
        .suggestion.as_ref().map(|s| format!(" ({s})")).unwrap_or_default()
    )]
    UnknownPrompt {
        /// The id asked for.
        id: String,
        /// The language.
        tag: String,
        /// "did you mean `x`?"
        suggestion: Option<String>,
    },
    /// The rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The WAV file cannot be written.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// `--language` names a language of no catalog and no flow.
    #[error("no catalog and no flow in language `{language}` (languages: {})", .languages.join(", "))]
    UnknownLanguage {
        /// The language asked for.
        language: String,
        /// The languages there are.
        languages: Vec<String>,
    },
}

/// Runs `ivr prompts` or `ivr prompts render`.
pub fn run(options: PromptsOptions) -> Result<ExitCode, PromptsError> {
    let checked = check(&CheckOptions {
        config: options.config,
        paths: Vec::new(),
    })?;
    let (store, report) = PromptStore::load(&checked.catalogs);
    match options.render {
        Some((what, output)) => {
            let tag = options
                .language
                .clone()
                .unwrap_or_else(|| default_language(&checked));
            if let Some(p) = report
                .problems
                .iter()
                .find(|p| p.language == tag && p.id == what.trim())
            {
                return Err(PromptsError::Audio(p.clone()));
            }
            // A bare id that is no prompt of that catalog (nor a built-in fragment).
            let id = what.trim();
            if ivr_media::audio::render::parse_spoken(id).is_none() && store.get(&tag, id).is_none()
            {
                let known = checked.catalogs.languages.get(&tag);
                if known.is_none_or(|c| !c.entries.contains_key(id)) {
                    let suggestion = known.and_then(|c| {
                        ivr_compiler::suggest::did_you_mean(
                            id,
                            c.entries.keys().map(String::as_str),
                        )
                    });
                    return Err(PromptsError::UnknownPrompt {
                        id: id.to_string(),
                        tag,
                        suggestion,
                    });
                }
            }
            let rendered = render(&store, &tag, &what, Law::Ulaw)?;
            write_wav(&output, &rendered.pcm)?;
            let texts = rendered.parts.iter().map(|p| p.text.as_str());
            println!(
                "{}: {:.2} s, 8 kHz mono from G.711 mu-law, {tag}: {}",
                output.display(),
                rendered.duration_ms() as f64 / 1000.0,
                say::join(Language::from_tag(&tag), texts)
            );
            Ok(ExitCode::SUCCESS)
        }
        None => list(&checked, &store, &report, options.language.as_deref()),
    }
}

/// The language `render` uses without `--language`: the first flow's, else the first
/// catalog's.
fn default_language(checked: &Checked) -> String {
    checked
        .programs
        .values()
        .find_map(|p| p.languages.first().cloned())
        .or_else(|| checked.catalogs.languages.keys().next().cloned())
        .unwrap_or_else(|| "zh-CN".to_string())
}

fn seconds(ms: u64) -> String {
    format!("{:.2}s", ms as f64 / 1000.0)
}

fn short(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

fn list(
    checked: &Checked,
    store: &PromptStore,
    report: &ivr_media::audio::LoadReport,
    only: Option<&str>,
) -> Result<ExitCode, PromptsError> {
    let mut languages: Vec<&str> = checked
        .catalogs
        .languages
        .keys()
        .map(String::as_str)
        .collect();
    for program in checked.programs.values() {
        for l in &program.languages {
            if !languages.contains(&l.as_str()) {
                languages.push(l);
            }
        }
    }
    if let Some(only) = only {
        if !languages.contains(&only) {
            return Err(PromptsError::UnknownLanguage {
                language: only.to_string(),
                languages: languages.iter().map(|l| l.to_string()).collect(),
            });
        }
        languages.retain(|l| *l == only);
    }
    let mut trouble = 0;
    // Written at once, ignoring a closed pipe (`ivr prompts | head`).
    let mut out = String::new();
    for (i, tag) in languages.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let catalog = checked.catalogs.languages.get(*tag);
        // The prompts the flows speaking this language use.
        let used: BTreeSet<&str> = checked
            .programs
            .values()
            .filter(|p| p.languages.iter().any(|l| l == tag))
            .flat_map(|p| p.prompts.iter().map(String::as_str))
            .collect();
        let used_anywhere: HashSet<&str> = checked
            .programs
            .values()
            .flat_map(|p| p.prompts.iter().map(String::as_str))
            .collect();
        let Some(catalog) = catalog else {
            let _ = writeln!(out, "{tag}: no catalog");
            for id in &used {
                let _ = writeln!(out, "  missing  {id}: not in any catalog");
                trouble += 1;
            }
            continue;
        };
        let mut total = 0;
        let mut with_audio = 0;
        let mut lines = Vec::new();
        for (id, entry) in &catalog.entries {
            let audio = store
                .get(tag, id)
                .filter(|p| p.source == PromptSource::File(entry.file.clone()));
            match audio {
                Some(p) => {
                    total += p.duration_ms();
                    with_audio += 1;
                    lines.push(format!(
                        "  {id:<24} {:>7}  {}{}",
                        seconds(p.duration_ms()),
                        short(&entry.text, 40),
                        if entry.stale_audio.is_some() {
                            "  (text changed after the audio was made)"
                        } else {
                            ""
                        }
                    ));
                }
                None => lines.push(format!("  {id:<24} {:>7}  {}", "-", short(&entry.text, 40))),
            }
        }
        let _ = writeln!(
            out,
            "{tag} ({}): {} prompts, {with_audio} with audio, {} in all",
            catalog.dir.display(),
            catalog.entries.len(),
            seconds(total)
        );
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
        let mut missing = Vec::new();
        for p in report.problems.iter().filter(|p| p.language == *tag) {
            let why = match &p.kind {
                ProblemKind::Missing => "no such file".to_string(),
                ProblemKind::Unreadable(r) => r.clone(),
            };
            missing.push(format!("  {}: {} ({why})", p.id, p.path.display()));
        }
        for id in &used {
            if !catalog.entries.contains_key(*id) {
                missing.push(format!("  {id}: not in the catalog"));
            }
        }
        if missing.is_empty() {
            let _ = writeln!(out, "missing: none");
        } else {
            let _ = writeln!(out, "missing ({}):", missing.len());
            for m in &missing {
                let _ = writeln!(out, "{m}");
            }
            trouble += missing.len();
        }
        let unused: Vec<&str> = catalog
            .entries
            .keys()
            .map(String::as_str)
            .filter(|id| !say::is_reserved_id(id) && !used_anywhere.contains(id))
            .collect();
        if unused.is_empty() {
            let _ = writeln!(out, "unused: none");
        } else {
            let _ = writeln!(out, "unused ({}): {}", unused.len(), unused.join(", "));
        }
        let rules = Language::from_tag(tag);
        let replaced: Vec<&str> = catalog
            .entries
            .keys()
            .map(String::as_str)
            .filter(|id| say::builtin_text(rules, id).is_some())
            .filter(|id| {
                store
                    .get(tag, id)
                    .is_some_and(|p| p.source != PromptSource::Builtin)
            })
            .collect();
        let _ = writeln!(
            out,
            "built-in fragments ({} rules): {}{}",
            rules.tag(),
            say::builtin_fragments(rules).len(),
            if replaced.is_empty() {
                String::new()
            } else {
                format!(", replaced by the catalog: {}", replaced.join(" "))
            }
        );
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(if trouble > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
