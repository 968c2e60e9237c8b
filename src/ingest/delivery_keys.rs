//! Redeliveries: claiming a request's delivery key, so that a redelivery
//! fires its handler once (see webhook_core/src/delivery.rs).

use pgrx::datum::DatumWithOid;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;
use uuid::Uuid;

use crate::pg::catalog::pg_uuid;

/// The event that claimed `key` within the last `window_secs`, and its
/// recorded response, if any; claims nothing.
pub fn find_delivery(
    client: &mut SpiClient<'_>,
    workflow_id: Uuid,
    key: &str,
    window_secs: f64,
) -> Result<Option<(i64, Option<Value>)>, pgrx::spi::Error> {
    let found = client.select(
        "SELECT d.event_id AS original_id, e.response
           FROM webhook.deliveries d
           LEFT JOIN webhook.events e ON e.id OPERATOR(pg_catalog.=) d.event_id
          WHERE d.workflow_id OPERATOR(pg_catalog.=) $1 AND d.key OPERATOR(pg_catalog.=) $2
            AND d.received_at OPERATOR(pg_catalog.>=)
                (pg_catalog.now() OPERATOR(pg_catalog.-)
                 pg_catalog.make_interval(secs => LEAST($3, 3153600000::pg_catalog.float8)))",
        Some(1),
        &[
            DatumWithOid::from(pg_uuid(workflow_id)),
            DatumWithOid::from(key),
            DatumWithOid::from(window_secs),
        ],
    )?;
    if found.is_empty() {
        return Ok(None);
    }
    let row = found.first();
    let Some(original_id) = row.get_by_name::<i64, _>("original_id")? else {
        return Ok(None);
    };
    Ok(Some((
        original_id,
        row.get_by_name::<JsonB, _>("response")?.map(|j| j.0),
    )))
}

/// Claims `key` for event `event_id`: `None` when this is the first delivery
/// with that key within the window (or the last one is older), else the
/// original event's id and recorded response. A concurrent first delivery
/// holds the key's index entry until it commits; this waits for it (at most
/// webhook.lock_timeout in the listener) and then sees it.
pub fn claim_delivery(
    client: &mut SpiClient<'_>,
    workflow_id: Uuid,
    key: &str,
    event_id: i64,
    window_secs: f64,
) -> Result<Option<(i64, Option<Value>)>, pgrx::spi::Error> {
    let args = [
        DatumWithOid::from(pg_uuid(workflow_id)),
        DatumWithOid::from(key),
        DatumWithOid::from(event_id),
        DatumWithOid::from(window_secs),
    ];
    let claimed = client.update(
        "INSERT INTO webhook.deliveries AS d (workflow_id, key, event_id, received_at)
         VALUES ($1, $2, $3, pg_catalog.now())
         ON CONFLICT (workflow_id, key) DO UPDATE
            SET event_id = EXCLUDED.event_id, received_at = EXCLUDED.received_at
          WHERE d.received_at OPERATOR(pg_catalog.<)
                (pg_catalog.now() OPERATOR(pg_catalog.-)
                 pg_catalog.make_interval(secs => LEAST($4, 3153600000::pg_catalog.float8)))
         RETURNING d.event_id",
        None,
        &args,
    )?;
    if !claimed.is_empty() {
        return Ok(None);
    }
    // Not claimed: the key's delivery is within the window.
    find_delivery(client, workflow_id, key, window_secs)
}
