//! The listener background worker: registration and the main loop.
//!
//! Each listener process starts its network thread (signals still blocked, so
//! only this thread gets them), connects to `webhook.database`, then loops:
//! wait for the latch or the network thread's eventfd, take every waiting
//! request, process them in one transaction, and answer once it committed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use webhook_core::config;
use webhook_core::request::Response;

use crate::ingest::network::{
    Health, Job, Listener, Outbox, Purpose, Reply, Settings, SharedSettings,
};
use crate::ingest::pipeline::{next_event_id, Handled, Pipeline, RequestMeta};
use crate::ingest::request_counts::RequestCounts;
use crate::pg::catalog::Catalog;
use crate::pg::event_row::{Origin, EVENTS};
use crate::pg::gucs;
use crate::pg::invalidation::{
    watch_definitions, DEFINITIONS_CHANGED, WATCHED_TABLES, WORKFLOWS_CHANGED,
};
use crate::pg::signals;
use crate::pg::spi::{
    forget_kept, in_transaction, report_table_statistics, run_kept, set_session_setting,
    SAFE_SEARCH_PATH,
};
use crate::pg::LIBRARY_VERSION;
use pgrx::datum::DatumWithOid;

/// Registers `webhook.workers` static workers; called from `_PG_init` during
/// `shared_preload_libraries` processing only.
pub fn register() {
    let count = gucs::WORKERS.get();
    for n in 1..=count {
        BackgroundWorkerBuilder::new(&format!("webhook_ext listener {n}"))
            .set_type("webhook_ext listener")
            .set_library("webhook_ext")
            .set_function("webhook_listener_main")
            .set_argument(n.into_datum())
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(1)))
            .load();
    }
}

fn current_settings() -> Settings {
    Settings {
        max_body_bytes: gucs::MAX_BODY_SIZE_KB.get() as usize * 1024,
        body_memory_kib: gucs::MAX_BODY_MEMORY_KB.get().max(1) as u32,
        max_header_bytes: gucs::MAX_HEADER_SIZE_KB.get() as usize * 1024,
        header_timeout: Duration::from_millis(gucs::HEADER_TIMEOUT_MS.get() as u64),
        body_timeout: Duration::from_millis(gucs::BODY_TIMEOUT_MS.get() as u64),
        max_connections: gucs::MAX_CONNECTIONS.get().max(1) as usize,
        max_connections_per_client: gucs::MAX_CONNECTIONS_PER_CLIENT.get().max(1) as usize,
        trusted_proxies: gucs::trusted_proxies().into(),
        metrics_networks: gucs::metrics_networks().into(),
        forwarded_header: gucs::forwarded_header(),
        base_url: gucs::base_url(),
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn webhook_listener_main(arg: pg_sys::Datum) {
    let settings: SharedSettings = Arc::new(RwLock::new(current_settings()));
    // The network thread starts before signals are unblocked, so that it
    // inherits the blocked mask and every signal comes to this thread.
    let listener = start_network_thread(&settings);
    signals::install_sigterm_handler();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let listener = listener.unwrap_or_else(|e| exit_unable_to_start(&e));
    let database = connect_session();
    watch_definitions();
    crate::execution::register_listener(arg.value().saturating_sub(1));
    // Before this listener starts any executor (src/execution/running_file.rs).
    crate::execution::load_crash_records();
    announce_start(&database);

    let mut state = ListenerState::new(&listener, database);
    let mut turn = Turn::default();
    loop {
        if !turn.backlog {
            wait_for_work(&listener, state.next_wait_deadline(), turn.was_small());
        }
        if signals::shutdown_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() {
            reload(&listener, &settings, &mut state);
        }
        let jobs = take_jobs(&listener, &mut turn);
        state.look_after_executors();
        state.recheck_executors_if_due();
        // Results first: a caller whose handler finished need not wait for
        // this batch's commit.
        state.answer_waiting_if_due();
        if !jobs.is_empty() {
            state.process(jobs);
            turn.done = Instant::now();
        }
        state.answer_waiting_if_due();
        report_table_statistics(false);
    }
    log!("webhook_ext listener shutting down");
    finish_in_flight(listener, &mut state);
    // Non-zero so the postmaster restarts us after pg_terminate_backend(); at
    // server shutdown it does not restart anything anyway.
    // SAFETY: exits the process at the end of the main loop.
    unsafe { pg_sys::proc_exit(1) };
}

/// Binds the listen addresses and starts the network thread (with TLS when
/// a certificate is configured).
fn start_network_thread(settings: &SharedSettings) -> Result<Listener, String> {
    let addresses = config::parse_listen_addresses(&gucs::listen_addresses()).unwrap_or_default();
    let (cert, key) = (gucs::tls_cert_file(), gucs::tls_key_file());
    let tls_files = (!cert.is_empty() || !key.is_empty()).then_some((cert, key));
    Listener::start(&addresses, gucs::port() as u16, tls_files, settings.clone())
        .map_err(|e| e.to_string())
}

/// Exits non-zero: the postmaster tries again after bgw_restart_time.
fn exit_unable_to_start(why: &str) -> ! {
    log!("webhook_ext listener cannot start: {why}");
    // SAFETY: exits the process; nothing of ours is held yet.
    unsafe { pg_sys::proc_exit(1) }
}

/// Connects to `webhook.database` with the session settings every statement
/// of the listener relies on; returns the database's name.
fn connect_session() -> String {
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // This session is a superuser's: no name it resolves may come from a
    // schema a tenant can write (handlers get their owner's path instead).
    set_session_setting(c"search_path", SAFE_SEARCH_PATH);
    // Its statements are small and always the same: compiling them, or
    // planning them again for each request's values, would cost more than
    // running them.
    set_session_setting(c"jit", c"off");
    set_session_setting(c"plan_cache_mode", c"force_generic_plan");
    apply_lock_timeout();
    database
}

fn announce_start(database: &str) {
    log!(
        "webhook_ext listener started on {}:{} ({}) for database \"{database}\"",
        gucs::listen_addresses(),
        gucs::port(),
        if gucs::tls_cert_file().is_empty() {
            "HTTP"
        } else {
            "HTTPS"
        }
    );
}

/// On SIGHUP: reads the configuration again and hands what changed to the
/// network thread, the pipeline and the TLS acceptor.
fn reload(listener: &Listener, settings: &SharedSettings, state: &mut ListenerState) {
    // SAFETY: the documented way to reload the configuration, on the main thread.
    unsafe {
        pg_sys::ConfigReloadPending = 0;
        pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP);
    }
    if let Ok(mut shared) = settings.write() {
        *shared = current_settings();
    }
    state.pipeline.handler_timeout_ms = Some(gucs::HANDLER_TIMEOUT_MS.get());
    state.pipeline.reload_settings();
    apply_lock_timeout();
    state.pipeline.rejections_kept = gucs::REJECTIONS_KEPT.get();
    crate::execution::listener_loaded_settings();
    match listener.reload_certificate() {
        Some(Ok(())) => pgrx::log!("webhook_ext listener reloaded its HTTPS certificate"),
        Some(Err(why)) => pgrx::warning!("webhook_ext listener keeps its HTTPS certificate: {why}"),
        None => {}
    }
}

/// What one turn of the main loop leaves to the next.
struct Turn {
    /// Requests in the last batch.
    last_batch: usize,
    /// When the last batch was done.
    done: Instant,
    /// A full batch may have left requests behind whose wake-up was already
    /// consumed: go round again without sleeping.
    backlog: bool,
}

impl Default for Turn {
    fn default() -> Turn {
        Turn {
            last_batch: 0,
            done: Instant::now(),
            backlog: false,
        }
    }
}

impl Turn {
    /// After a batch of one or two requests the next one is usually a
    /// moment away (see [`wait_for_work`]).
    fn was_small(&self) -> bool {
        (1..=2).contains(&self.last_batch)
    }
}

/// Takes the waiting requests, `webhook.batch_size` at most, after waiting a
/// moment for company when the last batch was a group (see
/// [`GROUP_COMMIT_FROM`]).
fn take_jobs(listener: &Listener, turn: &mut Turn) -> Vec<Job> {
    let batch_size = gucs::BATCH_SIZE.get().max(1) as usize;
    if turn.last_batch >= GROUP_COMMIT_FROM && turn.done.elapsed() < GROUP_COMMIT_RECENT {
        wait_for_company(listener, turn.last_batch);
    }
    let jobs: Vec<Job> = listener.jobs.try_iter().take(batch_size).collect();
    listener.waker.jobs_taken(jobs.len());
    turn.last_batch = jobs.len();
    turn.backlog = jobs.len() == batch_size;
    jobs
}

/// At shutdown: stops accepting and answers what is already in flight
/// (normally, while the grace period lasts), so no caller is left hanging.
/// Callers waiting for a handler's result are answered at once, while their
/// connections are still open (the network thread drops them when its grace
/// ends).
fn finish_in_flight(listener: Listener, state: &mut ListenerState) {
    listener.begin_shutdown();
    state.answer_waiting_at_shutdown();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !listener.finished() && Instant::now() < deadline {
        let jobs: Vec<Job> = listener.jobs.try_iter().collect();
        listener.waker.jobs_taken(jobs.len());
        if jobs.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            state.process(jobs);
            state.answer_waiting_at_shutdown();
        }
    }
    if state.ready {
        state.requests.flush();
    }
}

/// Logged once per change of the installed version: the library was
/// replaced (a new version installed and the server restarted) but the
/// extension in the database was not updated yet.
fn version_mismatch_warning(installed: &str, database: &str) {
    pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        format!(
            "webhook_ext listener does not serve: the extension in database \"{database}\" is version {installed}, the library is {LIBRARY_VERSION}"
        ),
        "webhook_ext listener",
    )
    .set_hint("Run ALTER EXTENSION webhook_ext UPDATE in that database; requests get 503 until then.")
    .report(pgrx::PgLogLevel::WARNING);
}

/// Deletes delivery keys older than their workflow's window, a bounded number
/// at a time, when the listener is idle (rows another listener is deleting
/// are skipped).
fn forget_expired_deliveries() {
    run_housekeeping(FORGET_EXPIRED_DELIVERIES);
}

/// Runs one bounded housekeeping statement in its own transaction; a failure
/// only forgets the kept plans (the next round tries again).
fn run_housekeeping(statement: &'static str) {
    let deleted = in_transaction(|| Spi::connect_mut(|client| run_kept::<i64>(client, statement)));
    if !matches!(deleted, Ok(Ok(_))) {
        forget_kept();
    }
}

const FORGET_EXPIRED_DELIVERIES: &str = "DELETE FROM webhook.deliveries d
              WHERE d.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT x.ctid FROM webhook.deliveries x
                      JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) x.workflow_id
                     WHERE x.received_at OPERATOR(pg_catalog.<)
                           (pg_catalog.now() OPERATOR(pg_catalog.-) w.delivery_key_window)
                     LIMIT 1000
                       FOR UPDATE OF x SKIP LOCKED))";

/// Deletes the change notes of workflows that were found gone more than an
/// hour ago (every process has looked since, or reloads everything: see
/// src/pg/catalog.rs `MAX_UNSEEN`), after stamping when notes were
/// first found gone (a deletion is found only once it is committed), a
/// bounded number at a time; a workflow that exists keeps its one row.
/// Deleted workflows' counters go in the same round.
fn forget_old_workflow_changes() {
    // Each look reads every note (one per workflow): once a minute is
    // plenty against an hour.
    static DUE: crate::pg::log_rarely::OncePerMinute = crate::pg::log_rarely::OncePerMinute::new();
    if !DUE.due() {
        return;
    }
    run_housekeeping(STAMP_GONE_WORKFLOW_CHANGES);
    run_housekeeping(FORGET_OLD_WORKFLOW_CHANGES);
    run_housekeeping(FORGET_GONE_WORKFLOW_COUNTERS);
}

/// The counters of deleted workflows (webhook.workflow_counters has no
/// foreign key: sql/schema.sql says why), a bounded number at a time; rows
/// an executor is adding to are skipped.
const FORGET_GONE_WORKFLOW_COUNTERS: &str = "DELETE FROM webhook.workflow_counters c
              WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT x.ctid FROM webhook.workflow_counters x
                     WHERE NOT EXISTS (SELECT FROM webhook.workflows w
                                        WHERE w.id OPERATOR(pg_catalog.=) x.workflow_id)
                     LIMIT 1000
                       FOR UPDATE OF x SKIP LOCKED))";

const STAMP_GONE_WORKFLOW_CHANGES: &str = "UPDATE webhook.workflow_changes c
                SET gone_at = pg_catalog.now()
              WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT x.ctid FROM webhook.workflow_changes x
                     WHERE x.gone_at IS NULL
                       AND NOT EXISTS (SELECT FROM webhook.workflows w
                                        WHERE w.id OPERATOR(pg_catalog.=) x.workflow_id)
                     LIMIT 1000
                       FOR UPDATE OF x SKIP LOCKED))";

const FORGET_OLD_WORKFLOW_CHANGES: &str = "DELETE FROM webhook.workflow_changes c
              WHERE c.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT x.ctid FROM webhook.workflow_changes x
                     WHERE x.gone_at OPERATOR(pg_catalog.<)
                           (pg_catalog.now() OPERATOR(pg_catalog.-) '1 hour'::pg_catalog.interval)
                       AND NOT EXISTS (SELECT FROM webhook.workflows w
                                        WHERE w.id OPERATOR(pg_catalog.=) x.workflow_id)
                     LIMIT 1000
                       FOR UPDATE OF x SKIP LOCKED))";

/// The listener's own lock_timeout (webhook.lock_timeout), for its session.
fn apply_lock_timeout() {
    set_session_setting(c"lock_timeout", &gucs::lock_timeout_setting());
}

/// How long the main thread keeps looking for requests before it sleeps,
/// after a small batch (see wait_for_work).
const SPIN_US: u64 = 100;

/// Group commit. After a batch of at least `GROUP_COMMIT_FROM` requests,
/// the main thread waits up to `GROUP_COMMIT_WAIT` for as many to be queued
/// before it starts the next one. Callers that arrive together (a sender's
/// burst, or the callers just answered sending again) then share one commit
/// and one WAL flush, instead of splitting into batches half as large that
/// each pay for a flush: 16 connections went from about 12,900 to 14,200
/// acknowledgements a second, 8 from 8,200 to 9,200 and 2 from 3,300 to
/// 3,800, with lower p99 (bench/README.md). PostgreSQL's commit_delay
/// does the same for backends. A lone caller does not wait: its event
/// commits at once; nor does the first request after a pause longer than
/// `GROUP_COMMIT_RECENT` (callers answered together come back well within
/// it).
const GROUP_COMMIT_FROM: usize = 2;
const GROUP_COMMIT_WAIT: Duration = Duration::from_micros(250);
const GROUP_COMMIT_RECENT: Duration = Duration::from_millis(2);

/// Waits, yielding the processor, until `count` requests are queued or
/// `GROUP_COMMIT_WAIT` has passed.
fn wait_for_company(listener: &Listener, count: usize) {
    let until = Instant::now() + GROUP_COMMIT_WAIT;
    while listener.waker.queued() < count && Instant::now() < until {
        std::thread::yield_now();
    }
}

/// Sleeps until the latch is set (signals, or an executor finished an event),
/// a request arrives (eventfd), a second passes, or `deadline`.
fn wait_for_work(listener: &Listener, deadline: Option<Instant>, spin: bool) {
    // After a batch of one or two requests, the next one is usually a
    // moment away (a caller sending again, its answer just out): yielding
    // the processor for that moment costs less than the sleep and the
    // wake-up through the eventfd, which take about a fifth of a lone
    // request's time. Larger batches mean requests queue anyway.
    let spin_until = Instant::now() + Duration::from_micros(if spin { SPIN_US } else { 0 });
    while Instant::now() < spin_until {
        if listener.waker.has_jobs() {
            return;
        }
        std::thread::yield_now();
    }
    if !listener.waker.prepare_to_sleep() {
        return; // requests are waiting
    }
    let timeout_ms = deadline.map_or(1000, |d| {
        d.saturating_duration_since(Instant::now())
            .as_millis()
            .clamp(1, 1000) as i64
    });
    // SAFETY: the main thread's own latch and the waker's eventfd, which
    // lives as long as the listener.
    unsafe {
        let events = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET
                | pg_sys::WL_SOCKET_READABLE
                | pg_sys::WL_TIMEOUT
                | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            listener.waker.raw_fd(),
            timeout_ms as std::ffi::c_long,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        listener.waker.awake();
        if events & pg_sys::WL_SOCKET_READABLE as i32 != 0 {
            listener.waker.drain();
        }
    }
}

struct ListenerState {
    pipeline: Pipeline,
    database: String,
    ready: bool,
    /// The extension's version in the listener's database at the last look
    /// (`None`: not installed).
    installed_version: Option<String>,
    announced_wait: bool,
    last_check: Option<Instant>,
    /// `workflow`-method requests whose events are stored, waiting for an
    /// executor's result.
    waiting: Vec<Waiter>,
    /// The executors' announcement count at the last look-up of results, and
    /// when that was.
    results_seen: u64,
    waiting_checked: Instant,
    /// Owners whose busy executor is to take the events just stored.
    rechecks: Vec<crate::execution::Recheck>,
    outbox: Arc<Outbox>,
    /// What `/healthz` answers from (see [`Self::check_extension`]).
    health: Arc<Health>,
    /// Requests accepted and redelivered, not yet in webhook.workflow_counters.
    requests: RequestCounts,
    /// The server was read-only at the last check.
    read_only: bool,
}

/// A caller waiting for its event's handler (the `workflow` method).
struct Waiter {
    event_id: i64,
    reply: Reply,
    deadline: Instant,
    /// What to answer if no result comes in time, or the handler failed and
    /// recorded no response.
    failure: Response,
}

/// How often the main thread checks the extension, tends the executors and
/// does its housekeeping, whatever the traffic.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How often waiting callers' results are looked up when no executor
/// announced any.
const RESULTS_POLL: Duration = Duration::from_millis(100);

/// Extra wait, past the handler's deadline, for the executor to record a
/// cancelled handler (or a listener to record a terminated one).
const RESULT_GRACE: Duration = Duration::from_millis(1500);

impl ListenerState {
    fn new(listener: &Listener, database: String) -> ListenerState {
        let mut pipeline = Pipeline::new(None, Some(gucs::HANDLER_TIMEOUT_MS.get()));
        pipeline.catalog = Catalog::publishing_to(listener.directory.clone());
        pipeline.run_handlers_now = false;
        pipeline.defer_inserts = true;
        pipeline.rejections_kept = gucs::REJECTIONS_KEPT.get();
        ListenerState {
            pipeline,
            database,
            ready: false,
            installed_version: None,
            announced_wait: false,
            last_check: None,
            waiting: Vec::new(),
            results_seen: 0,
            waiting_checked: Instant::now(),
            rechecks: Vec::new(),
            outbox: listener.outbox.clone(),
            health: listener.health.clone(),
            requests: RequestCounts::default(),
            read_only: false,
        }
    }

    /// Once a second even under steady traffic (retries that came due and
    /// events left by a restart need an executor whatever else arrives):
    /// checks the extension is there, does the housekeeping and tends the
    /// executors; in between, only what executors asked for.
    fn look_after_executors(&mut self) {
        let stale = self.last_check.is_none_or(|t| t.elapsed() >= CHECK_EVERY);
        let duties = crate::execution::duties(crate::execution::pool_limit());
        if !self.ready || stale {
            self.check_extension();
            if self.ready {
                self.requests.flush();
                forget_expired_deliveries();
                forget_old_workflow_changes();
                self.tend_executors();
            }
        } else if duties.record_exited {
            self.tend_executors();
        } else if duties.start_waiting {
            crate::execution::start_waiting_owners();
        }
    }

    /// Whether the extension is installed in the listener's database at the
    /// library's own version and the server takes writes: only then does the
    /// listener touch its tables.
    /// Checked once a second, so that a CREATE EXTENSION or an ALTER
    /// EXTENSION … UPDATE is served without a restart. What it finds, and
    /// when, is what `/healthz` answers from: a main thread held up longer
    /// than `webhook_core::health::STALL_AFTER` is reported stalled.
    fn check_extension(&mut self) {
        self.last_check = Some(Instant::now());
        let (installed, read_only) = crate::pg::server_state::installed_version_and_read_only();
        let was_read_only = std::mem::replace(&mut self.read_only, read_only);
        if read_only && !was_read_only {
            log!("webhook_ext listener does not serve: the server is read-only (default_transaction_read_only)");
        } else if was_read_only && !read_only {
            log!("webhook_ext listener serves again: the server is no longer read-only");
        }
        let ready = installed.as_deref() == Some(LIBRARY_VERSION) && !read_only;
        if ready && !self.ready {
            log!(
                "webhook_ext listener found the extension in database \"{}\"",
                self.database
            );
            self.announced_wait = false;
        } else if !ready
            && !read_only
            && (!self.announced_wait || self.installed_version != installed)
        {
            match &installed {
                None => log!(
                    "webhook_ext listener waiting for CREATE EXTENSION webhook_ext in database \"{}\"",
                    self.database
                ),
                Some(version) => version_mismatch_warning(version, &self.database),
            }
            self.announced_wait = true;
            self.pipeline.reset();
            forget_kept();
        }
        self.ready = ready;
        self.installed_version = installed;
        self.health.checked((!ready).then(|| self.not_installed()));
    }

    /// What a request gets while the listener does not serve: the server is
    /// read-only, or the extension is missing or installed at another
    /// version than the library's.
    fn not_installed(&self) -> Response {
        if self.read_only {
            return Response::retry_later("This server is read-only: it does not take events now");
        }
        match &self.installed_version {
            Some(version) if version != LIBRARY_VERSION => Response::retry_later(&format!(
                "webhook_ext {version} is installed but the library is {LIBRARY_VERSION}: run ALTER EXTENSION webhook_ext UPDATE"
            )),
            _ => Response::retry_later("webhook_ext is not installed in the listener's database"),
        }
    }

    /// Processes requests in batches of one transaction each; replies that
    /// depend on the commit are sent after it. Each request's own failures
    /// are contained in its subtransaction; if the transaction as a whole
    /// fails, the requests it had processed get 503 (nothing of theirs is
    /// stored), and the ones it had not reached yet are processed again in a
    /// new transaction.
    fn process(&mut self, jobs: Vec<Job>) {
        let mut queue: VecDeque<Job> = jobs.into();
        while !queue.is_empty() {
            if !self.ready {
                for job in queue.drain(..) {
                    let _ = job.reply.send(self.not_installed());
                }
                return;
            }
            let mut batch = RequestBatch {
                pending: std::mem::take(&mut queue),
                ..RequestBatch::default()
            };
            let pipeline = &mut self.pipeline;
            pipeline.stored_for_owners.clear();
            pipeline.counted.clear();
            let result = in_transaction(|| Spi::connect_mut(|client| batch.run(client, pipeline)));
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(spi_error)) => Some(spi_error.to_string()),
                Err(caught) => Some(caught.describe()),
            };
            let Some(why) = failure else {
                self.committed(batch);
                continue;
            };
            pgrx::warning!("webhook_ext listener could not store a batch of events: {why}");
            self.pipeline.reset();
            let retry_later = || Response::retry_later("Event could not be stored, retry later");
            let made_progress = batch.in_progress.is_some() || !batch.answered.is_empty();
            for (reply, _, _) in batch.answered {
                let _ = reply.send(retry_later());
            }
            if let Some(reply) = batch.in_progress {
                let _ = reply.send(retry_later());
            }
            queue = batch.pending;
            if !made_progress {
                // Failed before any request (e.g. the extension is gone).
                self.check_extension();
                for job in queue.drain(..) {
                    let _ = job.reply.send(retry_later());
                }
            }
        }
    }

    /// The batch committed: answer its callers, start waiting for the
    /// `workflow`-method results, and wake the owners' executors. A commit
    /// whose wait for the synchronous standby was cut short (the listener
    /// was cancelled or told to stop, or the postmaster died) is stored here
    /// but maybe not there: its callers get 503, never a 2xx that a failover
    /// could break (src/pg/sync_commit.rs).
    fn committed(&mut self, batch: RequestBatch) {
        self.requests
            .committed(std::mem::take(&mut self.pipeline.counted));
        let confirmed = crate::pg::sync_commit::last_commit_confirmed();
        if !confirmed && UNCONFIRMED.due() {
            pgrx::warning!(
                "webhook_ext listener answered 503 to requests whose events committed here but were not confirmed by the synchronous standby"
            );
        }
        let unconfirmed = || {
            Response::retry_later(
                "Event stored but not confirmed by the synchronous standby, retry later",
            )
        };
        let mut answers = Vec::with_capacity(batch.answered.len());
        for (reply, after_commit, _) in batch.answered {
            match after_commit {
                AfterCommit::Answer(response) if !confirmed && response.status < 300 => {
                    answers.push((reply, unconfirmed()))
                }
                AfterCommit::Await { .. } if !confirmed => answers.push((reply, unconfirmed())),
                AfterCommit::Answer(response) => answers.push((reply, response)),
                AfterCommit::Await {
                    event_id,
                    timeout_ms,
                    failure,
                } => {
                    let timeout = Duration::from_millis(
                        timeout_ms
                            .unwrap_or_else(|| gucs::HANDLER_TIMEOUT_MS.get())
                            .max(1) as u64,
                    );
                    self.waiting.push(Waiter {
                        event_id,
                        reply,
                        deadline: Instant::now() + timeout + RESULT_GRACE,
                        failure,
                    });
                }
            }
        }
        self.outbox.send_all(answers);
        let mut owners = std::mem::take(&mut self.pipeline.stored_for_owners);
        owners.sort_unstable_by_key(|owner| owner.to_u32());
        owners.dedup();
        for owner in owners {
            if let Some(recheck) = crate::execution::wake_or_start(owner) {
                // One pending look per owner: after the latest events.
                match self.rechecks.iter_mut().find(|p| p.owner == recheck.owner) {
                    Some(pending) => *pending = recheck,
                    None => self.rechecks.push(recheck),
                }
            }
        }
    }

    /// Gives an owner whose trusted executor did not come back for the new
    /// events in time another one (pool.rs `Recheck`).
    fn recheck_executors_if_due(&mut self) {
        let now = Instant::now();
        let due: Vec<_> = self
            .rechecks
            .extract_if(.., |recheck| recheck.due <= now)
            .collect();
        for recheck in due {
            if let Some(again) = crate::execution::recheck(recheck) {
                self.rechecks.push(again);
            }
        }
    }

    /// The next time the waiting callers must be looked at (a deadline, or
    /// the periodic look-up that [`Self::answer_waiting_if_due`] makes), an
    /// owner's executor (see [`Self::recheck_executors_if_due`]), or the
    /// once-a-second check is due.
    fn next_wait_deadline(&self) -> Option<Instant> {
        let waiting = self
            .waiting
            .iter()
            .map(|w| w.deadline)
            .min()
            .map(|deadline| deadline.min(self.waiting_checked + RESULTS_POLL));
        let recheck = self.rechecks.iter().map(|recheck| recheck.due).min();
        // The once-a-second check, on time (`/healthz` reports a late one).
        let check = self.last_check.map(|t| t + CHECK_EVERY);
        waiting.into_iter().chain(recheck).chain(check).min()
    }

    /// Answers the waiting callers if executors announced results since the
    /// last look-up, a deadline passed, or the last look-up is old (a
    /// listener that records a lost attempt announces nothing).
    fn answer_waiting_if_due(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let announced = crate::execution::results_announced();
        let now = Instant::now();
        let due = announced != self.results_seen
            || now >= self.waiting_checked + RESULTS_POLL
            || self.waiting.iter().any(|w| now >= w.deadline);
        if due {
            self.results_seen = announced;
            self.waiting_checked = now;
            self.answer_waiting();
        }
    }

    /// Answers the waiting callers whose events an executor finished, and
    /// those whose deadline passed.
    fn answer_waiting(&mut self) {
        let ids: Vec<i64> = self.waiting.iter().map(|w| w.event_id).collect();
        let finished = in_transaction(|| {
            Spi::connect(|client| {
                let table = client.select(FINISHED_EVENTS, None, &[DatumWithOid::from(ids)])?;
                let mut finished = std::collections::HashMap::new();
                for row in table {
                    let id = row.get_by_name::<i64, _>(EVENTS.id)?.unwrap_or(0);
                    let recorded = match (
                        row.get_by_name::<i32, _>("succeeded_status")?,
                        row.get_by_name::<String, _>("response_headers")?,
                    ) {
                        (Some(status), headers) => Some(Response {
                            status: status as u16,
                            headers: headers
                                .and_then(|h| {
                                    serde_json::from_str::<
                                            serde_json::Map<String, serde_json::Value>,
                                        >(&h)
                                        .ok()
                                })
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                                .collect(),
                            body: row
                                .get_by_name::<String, _>("response_body")?
                                .unwrap_or_default()
                                .into_bytes(),
                        }),
                        _ => None,
                    };
                    finished.insert(id, recorded);
                }
                Ok::<_, pgrx::spi::Error>(finished)
            })
        });
        // If the lookup failed, callers past their deadline are still answered.
        let finished = match finished {
            Ok(Ok(finished)) => finished,
            _ => std::collections::HashMap::new(),
        };
        let now = Instant::now();
        let mut still = Vec::with_capacity(self.waiting.len());
        for waiter in self.waiting.drain(..) {
            match finished.get(&waiter.event_id) {
                Some(Some(recorded)) => {
                    let _ = waiter.reply.send(recorded.clone());
                }
                Some(None) => {
                    let _ = waiter.reply.send(waiter.failure);
                }
                None if now >= waiter.deadline => {
                    let _ = waiter.reply.send(waiter.failure);
                }
                None => still.push(waiter),
            }
        }
        self.waiting = still;
    }

    /// At shutdown: results already recorded are sent; every other waiting
    /// caller gets 503 (the event is stored and its handler will run, but
    /// this process will not see the result).
    fn answer_waiting_at_shutdown(&mut self) {
        self.answer_waiting();
        for waiter in self.waiting.drain(..) {
            let _ = waiter.reply.send(Response::retry_later(
                "Server shutting down; the event is stored and its handler will run",
            ));
        }
    }

    /// Starts executors for due events and records attempts cut short.
    fn tend_executors(&mut self) {
        let catalog = &mut self.pipeline.catalog;
        let result =
            in_transaction(|| Spi::connect_mut(|client| crate::execution::tend(client, catalog)));
        let failure = match result {
            Ok(Ok(())) => return,
            Ok(Err(spi_error)) => spi_error.to_string(),
            Err(caught) => caught.describe(),
        };
        pgrx::warning!("webhook_ext listener could not tend the executors: {failure}");
        self.pipeline.forget_workflows();
        forget_kept();
    }
}

/// Events whose handler has run (an attempt was recorded), with the
/// response recorded if it succeeded: status, headers and the body as sent.
/// A failed one gets the listener's own rendering of the failure response
/// (the same, byte for byte as configured). Read by column name.
const FINISHED_EVENTS: &str = "
SELECT e.id,
       CASE WHEN e.status OPERATOR(pg_catalog.=) 'succeeded'
            THEN (e.response OPERATOR(pg_catalog.->>) 'status')::pg_catalog.int4 END
           AS succeeded_status,
       (e.response OPERATOR(pg_catalog.->) 'headers')::pg_catalog.text AS response_headers,
       CASE WHEN pg_catalog.jsonb_typeof(e.response OPERATOR(pg_catalog.->) 'body')
                 OPERATOR(pg_catalog.=) 'string'
            THEN e.response OPERATOR(pg_catalog.->>) 'body'
            ELSE (e.response OPERATOR(pg_catalog.->) 'body')::pg_catalog.text END
           AS response_body
  FROM webhook.events e
 WHERE e.id OPERATOR(pg_catalog.=) ANY ($1) AND e.attempts OPERATOR(pg_catalog.>) 0";

/// Logs that a batch's commit was not confirmed by the synchronous standby.
static UNCONFIRMED: crate::pg::log_rarely::OncePerMinute =
    crate::pg::log_rarely::OncePerMinute::new();

/// What to do for a request once its batch committed.
enum AfterCommit {
    Answer(Response),
    Await {
        event_id: i64,
        timeout_ms: Option<i32>,
        failure: Response,
    },
}

/// One transaction's worth of requests (a batch of the listener's; an executor's is
/// `BatchOutcome`, src/execution/executor.rs).
#[derive(Default)]
struct RequestBatch {
    /// Not reached yet.
    pending: VecDeque<Job>,
    /// The request being processed (its reply, if the transaction fails now).
    in_progress: Option<Reply>,
    /// Processed; answered once the transaction commits. The event id is
    /// that of an event stored with the batch's last statement
    /// (`Pipeline::store_deferred`), whose failure changes the answer.
    answered: Vec<(Reply, AfterCommit, Option<i64>)>,
}

impl RequestBatch {
    fn run(
        &mut self,
        client: &mut SpiClient<'_>,
        pipeline: &mut Pipeline,
    ) -> Result<(), pgrx::spi::Error> {
        // Invalidations were taken in when the transaction started.
        let everything = DEFINITIONS_CHANGED.swap(false, Ordering::SeqCst);
        let some = WORKFLOWS_CHANGED.swap(false, Ordering::SeqCst);
        if everything {
            pipeline.forget_workflows();
        }
        let (sequence, tables) = pipeline.begin_batch(client)?;
        if let Some(tables) = tables {
            for (watched, oid) in WATCHED_TABLES.iter().zip(tables) {
                watched.store(oid, Ordering::SeqCst);
            }
        }
        if everything || some || pipeline.catalog_needs_look() {
            pipeline.forget_changed_workflows(client)?;
        }
        while let Some(mut job) = self.pending.pop_front() {
            let meta = RequestMeta {
                received_at: job.received_at,
                remote_addr: job.remote_addr,
                origin: Origin::Http,
                replay_of: None,
                raw_path: Some(job.raw_path.clone()),
                raw_query: job.raw_query.clone(),
                verdict: job.verdict.take(),
            };
            match &job.purpose {
                Purpose::Handle => {}
                Purpose::RecordRefusal(refused) => {
                    // Already answered by the network thread.
                    pipeline.record_refusal(
                        client,
                        job.workflow_id,
                        &job.request,
                        refused,
                        &meta,
                    )?;
                    continue;
                }
                Purpose::Handshake(kind, answer) => {
                    let answered = pipeline.handshake(
                        client,
                        job.workflow_id,
                        &job.request,
                        &meta,
                        *kind,
                        answer,
                    )?;
                    let reply = answered.unwrap_or_else(|| {
                        job.check_again.store(true, Ordering::Release);
                        crate::pg::front_door::workflow_changed()
                    });
                    let _ = job.reply.send(reply);
                    continue;
                }
                Purpose::LookUp => {
                    let answer = pipeline.look_up(client, job.workflow_id, &job.request, &meta)?;
                    let _ = job.reply.send(answer);
                    continue;
                }
                Purpose::Metrics => {
                    let _ = job.reply.send(crate::ingest::metrics::answer(client));
                    continue;
                }
            }
            self.in_progress = Some(job.reply);
            let mut next_id = |_: &SpiClient<'_>| Ok(next_event_id(sequence));
            let handled = pipeline.handle(
                client,
                job.workflow_id,
                &mut job.request,
                &meta,
                &mut next_id,
            )?;
            let deferred = pipeline.last_deferred.take();
            let reply = self.in_progress.take().expect("set above");
            match handled {
                Handled::Immediate(response) => {
                    let _ = reply.send(response);
                }
                Handled::CheckAgain => {
                    job.check_again.store(true, Ordering::Release);
                    let _ = reply.send(crate::pg::front_door::workflow_changed());
                }
                Handled::AfterCommit(response) => {
                    self.answered
                        .push((reply, AfterCommit::Answer(response), deferred));
                }
                Handled::AwaitHandler {
                    event_id,
                    timeout_ms,
                    failure,
                } => self.answered.push((
                    reply,
                    AfterCommit::Await {
                        event_id,
                        timeout_ms,
                        failure,
                    },
                    deferred,
                )),
            }
        }
        for (event_id, refusal) in pipeline.store_deferred(client)? {
            for (_, after_commit, deferred) in self.answered.iter_mut() {
                if *deferred == Some(event_id) {
                    *after_commit = AfterCommit::Answer(refusal.clone());
                }
            }
        }
        // After the events: a row the batch's insert refused is counted too.
        pipeline.flush_rejection_counts(client);
        Ok(())
    }
}
