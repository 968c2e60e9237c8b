//! The network side of one listener process.
//!
//! A dedicated thread runs a tokio runtime that accepts connections, speaks
//! HTTP/1.1 (hyper), reads and parses bodies, and hands each request to the
//! process's main thread as a [`Job`] over a bounded channel, waking it through
//! an eventfd. Nothing here calls PostgreSQL: only the main thread may, and
//! pgrx enforces it.

mod body_budget;
mod connection_slots;
mod fd_limit;
mod health;
mod http;
mod outbox;
mod tls;
mod waker;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use uuid::Uuid;

use webhook_core::config::ListenAddress;
use webhook_core::request::{IncomingRequest, Response};

use crate::pg::front_door::{Directory, Verdict};

pub use health::Health;
pub use outbox::{Outbox, Reply};
pub use waker::Waker;

/// Settings the network thread reads per connection or request; the main
/// thread replaces them on SIGHUP.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_body_bytes: usize,
    /// Request-body memory of the process, in KiB (webhook.max_body_memory;
    /// read at start only).
    pub body_memory_kib: u32,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// Open connections per listener process; more are refused at once.
    pub max_connections: usize,
    /// Open connections per client IP address, per listener process.
    pub max_connections_per_client: usize,
    /// Peers whose forwarding headers name the client (webhook.trusted_proxies);
    /// shared, since the settings are cloned for every request.
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Peers that may read `/metrics` (webhook.metrics_networks; empty: off).
    pub metrics_networks: Arc<[ipnet::IpNet]>,
    /// The one header they name the client in (webhook.forwarded_header).
    pub forwarded_header: webhook_core::access::ForwardedHeader,
    /// What webhook_url() prints before `/hooks/{id}`: the URL senders
    /// call, which Twilio signs.
    pub base_url: String,
}

pub type SharedSettings = Arc<RwLock<Settings>>;

/// One request for the main thread, with the way back to the caller.
pub struct Job {
    pub workflow_id: Uuid,
    pub request: IncomingRequest,
    /// The client: the peer, or the address a trusted proxy reports (`None`
    /// when that cannot be read).
    pub remote_addr: Option<IpAddr>,
    pub received_at: SystemTime,
    pub purpose: Purpose,
    /// What the network thread found checking the sender against the
    /// workflow's verification (`None` when it could not look the workflow up).
    pub verdict: Option<Verdict>,
    /// The request target as received (for signatures over the URL).
    pub raw_path: String,
    pub raw_query: Option<String>,
    pub reply: Reply,
    /// Set by the main thread before it answers a request it hands back to
    /// be checked again ([`crate::ingest::pipeline::Handled::CheckAgain`]).
    pub check_again: Arc<AtomicBool>,
}

/// What the main thread is to do with a [`Job`].
#[derive(Debug)]
pub enum Purpose {
    /// Admit the request, store its event, and answer.
    Handle,
    /// The network thread already refused the request (413, 415, 408, 404
    /// for a disabled workflow, …): only record the refusal, nobody waits.
    RecordRefusal(Response),
    /// The provider's endpoint check, with the answer the network thread
    /// found: sent if the workflow's rules are still those it was checked
    /// against and the sender is admitted (allow-list, rate limits), and
    /// counted (webhook.handshakes). No event is stored.
    Handshake(webhook_core::handshake::Handshake, Response),
    /// Before the body is read: does the workflow take requests? The
    /// answer is 200 when it does (it is then in the directory the network
    /// thread reads, src/pg/front_door.rs), else what to answer the caller (404
    /// for an unknown or disabled workflow, 503 when the extension is not
    /// installed or the transaction failed). Never sent as such.
    LookUp,
    /// `/metrics` from an allowed peer: the main thread reads the snapshot
    /// and renders it (src/ingest/metrics.rs).
    Metrics,
}

/// Most requests waiting for the main thread; beyond it callers get 503 and
/// `Retry-After` instead of piling up memory.
const QUEUE_CAPACITY: usize = 4096;

pub struct Listener {
    pub jobs: Receiver<Job>,
    pub waker: Arc<Waker>,
    /// Committed batches' answers, on their way to the network thread.
    pub outbox: Arc<Outbox>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// The HTTPS certificate, when the listener speaks HTTPS.
    certificate: Option<Arc<tls::Certificate>>,
    /// The workflows as the network thread knows them; the main thread's
    /// catalog fills it.
    pub directory: Arc<Directory>,
    /// What `/healthz` answers from; the main thread's checks update it.
    pub health: Arc<Health>,
}

impl Listener {
    /// Binds every address (with `SO_REUSEPORT`, so sibling listener processes
    /// share the port) and starts the network thread, speaking HTTPS when given
    /// certificate and key files. Binding and loading happen here so that
    /// failures reach the caller, which can log them.
    pub fn start(
        addresses: &[ListenAddress],
        port: u16,
        tls_files: Option<(String, String)>,
        settings: SharedSettings,
    ) -> Result<Listener, String> {
        let (tls, certificate) = match tls_files {
            Some((cert, key)) => {
                let (acceptor, certificate) = tls::acceptor(&cert, &key)?;
                (Some(acceptor), Some(certificate))
            }
            None => (None, None),
        };
        let sockets = bind_all(addresses, port)?;
        let waker = Arc::new(Waker::new().map_err(|e| format!("could not create eventfd: {e}"))?);
        let (jobs_tx, jobs) = sync_channel(QUEUE_CAPACITY);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let thread_waker = waker.clone();
        let outbox = Arc::new(Outbox::default());
        let thread_outbox = outbox.clone();
        let directory = Arc::new(Directory::default());
        let thread_directory = directory.clone();
        let health = Arc::new(Health::default());
        let thread_health = health.clone();
        let thread = std::thread::Builder::new()
            .name("webhook-http".into())
            .spawn(move || {
                let main_thread = http::MainThread {
                    jobs: jobs_tx,
                    waker: thread_waker,
                    outbox: thread_outbox,
                    directory: thread_directory,
                    health: thread_health,
                };
                http::run(sockets, tls, settings, main_thread, shutdown_rx);
            })
            .map_err(|e| format!("could not start the network thread: {e}"))?;
        Ok(Listener {
            jobs,
            waker,
            outbox,
            shutdown,
            thread: Some(thread),
            certificate,
            directory,
            health,
        })
    }

    /// Reads the HTTPS certificate and key files again (after a configuration
    /// reload); `None` when the listener speaks plain HTTP.
    pub fn reload_certificate(&self) -> Option<Result<(), String>> {
        self.certificate
            .as_ref()
            .map(|certificate| certificate.reload())
    }

    /// Stops accepting connections; open ones finish their current exchange.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Whether the network thread has ended (all connections closed).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.begin_shutdown();
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

fn bind_all(addresses: &[ListenAddress], port: u16) -> Result<Vec<TcpListener>, String> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for address in addresses {
        match address {
            ListenAddress::Any => {
                ips.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                ips.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
            }
            ListenAddress::Localhost => {
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
                ips.push(IpAddr::V6(Ipv6Addr::LOCALHOST));
            }
            ListenAddress::Ip(ip) => ips.push(*ip),
        }
    }
    let mut sockets = Vec::new();
    let mut errors = Vec::new();
    for ip in ips {
        match bind(SocketAddr::new(ip, port)) {
            Ok(socket) => sockets.push(socket),
            Err(e) => errors.push(format!("{}: {e}", SocketAddr::new(ip, port))),
        }
    }
    // Like PostgreSQL's listen_addresses: run if at least one address works
    // (an IPv6 wildcard may be unavailable), fail if none does.
    if sockets.is_empty() {
        return Err(format!(
            "could not listen on any address: {}",
            errors.join("; ")
        ));
    }
    Ok(sockets)
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}
