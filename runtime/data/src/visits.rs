//! Today's visits of each node of a flow, from the call records (`node_visits`), for the flow
//! map of `ivr serve` (`/flows/NAME`). A visit is recorded when the node is left (or the call
//! ends), so a caller still in a node counts once they leave it. Counts only: no call id,
//! caller or input is read.

use super::DataError;
use super::connect::Pool;
use super::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;
use std::collections::BTreeMap;

/// Visits of each node of `flow` entered at or after `since` (the records' local time), by
/// node name (imported nodes as `common.goodbye`).
pub async fn node_visits_since(
    pool: &Pool,
    flow: &str,
    since: NaiveDateTime,
) -> Result<BTreeMap<String, u64>, DataError> {
    let rows = fetch_rows(
        pool,
        "SELECT node, COUNT(*) AS n FROM node_visits WHERE flow = $1 AND entered_at >= $2 \
         GROUP BY node",
        &[Value::Text(flow.to_string()), Value::DateTime(since)],
    )
    .await?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let (Some(node), Some(n)) = (r.first(), r.get(1)) else {
            continue;
        };
        let n = n.as_decimal().and_then(|d| d.to_u64()).unwrap_or(0);
        *out.entry(node.to_string()).or_default() += n;
    }
    Ok(out)
}
