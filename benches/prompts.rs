//! Loading the whole prompt set: every prompt of zh-CN and en-US (`prompts/`) decoded,
//! resampled to 8 kHz and encoded to μ-law and A-law frames, with the time, how many times
//! faster than real time, and the resident memory it takes. Besides the committed 8 kHz WAV
//! files, the same prompts converted to 44.1 kHz stereo FLAC and MP3 (with sox and lame, when
//! installed) show the cost of decoding and resampling. Run with `cargo bench --bench prompts`.

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::Criterion;
use ivr_compiler::catalog::Catalogs;
use ivr_dsl::SourceMap;
use ivr_engine::say::Language;
use ivr_media::audio::builtin::builtin_prompts;
use ivr_media::audio::{PromptSource, PromptStore};
use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn catalogs(dir: &Path) -> Catalogs {
    let mut sources = SourceMap::new();
    let (catalogs, diags) = Catalogs::load(dir, &mut sources);
    assert!(diags.is_empty(), "{diags:?}");
    catalogs
}

/// Resident memory of this process (kB), from /proc/self/status.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn run(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

/// A copy of `prompts/` with every file converted to 44.1 kHz stereo `ext` (flac or mp3).
fn converted(ext: &str) -> Option<PathBuf> {
    let src = Path::new("prompts");
    let dst = std::env::temp_dir().join(format!("ivr-bench-prompts-{ext}"));
    let cats = catalogs(src);
    for (lang, catalog) in &cats.languages {
        let dir = dst.join(lang);
        std::fs::create_dir_all(&dir).ok()?;
        let mut toml = String::new();
        for (id, entry) in &catalog.entries {
            let out = dir.join(format!("{id}.{ext}"));
            if !out.exists() {
                let ok = if ext == "mp3" {
                    let wav = dir.join(format!("{id}.44k.wav"));
                    let ok = run(Command::new("sox")
                        .arg(&entry.file)
                        .args(["-r", "44100", "-c", "2", "-b", "16"])
                        .arg(&wav))
                        && run(Command::new("lame")
                            .args(["--quiet", "-b", "128"])
                            .arg(&wav)
                            .arg(&out));
                    let _ = std::fs::remove_file(&wav);
                    ok
                } else {
                    run(Command::new("sox")
                        .arg(&entry.file)
                        .args(["-r", "44100", "-c", "2", "-b", "16"])
                        .arg(&out))
                };
                if !ok {
                    eprintln!("(no sox/lame: skipping the {ext} set)");
                    return None;
                }
            }
            let text = entry.text.replace('\\', "\\\\").replace('"', "\\\"");
            toml.push_str(&format!(
                "{id} = {{ text = \"{text}\", file = \"{id}.{ext}\" }}\n"
            ));
        }
        std::fs::write(dir.join("prompts.toml"), toml).ok()?;
    }
    Some(dst)
}

/// One cold load of a prompts folder, with its figures.
fn report(name: &str, dir: &Path) {
    let cats = catalogs(dir);
    let files: usize = cats.languages.values().map(|c| c.entries.len()).sum();
    let bytes: u64 = cats
        .languages
        .values()
        .flat_map(|c| c.entries.values())
        .filter_map(|e| std::fs::metadata(&e.file).ok())
        .map(|m| m.len())
        .sum();
    let before = rss_kb();
    let start = Instant::now();
    let (store, load) = PromptStore::load(&cats);
    let secs = start.elapsed().as_secs_f64();
    let after = rss_kb();
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    // The audio of the catalogs' files (the built-in fragments are measured apart).
    let mut seen = HashSet::new();
    let audio_ms: u64 = store
        .languages()
        .flat_map(|l| l.prompts.values())
        .filter(|p| matches!(p.source, PromptSource::File(_)))
        .filter(|p| seen.insert(std::sync::Arc::as_ptr(&p.audio)))
        .map(|p| p.duration_ms())
        .sum();
    let audio_s = audio_ms as f64 / 1000.0;
    let start = Instant::now();
    let (again, re) = store.reload(&cats);
    let reload_s = start.elapsed().as_secs_f64();
    assert_eq!(re.decoded, 0);
    drop(again);
    println!(
        "{name}: {files} files ({:.1} MB on disk), {audio_s:.1} s of audio: loaded in {secs:.3} s \
         = {:.0}x real time; reload unchanged {:.4} s; audio held {:.2} MB (both laws); \
         RSS {:.1} -> {:.1} MB (+{:.1} MB)",
        bytes as f64 / 1e6,
        audio_s / secs,
        reload_s,
        store.memory_bytes() as f64 / 1e6,
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0,
    );
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("prompt store load, {threads} decoding threads");
    let before = rss_kb();
    let start = Instant::now();
    let builtin: usize = [Language::ZhCn, Language::EnUs]
        .iter()
        .map(|l| builtin_prompts(*l).len())
        .sum();
    let secs = start.elapsed().as_secs_f64();
    let builtin_ms: u64 = [Language::ZhCn, Language::EnUs]
        .iter()
        .flat_map(|l| builtin_prompts(*l).values())
        .map(|p| p.duration_ms())
        .sum();
    println!(
        "built-in fragments (embedded 8 kHz mu-law, one thread): {builtin} fragments, {:.1} s of \
         audio: decoded in {secs:.3} s = {:.0}x real time; RSS +{:.1} MB",
        builtin_ms as f64 / 1000.0,
        builtin_ms as f64 / 1000.0 / secs,
        rss_kb().saturating_sub(before) as f64 / 1024.0
    );
    report("8 kHz WAV (committed, zh-CN + en-US)", Path::new("prompts"));
    let flac = converted("flac");
    let mp3 = converted("mp3");
    if let Some(dir) = &flac {
        report("44.1 kHz stereo FLAC (same prompts)", dir);
    }
    if let Some(dir) = &mp3 {
        report("44.1 kHz stereo MP3 128k (same prompts)", dir);
    }

    let mut c = Criterion::default().configure_from_args().sample_size(10);
    let wav = catalogs(Path::new("prompts"));
    c.bench_function("prompts/load 8k wav zh-CN+en-US", |b| {
        b.iter(|| black_box(PromptStore::load(&wav)))
    });
    let (store, _) = PromptStore::load(&wav);
    c.bench_function("prompts/reload unchanged", |b| {
        b.iter(|| black_box(store.reload(&wav)))
    });
    for (name, dir) in [("flac", &flac), ("mp3", &mp3)] {
        if let Some(dir) = dir {
            let cats = catalogs(dir);
            c.bench_function(&format!("prompts/load 44.1k stereo {name}"), |b| {
                b.iter(|| black_box(PromptStore::load(&cats)))
            });
        }
    }
    c.final_summary();
}
