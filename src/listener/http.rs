//! HTTP/1.1 on hyper: routing `/hooks/{id}`, size limits and timeouts, body
//! parsing, and the hand-off to the main thread.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
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

use webhook_core::body::{parse_body, parse_query, BodyError, BodyLimits};
use webhook_core::request::{BodyOutcome, IncomingRequest, Response};

use super::{Job, SharedSettings, Waker};

/// How long open connections get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

struct Shared {
    settings: SharedSettings,
    jobs: SyncSender<Job>,
    waker: Arc<Waker>,
}

/// Runs the network thread until `shutdown` turns true.
pub(super) fn run(
    sockets: Vec<StdTcpListener>,
    tls: Option<TlsAcceptor>,
    settings: SharedSettings,
    jobs: SyncSender<Job>,
    waker: Arc<Waker>,
    shutdown: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
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
    });
    runtime.block_on(async move {
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
    let _ = stream.set_nodelay(true);
    let settings = shared.settings.read().map(|s| s.clone());
    let Ok(settings) = settings else { return };
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
            tokio::spawn(watcher.watch(connection));
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
    let Some(workflow_id) = route(req.uri().path()) else {
        return closing_if_body(&req, Response::error(404, "Not found"));
    };
    let Some(workflow_id) = workflow_id else {
        return closing_if_body(&req, Response::workflow_not_found());
    };
    let settings = match shared.settings.read() {
        Ok(settings) => settings.clone(),
        Err(_) => return to_http(Response::error(503, "Listener unavailable")),
    };
    let declared_length = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|len| len > settings.max_body_bytes as u64) {
        return closing(too_large(settings.max_body_bytes));
    }

    let method = req.method().as_str().to_ascii_uppercase();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let headers = header_map(req.headers());
    let content_type = header_str(req.headers(), CONTENT_TYPE);
    let content_encoding = header_str(req.headers(), CONTENT_ENCODING);

    let limited = Limited::new(req.into_body(), settings.max_body_bytes);
    let raw = match tokio::time::timeout(settings.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return closing(too_large(settings.max_body_bytes));
        }
        Ok(Err(_)) => return closing(Response::error(400, "Could not read the request body")),
        Err(_) => return closing(Response::error(408, "Request body timeout")),
    };

    let limits = BodyLimits {
        max_decoded_bytes: settings.max_body_bytes,
        ..BodyLimits::default()
    };
    let body = match parse_body(
        content_type.as_deref(),
        content_encoding.as_deref(),
        &raw,
        &limits,
    ) {
        Ok(parsed) => BodyOutcome::Parsed(parsed),
        Err(e) if is_transport_error(&e) => {
            return to_http(Response::error(e.http_status(), &e.to_string()));
        }
        Err(e) => BodyOutcome::Unparseable {
            error: e.to_string(),
            text: body_as_text(content_encoding.as_deref(), &raw, &limits),
        },
    };

    let (reply, answer) = oneshot::channel();
    let job = Job {
        workflow_id,
        request: IncomingRequest {
            method,
            query,
            headers,
            body,
        },
        remote_addr: Some(peer.ip()),
        received_at,
        reply,
    };
    match shared.jobs.try_send(job) {
        Ok(()) => shared.waker.wake(),
        Err(TrySendError::Full(_)) => {
            return to_http(
                Response::error(503, "Listener busy, retry later").with_header("retry-after", "1"),
            );
        }
        Err(TrySendError::Disconnected(_)) => {
            return to_http(
                Response::error(503, "Listener unavailable").with_header("retry-after", "1"),
            );
        }
    }
    match answer.await {
        Ok(response) => to_http(response),
        // The main thread dropped the job: it is exiting and stored nothing.
        Err(_) => {
            to_http(Response::error(503, "Listener shutting down").with_header("retry-after", "1"))
        }
    }
}

/// `Some(Some(id))` for `/hooks/{uuid}`, `Some(None)` for `/hooks/{not a uuid}`,
/// `None` for any other path.
fn route(path: &str) -> Option<Option<Uuid>> {
    let rest = path.strip_prefix("/hooks/")?;
    let id = rest.strip_suffix('/').unwrap_or(rest);
    if id.is_empty() || id.contains('/') {
        return Some(None);
    }
    Some(Uuid::try_parse(id).ok())
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
