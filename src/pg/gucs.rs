//! The `webhook.*` settings (the README's settings table).
//!
//! Settings that decide which sockets exist or which database the worker joins
//! are `PGC_POSTMASTER`; the rest reload on SIGHUP and the worker hands the new
//! values to its network threads.

use std::ffi::{c_char, c_void, CStr, CString};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

use webhook_core::config;

/// Most executors at once, whatever `webhook.max_executors` says (the
/// executors' shared-memory slots, src/execution/registry.rs).
pub const MAX_EXECUTOR_SLOTS: usize = 128;

pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static PORT: GucSetting<i32> = GucSetting::<i32>::new(8787);
pub static WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static MAX_BODY_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(25 * 1024);
/// Request-body memory one listener process holds at once: bodies as they
/// arrive, decoded, and parsed (src/ingest/network/body_budget.rs).
pub static MAX_BODY_MEMORY_KB: GucSetting<i32> = GucSetting::<i32>::new(256 * 1024);
pub static MAX_HEADER_SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(16);
pub static HEADER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static BODY_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
pub static HANDLER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);
/// The longest deadline any handler gets, whatever its workflow asks for.
pub static MAX_HANDLER_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(300_000);
/// No retry of a failed handler comes sooner than this, whatever its
/// workflow's policy asks for.
pub static MIN_RETRY_DELAY_MS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// Attempts per event at most, whatever its workflow's policy asks for.
pub static MAX_RETRY_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// Retry attempts per second, at most, of one owner's events (shared by the
/// owner's executors); first attempts are not counted.
pub static MAX_RETRIES_PER_SECOND: GucSetting<i32> = GucSetting::<i32>::new(100);
/// Executor processes at most (one owner each), within max_worker_processes.
pub static MAX_EXECUTORS: GucSetting<i32> = GucSetting::<i32>::new(4);
/// Bytes of events (kB) one workflow may store per storage window, at most;
/// a workflow's own quota can only be lower.
pub static STORAGE_QUOTA_KB: GucSetting<i32> = GucSetting::<i32>::new(10 * 1024 * 1024);
/// Bytes of events (kB) all of one owner's workflows may store together per
/// storage window, at most (0: no bound beyond each workflow's quota).
pub static OWNER_STORAGE_QUOTA_KB: GucSetting<i32> = GucSetting::<i32>::new(0);
/// Transactions changing workflow definitions per second and role, at most.
pub static MAX_CONFIG_CHANGES_PER_SECOND: GucSetting<i32> = GucSetting::<i32>::new(20);
/// The window storage quotas count in (seconds).
pub static STORAGE_QUOTA_WINDOW_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
/// How long finished events are kept after their last attempt, unless their
/// workflow says otherwise (seconds; -1: for ever).
pub static RETAIN_SUCCEEDED_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
pub static RETAIN_DEAD_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
/// Ten years: longer is for ever (-1).
const MAX_RETENTION_S: i32 = 10 * 365 * 86_400;
/// Executors one owner may have at once (a slow handler does not hold up the
/// owner's other events while another executor is free to start).
pub static MAX_EXECUTORS_PER_OWNER: GucSetting<i32> = GucSetting::<i32>::new(2);
/// An executor with nothing to do for this long exits.
pub static EXECUTOR_IDLE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// 64 = PGPROC_MAX_CACHED_SUBXIDS: each request's subtransaction takes a
/// subtransaction id, and past 64 in one transaction every other backend's
/// snapshots overflow to pg_subtrans lookups.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(64);
/// lock_timeout of the listener's own statements (never of handlers): a lock
/// held by someone else turns into a 503 for that request, not a stall; and
/// of an executor's statements up to its claim (src/execution/executor.rs).
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(100);
/// Refused requests kept per workflow in webhook.rejections.
pub static REJECTIONS_KEPT: GucSetting<i32> = GucSetting::<i32>::new(100);
/// NOTIFY webhook_events when events are stored and handled. Off by default:
/// PostgreSQL serializes the commits of every notifying transaction in the
/// cluster (a database-wide lock held through the commit record's flush).
pub static NOTIFY_EVENTS: GucSetting<bool> = GucSetting::<bool>::new(false);
/// Per listener process: enough for busy senders, far below the open-files
/// limit, so idle sockets cannot starve the process of descriptors.
pub static MAX_CONNECTIONS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Per client IP address and listener process. A reverse proxy in front is
/// one client: raise this (up to max_connections) behind one.
pub static MAX_CONNECTIONS_PER_CLIENT: GucSetting<i32> = GucSetting::<i32>::new(100);

// String settings with a check hook are defined through pg_sys directly (pgrx's
// registry has no hooks), so PostgreSQL owns these pointers.
static mut LISTEN_ADDRESSES: *mut c_char = std::ptr::null_mut();
static mut PUBLIC_BASE_URL: *mut c_char = std::ptr::null_mut();
static mut TLS_CERT_FILE: *mut c_char = std::ptr::null_mut();
static mut TRUSTED_PROXIES: *mut c_char = std::ptr::null_mut();
static mut METRICS_NETWORKS: *mut c_char = std::ptr::null_mut();
static mut FORWARDED_HEADER: *mut c_char = std::ptr::null_mut();
static mut TLS_KEY_FILE: *mut c_char = std::ptr::null_mut();

const KB: GucFlags = GucFlags::UNIT_KB;
const MS: GucFlags = GucFlags::UNIT_MS;
const S: GucFlags = GucFlags::UNIT_S;

/// Defines the settings. PostgreSQL only accepts new `PGC_POSTMASTER` settings
/// while preloading; otherwise those are read as plain configuration values
/// (see [`postmaster_value`]), which is enough for `webhook_url()`.
pub fn define(preloading: bool) {
    if preloading {
        define_postmaster();
    }
    define_reloadable();
}

fn define_postmaster() {
    GucRegistry::define_int_guc(
        c"webhook.max_body_memory",
        c"Request-body memory one listener process holds at once.",
        c"Bodies as they arrive, decoded and parsed; a request that would pass it gets 503 with Retry-After.",
        &MAX_BODY_MEMORY_KB,
        1024,
        64 * 1024 * 1024,
        GucContext::Postmaster,
        KB,
    );
    GucRegistry::define_string_guc(
        c"webhook.database",
        c"Database the webhook listener connects to.",
        c"Workflows are looked up and events stored in this database; CREATE EXTENSION webhook_ext there.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::empty(),
    );
    define_checked_string(
        c"webhook.listen_addresses",
        c"Addresses the webhook listener binds: IP addresses, localhost or *, comma-separated.",
        &raw mut LISTEN_ADDRESSES,
        c"127.0.0.1",
        GucContext::Postmaster,
        Some(check_listen_addresses),
    );
    GucRegistry::define_int_guc(
        c"webhook.port",
        c"TCP port of the webhook listener.",
        c"",
        &PORT,
        1,
        65535,
        GucContext::Postmaster,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.workers",
        c"Number of webhook listener processes sharing the port (SO_REUSEPORT).",
        c"",
        &WORKERS,
        1,
        64,
        GucContext::Postmaster,
        GucFlags::empty(),
    );
    define_checked_string(
        c"webhook.tls_cert_file",
        c"PEM certificate chain; with webhook.tls_key_file the listener speaks HTTPS.",
        &raw mut TLS_CERT_FILE,
        c"",
        GucContext::Postmaster,
        None,
    );
    define_checked_string(
        c"webhook.tls_key_file",
        c"PEM private key for webhook.tls_cert_file.",
        &raw mut TLS_KEY_FILE,
        c"",
        GucContext::Postmaster,
        None,
    );
}

fn define_reloadable() {
    define_checked_string(
        c"webhook.public_base_url",
        c"Base URL printed by webhook_url(); empty means derived from listen_addresses and port.",
        &raw mut PUBLIC_BASE_URL,
        c"",
        GucContext::Sighup,
        Some(check_public_base_url),
    );
    define_checked_string(
        c"webhook.trusted_proxies",
        c"Addresses or networks of reverse proxies whose X-Forwarded-For and Forwarded headers name the client.",
        &raw mut TRUSTED_PROXIES,
        c"",
        GucContext::Sighup,
        Some(check_trusted_proxies),
    );
    define_checked_string(
        c"webhook.metrics_networks",
        c"Addresses or networks that may read /metrics (Prometheus text); empty: /metrics is off (404).",
        &raw mut METRICS_NETWORKS,
        c"",
        GucContext::Sighup,
        Some(check_metrics_networks),
    );
    define_checked_string(
        c"webhook.forwarded_header",
        c"The header trusted proxies name the client in: x-forwarded-for or forwarded (the other one is never read).",
        &raw mut FORWARDED_HEADER,
        c"x-forwarded-for",
        GucContext::Sighup,
        Some(check_forwarded_header),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_body_size",
        c"Largest request body accepted (413 beyond it), after decompression.",
        c"",
        &MAX_BODY_SIZE_KB,
        1,
        1024 * 1024,
        GucContext::Sighup,
        KB,
    );
    GucRegistry::define_int_guc(
        c"webhook.max_header_size",
        c"Largest request head (request line and headers) accepted.",
        c"",
        &MAX_HEADER_SIZE_KB,
        1,
        1024,
        GucContext::Sighup,
        KB,
    );
    GucRegistry::define_int_guc(
        c"webhook.header_timeout",
        c"Time a client has to send the request line and headers; also how long an idle keep-alive connection stays open.",
        c"",
        &HEADER_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.body_timeout",
        c"Time a client has to send the request body.",
        c"",
        &BODY_TIMEOUT_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.handler_timeout",
        c"Deadline of every handler run, unless the workflow sets its own (response_timeout).",
        c"",
        &HANDLER_TIMEOUT_MS,
        1,
        3_600_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.max_handler_timeout",
        c"The longest deadline of any handler run, whatever its workflow's timeout.",
        c"",
        &MAX_HANDLER_TIMEOUT_MS,
        1,
        86_400_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.min_retry_delay",
        c"No retry of a failed handler comes sooner, whatever its workflow's retry policy.",
        c"",
        &MIN_RETRY_DELAY_MS,
        1,
        3_600_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.max_config_changes_per_second",
        c"Transactions changing workflows, parameters or verifications per second and role, at most; more wait their turn.",
        c"Each change makes every listener and executor look for what changed; superusers and the extension's owner are not paced.",
        &MAX_CONFIG_CHANGES_PER_SECOND,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.storage_quota",
        c"Bytes of events one workflow may store per webhook.storage_quota_window, at most, whatever its own quota.",
        c"Past it, requests get 429 with Retry-After until the window ends.",
        &STORAGE_QUOTA_KB,
        1,
        1024 * 1024 * 1024,
        GucContext::Sighup,
        KB,
    );
    GucRegistry::define_int_guc(
        c"webhook.owner_storage_quota",
        c"Bytes of events all workflows of one owner may store together per webhook.storage_quota_window, at most (0: no such bound).",
        c"Past it, requests to any of them get 429 with Retry-After until the window ends.",
        &OWNER_STORAGE_QUOTA_KB,
        0,
        1024 * 1024 * 1024,
        GucContext::Sighup,
        KB,
    );
    GucRegistry::define_int_guc(
        c"webhook.storage_quota_window",
        c"The window of time storage quotas count bytes in.",
        c"",
        &STORAGE_QUOTA_WINDOW_S,
        1,
        30 * 86_400,
        GucContext::Sighup,
        S,
    );
    GucRegistry::define_int_guc(
        c"webhook.retain_succeeded",
        c"How long succeeded events are kept after their handler ran, unless their workflow says otherwise (-1: for ever).",
        c"Older ones are deleted with their attempts, a bounded number at a time, by the retention process.",
        &RETAIN_SUCCEEDED_S,
        -1,
        MAX_RETENTION_S,
        GucContext::Sighup,
        S,
    );
    GucRegistry::define_int_guc(
        c"webhook.retain_dead",
        c"How long dead events are kept after their last attempt, unless their workflow says otherwise (-1: for ever).",
        c"Pending and failed events are never removed by retention.",
        &RETAIN_DEAD_S,
        -1,
        MAX_RETENTION_S,
        GucContext::Sighup,
        S,
    );
    GucRegistry::define_int_guc(
        c"webhook.max_retries_per_second",
        c"Retry attempts per second at most for one owner's events, whatever their workflows' retry policies; first attempts do not count.",
        c"",
        &MAX_RETRIES_PER_SECOND,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_retry_attempts",
        c"Attempts per event at most, whatever its workflow's retry policy.",
        c"",
        &MAX_RETRY_ATTEMPTS,
        1,
        1000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_executors",
        c"Most executor processes (each runs one owner's handlers); they count against max_worker_processes.",
        c"",
        &MAX_EXECUTORS,
        1,
        MAX_EXECUTOR_SLOTS as i32,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_executors_per_owner",
        c"Most executor processes for one owner: a second starts while the first is busy.",
        c"",
        &MAX_EXECUTORS_PER_OWNER,
        1,
        MAX_EXECUTOR_SLOTS as i32,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.executor_idle_timeout",
        c"An executor with no due events for this long exits.",
        c"",
        &EXECUTOR_IDLE_TIMEOUT_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.lock_timeout",
        c"Longest the listener waits for a lock another session holds; the request then gets 503 with Retry-After.",
        c"Executors wait as long for their tables before they claim events, then give way and try again.",
        &LOCK_TIMEOUT_MS,
        1,
        60_000,
        GucContext::Sighup,
        MS,
    );
    GucRegistry::define_int_guc(
        c"webhook.max_connections",
        c"Most open connections per listener process; more are refused with 503.",
        c"Each listener process (webhook.workers) counts its own connections.",
        &MAX_CONNECTIONS,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.max_connections_per_client",
        c"Most open connections from one client (an IPv4 address or IPv6 /64) per listener process; more are refused with 503.",
        c"A reverse proxy in front counts as one client.",
        &MAX_CONNECTIONS_PER_CLIENT,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_bool_guc(
        c"webhook.notify",
        c"NOTIFY webhook_events when an event is stored and when an attempt of its handler is recorded.",
        c"Off by default: PostgreSQL serializes the commits of notifying transactions.",
        &NOTIFY_EVENTS,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.rejections_kept",
        c"Refused requests kept per workflow in webhook.rejections (the counts are never trimmed).",
        c"",
        &REJECTIONS_KEPT,
        1,
        100_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
    GucRegistry::define_int_guc(
        c"webhook.batch_size",
        c"Most requests the listener commits in one transaction.",
        c"",
        &BATCH_SIZE,
        1,
        10_000,
        GucContext::Sighup,
        GucFlags::empty(),
    );
}

fn define_checked_string(
    name: &'static CStr,
    description: &'static CStr,
    variable: *mut *mut c_char,
    boot_value: &'static CStr,
    context: GucContext,
    check: pg_sys::GucStringCheckHook,
) {
    // SAFETY: defines a GUC during _PG_init with 'static names and storage.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            name.as_ptr(),
            description.as_ptr(),
            std::ptr::null(),
            variable,
            boot_value.as_ptr(),
            context as isize as _,
            0,
            check,
            None,
            None,
        );
    }
}

/// Reports a rejected value the way PostgreSQL's own checks do: SQLSTATE 22023
/// with the reason as DETAIL.
///
/// # Safety
/// Only from a GUC check hook, on the main thread: it sets the check
/// hook's error state, which PostgreSQL reads when the hook returns false.
unsafe fn reject(detail: &str) -> bool {
    let mut sentence = detail.to_string();
    if let Some(first) = sentence.get(0..1) {
        sentence.replace_range(0..1, &first.to_uppercase());
    }
    sentence.push('.');
    let detail = CString::new(sentence).unwrap_or_default();
    pg_sys::GUC_check_errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as i32);
    pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
    false
}

/// The proposed value a string GUC's check hook receives, as text.
///
/// # Safety
/// `newval` is the check hook's argument: null, or a pointer to null or to a
/// NUL-terminated string that outlives the returned reference.
unsafe fn new_value<'a>(newval: *mut *mut c_char) -> &'a str {
    if newval.is_null() || (*newval).is_null() {
        return "";
    }
    CStr::from_ptr(*newval).to_str().unwrap_or("\u{fffd}")
}

/// A GUC check hook from a webhook_core parser: a value that parses is
/// accepted; otherwise 22023 with the parser's message as DETAIL.
macro_rules! check_hook {
    ($name:ident, $parse:path) => {
        #[pgrx::pg_guard]
        unsafe extern "C-unwind" fn $name(
            newval: *mut *mut c_char,
            _extra: *mut *mut c_void,
            _source: pg_sys::GucSource::Type,
        ) -> bool {
            match $parse(new_value(newval)) {
                Ok(_) => true,
                Err(why) => reject(&why),
            }
        }
    };
}

check_hook!(check_listen_addresses, config::parse_listen_addresses);
check_hook!(check_public_base_url, config::check_public_base_url);
check_hook!(check_trusted_proxies, webhook_core::access::parse_networks);
check_hook!(check_metrics_networks, webhook_core::access::parse_networks);
check_hook!(
    check_forwarded_header,
    webhook_core::access::ForwardedHeader::parse
);

/// `webhook.forwarded_header` (checked when set).
pub fn forwarded_header() -> webhook_core::access::ForwardedHeader {
    webhook_core::access::ForwardedHeader::parse(&read(&raw const FORWARDED_HEADER))
        .unwrap_or_default()
}

/// The networks of `webhook.trusted_proxies` (checked when set).
pub fn trusted_proxies() -> Vec<ipnet::IpNet> {
    webhook_core::access::parse_networks(&read(&raw const TRUSTED_PROXIES)).unwrap_or_default()
}

/// The networks of `webhook.metrics_networks` (checked when set).
pub fn metrics_networks() -> Vec<ipnet::IpNet> {
    webhook_core::access::parse_networks(&read(&raw const METRICS_NETWORKS)).unwrap_or_default()
}

fn read(variable: *const *mut c_char) -> String {
    // SAFETY: `variable` is a GUC's storage, NULL or a NUL-terminated string owned by guc.c.
    unsafe {
        let ptr = *variable;
        if ptr.is_null() {
            String::new()
        } else {
            CStr::from_ptr(ptr).to_string_lossy().into_owned()
        }
    }
}

fn preloaded() -> bool {
    crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A postmaster-level setting in a backend that did not preload the library:
/// the value from the configuration (a placeholder), or the default.
fn postmaster_value(name: &CStr, default: &str) -> String {
    // SAFETY: GetConfigOption returns NULL or a NUL-terminated string owned by guc.c, copied at once.
    unsafe {
        let value = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        if value.is_null() {
            default.to_string()
        } else {
            CStr::from_ptr(value).to_string_lossy().into_owned()
        }
    }
}

/// webhook.lock_timeout as a value for the `lock_timeout` setting.
pub fn lock_timeout_setting() -> std::ffi::CString {
    std::ffi::CString::new(format!("{}ms", LOCK_TIMEOUT_MS.get())).expect("digits have no NUL")
}

pub fn database() -> String {
    if !preloaded() {
        return postmaster_value(c"webhook.database", "postgres");
    }
    DATABASE
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn listen_addresses() -> String {
    if !preloaded() {
        return postmaster_value(c"webhook.listen_addresses", "127.0.0.1");
    }
    read(&raw const LISTEN_ADDRESSES)
}

pub fn port() -> i32 {
    if !preloaded() {
        return postmaster_value(c"webhook.port", "8787")
            .parse()
            .unwrap_or(8787);
    }
    PORT.get()
}

pub fn public_base_url() -> String {
    read(&raw const PUBLIC_BASE_URL)
}

pub fn tls_cert_file() -> String {
    if !preloaded() {
        return postmaster_value(c"webhook.tls_cert_file", "");
    }
    read(&raw const TLS_CERT_FILE)
}

pub fn tls_key_file() -> String {
    if !preloaded() {
        return postmaster_value(c"webhook.tls_key_file", "");
    }
    read(&raw const TLS_KEY_FILE)
}

/// The base of every workflow URL.
pub fn base_url() -> String {
    let configured = public_base_url();
    if configured.is_empty() {
        let tls = !tls_cert_file().is_empty() && !tls_key_file().is_empty();
        config::default_base_url(&listen_addresses(), port(), tls)
    } else {
        configured
    }
}

/// A handler's deadline: its workflow's own (`timeout`), else
/// webhook.handler_timeout, and never more than webhook.max_handler_timeout.
pub fn handler_deadline_ms(workflow_timeout_ms: Option<i32>) -> i32 {
    workflow_timeout_ms
        .unwrap_or_else(|| HANDLER_TIMEOUT_MS.get())
        .min(MAX_HANDLER_TIMEOUT_MS.get())
}

/// What the server allows every workflow's retry policy.
pub fn retry_limits() -> webhook_core::retry::RetryLimits {
    webhook_core::retry::RetryLimits {
        min_delay: std::time::Duration::from_millis(MIN_RETRY_DELAY_MS.get().max(1) as u64),
        max_attempts: MAX_RETRY_ATTEMPTS.get().max(1) as u32,
    }
}

/// What all of one owner's workflows may store together, if bounded.
pub fn owner_storage_quota() -> Option<webhook_core::quota::Quota> {
    let kb = OWNER_STORAGE_QUOTA_KB.get();
    (kb > 0).then(|| webhook_core::quota::Quota {
        bytes: kb as u64 * 1024,
        window_secs: STORAGE_QUOTA_WINDOW_S.get().max(1) as u64,
    })
}

/// A workflow's storage quota: its own (bytes), or the server's, whichever
/// is lower, per the server's window.
pub fn storage_quota(own_bytes: Option<i64>) -> webhook_core::quota::Quota {
    let server = STORAGE_QUOTA_KB.get().max(1) as u64 * 1024;
    webhook_core::quota::Quota {
        bytes: own_bytes.map_or(server, |own| (own.max(0) as u64).min(server)),
        window_secs: STORAGE_QUOTA_WINDOW_S.get().max(1) as u64,
    }
}
