//! Times `parse_body` on every worst-case body (1 MB each, `max_decoded_bytes` =
//! 1 MB, like the default `webhook.max_body_size`). The goal is linear time: well
//! under 0.5 s per case in a release build on a 2-core machine.
//!
//!     cargo run --release -p webhook_core --example hostile_bodies [size_bytes]

use std::time::Instant;

use webhook_core::body::worst_case::corpus;
use webhook_core::body::{parse_body, BodyLimits};

fn main() {
    let size = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024 * 1024);
    let limits = BodyLimits {
        max_decoded_bytes: size,
        ..BodyLimits::default()
    };
    let mut slowest = 0.0f64;
    for case in corpus(size) {
        let started = Instant::now();
        let outcome = parse_body(
            Some(&case.content_type),
            case.content_encoding,
            &case.body,
            &limits,
        );
        let seconds = started.elapsed().as_secs_f64();
        slowest = slowest.max(seconds);
        let result = match outcome {
            Ok(parsed) => format!("parsed, {} params", parsed.params.len()),
            Err(e) => format!("{} {e}", e.http_status()),
        };
        println!(
            "{:<36} {:>9} bytes {:>8.3} s  {}",
            case.name,
            case.body.len(),
            seconds,
            result.chars().take(90).collect::<String>()
        );
    }
    println!("slowest: {slowest:.3} s (goal: < 0.5 s)");
}
