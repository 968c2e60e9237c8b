//! HTTP/1.1 on hyper: connection caps, routing `/hooks/{id}`, size limits and
//! timeouts, body parsing (on the blocking pool), and the hand-off to the main
//! thread.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
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
use webhook_core::access::client_address;
use webhook_core::body::{parse_body, parse_query, BodyError, BodyLimits};
use webhook_core::connections::ConnectionLimits;
use webhook_core::request::{BodyOutcome, IncomingRequest, Response};
use webhook_core::route::{route, Route};

use super::body_budget::{client_share_kib, BodyBudget, Reservation};
use super::connection_slots::ConnectionSlots;
use super::{fd_limit, Job, Outbox, SharedSettings, Waker};

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
}

/// Runs the network thread until `shutdown` turns true.
pub(super) fn run(
    sockets: Vec<StdTcpListener>,
    tls: Option<TlsAcceptor>,
    settings: SharedSettings,
    jobs: SyncSender<Job>,
    waker: Arc<Waker>,
    outbox: Arc<Outbox>,
    shutdown: watch::Receiver<bool>,
) {
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
    let shared = Arc::new(Shared {
        settings,
        jobs,
        waker,
        slots: Arc::default(),
        fd_budget,
        body_memory: Arc::default(),
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

async fn handle(req: Request<Incoming>, shared: &Shared, peer: SocketAddr) -> Reply {
    let received_at = SystemTime::now();
    let workflow_id = match route(req.uri().path()) {
        Route::Workflow(id) => id,
        Route::NoSuchWorkflow => return closing_if_body(&req, Response::workflow_not_found()),
        Route::NotFound => return closing_if_body(&req, Response::error(404, "Not found")),
    };
    let settings = match shared.settings.read() {
        Ok(settings) => settings.clone(),
        Err(_) => return to_http(Response::error(503, "Listener unavailable")),
    };
    // As sent: method names are case-sensitive, and `get` must not pass as GET.
    let method = req.method().as_str().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let raw_path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let headers = header_map(req.headers());
    let client = client_address(
        peer.ip(),
        &headers,
        &settings.trusted_proxies,
        settings.forwarded_header,
    );
    let content_type = header_str(req.headers(), CONTENT_TYPE);
    let content_encoding = header_str(req.headers(), CONTENT_ENCODING);
    // Refusals decided here are also recorded for the workflow's owner
    // (webhook.rejections), through the main thread.
    let record_refusal = |response: &Response| {
        let (reply, _) = oneshot::channel();
        let job = Job {
            workflow_id,
            request: IncomingRequest {
                method: method.clone(),
                query: query.clone(),
                headers: headers.clone(),
                body: BodyOutcome::Parsed(webhook_core::body::ParsedBody::empty()),
                raw_body: Bytes::new(),
            },
            remote_addr: client,
            received_at,
            rejected: Some(response.clone()),
            raw_path: raw_path.clone(),
            raw_query: raw_query.clone(),
            reply,
        };
        // Best effort: a full queue drops the record, never the answer.
        if shared.jobs.try_send(job).is_ok() {
            shared.waker.job_queued();
        }
    };
    // Refused before the body was read completely: the connection closes.
    let refuse = |response: Response| {
        record_refusal(&response);
        closing(response)
    };
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
    let mut body_memory = shared
        .body_memory
        .start(peer.ip(), client_share_kib(settings.max_body_bytes));
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

    let limits = BodyLimits {
        max_decoded_bytes: settings.max_body_bytes,
        ..BodyLimits::default()
    };
    // Small plain bodies are parsed right here: every parser is linear, so
    // that takes microseconds (the worst case measured is 26 ms per MB, see
    // the README's Limits), less than handing the body to a parser thread
    // and back. Larger or encoded bodies go to the parser threads.
    // Kept for signature checks (a reference-counted view, not a copy).
    let raw_body = raw.clone();
    let parsed = if raw.len() <= INLINE_PARSE_BYTES && content_encoding.is_none() {
        Ok(parse_request_body(
            content_type,
            content_encoding,
            raw,
            limits,
        ))
    } else {
        tokio::task::spawn_blocking(move || {
            parse_request_body(content_type, content_encoding, raw, limits)
        })
        .await
    };
    let body = match parsed {
        Ok(Ok(body)) => body,
        Ok(Err(refusal)) => {
            record_refusal(&refusal);
            return to_http(refusal);
        }
        Err(_) => return to_http(Response::error(500, "Could not parse the request body")),
    };

    let (reply, answer) = oneshot::channel();
    let job = Job {
        workflow_id,
        request: IncomingRequest {
            method,
            query,
            headers,
            body,
            raw_body,
        },
        remote_addr: client,
        raw_path,
        raw_query,
        received_at,
        rejected: None,
        reply,
    };
    match shared.jobs.try_send(job) {
        Ok(()) => shared.waker.job_queued(),
        Err(TrySendError::Full(_)) => {
            return to_http(Response::retry_later("Listener busy, retry later"));
        }
        Err(TrySendError::Disconnected(_)) => {
            return to_http(Response::retry_later("Listener unavailable"));
        }
    }
    match answer.await {
        Ok(response) => to_http(response),
        // The main thread dropped the job: it is exiting and stored nothing.
        Err(_) => to_http(Response::retry_later("Listener shutting down")),
    }
}

/// Runs on the blocking pool: pure webhook_core code, never PostgreSQL. A
/// transfer-level failure (size, encoding, charset, part count) is the same for
/// every workflow and answered at once; a syntax error is left to the workflow,
/// which may take the raw body instead.
fn parse_request_body(
    content_type: Option<String>,
    content_encoding: Option<String>,
    raw: Bytes,
    limits: BodyLimits,
) -> Result<BodyOutcome, Response> {
    match parse_body(
        content_type.as_deref(),
        content_encoding.as_deref(),
        &raw,
        &limits,
    ) {
        Ok(parsed) => Ok(BodyOutcome::Parsed(parsed)),
        // The same answer as a body that is too large on the wire.
        Err(BodyError::TooLarge { limit }) => Err(too_large(limit)),
        Err(e) if is_transport_error(&e) => Err(Response::error(e.http_status(), &e.to_string())),
        Err(e) => Ok(BodyOutcome::Unparseable {
            error: e.to_string(),
            text: body_as_text(content_encoding.as_deref(), &raw, &limits),
        }),
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

/// Errors about the transfer itself (encoding, size, charset) are the same for
/// every workflow; parse errors depend on whether the workflow takes the raw body.
fn is_transport_error(e: &BodyError) -> bool {
    matches!(
        e,
        BodyError::UnsupportedEncoding(_)
            | BodyError::InvalidCompression(_)
            | BodyError::TooLarge { .. }
            | BodyError::UnsupportedCharset(_)
            | BodyError::TooManyParts { .. }
    )
}

fn body_as_text(content_encoding: Option<&str>, raw: &[u8], limits: &BodyLimits) -> String {
    parse_body(Some("text/plain"), content_encoding, raw, limits)
        .map(|parsed| parsed.text)
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
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
