//! `ivr check` against the database: every statement of the data catalog is prepared (never
//! run) on the configured database, and what the database says is wrong comes back as
//! [`Problem`]s: a missing table or column (the database's own words), a parameter count that
//! differs from what the platform binds, an argument no statement uses, a declared field no
//! statement returns. The command turns them into diagnostics at the query's lines.
//!
//! The database is opened without changing it: a SQLite file read-only (and only when it
//! exists), PostgreSQL with one connection, within [`CONNECT_TIMEOUT`]. The embedded demo
//! database is probed on a fresh in-memory copy of what a run makes of it (its first run
//! creates it, a later one brings an older file up to date, and another process may be
//! creating it at this moment).

use super::DataError;
use super::connect::{self, Target};
use super::query::{Bind, Prepared};
use ivr_compiler::config::Config;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Column, ConnectOptions, Connection, Either, Executor};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

/// How long the probe waits for the database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where in a query's entry a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Its statement at this index (0 for `sql`).
    Statement(usize),
    /// Its declared field of this name.
    Field(String),
    /// Its `args`.
    Args,
}

/// A mistake of one catalog query that the database shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The query.
    pub query: String,
    /// Where.
    pub place: Place,
    /// What is wrong.
    pub message: String,
    /// How to put it right, if there is a usual way.
    pub hint: Option<String>,
}

/// What the probe found.
#[derive(Debug)]
pub enum Probe {
    /// The database could not be reached (why): nothing was checked.
    Unreachable(String),
    /// Every query was prepared; these are the mistakes.
    Checked(Vec<Problem>),
}

enum Conn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// What a prepared statement looks like to the database.
struct Shape {
    columns: Vec<String>,
    parameters: Option<usize>,
}

impl Conn {
    async fn describe(&mut self, sqlite: &str, postgres: &str) -> Result<Shape, sqlx::Error> {
        fn count<T>(p: Option<Either<&[T], usize>>) -> Option<usize> {
            p.map(|e| match e {
                Either::Left(types) => types.len(),
                Either::Right(n) => n,
            })
        }
        match self {
            Conn::Sqlite(c) => {
                let d = c.describe(sqlite).await?;
                Ok(Shape {
                    columns: d.columns().iter().map(|c| c.name().to_string()).collect(),
                    parameters: count(d.parameters()),
                })
            }
            Conn::Postgres(c) => {
                let d = c.describe(postgres).await?;
                Ok(Shape {
                    columns: d.columns().iter().map(|c| c.name().to_string()).collect(),
                    parameters: count(d.parameters()),
                })
            }
        }
    }

    async fn close(self) {
        let _ = match self {
            Conn::Sqlite(c) => c.close().await,
            Conn::Postgres(c) => c.close().await,
        };
    }
}

/// Why the database could not be reached, in words.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unreachable(String);

async fn connect(config: &Config) -> Result<Conn, Unreachable> {
    let say = |s: String| Unreachable(s);
    // The embedded demo database is probed on a fresh copy of what its first run creates (a
    // run brings an older file up to date, and another process may be creating it now).
    let demo = connect::is_demo(&config.database.url, &config.base);
    let target =
        connect::parse_url(&config.database.url, &config.base).map_err(|e| say(e.to_string()))?;
    match target {
        Target::Postgres(url) => {
            let opts = PgConnectOptions::from_str(&url)
                .map_err(|e| say(format!("{}: {e}", connect::redact_url(&url))))?;
            match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
                Err(_) => Err(say(format!(
                    "{}: no answer within {} s",
                    connect::redact_url(&url),
                    CONNECT_TIMEOUT.as_secs()
                ))),
                Ok(Err(e)) => Err(say(format!("{}: {e}", connect::redact_url(&url)))),
                Ok(Ok(c)) => Ok(Conn::Postgres(c)),
            }
        }
        Target::SqliteFile(_) if demo => in_memory(true).await,
        Target::SqliteFile(path) if path.is_file() => {
            let c = SqliteConnectOptions::new()
                .filename(&path)
                .read_only(true)
                .busy_timeout(CONNECT_TIMEOUT)
                .connect()
                .await
                .map_err(|e| say(format!("{}: {e}", path.display())))?;
            Ok(Conn::Sqlite(c))
        }
        Target::SqliteFile(path) => Err(say(format!("{} does not exist", path.display()))),
        Target::SqliteMemory => in_memory(false).await,
    }
}

/// A private in-memory database, migrated (and filled with the demo data when `demo`): what a
/// run on the embedded demo database, or on `sqlite::memory:`, starts with.
async fn in_memory(demo: bool) -> Result<Conn, Unreachable> {
    let say = |s: String| Unreachable(s);
    let pool = connect::open(&Target::SqliteMemory, 1)
        .await
        .map_err(|e| say(e.to_string()))?;
    if demo {
        super::demo::ensure(&pool, None)
            .await
            .map_err(|e| say(e.to_string()))?;
    }
    let connect::Pool::Sqlite(p) = pool else {
        return Err(say("not a SQLite pool".into()));
    };
    let c = p.acquire().await.map_err(|e| say(e.to_string()))?.detach();
    Ok(Conn::Sqlite(c))
}

/// The database's own words for an error (without sqlx's wrapping).
fn reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    }
}

/// Prepares every statement of `config`'s data catalog on its database.
pub async fn probe(config: &Config) -> Probe {
    let mut conn = match connect(config).await {
        Ok(c) => c,
        Err(why) => return Probe::Unreachable(why.0),
    };
    let mut problems = Vec::new();
    for (name, def) in &config.queries {
        let prepared = match Prepared::new(name, def) {
            Ok(p) => p,
            Err(DataError::Statement { source, .. }) => {
                problems.push(Problem {
                    query: name.clone(),
                    place: Place::Statement(0),
                    message: format!("query `{name}`: {source}"),
                    hint: None,
                });
                continue;
            }
            // Parameters beyond `args` and the like: `ivr check` reports them already.
            Err(_) => continue,
        };
        let mut columns: HashSet<String> = HashSet::new();
        let mut all_described = true;
        for (i, st) in prepared.statements.iter().enumerate() {
            let which = if prepared.statements.len() > 1 {
                format!("statement {} of query `{name}`", i + 1)
            } else {
                format!("query `{name}`")
            };
            match conn.describe(&st.sqlite, &st.postgres).await {
                Err(e) => {
                    all_described = false;
                    problems.push(Problem {
                        query: name.clone(),
                        place: Place::Statement(i),
                        message: format!("{which}: the database refuses it: {}", reason(&e)),
                        hint: None,
                    });
                }
                Ok(shape) => {
                    columns.extend(shape.columns.iter().map(|c| c.to_ascii_lowercase()));
                    if let Some(n) = shape.parameters
                        && n != st.binds.len()
                    {
                        problems.push(Problem {
                            query: name.clone(),
                            place: Place::Statement(i),
                            message: format!(
                                "{which}: the database counts {n} parameter(s), but the platform binds {}",
                                st.binds.len()
                            ),
                            hint: Some(
                                "write parameters as `$1`, `$2`, ... (the query's `args`) or `$field` (in a transaction); `?`, `:name` and `@name` are not".into(),
                            ),
                        });
                    }
                }
            }
        }
        // Every argument must be used: a flow passes it, and nothing would read it.
        let used: HashSet<usize> = prepared
            .statements
            .iter()
            .flat_map(|s| s.binds.iter())
            .filter_map(|b| match b {
                Bind::Arg(i) => Some(*i),
                Bind::Field(_) => None,
            })
            .collect();
        for (i, arg) in def.args.iter().enumerate() {
            if !used.contains(&i) {
                problems.push(Problem {
                    query: name.clone(),
                    place: Place::Args,
                    message: format!(
                        "query `{name}` takes {} argument(s), but its SQL never uses `${}` (`{arg}`)",
                        def.args.len(),
                        i + 1
                    ),
                    hint: Some(format!(
                        "use `${}` in the SQL, or take `{arg}` out of `args` and out of the flows' calls",
                        i + 1
                    )),
                });
            }
        }
        if all_described {
            for field in def.fields.keys() {
                if !columns.contains(&field.to_ascii_lowercase()) {
                    let mut returned: Vec<&String> = columns.iter().collect();
                    returned.sort();
                    let returned = if returned.is_empty() {
                        "no column".to_string()
                    } else {
                        returned
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    problems.push(Problem {
                        query: name.clone(),
                        place: Place::Field(field.clone()),
                        message: format!(
                            "query `{name}` declares the field `{field}`, but its SQL does not return it (it returns {returned})"
                        ),
                        hint: Some(format!("name the column with `AS {field}`")),
                    });
                }
            }
        }
    }
    conn.close().await;
    Probe::Checked(problems)
}
