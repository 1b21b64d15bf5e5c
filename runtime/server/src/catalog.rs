//! The database as each deployment's data catalog has it. `[queries.*]` of `ivr.toml` reload
//! like the flows: a call gets the catalog of the deployment it started on (sharing the one
//! pool), so an edited or new query serves the calls that start after the reload, and a call
//! in progress keeps the SQL it started with.

use crate::deploy::Deployment;
use ivr_data::Database;
use std::sync::Mutex;

/// The configured database and its catalog for the latest deployment a call started on.
#[derive(Debug)]
pub struct Catalogs {
    base: Option<Database>,
    /// The database of the platform's own tables when it is not `base` (a cluster's shared
    /// PostgreSQL, `[cluster] database`).
    platform: Option<ivr_data::connect::Pool>,
    /// The last deployment's version and its database.
    latest: Mutex<Option<(String, Database)>>,
}

impl Catalogs {
    /// `base`: the database opened at start (none: lookups fail with `error`).
    pub fn new(base: Option<Database>) -> Catalogs {
        Catalogs {
            base,
            platform: None,
            latest: Mutex::new(None),
        }
    }

    /// The same with the platform's own tables (records, voice mail, campaigns) in
    /// `platform` rather than in the lookups' database: a cluster node's shared database.
    pub fn with_platform(mut self, platform: Option<ivr_data::connect::Pool>) -> Catalogs {
        self.platform = platform;
        self
    }

    /// The pool of the platform's own tables (none: no database): the cluster's database on a
    /// cluster node, else the configured database.
    pub fn pool(&self) -> Option<ivr_data::connect::Pool> {
        self.platform
            .clone()
            .or_else(|| self.base.as_ref().map(|d| d.pool().clone()))
    }

    /// The configured database's pool (`[database]`): where the data catalog's queries run
    /// (a campaign's list), which on a cluster node is not the platform's tables' database.
    pub fn lookups_pool(&self) -> Option<ivr_data::connect::Pool> {
        self.base.as_ref().map(|d| d.pool().clone())
    }

    /// The database with the data catalog of `deployment` (prepared once per version).
    pub fn for_deployment(&self, deployment: &Deployment) -> Option<Database> {
        let base = self.base.as_ref()?;
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((version, db)) = &*latest
            && *version == deployment.version
        {
            return Some(db.clone());
        }
        match base.with_catalog(&deployment.config.queries) {
            Ok(db) => {
                *latest = Some((deployment.version.clone(), db.clone()));
                Some(db)
            }
            Err(e) => {
                tracing::warn!(error = %e, version = %deployment.version,
                    "the data catalog of this version cannot be prepared; the first one serves");
                Some(base.clone())
            }
        }
    }
}
