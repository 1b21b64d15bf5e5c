//! The simulator's [`DataSource`] on a real database. The simulator is synchronous and runs
//! outside tokio, so each source owns (a handle to) a tokio runtime and blocks on it.

use super::{DataError, Database};
use ivr_compiler::config::{Config, QueryDef};
use ivr_engine::QueryResult;
use ivr_engine::sim::{DataSource, QueryError};
use ivr_engine::value::Value;
use std::sync::Arc;
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
        Ok(self.rt.block_on(self.db.run(name, args, timeout)))
    }
}

/// The data of `ivr test`: when the configured database is the embedded default, each
/// scenario gets a fresh in-memory demo database (created on its first query), so runs are
/// repeatable and a scenario sees its own writes; otherwise every scenario uses the configured
/// database as it is.
pub struct ScenarioData {
    rt: Arc<Runtime>,
    config: Arc<Config>,
    shared: Option<Database>,
}

impl ScenarioData {
    /// Opens the configured database unless it is the embedded default.
    pub fn new(config: &Config) -> Result<ScenarioData, DataError> {
        let rt = runtime()?;
        let shared = if super::connect::is_demo(&config.database.url, &config.base) {
            // Fail early on a bad catalog or secret.
            super::hashing::Secret::resolve(&config.database, true, &config.queries)?;
            None
        } else {
            Some(rt.block_on(super::open_configured(config))?)
        };
        Ok(ScenarioData {
            rt,
            config: Arc::new(config.clone()),
            shared,
        })
    }

    /// The data source of one scenario.
    pub fn for_scenario(&self) -> Box<dyn DataSource> {
        match &self.shared {
            Some(db) => Box::new(DbSource::new(Arc::clone(&self.rt), db.clone())),
            None => Box::new(FreshDemo {
                rt: Arc::clone(&self.rt),
                config: Arc::clone(&self.config),
                db: None,
            }),
        }
    }
}

/// The fresh demo database of a scenario could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the demo database for query `{query}`: {source}")]
pub struct DemoUnavailable {
    /// The query that needed it.
    pub query: String,
    /// Why.
    pub source: DataError,
}

/// A demo database made on first use and dropped with the scenario.
struct FreshDemo {
    rt: Arc<Runtime>,
    config: Arc<Config>,
    db: Option<Database>,
}

impl DataSource for FreshDemo {
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
        let db = match &mut self.db {
            Some(db) => db,
            None => {
                let db = self
                    .rt
                    .block_on(super::open_fresh_demo(&self.config))
                    .map_err(|source| {
                        QueryError::from_error(DemoUnavailable {
                            query: name.to_string(),
                            source,
                        })
                    })?;
                self.db.insert(db)
            }
        };
        let timeout = timeout_ms.map(Duration::from_millis);
        Ok(self.rt.block_on(db.run(name, args, timeout)))
    }
}

impl Drop for FreshDemo {
    fn drop(&mut self) {
        // (Blocking is only possible outside an async context; inside one the pool closes
        // when its last handle is dropped.)
        if let Some(db) = self.db.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            self.rt.block_on(db.pool().close());
        }
    }
}
