//! Announcing committed events on the `webhook_events` channel
//! (`webhook.notify`), from listeners, executors and `webhook_trigger`.

/// Whether events are announced: not while the NOTIFY queue is more than
/// half full (a session that LISTENs inside a transaction it never ends pins
/// the queue; once it is full every commit that notifies fails). Updated by
/// [`check_notify_queue`], which also puts a WARNING in the server log (once
/// a minute per process) while notifications are skipped.
pub static NOTIFY_QUEUE_HAS_ROOM: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(true);

/// The channel applications LISTEN on to hear about events.
const EVENTS_CHANNEL: &std::ffi::CStr = c"webhook_events";

// commands/async.h is not in pgrx's bindings.
unsafe extern "C-unwind" {
    fn Async_Notify(channel: *const std::ffi::c_char, payload: *const std::ffi::c_char);
}

/// Reads whether the NOTIFY queue has room (queued workflows' events are
/// announced whatever `webhook.notify` says): every process that announces calls it once per batch
/// before notifying (listeners as a batch starts, executors before their
/// batch's notifications, listeners recording lost attempts).
pub fn check_notify_queue() {
    // SAFETY: the SQL function pg_notification_queue_usage(), called directly
    // (no statement to plan) on the main thread inside a transaction.
    let usage = unsafe {
        pgrx::direct_function_call::<f64>(pgrx::pg_sys::pg_notification_queue_usage, &[])
    };
    let room = usage.is_some_and(|usage| usage < 0.5);
    NOTIFY_QUEUE_HAS_ROOM.store(room, std::sync::atomic::Ordering::Relaxed);
    if !room {
        report_skipped(usage);
    }
}

/// Says, at most once a minute per process, that events are not announced:
/// applications that LISTEN would otherwise wait for notifications that never
/// come without anything in the server log saying why.
fn report_skipped(usage: Option<f64>) {
    static REPORTED: crate::pg::log_rarely::OncePerMinute =
        crate::pg::log_rarely::OncePerMinute::new();
    if !REPORTED.due() {
        return;
    }
    let usage = usage.map_or_else(|| "unknown".into(), |u| format!("{:.1} %", u * 100.0));
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        format!(
            "webhook_ext is not announcing events on webhook_events: PostgreSQL's NOTIFY queue is {usage} full (events are stored and handled as usual)"
        ),
        "webhook_ext notify",
    )
    .set_hint(
        "A session that LISTENs and does not read its notifications, or stays in a transaction, holds the queue: let it consume them or end it (pg_stat_activity shows it). webhook.notify = off stops the announcements of events run by handlers, not those of queued workflows (webhook_set_queue), whose readers wait for them.",
    )
    .report(pgrx::PgLogLevel::WARNING);
}

/// `NOTIFY webhook_events, '{"event_id":N,"status":"…"}'`, delivered when the
/// event commits (with its handler's outcome, which commits with it). Any
/// role may LISTEN on any channel, so the payload carries nothing secret: no
/// workflow id (it is the URL) and no data; a listener reads the row, and
/// row-level security decides whether it may.
pub fn notify_event(event_id: i64, status: &str) {
    if crate::pg::gucs::NOTIFY_EVENTS.get() {
        announce(event_id, status);
    }
}

/// A queued workflow's new event, for the applications that read it
/// (src/queue.rs): announced whatever `webhook.notify` says, since they wait
/// for it.
pub fn notify_consumers(event_id: i64) {
    announce(event_id, "pending");
}

fn announce(event_id: i64, status: &str) {
    if !NOTIFY_QUEUE_HAS_ROOM.load(std::sync::atomic::Ordering::Relaxed) {
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
