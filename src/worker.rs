//! The listener background worker: registration and the main loop.
//!
//! Each listener process starts its network thread (signals still blocked, so
//! only this thread gets them), connects to `webhook.database`, then loops:
//! wait for the latch or the network thread's eventfd, take every waiting
//! request, process them in one transaction, and answer once it committed.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use webhook_core::config;
use webhook_core::request::Response;

use crate::gucs;
use crate::listener::{Job, Listener, Settings, SharedSettings};
use crate::pipeline::spi_util::{in_transaction, set_session_setting, SAFE_SEARCH_PATH};
use crate::pipeline::{Handled, Origin, Pipeline, RequestMeta};
use crate::signals;

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
        max_header_bytes: gucs::MAX_HEADER_SIZE_KB.get() as usize * 1024,
        header_timeout: Duration::from_millis(gucs::HEADER_TIMEOUT_MS.get() as u64),
        body_timeout: Duration::from_millis(gucs::BODY_TIMEOUT_MS.get() as u64),
        max_connections: gucs::MAX_CONNECTIONS.get().max(1) as usize,
        max_connections_per_client: gucs::MAX_CONNECTIONS_PER_CLIENT.get().max(1) as usize,
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn webhook_listener_main(_arg: pg_sys::Datum) {
    let settings: SharedSettings = Arc::new(RwLock::new(current_settings()));
    let addresses = config::parse_listen_addresses(&gucs::listen_addresses()).unwrap_or_default();
    let port = gucs::port() as u16;
    // Threads start before signals are unblocked so that they inherit the
    // blocked mask and every signal goes to this thread.
    let (cert, key) = (gucs::tls_cert_file(), gucs::tls_key_file());
    let tls_files = (!cert.is_empty() || !key.is_empty()).then_some((cert, key));
    let listener = Listener::start(&addresses, port, tls_files, settings.clone());
    signals::install_sigterm_handler();
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let listener = match listener {
        Ok(listener) => listener,
        Err(e) => {
            // Exit non-zero: the postmaster retries after bgw_restart_time.
            log!("webhook_ext listener cannot start: {e}");
            unsafe { pg_sys::proc_exit(1) };
        }
    };
    let database = gucs::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // This session is a superuser's: no name it resolves may come from a
    // schema a tenant can write (handlers get their owner's path instead).
    set_session_setting(c"search_path", SAFE_SEARCH_PATH);
    apply_lock_timeout();
    crate::pipeline::session_reset::install_handler_guard();
    watch_definitions();
    log!(
        "webhook_ext listener started on {}:{port} ({}) for database \"{database}\"",
        gucs::listen_addresses(),
        if gucs::tls_cert_file().is_empty() {
            "HTTP"
        } else {
            "HTTPS"
        }
    );

    let mut pipeline = Pipeline::new(None, Some(gucs::HANDLER_TIMEOUT_MS.get()));
    pipeline.isolate_handlers = true;
    pipeline.rejections_kept = gucs::REJECTIONS_KEPT.get();
    let mut state = ListenerState {
        pipeline,
        database,
        ready: false,
        announced_wait: false,
        last_check: None,
    };
    let mut backlog = false;
    loop {
        if !backlog {
            wait_for_work(&listener);
        }
        if signals::shutdown_requested() {
            break;
        }
        if BackgroundWorker::sighup_received() {
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
        }
        let batch_size = gucs::BATCH_SIZE.get().max(1) as usize;
        let jobs: Vec<Job> = listener.jobs.try_iter().take(batch_size).collect();
        // A full batch may have left requests behind whose wake-up we already
        // consumed: go round again without sleeping.
        backlog = jobs.len() == batch_size;
        let stale = state
            .last_check
            .is_none_or(|t| t.elapsed() > Duration::from_secs(1));
        if !state.ready || (stale && jobs.is_empty()) {
            state.check_extension();
            if state.ready {
                forget_expired_deliveries();
            }
        }
        if !jobs.is_empty() {
            state.process(jobs);
        }
    }
    log!("webhook_ext listener shutting down");
    // Stop accepting, and answer what is already in flight (normally, while
    // the grace period lasts), so no caller is left hanging.
    listener.begin_shutdown();
    let deadline = Instant::now() + Duration::from_secs(3);
    while !listener.finished() && Instant::now() < deadline {
        let jobs: Vec<Job> = listener.jobs.try_iter().collect();
        if jobs.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        } else {
            state.process(jobs);
        }
    }
    drop(listener);
    // Non-zero so the postmaster restarts us after pg_terminate_backend(); at
    // server shutdown it does not restart anything anyway.
    unsafe { pg_sys::proc_exit(1) };
}

/// Deletes delivery keys older than their workflow's window, a bounded number
/// at a time, when the listener is idle (rows another listener is deleting
/// are skipped).
fn forget_expired_deliveries() {
    let _ = in_transaction(|| {
        Spi::run(
            "DELETE FROM webhook.deliveries d
              WHERE d.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT x.ctid FROM webhook.deliveries x
                      JOIN webhook.workflows w ON w.id OPERATOR(pg_catalog.=) x.workflow_id
                     WHERE x.received_at OPERATOR(pg_catalog.<)
                           (pg_catalog.now() OPERATOR(pg_catalog.-) w.delivery_key_window)
                     LIMIT 1000
                       FOR UPDATE OF x SKIP LOCKED))",
        )
    });
}

/// The listener's own lock_timeout (webhook.lock_timeout), for its session.
fn apply_lock_timeout() {
    let value = std::ffi::CString::new(format!("{}ms", gucs::LOCK_TIMEOUT_MS.get()))
        .expect("digits have no NUL");
    set_session_setting(c"lock_timeout", &value);
}

/// Set when cached workflows may be stale: a workflow or parameter changed
/// (a relcache invalidation of one of the two tables, sent at commit by the
/// `_config_changed` triggers), or a function, schema or role changed
/// (cached workflows name their handler, its schema's privileges and owner).
/// Invalidations arrive only after the change is visible, so whatever is
/// loaded after the flag is seen is current.
static DEFINITIONS_CHANGED: AtomicBool = AtomicBool::new(false);
/// OIDs of webhook.workflows and webhook.parameters (0 until the first batch).
static WATCHED_TABLES: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

fn watch_definitions() {
    unsafe extern "C-unwind" fn syscache_changed(
        _arg: pg_sys::Datum,
        _cache: std::ffi::c_int,
        _hash: u32,
    ) {
        DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
    }
    unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
        let relid = relid.to_u32();
        // InvalidOid: "every relation" (after a cache reset).
        if relid == 0
            || WATCHED_TABLES
                .iter()
                .any(|t| t.load(Ordering::SeqCst) == relid)
        {
            DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
        }
    }
    for cache in [
        pg_sys::SysCacheIdentifier::PROCOID,
        pg_sys::SysCacheIdentifier::AUTHOID,
        pg_sys::SysCacheIdentifier::NAMESPACEOID,
        // Role memberships: schema USAGE or EXECUTE may come through a group.
        pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
    ] {
        // SAFETY: registers a callback that only sets an atomic flag; called
        // once per process on the main thread after connecting.
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(syscache_changed),
                pg_sys::Datum::from(0),
            )
        };
    }
    // SAFETY: as above.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0))
    };
}

/// Sleeps until the latch is set (signals), a request arrives (eventfd), or a
/// second passes.
fn wait_for_work(listener: &Listener) {
    unsafe {
        let events = pg_sys::WaitLatchOrSocket(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET
                | pg_sys::WL_SOCKET_READABLE
                | pg_sys::WL_TIMEOUT
                | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            listener.waker.raw_fd(),
            1000,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
        if events & pg_sys::WL_SOCKET_READABLE as i32 != 0 {
            listener.waker.drain();
        }
    }
}

struct ListenerState {
    pipeline: Pipeline,
    database: String,
    ready: bool,
    announced_wait: bool,
    last_check: Option<Instant>,
}

impl ListenerState {
    fn check_extension(&mut self) {
        self.last_check = Some(Instant::now());
        let installed = in_transaction(|| {
            Spi::get_one::<bool>(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_extension
                  WHERE extname OPERATOR(pg_catalog.=) 'webhook_ext')",
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        })
        .unwrap_or(false);
        if installed && !self.ready {
            log!(
                "webhook_ext listener found the extension in database \"{}\"",
                self.database
            );
            self.announced_wait = false;
        } else if !installed && !self.announced_wait {
            log!(
                "webhook_ext listener waiting for CREATE EXTENSION webhook_ext in database \"{}\"",
                self.database
            );
            self.announced_wait = true;
            self.pipeline.reset();
        }
        self.ready = installed;
    }

    fn not_installed(&self) -> Response {
        Response::retry_later("webhook_ext is not installed in the listener's database")
    }

    /// Processes a batch in one transaction; replies that depend on the
    /// commit are sent after it. Each request's own failures are contained in
    /// its subtransaction; if the transaction as a whole fails, the requests
    /// it had processed get 503 (nothing of theirs is stored), and the ones it
    /// had not reached yet are processed again in a new transaction.
    fn process(&mut self, jobs: Vec<Job>) {
        let mut queue: VecDeque<Job> = jobs.into();
        while !queue.is_empty() {
            if !self.ready {
                for job in queue.drain(..) {
                    let _ = job.reply.send(self.not_installed());
                }
                return;
            }
            let pending = RefCell::new(std::mem::take(&mut queue));
            let after_commit: RefCell<Vec<(Reply, Response)>> = RefCell::new(Vec::new());
            let in_progress: RefCell<Option<Reply>> = RefCell::new(None);
            let pipeline = &mut self.pipeline;
            let count = pending.borrow().len();
            let result = in_transaction(|| {
                Spi::connect_mut(|client| -> Result<(), pgrx::spi::Error> {
                    // Invalidations were taken in when the transaction started.
                    if DEFINITIONS_CHANGED.swap(false, Ordering::SeqCst) {
                        pipeline.forget_workflows();
                    }
                    let (tables, mut ids) = pipeline.begin_batch(client, count)?;
                    for (watched, oid) in WATCHED_TABLES.iter().zip(tables) {
                        watched.store(oid, Ordering::SeqCst);
                    }
                    loop {
                        let Some(job) = pending.borrow_mut().pop_front() else {
                            return Ok(());
                        };
                        let meta = RequestMeta {
                            received_at: job.received_at,
                            remote_addr: job.remote_addr.map(|ip| ip.to_string()),
                            origin: Origin::Http,
                            replay_of: None,
                            raw_path: Some(job.raw_path.clone()),
                            raw_query: job.raw_query.clone(),
                        };
                        if let Some(refused) = &job.rejected {
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
                        *in_progress.borrow_mut() = Some(job.reply);
                        let mut next_id =
                            |_: &SpiClient<'_>| ids.pop().ok_or(pgrx::spi::Error::NoTupleTable);
                        let handled = pipeline.handle(
                            client,
                            job.workflow_id,
                            &job.request,
                            &meta,
                            &mut next_id,
                        )?;
                        let reply = in_progress.borrow_mut().take().expect("set above");
                        match handled {
                            Handled::Immediate(response) => {
                                let _ = reply.send(response);
                            }
                            Handled::AfterCommit(response) => {
                                after_commit.borrow_mut().push((reply, response));
                            }
                        }
                    }
                })
            });
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(spi_error)) => Some(spi_error.to_string()),
                Err(caught) => Some(caught.describe()),
            };
            let Some(why) = failure else {
                for (reply, response) in after_commit.into_inner() {
                    let _ = reply.send(response);
                }
                continue;
            };
            pgrx::warning!("webhook_ext listener could not store a batch of events: {why}");
            self.pipeline.reset();
            let retry_later = || Response::retry_later("Event could not be stored, retry later");
            let culprit = in_progress.into_inner();
            let processed = after_commit.into_inner();
            let made_progress = culprit.is_some() || !processed.is_empty();
            for (reply, _) in processed {
                let _ = reply.send(retry_later());
            }
            if let Some(reply) = culprit {
                let _ = reply.send(retry_later());
            }
            queue = pending.into_inner();
            if !made_progress {
                // Failed before any request (e.g. the extension is gone).
                self.check_extension();
                for job in queue.drain(..) {
                    let _ = job.reply.send(retry_later());
                }
            }
        }
    }
}

type Reply = tokio::sync::oneshot::Sender<Response>;
