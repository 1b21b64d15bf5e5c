//! The simulator's [`DataSource`] on a real database. The simulator is synchronous and runs
//! outside tokio, so each source owns (a handle to) a tokio runtime and blocks on it.
//!
//! [`ScenarioData`] is what `ivr test` and `ivr simulate` use: every simulated call works on
//! the configured database's data and its writes are undone at its end (unless
//! `--live-data`). [`DbSource`] runs queries on a database as it is.

use super::query::Session;
use super::snapshot::{ScenarioCopy, Snapshot};
use super::{DataError, Database, Pool};
use ivr_compiler::config::{Config, QueryDef};
use ivr_engine::QueryResult;
use ivr_engine::sim::{DataSource, QueryError};
use ivr_engine::value::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Runtime;

/// A tokio runtime for synchronous callers (the simulator, `ivr test`, `ivr report`).
pub fn runtime() -> Result<Arc<Runtime>, DataError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|e| DataError::Connect(format!("cannot start the async runtime: {e}")))
}

/// Queries answered by a database, blocking on `rt` (so it must be used outside an async
/// context, as the simulator is).
pub struct DbSource {
    rt: Arc<Runtime>,
    db: Database,
}

impl DbSource {
    /// A source on `db`.
    pub fn new(rt: Arc<Runtime>, db: Database) -> DbSource {
        DbSource { rt, db }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl DataSource for DbSource {
    fn query(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
    ) -> Result<QueryResult, QueryError> {
        self.query_timed(name, def, args, None)
    }

    fn query_timed(
        &mut self,
        name: &str,
        _def: &QueryDef,
        args: &[Value],
        timeout_ms: Option<u64>,
    ) -> Result<QueryResult, QueryError> {
        let timeout = timeout_ms.map(Duration::from_millis);
        Ok(logged(
            name,
            self.rt.block_on(self.db.run(name, args, timeout)),
        ))
    }
}

/// A failed lookup is logged with the database's reason (in the span of the call or scenario
/// that ran it).
fn logged(name: &str, result: QueryResult) -> QueryResult {
    if let QueryResult::Error(why) = &result {
        tracing::warn!(query = %name, error = %why, "lookup failed");
    }
    result
}

/// The data of simulated calls (`ivr test`'s scenarios, `ivr simulate`'s call): the
/// configured database's data, with every call's writes undone at its end unless `live`
/// (`--live-data`):
///
/// - PostgreSQL: each call holds one connection of the pool with a transaction open, rolled
///   back at its end ([`Session`]);
/// - SQLite: a snapshot of the file is taken when the first query needs it, and each call
///   works on a copy of its own, deleted at its end ([`Snapshot`]), so that concurrent runs
///   (and a server on the same file) neither see its writes nor wait for its locks;
/// - `live`: every call runs on the configured database and its writes stay.
///
/// The database is opened (created, for the embedded demo database) when the first query
/// without a mock needs it.
pub struct ScenarioData {
    rt: Arc<Runtime>,
    config: Arc<Config>,
    live: bool,
    state: Arc<Mutex<Option<OpenResult>>>,
}

/// The configured database once opened, or why it could not be.
type OpenResult = Result<Arc<Opened>, Arc<DataError>>;

/// The configured database, opened.
enum Opened {
    /// Writes stay.
    Live(Database),
    /// Each call in a transaction rolled back at its end.
    Sessions(Database),
    /// Each call on a copy of this snapshot, with this secret.
    Copies(Snapshot, Option<super::Secret>),
}

impl ScenarioData {
    /// The data of simulated calls on `config`'s database; `live` keeps their writes.
    pub fn new(config: &Config, live: bool) -> Result<ScenarioData, DataError> {
        let rt = runtime()?;
        // Fail early on a bad catalog or secret.
        let demo = super::connect::is_demo(&config.database.url, &config.base);
        super::hashing::Secret::resolve(&config.database, demo, &config.queries)?;
        super::connect::parse_url(&config.database.url, &config.base)?;
        Ok(ScenarioData {
            rt,
            config: Arc::new(config.clone()),
            live,
            state: Arc::new(Mutex::new(None)),
        })
    }

    /// The tokio runtime the data layer runs on.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Whether writes stay (`--live-data`).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The configured database, opened for records (call records of `ivr simulate
    /// --live-data`).
    pub fn live_database(&self) -> Result<Option<Database>, DataError> {
        if !self.live {
            return Ok(None);
        }
        match &*self
            .opened()
            .map_err(|e| DataError::Connect(e.to_string()))?
        {
            Opened::Live(db) => Ok(Some(db.clone())),
            _ => Ok(None),
        }
    }

    /// Opens the configured database once (the first caller does; the others share it, or
    /// its failure).
    fn opened(&self) -> OpenResult {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = &*state {
            return s.clone();
        }
        let opened = self
            .rt
            .block_on(open(&self.config, self.live))
            .map(Arc::new)
            .map_err(Arc::new);
        *state = Some(opened.clone());
        opened
    }

    /// The data source of one scenario (one simulated call).
    pub fn for_scenario(&self) -> Box<dyn DataSource> {
        Box::new(CallData {
            data: ScenarioData {
                rt: Arc::clone(&self.rt),
                config: Arc::clone(&self.config),
                live: self.live,
                state: Arc::clone(&self.state),
            },
            current: None,
        })
    }
}

async fn open(config: &Config, live: bool) -> Result<Opened, DataError> {
    let db = super::open_configured(config).await?;
    if live {
        return Ok(Opened::Live(db));
    }
    match db.pool() {
        Pool::Postgres(_) => Ok(Opened::Sessions(db)),
        Pool::Sqlite(_) => {
            let snapshot = Snapshot::take(db.pool()).await;
            let secret = db.secret().cloned();
            db.pool().close().await;
            Ok(Opened::Copies(snapshot?, secret))
        }
    }
}

/// The database of a scenario could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("the database for query `{query}`: {reason}")]
pub struct DataUnavailable {
    /// The query that needed it.
    pub query: String,
    /// Why.
    pub reason: String,
}

/// What one simulated call runs its queries on.
enum Current {
    Live(Database),
    Session(Session),
    Copy(ScenarioCopy),
}

/// The data source of one simulated call: its writes are undone when it is dropped.
struct CallData {
    data: ScenarioData,
    current: Option<Current>,
}

impl CallData {
    fn current(&mut self, name: &str) -> Result<&mut Current, QueryError> {
        if self.current.is_none() {
            let unavailable = |reason: String| {
                QueryError::from_error(DataUnavailable {
                    query: name.to_string(),
                    reason,
                })
            };
            let opened = self.data.opened().map_err(|e| unavailable(e.to_string()))?;
            let current = match &*opened {
                Opened::Live(db) => Current::Live(db.clone()),
                Opened::Sessions(db) => Current::Session(db.session()),
                Opened::Copies(snapshot, secret) => Current::Copy(
                    self.data
                        .rt
                        .block_on(snapshot.copy(&self.data.config.queries, secret.clone()))
                        .map_err(|e| unavailable(e.to_string()))?,
                ),
            };
            self.current = Some(current);
        }
        self.current
            .as_mut()
            .ok_or_else(|| QueryError::NoData(name.to_string()))
    }
}

impl DataSource for CallData {
    fn query(
        &mut self,
        name: &str,
        def: &QueryDef,
        args: &[Value],
    ) -> Result<QueryResult, QueryError> {
        self.query_timed(name, def, args, None)
    }

    fn query_timed(
        &mut self,
        name: &str,
        _def: &QueryDef,
        args: &[Value],
        timeout_ms: Option<u64>,
    ) -> Result<QueryResult, QueryError> {
        let timeout = timeout_ms.map(Duration::from_millis);
        let rt = Arc::clone(&self.data.rt);
        let result = match self.current(name)? {
            Current::Live(db) => rt.block_on(db.run(name, args, timeout)),
            Current::Session(s) => rt.block_on(s.run(name, args, timeout)),
            Current::Copy(c) => rt.block_on(c.db.run(name, args, timeout)),
        };
        Ok(logged(name, result))
    }
}

impl Drop for CallData {
    fn drop(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        // Blocking is only possible outside an async context; inside one, dropping the
        // session's transaction rolls it back when its connection is next used, and the copy
        // is removed with the snapshot's folder.
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        match current {
            Current::Live(_) => {}
            Current::Session(s) => {
                if let Err(e) = self.data.rt.block_on(s.rollback()) {
                    tracing::warn!(error = %e, "rolling back a simulated call's writes");
                }
            }
            Current::Copy(c) => self.data.rt.block_on(c.remove()),
        }
    }
}
