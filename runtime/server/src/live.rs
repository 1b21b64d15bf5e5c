//! The live deployment and hot reload: the deployment new calls get, swapped atomically when
//! an edit checks clean; broken edits are reported and never go live. A watcher on the flows
//! folder, the prompt folders and `ivr.toml` reloads after editors have finished saving
//! (debounced, so temp-file-and-rename saves and branch checkouts give one reload).

use crate::deploy::{Deployment, LoadFailure};
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the files must stay quiet before a reload starts.
pub const QUIET: Duration = Duration::from_millis(100);
/// The longest a stream of changes may delay a reload.
pub const MAX_DELAY: Duration = Duration::from_millis(1_000);

/// What a reload did.
#[derive(Debug, Clone)]
pub enum ReloadOutcome {
    /// A new version went live.
    Swapped {
        /// The new version.
        version: String,
    },
    /// Nothing that matters changed; the live version stays.
    Unchanged,
    /// The edit is broken; the live version stays.
    Failed(LoadFailure),
}

#[derive(Debug, Clone)]
struct Attempt {
    at: DateTime<Utc>,
    outcome: ReloadOutcome,
    /// The warnings of a deployment that checked clean (JSON, as `ivr check` gives them).
    warnings: serde_json::Value,
}

/// What `status()` reports of past reloads.
#[derive(Debug, Default)]
struct History {
    last: Option<Attempt>,
    swapped: u64,
    failed: u64,
}

impl History {
    /// Makes `outcome` the last attempt (now, with the deployment's `warnings`); returns it.
    fn record(&mut self, outcome: ReloadOutcome, warnings: serde_json::Value) -> ReloadOutcome {
        self.last = Some(Attempt {
            at: Utc::now(),
            outcome: outcome.clone(),
            warnings,
        });
        outcome
    }
}

/// The deployment that new calls get, and the history of reloads.
pub struct Live {
    config: Option<PathBuf>,
    current: ArcSwap<Deployment>,
    /// The last attempt and the counts, changed together with the swap: `status()` sees a
    /// reload whole or not at all.
    history: Mutex<History>,
    /// Serialises reloads (watcher, SIGHUP, tests).
    reloading: Mutex<()>,
    /// Ticks once per version that goes live (for those that follow the configuration).
    swaps: tokio::sync::watch::Sender<u64>,
}

impl Live {
    /// Loads the first deployment; fails when it does not check clean.
    pub fn start(config: Option<PathBuf>) -> Result<Arc<Live>, LoadFailure> {
        let first = Deployment::load(config.as_deref(), None)?;
        Ok(Arc::new(Live {
            config,
            current: ArcSwap::from_pointee(first),
            history: Mutex::new(History::default()),
            reloading: Mutex::new(()),
            swaps: tokio::sync::watch::Sender::new(0),
        }))
    }

    /// The live deployment (a call keeps this `Arc` until it ends).
    pub fn current(&self) -> Arc<Deployment> {
        self.current.load_full()
    }

    /// Changes each time a new version goes live: wait on it with `changed()`, then read
    /// [`Live::current`].
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    /// Number of reloads that went live and that failed.
    pub fn counts(&self) -> (u64, u64) {
        let h = self.history();
        (h.swapped, h.failed)
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds a deployment from the files as they are now and swaps it in when it checks clean
    /// and differs from the live one.
    pub fn reload(&self) -> ReloadOutcome {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.current();
        match Deployment::load(self.config.as_deref(), Some(&live)) {
            // Recorded too: after a broken edit is undone, the last attempt is this one.
            Ok(d) if d.version == live.version => self
                .history()
                .record(ReloadOutcome::Unchanged, d.warnings_json.clone()),
            Ok(d) => {
                let version = d.version.clone();
                let flows = d.flow_versions();
                let warnings = d.warnings_json.clone();
                if !d.left_out.is_empty() {
                    tracing::warn!("{}", d.left_out);
                }
                // The swap and its record together: `status()` sees both or neither.
                let mut history = self.history();
                self.current.store(Arc::new(d));
                history.swapped += 1;
                tracing::info!(deployment = %version, %flows,
                    "reload: new deployment live");
                let outcome = history.record(ReloadOutcome::Swapped { version }, warnings);
                drop(history);
                self.swaps.send_modify(|n| *n += 1);
                outcome
            }
            Err(failure) => {
                tracing::warn!(
                    deployment = %live.version,
                    errors = failure.errors,
                    "reload failed; the live deployment stays\n{}",
                    failure.rendered
                );
                let mut history = self.history();
                history.failed += 1;
                history.record(ReloadOutcome::Failed(failure), serde_json::json!([]))
            }
        }
    }

    /// `GET /status`: the live version, when it went live, and the last reload attempt with
    /// its diagnostics.
    pub fn status(&self) -> serde_json::Value {
        // The record first, then the live version: a reload swaps both under this lock.
        let history = self.history();
        let (last, swapped, failed) = (history.last.clone(), history.swapped, history.failed);
        let live = self.current();
        drop(history);
        let last = last.map(|a| match a.outcome {
            ReloadOutcome::Swapped { version } => serde_json::json!({
                "at": a.at.to_rfc3339(), "ok": true, "deployment": version, "version": version,
                "diagnostics": a.warnings,
            }),
            // The files check clean and are what is live already (an edit undone, a touch).
            ReloadOutcome::Unchanged => serde_json::json!({
                "at": a.at.to_rfc3339(), "ok": true, "deployment": live.version,
                "version": live.version,
                "unchanged": true, "diagnostics": a.warnings,
            }),
            ReloadOutcome::Failed(f) => serde_json::json!({
                "at": a.at.to_rfc3339(), "ok": false, "errors": f.errors,
                "diagnostics": f.json, "rendered": f.rendered,
            }),
        });
        serde_json::json!({
            // The deployment's identity (every flow, catalog, audio file and `ivr.toml`);
            // `version` is its former name, kept for existing clients.
            "deployment": live.version,
            "version": live.version,
            "live_since": live.loaded_at.to_rfc3339(),
            // Each flow's version: what call records and `ivr report` show.
            "flows": live.flows.iter().map(|(n, f)| serde_json::json!({
                "name": n, "version": f.program.version, "library": live.is_library(n),
            })).collect::<Vec<_>>(),
            "last_reload": last,
            // Flows of the live version that are not served (errors, missing audio).
            "not_started": live.not_started,
            "reloads": { "ok": swapped, "failed": failed },
        })
    }

    /// Watches the flows folder, the prompts folder and the configuration file, and reloads
    /// after changes settle. The watch lasts as long as the returned guard.
    pub fn watch(self: &Arc<Self>) -> Result<WatchGuard, notify::Error> {
        let live = self.current();
        let config_file = self
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("ivr.toml"));
        let config_dir = config_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // What matters: the configuration file and anything under the flows or prompt folders
        // (not logs, recordings or the database that may live beside `ivr.toml`).
        let config_name = config_file.file_name().map(|n| n.to_os_string());
        let folders: Vec<PathBuf> = [&live.config.flows_dir, &live.config.prompts_dir]
            .into_iter()
            .flat_map(|d| [d.clone(), d.canonicalize().unwrap_or_else(|_| d.clone())])
            .collect();
        let relevant = move |p: &Path| {
            let ignored = p.components().any(|c| {
                let c = c.as_os_str().to_string_lossy();
                c == "target" || c == ".git" || c == "ivr-data"
            });
            !ignored
                && (folders.iter().any(|f| p.starts_with(f))
                    || (config_name.is_some() && p.file_name() == config_name.as_deref()))
        };
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !ev.kind.is_access()
                    && ev.paths.iter().any(|p| relevant(p))
                {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&config_dir, RecursiveMode::NonRecursive)?;
        for dir in [&live.config.flows_dir, &live.config.prompts_dir] {
            if dir.is_dir() {
                watcher.watch(dir, RecursiveMode::Recursive)?;
            }
        }
        let me = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("ivr-reload".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Debounce: wait until the files are quiet, but not forever.
                    let started = Instant::now();
                    while started.elapsed() < MAX_DELAY {
                        match rx.recv_timeout(QUIET) {
                            Ok(()) => continue,
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    me.reload();
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(WatchGuard {
            _watcher: Box::new(watcher),
            _thread: thread,
        })
    }
}

/// Keeps a watch running; dropping it stops watching.
pub struct WatchGuard {
    _watcher: Box<dyn notify::Watcher + Send>,
    _thread: std::thread::JoinHandle<()>,
}
