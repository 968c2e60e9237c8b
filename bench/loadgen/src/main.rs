//! `loadgen URL CONNECTIONS SECONDS BODY_FILE [NAME:VALUE ...]`: each
//! connection sends POSTs (with the extra headers given, e.g. a signature)
//! back to back on one keep-alive connection until the time is up, then waits
//! for its last response, so every request is counted exactly once (unlike
//! tools that drop in-flight requests at the deadline). Prints one JSON line.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

#[derive(Default)]
struct Tally {
    ok: u64,
    non_2xx: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

async fn connection(
    url: hyper::Uri,
    body: Bytes,
    headers: Vec<(String, String)>,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let authority = url.authority().expect("URL has host:port").clone();
    'reconnect: while Instant::now() < deadline {
        let stream = match tokio::net::TcpStream::connect(authority.as_str()).await {
            Ok(stream) => stream,
            Err(_) => {
                tally.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            tally.errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < deadline {
            let mut request = Request::post(url.clone())
                .header("host", authority.as_str())
                .header("content-type", "application/json");
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let request = request
                .body(Full::new(body.clone()))
                .expect("valid request");
            let started = Instant::now();
            match sender.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let _ = response.into_body().collect().await;
                    tally
                        .latencies_us
                        .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    if status.is_success() {
                        tally.ok += 1;
                    } else {
                        tally.non_2xx += 1;
                    }
                }
                Err(_) => {
                    tally.errors += 1;
                    continue 'reconnect;
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: loadgen URL CONNECTIONS SECONDS BODY_FILE [NAME:VALUE ...]");
        std::process::exit(2);
    }
    let headers: Vec<(String, String)> = args[5..]
        .iter()
        .map(|h| {
            let (name, value) = h.split_once(':').expect("a header is NAME:VALUE");
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let url: hyper::Uri = args[1].parse().expect("valid URL");
    let connections: usize = args[2].parse().expect("connections");
    let seconds: f64 = args[3].parse().expect("seconds");
    let body = Bytes::from(std::fs::read(&args[4]).expect("body file"));

    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::spawn(connection(
                url.clone(),
                body.clone(),
                headers.clone(),
                deadline,
            ))
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("connection task");
        total.ok += tally.ok;
        total.non_2xx += tally.non_2xx;
        total.errors += tally.errors;
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "connections": connections,
            "seconds": elapsed,
            "ok": total.ok,
            "non_2xx": total.non_2xx,
            "errors": total.errors,
            "rps": total.ok as f64 / elapsed,
            "p50_ms": percentile(&total.latencies_us, 0.50),
            "p99_ms": percentile(&total.latencies_us, 0.99),
        })
    );
}
