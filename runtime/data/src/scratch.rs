//! A scratch PostgreSQL database for this crate's unit tests: made on the server of
//! `IVR_TEST_POSTGRES_URL` (`scripts/postgres.sh` starts one), dropped by [`Scratch::drop`].

use crate::connect::{self, Pool, Target};

/// A database of its own on the test server, and the connection that made it.
pub(crate) struct Scratch {
    /// The scratch database.
    pub(crate) pool: Pool,
    server: sqlx::PgPool,
    name: String,
}

impl Scratch {
    /// Makes `ivr_test_TAG_PID` (dropped first if a killed run left it) with `connections`;
    /// `None`, with a note naming `what`, when `IVR_TEST_POSTGRES_URL` is not set.
    pub(crate) async fn new(what: &str, tag: &str, connections: u32) -> Option<Scratch> {
        let Ok(admin) = std::env::var("IVR_TEST_POSTGRES_URL") else {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "note: IVR_TEST_POSTGRES_URL is not set; PostgreSQL test of {what} skipped"
            );
            return None;
        };
        let name = format!("ivr_test_{tag}_{}", std::process::id());
        let (prefix, _) = admin.rsplit_once('/').expect("a database url");
        let server = sqlx::PgPool::connect(&admin).await.expect("connect");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(&sql)
                .execute(&server)
                .await
                .expect("scratch db");
        }
        let pool = connect::open(&Target::Postgres(format!("{prefix}/{name}")), connections)
            .await
            .expect("open");
        Some(Scratch { pool, server, name })
    }

    /// Closes the pool and drops the database.
    pub(crate) async fn drop(self) {
        self.pool.close().await;
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&self.server)
        .await;
        self.server.close().await;
    }
}
