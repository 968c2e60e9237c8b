//! Redeliveries and notifications: claiming a request's delivery key (so a
//! redelivery fires its handler once, see webhook_core/src/delivery.rs), and
//! announcing committed events on the `webhook_events` channel.

use pgrx::datum::DatumWithOid;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;
use uuid::Uuid;

use super::catalog::pg_uuid;

/// Whether events are announced: not while the NOTIFY queue is more than
/// half full (a session that LISTENs inside a transaction it never ends pins
/// the queue; once it is full every commit that notifies fails). Updated by
/// [`check_notify_queue`].
pub static NOTIFY_QUEUE_HAS_ROOM: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// The channel applications LISTEN on to hear about events.
const EVENTS_CHANNEL: &std::ffi::CStr = c"webhook_events";

// commands/async.h is not in pgrx's bindings.
unsafe extern "C-unwind" {
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// Reads whether the NOTIFY queue has room, when events are announced at all
/// (`webhook.notify`): every process that announces calls it once per batch
/// before notifying (listeners as a batch starts, executors before their
/// batch's notifications, listeners recording lost attempts).
pub fn check_notify_queue() {
    if !crate::gucs::NOTIFY_EVENTS.get() {
        return;
    }
    // SAFETY: the SQL function pg_notification_queue_usage(), called directly
    // (no statement to plan) on the main thread inside a transaction.
    let usage = unsafe {
        pgrx::direct_function_call::<f64>(pgrx::pg_sys::pg_notification_queue_usage, &[])
    };
    let room = usage.is_some_and(|usage| usage < 0.5);
    NOTIFY_QUEUE_HAS_ROOM.store(room, std::sync::atomic::Ordering::Relaxed);
}

/// `NOTIFY webhook_events, '{"event_id":N,"status":"…"}'`, delivered when the
/// event commits (with its handler's outcome, which commits with it). Any
/// role may LISTEN on any channel, so the payload carries nothing secret: no
/// workflow id (it is the URL) and no data; a listener reads the row, and
/// row-level security decides whether it may.
pub fn notify_event(event_id: i64, status: &str) {
    if !crate::gucs::NOTIFY_EVENTS.get()
        || !NOTIFY_QUEUE_HAS_ROOM.load(std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    let payload = std::ffi::CString::new(format!(
        "{{\"event_id\":{event_id},\"status\":\"{status}\"}}"
    ))
    .expect("digits and a status word have no NUL");
    // SAFETY: queues a notification in the current transaction, on the main
    // thread, with NUL-terminated strings that outlive the call.
    unsafe { Async_Notify(EVENTS_CHANNEL.as_ptr(), payload.as_ptr()) };
}

/// The event that claimed `key` within the last `window_secs`, and its
/// recorded response, if any; claims nothing.
pub fn find_delivery(
    client: &mut SpiClient<'_>,
    workflow_id: Uuid,
    key: &str,
    window_secs: f64,
) -> Result<Option<(i64, Option<Value>)>, pgrx::spi::Error> {
    let found = client.select(
        "SELECT d.event_id, e.response
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
    let Some(original_id) = row.get::<i64>(1)? else {
        return Ok(None);
    };
    Ok(Some((original_id, row.get::<JsonB>(2)?.map(|j| j.0))))
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
