//! HTTP/1.1 on hyper: connection caps, routing `/hooks/{id}`, `/healthz` and `/metrics`,
//! size limits and timeouts, body parsing (on the blocking pool), and the hand-off to the main
//! thread.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Request, Response as HttpResponse};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Map, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;
use webhook_core::access::client_address;
use webhook_core::body::{
    decode_text_within, parse_body_within, parse_query, BodyError, BodyKind, BodyLimits, ParsedBody,
};
use webhook_core::connections::ConnectionLimits;
use webhook_core::handshake::{Handshake, HandshakeRequest};
use webhook_core::request::{BodyOutcome, IncomingRequest, Response};
use webhook_core::route::{route, Route};
use webhook_core::verify::SignedRequest;

use super::body_budget::{BodyBudget, Reservation};
use super::connection_slots::ConnectionSlots;
use super::{fd_limit, Health, Job, Outbox, Purpose, Settings, SharedSettings, Waker};
use crate::pg::front_door::{self, signed_url, Directory, FrontDoor, Refusal, Verdict};

/// How long open connections get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Threads that parse bodies. Parsing is CPU work (up to tens of milliseconds
/// for a hostile 1 MB body), so it runs off the thread that serves every
/// connection; a few threads are enough on the small machines this runs on.
const MAX_PARSER_THREADS: usize = 4;
/// Bodies up to this size, not content-encoded, are parsed on the network
/// thread (at most about 0.2 ms even for the worst shapes).
const INLINE_PARSE_BYTES: usize = 8 * 1024;

struct Shared {
    settings: SharedSettings,
    jobs: SyncSender<Job>,
    waker: Arc<Waker>,
    slots: Arc<ConnectionSlots>,
    /// Connections the process can hold within its open-files limit.
    fd_budget: usize,
    /// Request-body memory this process may hold (body_budget.rs).
    body_memory: Arc<BodyBudget>,
    /// The workflows as the main thread last loaded them.
    directory: Arc<Directory>,
    /// What the main thread's last check found (`/healthz`).
    health: Arc<Health>,
}

/// What the network thread shares with the process's main thread.
pub(super) struct MainThread {
    pub jobs: SyncSender<Job>,
    pub waker: Arc<Waker>,
    pub outbox: Arc<Outbox>,
    pub directory: Arc<Directory>,
    pub health: Arc<Health>,
}

/// Runs the network thread until `shutdown` turns true.
pub(super) fn run(
    sockets: Vec<StdTcpListener>,
    tls: Option<TlsAcceptor>,
    settings: SharedSettings,
    main_thread: MainThread,
    shutdown: watch::Receiver<bool>,
) {
    let MainThread {
        jobs,
        waker,
        outbox,
        directory,
        health,
    } = main_thread;
    let fd_budget = fd_limit::raise_to_hard_limit().unwrap_or(usize::MAX);
    // The blocking pool's threads are spawned from this thread, so they inherit
    // its signal mask (all blocked) and, like it, never call PostgreSQL: they
    // only run webhook_core's parsers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_PARSER_THREADS)
        .thread_name("webhook-parse")
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("webhook_ext: could not start the network runtime: {e}");
            return;
        }
    };
    let body_memory_kib = settings.read().map_or(0, |s| s.body_memory_kib);
    let shared = Arc::new(Shared {
        settings,
        jobs,
        waker,
        slots: Arc::default(),
        fd_budget,
        body_memory: Arc::new(BodyBudget::new(body_memory_kib)),
        directory,
        health,
    });
    runtime.block_on(async move {
        tokio::spawn(async move { outbox.deliver().await });
        let graceful = GracefulShutdown::new();
        let mut listeners = Vec::new();
        for socket in sockets {
            match TcpListener::from_std(socket) {
                Ok(listener) => listeners.push(listener),
                Err(e) => eprintln!("webhook_ext: could not use listening socket: {e}"),
            }
        }
        let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel(64);
        for listener in listeners {
            let conn_tx = conn_tx.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(conn) => {
                                if conn_tx.send(conn).await.is_err() {
                                    break;
                                }
                            }
                            // EMFILE and friends: back off instead of spinning.
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        },
                        _ = stop.changed() => break,
                    }
                }
            });
        }
        drop(conn_tx);
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                conn = conn_rx.recv() => match conn {
                    Some((stream, peer)) => serve_connection(&shared, &graceful, tls.as_ref(), stream, peer),
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    });
}

fn serve_connection(
    shared: &Arc<Shared>,
    graceful: &GracefulShutdown,
    tls: Option<&TlsAcceptor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let settings = shared.settings.read().map(|s| s.clone());
    let Ok(settings) = settings else { return };
    let limits = ConnectionLimits {
        max_total: settings.max_connections.min(shared.fd_budget),
        max_per_client: settings.max_connections_per_client,
    };
    let slot = match shared.slots.take(peer.ip(), limits) {
        Ok(slot) => slot,
        Err(_) => {
            // A TLS client could not read a plain-text answer: just close.
            if tls.is_none() {
                shared.slots.refuse(stream);
            }
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let service_shared = shared.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(handle(req, &shared, peer).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192) + 1024)
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true)
        // A client that half-closes after its request (nc -N) still gets the answer.
        .half_close(true);
    let watcher = graceful.watcher();
    match tls {
        None => {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::spawn(async move {
                let _ = watcher.watch(connection).await;
                drop(slot);
            });
        }
        Some(acceptor) => {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The handshake gets the same time as a request head.
                let handshake =
                    tokio::time::timeout(settings.header_timeout, acceptor.accept(stream));
                if let Ok(Ok(tls_stream)) = handshake.await {
                    let connection = builder.serve_connection(TokioIo::new(tls_stream), service);
                    let _ = watcher.watch(connection).await;
                }
                drop(slot);
            });
        }
    }
}

type Reply = HttpResponse<Full<Bytes>>;

fn to_http(response: Response) -> Reply {
    let mut http = HttpResponse::new(Full::new(Bytes::from(response.body)));
    *http.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            http.headers_mut().append(name, value);
        }
    }
    http
}

/// A response after which the connection is closed, for when the request body
/// was not (fully) read and the stream position is unknown.
fn closing(response: Response) -> Reply {
    to_http(response.with_header("connection", "close"))
}

/// A request's head, as every job made of it carries it.
struct Head {
    workflow_id: Uuid,
    method: String,
    query: Map<String, Value>,
    headers: Map<String, Value>,
    client: Option<IpAddr>,
    received_at: SystemTime,
    raw_path: String,
    raw_query: Option<String>,
}

impl Head {
    fn job(&self, body: BodyOutcome, raw_body: Bytes, purpose: Purpose) -> (Job, Answer) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            workflow_id: self.workflow_id,
            request: IncomingRequest {
                method: self.method.clone(),
                query: self.query.clone(),
                headers: self.headers.clone(),
                body,
                raw_body,
            },
            remote_addr: self.client,
            received_at: self.received_at,
            purpose,
            verdict: None,
            raw_path: self.raw_path.clone(),
            raw_query: self.raw_query.clone(),
            reply,
            check_again: Default::default(),
        };
        (job, answer)
    }

    fn empty_job(&self, purpose: Purpose) -> (Job, Answer) {
        self.job(
            BodyOutcome::Parsed(ParsedBody::empty()),
            Bytes::new(),
            purpose,
        )
    }
}

type Answer = oneshot::Receiver<Response>;

/// Hands a job to the main thread; the answer to give at once if it cannot.
fn queue(shared: &Shared, job: Job) -> Result<(), Response> {
    match shared.jobs.try_send(job) {
        Ok(()) => {
            shared.waker.job_queued();
            Ok(())
        }
        Err(TrySendError::Full(_)) => Err(Response::retry_later("Listener busy, retry later")),
        Err(TrySendError::Disconnected(_)) => Err(Response::retry_later("Listener unavailable")),
    }
}

/// How many times a workflow is looked up for one request: the directory
/// can be emptied (a definition changed) between the main thread filling it
/// and this thread reading it.
const LOOKUPS: usize = 3;

/// The workflow as the main thread last loaded it, asking the main thread
/// when the directory does not have it; what to answer instead when it does
/// not take requests, or the main thread cannot say.
async fn door_of(shared: &Shared, head: &Head) -> Result<Arc<FrontDoor>, Response> {
    for _ in 0..LOOKUPS {
        if let Some(door) = shared.directory.get(head.workflow_id) {
            return Ok(door);
        }
        let (job, answer) = head.empty_job(Purpose::LookUp);
        queue(shared, job)?;
        match answer.await {
            Ok(done) if done.status == 200 => {}
            Ok(refusal) => return Err(refusal),
            Err(_) => return Err(Response::retry_later("Listener shutting down")),
        }
    }
    Err(Response::retry_later("Listener busy, retry later"))
}

/// `/metrics`: 404 while `webhook.metrics_networks` is empty (the endpoint
/// is off), 403 to a client outside it (found as for every allow-list:
/// behind a trusted proxy, the client it names; one it cannot name is
/// refused), else the main thread's snapshot.
async fn scrape(
    shared: &Shared,
    req: &Request<Incoming>,
    peer: SocketAddr,
    received_at: SystemTime,
) -> Response {
    let settings = match shared.settings.read() {
        Ok(settings) => settings.clone(),
        Err(_) => return Response::retry_later("Listener unavailable"),
    };
    let networks = &settings.metrics_networks;
    if networks.is_empty() {
        return Response::error(404, "Not found");
    }
    let client = client_address(
        peer.ip(),
        &header_map(req.headers()),
        &settings.trusted_proxies,
        settings.forwarded_header,
    );
    if !client.is_some_and(|ip| webhook_core::access::contains(networks, ip)) {
        return Response::error(403, "Forbidden");
    }
    let method = req.method().as_str();
    if method != "GET" {
        return Response::json(
            405,
            &serde_json::json!({"msg": "Method not allowed", "allowed": ["GET"]}),
        )
        .with_header("allow", "GET");
    }
    let head = Head {
        workflow_id: Uuid::nil(),
        method: method.to_string(),
        query: Map::new(),
        headers: Map::new(),
        client,
        received_at,
        raw_path: webhook_core::metrics::PATH.to_string(),
        raw_query: None,
    };
    let (job, answer) = head.empty_job(Purpose::Metrics);
    if let Err(refusal) = queue(shared, job) {
        return refusal;
    }
    answer
        .await
        .unwrap_or_else(|_| Response::retry_later("Listener shutting down"))
}

async fn handle(req: Request<Incoming>, shared: &Shared, peer: SocketAddr) -> Reply {
    let received_at = SystemTime::now();
    let workflow_id = match route(req.uri().path()) {
        Route::Workflow(id) => id,
        Route::NoSuchWorkflow => return closing_if_body(&req, Response::workflow_not_found()),
        Route::NotFound => return closing_if_body(&req, Response::error(404, "Not found")),
        // Answered from what the main thread last found, whatever the body
        // (never read: a probe is no request of any workflow).
        Route::Health => {
            let last_check = shared.health.last_check();
            let answer = webhook_core::health::answer(req.method().as_str(), &last_check);
            return closing_if_body(&req, answer);
        }
        Route::Metrics => {
            let answer = scrape(shared, &req, peer, received_at).await;
            return closing_if_body(&req, answer);
        }
    };
    let settings = match shared.settings.read() {
        Ok(settings) => settings.clone(),
        Err(_) => return to_http(Response::error(503, "Listener unavailable")),
    };
    let headers = header_map(req.headers());
    let head = Head {
        workflow_id,
        // As sent: method names are case-sensitive, and `get` must not pass as GET.
        method: req.method().as_str().to_string(),
        query: parse_query(req.uri().query().unwrap_or("")),
        client: client_address(
            peer.ip(),
            &headers,
            &settings.trusted_proxies,
            settings.forwarded_header,
        ),
        headers,
        received_at,
        raw_path: req.uri().path().to_string(),
        raw_query: req.uri().query().map(str::to_string),
    };
    // Refusals decided here are also recorded for the workflow's owner
    // (webhook.rejections), through the main thread.
    let record_refusal = |response: &Response| {
        let (job, _) = head.empty_job(Purpose::RecordRefusal(response.clone()));
        // Best effort: a full queue drops the record, never the answer.
        let _ = queue(shared, job);
    };
    // Refused before the body was read completely: the connection closes.
    let refuse = |response: Response| {
        record_refusal(&response);
        closing(response)
    };
    // Which workflow, before a byte of the body is read: nothing is read,
    // decompressed or parsed for one that does not take requests.
    let mut door = match door_of(shared, &head).await {
        Ok(door) => door,
        Err(response) => return drained(req, response, &settings).await,
    };
    let content_type = header_str(req.headers(), CONTENT_TYPE);
    let content_encoding = header_str(req.headers(), CONTENT_ENCODING);
    let declared_length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > settings.max_body_bytes as u64) {
        return refuse(too_large(settings.max_body_bytes));
    }
    // Held until this request is answered (its parsed body lives that long),
    // grown as the body arrives.
    let mut body_memory = shared.body_memory.start(
        peer.ip(),
        shared.body_memory.client_share_kib(settings.max_body_bytes),
    );
    let read = read_body(req.into_body(), settings.max_body_bytes, &mut body_memory);
    let raw = match tokio::time::timeout(settings.body_timeout, read).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(BodyReadError::TooLarge)) => return refuse(too_large(settings.max_body_bytes)),
        Ok(Err(BodyReadError::OverBudget)) => {
            return closing(Response::retry_later("Listener busy, retry later"));
        }
        Ok(Err(BodyReadError::Broken)) => {
            return refuse(Response::error(400, "Could not read the request body"))
        }
        Err(_) => return refuse(Response::error(408, "Request body timeout")),
    };

    let mut arrived = Arrived {
        method: head.method.clone(),
        query: head.raw_query.clone().unwrap_or_default(),
        url: signed_url(
            &door,
            &head.method,
            &settings.base_url,
            workflow_id,
            head.raw_query.as_deref(),
        ),
        headers: head.headers.clone(),
        now_unix: received_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        content_type,
        content_encoding,
        limits: BodyLimits {
            max_decoded_bytes: settings.max_body_bytes,
            ..BodyLimits::default()
        },
        // Kept for signature checks (a reference-counted view, not a copy).
        raw,
    };
    let mut checks = 0;
    loop {
        checks += 1;
        let Some((checked, back, memory)) =
            check_off_the_main_thread(door, arrived, body_memory).await
        else {
            return to_http(Response::error(500, "Could not parse the request body"));
        };
        (arrived, body_memory) = (back, memory);
        let (purpose, verdict, body) = match checked {
            Ok(Checked::Request(verdict, body)) => (Purpose::Handle, verdict, body),
            Ok(Checked::Handshake(kind, answer, verdict)) => {
                let nothing = BodyOutcome::Unparseable {
                    error: "Handshake".into(),
                    text: String::new(),
                };
                (Purpose::Handshake(kind, answer), verdict, nothing)
            }
            Err(refusal) => {
                record_refusal(&refusal);
                return to_http(refusal);
            }
        };
        let (mut job, answer) = head.job(body, arrived.raw.clone(), purpose);
        job.verdict = Some(verdict);
        let check_again = job.check_again.clone();
        if let Err(refusal) = queue(shared, job) {
            return to_http(refusal);
        }
        let response = match answer.await {
            Ok(response) => response,
            // The main thread dropped the job: it is exiting and stored nothing.
            Err(_) => return to_http(Response::retry_later("Listener shutting down")),
        };
        // Checked against rules that changed since (the main thread learns of
        // a change when it next starts a transaction, so this is the first
        // request after one): once more, against the rules it now has.
        if !check_again.load(Ordering::Acquire) || checks == RECHECKS {
            return to_http(response);
        }
        door = match door_of(shared, &head).await {
            Ok(door) => door,
            Err(response) => return to_http(response),
        };
        // Its first parse went with the job: reserved once, not twice.
        body_memory.release_parse();
        // The new rules may sign the URL where the old ones did not.
        arrived.url = signed_url(
            &door,
            &head.method,
            &settings.base_url,
            workflow_id,
            head.raw_query.as_deref(),
        );
    }
}

/// How many times a request is checked and parsed at most, when the
/// workflow's rules change under it.
const RECHECKS: usize = 2;

/// Runs [`check_and_parse`] on the network thread for small plain bodies
/// (every parser is linear, so that takes microseconds, less than handing
/// the body to a parser thread and back; the worst case measured is 26 ms
/// per MB, see docs/limits.md), else on a parser thread, and so always
/// for checks that are not cheap (Twilio's sorts the form's pairs; public
/// keys; body fields: see Scheme::cheap_inline). Gives back the body and
/// the memory reservation, which is kept until the request is answered;
/// `None` if the parser thread panicked.
async fn check_off_the_main_thread(
    door: Arc<FrontDoor>,
    arrived: Arrived,
    mut memory: Reservation,
) -> Option<(Result<Checked, Response>, Arrived, Reservation)> {
    let inline = arrived.raw.len() <= INLINE_PARSE_BYTES
        && arrived.content_encoding.is_none()
        && match door.verification_for(&arrived.method) {
            Some(Ok(scheme)) => scheme.cheap_inline(),
            _ => true,
        };
    if inline {
        let checked = check_and_parse(&door, &arrived, &mut memory);
        return Some((checked, arrived, memory));
    }
    tokio::task::spawn_blocking(move || {
        let checked = check_and_parse(&door, &arrived, &mut memory);
        (checked, arrived, memory)
    })
    .await
    .ok()
}

/// A request's body and what checking it needs, once it has all arrived.
struct Arrived {
    raw: Bytes,
    headers: Map<String, Value>,
    content_type: Option<String>,
    content_encoding: Option<String>,
    /// The URL its signature may cover (see front_door::signed_url).
    url: String,
    method: String,
    /// The raw query string (handshakes read their challenge there).
    query: String,
    now_unix: i64,
    limits: BodyLimits,
}

/// Verifies the sender, then (only if that passed) decodes and parses the
/// body within the process's memory budget. Pure webhook_core work, never
/// PostgreSQL: it runs on the network thread or a parser thread.
fn check_and_parse(
    door: &Arc<FrontDoor>,
    arrived: &Arrived,
    memory: &mut Reservation,
) -> Result<Checked, Response> {
    let signed = SignedRequest {
        headers: &arrived.headers,
        body: &arrived.raw,
        url: &arrived.url,
        method: &arrived.method,
        now_unix: arrived.now_unix,
    };
    // The provider's endpoint check, answered here: an unsigned one before
    // verification, a signed one only once the request passed it.
    let handshake = |unsigned: bool| {
        let kind = door
            .handshake
            .filter(|k| k.before_verification() == unsigned)?;
        if arrived.content_encoding.is_some() {
            return None;
        }
        let answer = kind.answer(&HandshakeRequest {
            method: &arrived.method,
            headers: &arrived.headers,
            query: &arrived.query,
            body: &arrived.raw,
            secret: door.first_secret(&arrived.method),
        })?;
        // Answered before or after verification: either way the sender
        // passed what the workflow asks of it.
        let verdict = Verdict {
            door: door.clone(),
            outcome: Ok(()),
        };
        Some(Checked::Handshake(kind, answer, verdict))
    };
    if let Some(answered) = handshake(true) {
        return Ok(answered);
    }
    let outcome: Result<(), Refusal> =
        front_door::verify_within(door, &signed, memory).map_err(body_refusal)?;
    if outcome.is_ok() {
        if let Some(answered) = handshake(false) {
            return Ok(answered);
        }
    }
    let body = if outcome.is_err() {
        // A forged request is never decoded or parsed; its rejection keeps
        // the start of the body as sent, when that is readable.
        Ok(BodyOutcome::Unparseable {
            error: "Request not verified".into(),
            text: unverified_text(arrived),
        })
    } else if door.full_body {
        decode_text_within(
            arrived.content_type.as_deref(),
            arrived.content_encoding.as_deref(),
            &arrived.raw,
            &arrived.limits,
            memory,
        )
        .map(|text| {
            BodyOutcome::Parsed(ParsedBody {
                params: Map::new(),
                text,
                kind: BodyKind::Text,
            })
        })
        .map_err(body_refusal)
    } else {
        parse_request_body(arrived, memory)
    };
    let verdict = Verdict {
        door: door.clone(),
        outcome,
    };
    Ok(Checked::Request(verdict, body?))
}

/// What checking a request found.
enum Checked {
    /// A request to admit (or refuse, as the verdict says) on the main thread.
    Request(Verdict, BodyOutcome),
    /// The provider's endpoint check, its answer, and the rules it was
    /// answered by: nothing is stored.
    Handshake(Handshake, Response, Verdict),
}

/// How much of a forged request's body its rejection keeps, at most.
const UNVERIFIED_TEXT_BYTES: usize = 4096;

fn unverified_text(arrived: &Arrived) -> String {
    if arrived.content_encoding.is_some() {
        return String::new();
    }
    let end = arrived.raw.len().min(UNVERIFIED_TEXT_BYTES);
    String::from_utf8_lossy(&arrived.raw[..end]).into_owned()
}

/// A transfer-level failure (size, encoding, charset, part count, memory)
/// is the same for every workflow and answered at once; a syntax error is
/// left to the workflow, which may take the raw body instead.
fn parse_request_body(
    arrived: &Arrived,
    memory: &mut Reservation,
) -> Result<BodyOutcome, Response> {
    let content_encoding = arrived.content_encoding.as_deref();
    match parse_body_within(
        arrived.content_type.as_deref(),
        content_encoding,
        &arrived.raw,
        &arrived.limits,
        memory,
    ) {
        Ok(parsed) => Ok(BodyOutcome::Parsed(parsed)),
        Err(e) if e.is_transport_level() => Err(body_refusal(e)),
        Err(e) => Ok(BodyOutcome::Unparseable {
            error: e.to_string(),
            // The workflow may take the raw text instead: decoded within the
            // same budget, and refused like any body when that is spent.
            text: decode_text_within(
                Some("text/plain"),
                content_encoding,
                &arrived.raw,
                &arrived.limits,
                memory,
            )
            .map_err(body_refusal)?,
        }),
    }
}

/// The answer to a body refused for its transfer: a body too large (as sent,
/// decoded, or parsed) gets the same answer as one too large on the wire.
fn body_refusal(e: BodyError) -> Response {
    match e {
        BodyError::TooLarge { limit } => too_large(limit),
        BodyError::Busy => Response::retry_later(&e.to_string()),
        e => Response::error(e.http_status(), &e.to_string()),
    }
}

enum BodyReadError {
    TooLarge,
    OverBudget,
    Broken,
}

/// Reads the whole body, at most `limit` bytes, reserving memory for it as it
/// arrives.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    memory: &mut Reservation,
) -> Result<Bytes, BodyReadError> {
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| BodyReadError::Broken)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = buffer.len() + data.len();
        if total > limit {
            return Err(BodyReadError::TooLarge);
        }
        if !memory.cover(total) {
            return Err(BodyReadError::OverBudget);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(buffer.freeze())
}

/// Answers after reading and dropping the request's body, so that the client
/// reads the answer rather than a reset connection, while nothing of the
/// body is kept, decoded or parsed. A body longer than webhook.max_body_size,
/// or slower than webhook.body_timeout, is not waited for: the connection
/// closes after the answer.
async fn drained(req: Request<Incoming>, response: Response, settings: &Settings) -> Reply {
    let limit = settings.max_body_bytes;
    let mut body = req.into_body();
    let drain = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |data| data.len());
            if seen > limit {
                return false;
            }
        }
        true
    };
    match tokio::time::timeout(settings.body_timeout, drain).await {
        Ok(true) => to_http(response),
        _ => closing(response),
    }
}

fn closing_if_body(req: &Request<Incoming>, response: Response) -> Reply {
    let has_body = req.headers().contains_key(CONTENT_LENGTH)
        || req.headers().contains_key(hyper::header::TRANSFER_ENCODING);
    if has_body {
        closing(response)
    } else {
        to_http(response)
    }
}

fn too_large(limit: usize) -> Response {
    Response::json(
        413,
        &serde_json::json!({"msg": "Request body too large", "limit_bytes": limit}),
    )
}

fn header_str(headers: &hyper::HeaderMap, name: hyper::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Lower-case names (hyper already normalizes them); repeated headers joined
/// with ", " as RFC 9110 §5.3 allows.
fn header_map(headers: &hyper::HeaderMap) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    map
}
