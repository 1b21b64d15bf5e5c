//! The data layer: the data catalog of `ivr.toml` executed with sqlx on SQLite (the embedded
//! default) or PostgreSQL, the platform's call records (written by a batching writer), the demo
//! business database of the reference hotline, and the queries of `ivr report`.
//!
//! - [`connect`]: URLs, pools, migrations (`runtime/data/migrations/{sqlite,postgres}`).
//! - [`query`]: catalog queries: bound parameters, `$name` chaining in transactions, timeouts,
//!   values mapped to the catalog's field types (money exact).
//! - [`hashing`]: `hash` arguments (HMAC-SHA256 with the deployment's secret).
//! - [`demo`]: the demo business database (customers, plans, bills, recharge cards, tickets).
//! - [`records`]: call records from the engine's commands, written in batches.
//! - [`cluster`]: a cluster's heartbeats (`cluster_nodes`) and the ACD's leadership (advisory lock,
//!   epoch), PostgreSQL only.
//! - [`messages`]: voice mail: the messages of `record` nodes, their queue, heard and done.
//! - [`report`]: node traffic, outcomes, surveys and service level from the records.
//! - [`recording_search`]: the supervisors' search of recordings (by caller, agent, queue, time, kind).
//! - [`supervisor_events`]: what supervisors did on `/supervisor` (who, what, which call, when).
//! - [`source`]: the simulator's synchronous [`DataSource`](ivr_engine::sim::DataSource) on a
//!   database, with each simulated call's writes undone at its end (unless `--live-data`).
//! - [`probe`]: `ivr check`'s preparing of every catalog statement on the database.
//! - [`snapshot`]: throwaway copies of a SQLite database for simulated calls.

pub mod call_recordings;
pub mod callbacks;
pub mod campaigns;
mod cells;
pub mod checkpoints;
pub mod cluster;
pub mod cluster_acd;
pub mod connect;
pub mod demo;
pub mod hashing;
pub mod messages;
pub mod probe;
pub mod query;
pub mod recording_search;
pub mod records;
pub mod report;
#[cfg(test)]
mod scratch;
pub mod snapshot;
pub mod source;
pub mod spool;
pub mod supervisor_events;
pub mod visits;

pub use connect::{Pool, Target};
pub use hashing::Secret;
pub use query::Database;

use ivr_compiler::config::Config;

/// What can go wrong in the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A configuration mistake (URL, catalog SQL, missing secret).
    #[error("{0}")]
    Config(String),
    /// The database could not be opened.
    #[error("cannot open the database: {0}")]
    Connect(String),
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// The database reported an error.
    #[error("{0}")]
    Sql(#[from] sqlx::Error),
    /// A query's result does not fit its catalog entry.
    #[error("{0}")]
    Query(String),
    /// A statement of a catalog query whose SQL cannot be rewritten.
    #[error("query `{query}`: {source}")]
    Statement {
        /// The query.
        query: String,
        /// What is wrong with its SQL.
        source: query::RewriteError,
    },
    /// A statement of the platform's own (demo data, reports) whose SQL cannot be rewritten.
    #[error(transparent)]
    Rewrite(#[from] query::RewriteError),
    /// A column a query returned cannot be read as its field's type.
    #[error("query `{query}`, column `{column}`: {source}")]
    Column {
        /// The query.
        query: String,
        /// The column.
        column: String,
        /// Why.
        source: query::ConvertError,
    },
}

/// Opens the configured database: connects (creating an embedded SQLite file and its folder on
/// first run), migrates, creates and fills the demo business tables when the database is the
/// embedded default, checks the secret for `hash` arguments, and prepares the data catalog.
pub async fn open_configured(config: &Config) -> Result<Database, DataError> {
    let url = &config.database.url;
    let demo = connect::is_demo(url, &config.base);
    let secret = Secret::resolve(&config.database, demo, &config.queries)?;
    let target = connect::parse_url(url, &config.base)?;
    let pool = connect::open(&target, 8).await?;
    if demo {
        demo::ensure(&pool, secret.as_ref()).await?;
    }
    Database::new(pool, &config.queries, secret)
}
