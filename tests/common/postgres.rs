//! Scratch PostgreSQL databases on the server of `IVR_TEST_POSTGRES_URL`: created (and
//! migrated) for one test, so that its rows and locks are its own, and dropped at its end.

/// A database of its own on the server of `url`, named `ivr_{name}_{pid}` (dropped first if a
/// previous run left it), opened and migrated: its pool and its URL. `None` when the URL is
/// not PostgreSQL's.
pub async fn scratch_database(url: &str, name: &str) -> Option<(sqlx::PgPool, String)> {
    let admin = sqlx::PgPool::connect(url).await.expect("postgres");
    let db = format!("ivr_{name}_{}", std::process::id());
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute(&admin)
        .await;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (base, _) = url.rsplit_once('/').expect("url with a database");
    let scratch = format!("{base}/{db}");
    let pool = ivr_data::connect::open(&ivr_data::Target::Postgres(scratch.clone()), 4)
        .await
        .expect("open and migrate");
    let ivr_data::Pool::Postgres(pg) = pool else {
        return None;
    };
    Some((pg, scratch))
}

/// Closes `pool` and drops the scratch database at `scratch` (its connections ended).
pub async fn drop_database(url: &str, pool: sqlx::PgPool, scratch: &str) {
    pool.close().await;
    drop_scratch(url, scratch).await.expect("postgres");
}

/// Drops the scratch database at `scratch` from the server of `url`, ending its connections;
/// an error when the server does not answer.
async fn drop_scratch(url: &str, scratch: &str) -> Result<(), sqlx::Error> {
    let admin = sqlx::PgPool::connect(url).await?;
    let db = scratch.rsplit('/').next().unwrap_or_default();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
    Ok(())
}

/// A scratch database (see [`scratch_database`]) for a test that is not async: created when
/// made, dropped (its connections ended) when the guard is, also when the test fails.
pub struct Scratch {
    /// The server's URL it was made on.
    admin: String,
    /// Its URL (the server's, with the scratch database's name).
    pub url: String,
}

impl Scratch {
    /// A database `ivr_{name}_{pid}` on the server of `url`, migrated (its pool closed).
    /// Fails the test when `url` is not PostgreSQL's.
    pub fn new(url: &str, name: &str) -> Scratch {
        let scratch = super::block_on(async {
            let (pool, scratch) = scratch_database(url, name).await.expect("a PostgreSQL URL");
            pool.close().await;
            scratch
        });
        Scratch {
            admin: url.to_string(),
            url: scratch,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Not a panic in a drop (the test may be failing already): a database left over is
        // dropped by the next run of the same name.
        let _ = super::block_on(drop_scratch(&self.admin, &self.url));
    }
}
