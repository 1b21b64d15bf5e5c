//! The cluster-wide ACD's tables and messages in PostgreSQL (docs/cluster.md): agents'
//! registrations whichever node took them (`acd_registrations`), the leader's ACD state
//! (`acd_state`, written only while the writer's epoch is still the leadership's), and the
//! nodes' messages to each other over `LISTEN`/`NOTIFY` ([`notify`], [`Listener`]).

use crate::DataError;
use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;

/// The most registrations read back (the registrar takes configured agents only).
pub const MAX_REGISTRATIONS: i64 = 100_000;

/// The largest `NOTIFY` payload sent (PostgreSQL refuses 8000 bytes and more).
pub const MAX_PAYLOAD: usize = 7_900;

/// The largest ACD state written or read back (a snapshot or the calls' state).
pub const MAX_STATE: usize = 32 * 1024 * 1024;

/// An agent's registration as the cluster shares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationRow {
    /// The agent's id.
    pub agent: String,
    /// The Contact URI it registered.
    pub contact: String,
    /// Where the INVITE to its phone goes (`HOST:PORT`).
    pub addr: String,
    /// `udp` or `tcp`.
    pub transport: String,
    /// The node that took the REGISTER.
    pub node: String,
    /// How long it still holds (ms, by the database's clock).
    pub remaining_ms: i64,
}

/// Writes (or refreshes) a registration for `expires`; the agent's expired rows go.
pub async fn register(
    pool: &PgPool,
    r: &RegistrationRow,
    expires: Duration,
) -> Result<(), DataError> {
    let ms = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX / 2);
    sqlx::query(
        "INSERT INTO acd_registrations
             (agent, contact, addr, transport, node, registered_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, now(), now() + make_interval(secs => $6::double precision / 1000))
         ON CONFLICT (agent, contact) DO UPDATE SET addr = $3, transport = $4, node = $5,
             registered_at = now(), expires_at = EXCLUDED.expires_at",
    )
    .bind(&r.agent)
    .bind(&r.contact)
    .bind(&r.addr)
    .bind(&r.transport)
    .bind(&r.node)
    .bind(ms)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM acd_registrations WHERE agent = $1 AND expires_at <= now()")
        .bind(&r.agent)
        .execute(pool)
        .await?;
    Ok(())
}

/// Removes a registration (the phone unregistered).
pub async fn unregister(pool: &PgPool, agent: &str, contact: &str) -> Result<(), DataError> {
    sqlx::query("DELETE FROM acd_registrations WHERE agent = $1 AND contact = $2")
        .bind(agent)
        .bind(contact)
        .execute(pool)
        .await?;
    Ok(())
}

/// The registrations that still hold, the latest of each agent last.
pub async fn registrations(pool: &PgPool) -> Result<Vec<RegistrationRow>, DataError> {
    let rows = sqlx::query(
        "SELECT agent, contact, addr, transport, node,
                CAST(EXTRACT(EPOCH FROM (expires_at - now())) * 1000 AS BIGINT) AS remaining_ms
           FROM acd_registrations WHERE expires_at > now()
          ORDER BY registered_at LIMIT $1",
    )
    .bind(MAX_REGISTRATIONS)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RegistrationRow {
                agent: r.try_get("agent")?,
                contact: r.try_get("contact")?,
                addr: r.try_get("addr")?,
                transport: r.try_get("transport")?,
                node: r.try_get("node")?,
                remaining_ms: r.try_get("remaining_ms")?,
            })
        })
        .collect()
}

/// The leader's ACD state as last written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    /// The epoch of the leader that wrote it.
    pub epoch: i64,
    /// That leader.
    pub node: String,
    /// What the pages show (JSON).
    pub snapshot: String,
    /// What a new leader rebuilds from (JSON).
    pub state: String,
}

/// Writes the ACD's state, only if `epoch` is still the leadership's: `Ok(false)` when it is
/// not (a deposed leader's late write changes nothing).
pub async fn write_state(
    pool: &PgPool,
    epoch: i64,
    node: &str,
    snapshot: &str,
    state: &str,
) -> Result<bool, DataError> {
    if snapshot.len() > MAX_STATE || state.len() > MAX_STATE {
        return Err(DataError::Config(format!(
            "the ACD's state is larger than {MAX_STATE} bytes"
        )));
    }
    let done = sqlx::query(
        "INSERT INTO acd_state (id, epoch, node, written_at, snapshot, state)
         SELECT 1, $1, $2, now(), $3, $4
          WHERE EXISTS (SELECT 1 FROM acd_leadership WHERE id = 1 AND epoch = $1)
         ON CONFLICT (id) DO UPDATE SET epoch = $1, node = $2, written_at = now(),
             snapshot = $3, state = $4
          WHERE EXISTS (SELECT 1 FROM acd_leadership WHERE id = 1 AND epoch = $1)",
    )
    .bind(epoch)
    .bind(node)
    .bind(snapshot)
    .bind(state)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The ACD's state as last written (none before any leader wrote it).
pub async fn read_state(pool: &PgPool) -> Result<Option<StateRow>, DataError> {
    let row = sqlx::query(
        "SELECT epoch, node, snapshot, state FROM acd_state
          WHERE id = 1 AND length(snapshot) <= $1 AND length(state) <= $1",
    )
    .bind(i64::try_from(MAX_STATE).unwrap_or(i64::MAX))
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(StateRow {
        epoch: r.try_get("epoch")?,
        node: r.try_get("node")?,
        snapshot: r.try_get("snapshot")?,
        state: r.try_get("state")?,
    }))
}

/// Sends `payload` to whoever listens on `channel` (nobody: it is lost). Refused when it is
/// [`MAX_PAYLOAD`] bytes or more.
pub async fn notify(pool: &PgPool, channel: &str, payload: &str) -> Result<(), DataError> {
    if payload.len() >= MAX_PAYLOAD {
        return Err(DataError::Config(format!(
            "a message of {} bytes is over the {MAX_PAYLOAD} bytes of a NOTIFY",
            payload.len()
        )));
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await?;
    Ok(())
}

/// A connection of its own that listens on channels (`LISTEN`), reconnecting (and listening
/// again) when it is lost.
pub struct Listener {
    inner: PgListener,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener")
    }
}

impl Listener {
    /// Connects to `url` and listens on `channels`.
    pub async fn connect(url: &str, channels: &[&str]) -> Result<Listener, DataError> {
        let mut inner = PgListener::connect(url)
            .await
            .map_err(|e| DataError::Connect(format!("{}: {e}", crate::connect::redact_url(url))))?;
        inner.listen_all(channels.iter().copied()).await?;
        Ok(Listener { inner })
    }

    /// The next message: its channel and payload. Messages sent while the connection was
    /// lost are lost.
    pub async fn recv(&mut self) -> Result<(String, String), DataError> {
        let n = self.inner.recv().await?;
        Ok((n.channel().to_string(), n.payload().to_string()))
    }
}
