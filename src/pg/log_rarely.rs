//! Log lines about something that can repeat as fast as requests come (a
//! refusal that cannot be recorded, no free worker slot), and housekeeping
//! that need not run more often: each place keeps its own [`OncePerMinute`],
//! per process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct OncePerMinute(Mutex<Option<Instant>>);

impl OncePerMinute {
    pub const fn new() -> OncePerMinute {
        OncePerMinute(Mutex::new(None))
    }

    /// Whether to log now; if so, not again for a minute.
    pub fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}
