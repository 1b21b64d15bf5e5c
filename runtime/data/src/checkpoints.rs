//! Checkpoints of calls in progress on a cluster's nodes (PostgreSQL only, table
//! `call_checkpoints`; docs/cluster.md, "Calls taken over"): where each call is in its flow,
//! its variables (never a masked one), its SIP dialog and media, and what its record needs to
//! be continued. A call's node writes its row as the call enters flow nodes and deletes it when
//! the call ends; when that node is down, a live node claims the row ([`claim`]: `FOR UPDATE
//! SKIP LOCKED`, so two nodes never take the same call) and takes the call over.
//!
//! Everything read back is untrusted: texts and JSON have bounded sizes, numbers their ranges;
//! a row that does not read is skipped (and left for [`forget`]).

use crate::DataError;
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};

/// Longest JSON text of a row's variables read back (bytes); longer ones are not restored.
pub const MAX_VARIABLES_JSON: usize = 256 * 1024;
/// Longest JSON text of a row's dialog or media facts, or of its tasks (bytes).
pub const MAX_FACTS_JSON: usize = 16 * 1024;
/// Longest plain text of a row (names, caller, versions).
pub const MAX_TEXT: usize = 1024;
/// Most route set entries of a dialog.
pub const MAX_ROUTES: usize = 16;
/// The key of the advisory lock that makes claims take turns ("ivr_take" in ASCII).
pub const CLAIM_LOCK_KEY: i64 = 0x6976_725f_7461_6b65;
/// Most rows claimed at once.
pub const MAX_CLAIM: i64 = 1_000;

/// The facts of a caller's SIP dialog, as the node that answered it knows them (we are the
/// UAS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DialogFacts {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (the To tag of our 200).
    pub local_tag: String,
    /// The caller's tag (From).
    pub remote_tag: String,
    /// Our address as the caller wrote it (To, without tag).
    pub local: String,
    /// The caller's address (From, with its tag).
    pub remote: String,
    /// The caller's Contact (the remote target).
    pub remote_target: String,
    /// The Record-Route values, in order (our Route headers).
    pub route_set: Vec<String>,
    /// Our highest CSeq so far.
    pub local_cseq: u32,
    /// The caller's highest CSeq so far.
    pub remote_cseq: u32,
}

/// The media of the call as negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MediaFacts {
    /// Where the caller receives RTP (`IP:PORT`), if it said.
    pub remote: Option<String>,
    /// The codec: `pcmu` or `pcma`.
    pub codec: String,
    /// Its payload type.
    pub pt: u8,
    /// The telephone-event payload type, if any.
    pub event_pt: Option<u8>,
}

/// Longest JSON text of a screen pop kept in an agent leg (bytes); a longer one is not kept.
pub const MAX_POP_JSON: usize = 4 * 1024;
/// Longest agent id or queue name of an agent leg.
pub const MAX_NAME: usize = 128;

/// The leg a node placed to an agent's phone, while the caller talks with that agent (we are
/// the leg's UAC: `dialog.local_tag` is our From tag, `dialog.remote_tag` the agent's To tag,
/// `dialog.remote_target` the agent's Contact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentLegFacts {
    /// The key the ACD knows the call by (random, unique in the cluster).
    pub key: u64,
    /// The agent's id.
    pub agent: String,
    /// The queue the call came through.
    pub queue: String,
    /// The leg's SIP dialog.
    pub dialog: DialogFacts,
    /// The leg's media (the agent's RTP address, codec, payload types).
    pub media: MediaFacts,
    /// When the agent answered (local wall-clock milliseconds).
    pub answered_at: i64,
    /// The screen pop as JSON, when within [`MAX_POP_JSON`].
    pub pop: Option<String>,
}

/// One call's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The SIP Call-ID (the row's key).
    pub sip_call_id: String,
    /// The call record's key (`calls.call_id`).
    pub call_id: String,
    /// The node that runs the call.
    pub owner: String,
    /// The nodes that served it, in order, comma-separated.
    pub nodes: String,
    /// The flow's name.
    pub flow: String,
    /// The flow's version.
    pub flow_version: String,
    /// The flow node the call is in.
    pub node: String,
    /// The prompt language.
    pub language: String,
    /// The variables as JSON (`ivr_engine::resume::encode_variables`), never a masked one.
    pub variables: String,
    /// The tasks completed.
    pub served: Vec<String>,
    /// The SIP dialog.
    pub dialog: DialogFacts,
    /// The media.
    pub media: MediaFacts,
    /// The calling number.
    pub caller: String,
    /// The dialled number.
    pub called: String,
    /// The channel (`sip`).
    pub channel: String,
    /// When the call arrived (local wall-clock milliseconds).
    pub started_at: i64,
    /// When its flow started.
    pub answered_at: Option<i64>,
    /// Node visits recorded so far (the next visit's number follows).
    pub visit_seq: i64,
    /// The agent's leg, while the caller talks with an agent.
    pub agent_leg: Option<AgentLegFacts>,
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Writes these checkpoints (each the latest of its call). A row another node has claimed
/// meanwhile is left alone, and no row is made again for a call whose record is already
/// written (it ended on the node that took it over): the Call-IDs of those refused rows are
/// returned (their calls are no longer this node's: docs/cluster.md, "Fencing"). A call is
/// known by its Call-ID and its arrival, so that a caller that uses a Call-ID again is
/// another call.
pub async fn write(pool: &PgPool, rows: &[Checkpoint]) -> Result<Vec<String>, DataError> {
    let mut tx = pool.begin().await?;
    let mut refused = Vec::new();
    for c in rows {
        let written: Option<String> = sqlx::query_scalar(
            "INSERT INTO call_checkpoints (sip_call_id, call_id, owner, nodes, flow, flow_version,
                 node, language, variables, served, dialog, media, caller, called, channel,
                 started_at, answered_at, visit_seq, agent_leg, written_at)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, now()
              WHERE NOT EXISTS (SELECT 1 FROM calls WHERE call_id = $2 AND started_at = $20)
             ON CONFLICT (sip_call_id) DO UPDATE SET nodes = EXCLUDED.nodes, flow = EXCLUDED.flow,
                 flow_version = EXCLUDED.flow_version, node = EXCLUDED.node,
                 language = EXCLUDED.language, variables = EXCLUDED.variables,
                 served = EXCLUDED.served, dialog = EXCLUDED.dialog, media = EXCLUDED.media,
                 answered_at = EXCLUDED.answered_at, visit_seq = EXCLUDED.visit_seq,
                 agent_leg = EXCLUDED.agent_leg, written_at = now()
             WHERE call_checkpoints.owner = EXCLUDED.owner
             RETURNING sip_call_id",
        )
        .bind(&c.sip_call_id)
        .bind(&c.call_id)
        .bind(&c.owner)
        .bind(&c.nodes)
        .bind(&c.flow)
        .bind(&c.flow_version)
        .bind(&c.node)
        .bind(&c.language)
        .bind(&c.variables)
        .bind(json(&c.served))
        .bind(json(&c.dialog))
        .bind(json(&c.media))
        .bind(&c.caller)
        .bind(&c.called)
        .bind(&c.channel)
        .bind(c.started_at)
        .bind(c.answered_at)
        .bind(c.visit_seq)
        .bind(c.agent_leg.as_ref().map(json))
        .bind(crate::records::timestamp(c.started_at))
        .fetch_optional(&mut *tx)
        .await?;
        if written.is_none() {
            refused.push(c.sip_call_id.clone());
        }
    }
    tx.commit().await?;
    Ok(refused)
}

/// Who has these calls now (a node checking that its calls are still its own): for each
/// `(sip_call_id, call_id, started_at)` asked whose checkpoint names another owner, that
/// owner; whose checkpoint is gone while the call's record (its id and arrival) is written,
/// `""` (ended elsewhere). Calls still this node's, or not checkpointed yet, are left out.
pub async fn taken_from(
    pool: &PgPool,
    me: &str,
    calls: &[(String, String, i64)],
) -> Result<Vec<(String, String)>, DataError> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let sip: Vec<String> = calls.iter().map(|c| c.0.clone()).collect();
    let ids: Vec<String> = calls.iter().map(|c| c.1.clone()).collect();
    let started: Vec<chrono::NaiveDateTime> = calls
        .iter()
        .map(|c| crate::records::timestamp(c.2))
        .collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT q.sip, COALESCE(c.owner, '')
           FROM unnest($1::text[], $2::text[], $3::timestamp[]) AS q(sip, id, started)
           LEFT JOIN call_checkpoints c ON c.sip_call_id = q.sip
          WHERE (c.sip_call_id IS NOT NULL AND c.owner <> $4)
             OR (c.sip_call_id IS NULL AND EXISTS (SELECT 1 FROM calls r
                     WHERE r.call_id = q.id AND r.started_at = q.started))",
    )
    .bind(&sip)
    .bind(&ids)
    .bind(&started)
    .bind(me)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Deletes the checkpoints of these calls (ended) that `owner` holds.
pub async fn delete(pool: &PgPool, owner: &str, sip_call_ids: &[String]) -> Result<u64, DataError> {
    if sip_call_ids.is_empty() {
        return Ok(0);
    }
    let done =
        sqlx::query("DELETE FROM call_checkpoints WHERE owner = $1 AND sip_call_id = ANY($2)")
            .bind(owner)
            .bind(sip_call_ids)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// Forgets a checkpoint whatever its owner (a call that cannot be taken over).
pub async fn forget(pool: &PgPool, sip_call_id: &str) -> Result<(), DataError> {
    sqlx::query("DELETE FROM call_checkpoints WHERE sip_call_id = $1")
        .bind(sip_call_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A node starting: the checkpoints its earlier run left (calls it lost when it stopped) are
/// given up to the cluster, which takes them over like a dead node's. How many.
pub async fn release(pool: &PgPool, node: &str) -> Result<u64, DataError> {
    let done = sqlx::query("UPDATE call_checkpoints SET owner = '' WHERE owner = $1")
        .bind(node)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// The condition of a row whose owner's calls are to be taken over (no heartbeat within
/// [`crate::cluster::TAKEOVER_AFTER`], 4 s; the test below keeps the two the same).
const ORPHAN: &str = "NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.name = c.owner
                          AND n.last_seen > now() - interval '4 seconds')";

/// How many checkpoints have an owner that is down.
pub async fn orphaned(pool: &PgPool) -> Result<i64, DataError> {
    let n: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM call_checkpoints c WHERE {ORPHAN}"
    ))
    .fetch_one(pool)
    .await?;
    Ok(n)
}

/// The query of [`live_nodes`].
const LIVE_NODES: &str =
    "SELECT name FROM cluster_nodes WHERE last_seen > now() - interval '4 seconds'
                           ORDER BY name LIMIT $1";

/// The nodes that share the calls taken over, by name (heartbeat within
/// [`crate::cluster::TAKEOVER_AFTER`]; this one among them once its heartbeat is written).
pub async fn live_nodes(pool: &PgPool) -> Result<Vec<String>, DataError> {
    let names: Vec<String> = sqlx::query_scalar(LIVE_NODES)
        .bind(crate::cluster::MAX_NODES)
        .fetch_all(pool)
        .await?;
    Ok(names)
}

/// Claims for node `me` up to `limit` checkpoints whose owner is down: the share `part` of
/// `parts` (by a hash of the Call-ID, so that the live nodes split a dead node's calls
/// evenly), or any such row when `parts` is 1. Locked rows (another node claiming them now)
/// are skipped, so no call is claimed twice. The claimed rows name `me` as their owner and
/// `me` is added to their nodes; rows that do not read back are returned as errors' count.
pub async fn claim(
    pool: &PgPool,
    me: &str,
    part: i64,
    parts: i64,
    limit: i64,
) -> Result<(Vec<Checkpoint>, usize), DataError> {
    let parts = parts.max(1);
    // Claims run one at a time across the cluster (a transaction-level advisory lock: they are
    // rare, when a node dies), each seeing the claims before it; the rows are still locked
    // with SKIP LOCKED, and the UPDATE checks again that the owner is down, so that a row
    // claimed meanwhile is never taken twice.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query(&format!(
        "WITH picked AS (
             SELECT c.sip_call_id FROM call_checkpoints c
              WHERE {ORPHAN} AND mod(abs(hashtext(c.sip_call_id)::bigint), $2) = $3
              ORDER BY c.written_at LIMIT $4
              FOR UPDATE SKIP LOCKED)
         UPDATE call_checkpoints c SET owner = $1,
                nodes = CASE WHEN c.nodes = '' THEN $1 ELSE c.nodes || ',' || $1 END,
                written_at = now()
           FROM picked
          WHERE c.sip_call_id = picked.sip_call_id AND {ORPHAN}
          RETURNING c.sip_call_id, c.call_id, c.owner, c.nodes, c.flow, c.flow_version, c.node,
                    c.language, c.variables, c.served, c.dialog, c.media, c.caller, c.called,
                    c.channel, c.started_at, c.answered_at, c.visit_seq, c.agent_leg"
    ))
    .bind(me)
    .bind(parts)
    .bind(part.rem_euclid(parts))
    .bind(limit.clamp(1, MAX_CLAIM))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut bad = 0;
    for r in &rows {
        match read(r) {
            Some(c) => out.push(c),
            None => {
                bad += 1;
                if let Ok(id) = r.try_get::<String, _>("sip_call_id") {
                    let _ = forget(pool, &id).await;
                }
            }
        }
    }
    Ok((out, bad))
}

/// Whether the record of the call `call_id` that arrived at `started_at` is already written
/// (its call ended: nothing to take over). A call is its id and its arrival, as for the
/// record's own guard: a caller that uses a Call-ID again is another call.
pub async fn recorded(pool: &PgPool, call_id: &str, started_at: i64) -> Result<bool, DataError> {
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM calls WHERE call_id = $1 AND started_at = $2")
            .bind(call_id)
            .bind(crate::records::timestamp(started_at))
            .fetch_one(pool)
            .await?;
    Ok(n > 0)
}

/// A text cell within [`MAX_TEXT`] (or `limit`), else `None`.
fn text(r: &sqlx::postgres::PgRow, col: &str, limit: usize) -> Option<String> {
    r.try_get::<String, _>(col)
        .ok()
        .filter(|s| s.len() <= limit)
}

/// A text that may go into a SIP header as it is: within [`MAX_TEXT`], no control characters
/// (a line break would add headers of its own to the re-INVITE).
fn header_safe(s: &str) -> bool {
    s.len() <= MAX_TEXT && !s.chars().any(char::is_control)
}

/// A dialog read back that may go into SIP headers: texts within bounds, no control
/// characters, a Call-ID and our tag.
fn dialog_ok(dialog: &DialogFacts) -> bool {
    [
        &dialog.call_id,
        &dialog.local_tag,
        &dialog.remote_tag,
        &dialog.local,
        &dialog.remote,
        &dialog.remote_target,
    ]
    .iter()
    .all(|s| header_safe(s))
        && dialog.route_set.len() <= MAX_ROUTES
        && dialog.route_set.iter().all(|s| header_safe(s))
        && !dialog.call_id.is_empty()
        && !dialog.local_tag.is_empty()
}

fn media_ok(media: &MediaFacts) -> bool {
    media.remote.as_ref().is_none_or(|s| s.len() <= 64) && media.codec.len() <= 16
}

/// A name (agent, queue) read back: within [`MAX_NAME`], not empty, no control characters.
fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME && !s.chars().any(char::is_control)
}

/// An agent leg read back (JSON text), checked like the caller's dialog; `None` when it is
/// absent or does not read (the call is then taken over without its agent: the caller queues
/// again). A screen pop beyond [`MAX_POP_JSON`] is left out.
pub fn read_agent_leg(text: Option<&str>) -> Option<AgentLegFacts> {
    let text = text.filter(|t| t.len() <= MAX_FACTS_JSON + MAX_POP_JSON)?;
    let mut leg: AgentLegFacts = serde_json::from_str(text).ok()?;
    if !dialog_ok(&leg.dialog)
        || leg.dialog.remote_tag.is_empty()
        || !media_ok(&leg.media)
        || !name_ok(&leg.agent)
        || !name_ok(&leg.queue)
    {
        return None;
    }
    if leg.pop.as_ref().is_some_and(|p| p.len() > MAX_POP_JSON) {
        leg.pop = None;
    }
    Some(leg)
}

/// A row read back, checked; `None` when anything is missing, too long or malformed.
fn read(r: &sqlx::postgres::PgRow) -> Option<Checkpoint> {
    let dialog: DialogFacts = serde_json::from_str(&text(r, "dialog", MAX_FACTS_JSON)?).ok()?;
    let media: MediaFacts = serde_json::from_str(&text(r, "media", MAX_FACTS_JSON)?).ok()?;
    let served: Vec<String> = serde_json::from_str(&text(r, "served", MAX_FACTS_JSON)?).ok()?;
    if !dialog_ok(&dialog) || !media_ok(&media) || served.len() > 64 {
        return None;
    }
    Some(Checkpoint {
        sip_call_id: text(r, "sip_call_id", MAX_TEXT)?,
        call_id: text(r, "call_id", MAX_TEXT)?,
        owner: text(r, "owner", MAX_TEXT)?,
        nodes: text(r, "nodes", MAX_TEXT)?,
        flow: text(r, "flow", MAX_TEXT)?,
        flow_version: text(r, "flow_version", MAX_TEXT)?,
        node: text(r, "node", MAX_TEXT)?,
        language: text(r, "language", MAX_TEXT)?,
        // Too long: the call goes on without its variables.
        variables: text(r, "variables", MAX_VARIABLES_JSON).unwrap_or_else(|| "{}".into()),
        served,
        dialog,
        media,
        caller: text(r, "caller", MAX_TEXT)?,
        called: text(r, "called", MAX_TEXT)?,
        channel: text(r, "channel", MAX_TEXT)?,
        started_at: r.try_get("started_at").ok()?,
        answered_at: r.try_get("answered_at").ok()?,
        visit_seq: r
            .try_get::<i64, _>("visit_seq")
            .ok()?
            .clamp(0, i64::from(u32::MAX)),
        agent_leg: read_agent_leg(
            r.try_get::<Option<String>, _>("agent_leg")
                .ok()
                .flatten()
                .as_deref(),
        ),
    })
}

/// Every checkpoint's variables (JSON text), for tests that check what reaches the table.
pub async fn all_variables(pool: &PgPool) -> Result<Vec<String>, DataError> {
    let v: Vec<String> = sqlx::query_scalar("SELECT variables FROM call_checkpoints LIMIT 10000")
        .fetch_all(pool)
        .await?;
    Ok(v)
}

/// How many checkpoints there are now.
pub async fn count(pool: &PgPool) -> Result<i64, DataError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM call_checkpoints")
        .fetch_one(pool)
        .await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg() -> AgentLegFacts {
        AgentLegFacts {
            key: 7,
            agent: "alice".into(),
            queue: "support".into(),
            dialog: DialogFacts {
                call_id: "c1".into(),
                local_tag: "t1".into(),
                remote_tag: "t2".into(),
                local: "<sip:100@10.0.0.1>;tag=t1".into(),
                remote: "<sip:alice@10.0.0.9>;tag=t2".into(),
                remote_target: "sip:alice@10.0.0.9:5070".into(),
                route_set: vec!["<sip:10.0.0.2;lr>".into()],
                local_cseq: 1,
                remote_cseq: 0,
            },
            media: MediaFacts {
                remote: Some("10.0.0.9:4000".into()),
                codec: "pcmu".into(),
                pt: 0,
                event_pt: Some(101),
            },
            answered_at: 1,
            pop: Some("{}".into()),
        }
    }

    #[test]
    fn agent_legs_read_back_are_checked() {
        let ok = leg();
        let text = json(&ok);
        assert_eq!(read_agent_leg(Some(&text)), Some(ok.clone()));
        assert_eq!(read_agent_leg(None), None);
        assert_eq!(read_agent_leg(Some("not json")), None);
        // A line break would add a header of its own to the re-INVITE.
        let mut bad = ok.clone();
        bad.dialog.remote_target = "sip:a@b\r\nX-Evil: 1".into();
        assert_eq!(read_agent_leg(Some(&json(&bad))), None);
        let mut bad = ok.clone();
        bad.agent = "x".repeat(MAX_NAME + 1);
        assert_eq!(read_agent_leg(Some(&json(&bad))), None);
        let mut bad = ok.clone();
        bad.dialog.remote_tag.clear();
        assert_eq!(read_agent_leg(Some(&json(&bad))), None);
        let mut bad = ok.clone();
        bad.dialog.route_set = vec!["<sip:p;lr>".into(); MAX_ROUTES + 1];
        assert_eq!(read_agent_leg(Some(&json(&bad))), None);
        // A screen pop too long is left out; the leg stays.
        let mut big = ok.clone();
        big.pop = Some("x".repeat(MAX_POP_JSON + 1));
        let back = read_agent_leg(Some(&json(&big))).expect("leg");
        assert_eq!(back.pop, None);
        assert_eq!(
            read_agent_leg(Some(&"x".repeat(MAX_FACTS_JSON + MAX_POP_JSON + 1))),
            None
        );
    }

    #[test]
    fn taken_over_after_the_heartbeats_takeover_age() {
        let secs = crate::cluster::TAKEOVER_AFTER.as_secs();
        assert!(super::ORPHAN.contains(&format!("interval '{secs} seconds'")));
        assert!(super::LIVE_NODES.contains(&format!("interval '{secs} seconds'")));
    }
}
