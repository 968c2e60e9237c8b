//! What the main thread's once-a-second check last found, for the network
//! thread to answer `/healthz` from without touching the database (the
//! answers themselves are webhook_core::health's).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use webhook_core::health::Checked;
use webhook_core::request::Response;

pub struct Health {
    /// What `checked_at` counts from.
    epoch: Instant,
    /// Milliseconds from `epoch` to the main thread's last check, plus one;
    /// 0 before the first.
    checked_at: AtomicU64,
    /// What requests got at the last check instead of being served (`None`:
    /// they were served).
    refusal: Mutex<Option<Response>>,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            epoch: Instant::now(),
            checked_at: AtomicU64::new(0),
            refusal: Mutex::new(None),
        }
    }
}

impl Health {
    /// The main thread checked just now and found this.
    pub fn checked(&self, refusal: Option<Response>) {
        *self.lock() = refusal;
        let at = self.epoch.elapsed().as_millis() as u64 + 1;
        self.checked_at.store(at, Ordering::Release);
    }

    /// The last check, as of now (for the network thread).
    pub fn last_check(&self) -> Checked {
        let at = self.checked_at.load(Ordering::Acquire);
        if at == 0 {
            return Checked::Never;
        }
        let now = self.epoch.elapsed();
        Checked::Ago {
            elapsed: now.saturating_sub(Duration::from_millis(at - 1)),
            refusal: self.lock().clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Response>> {
        // Nothing panics while holding it; if something did, the value is
        // still a whole one.
        self.refusal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_checked_until_the_main_thread_checks() {
        let health = Health::default();
        assert_eq!(health.last_check(), Checked::Never);
        health.checked(None);
        match health.last_check() {
            Checked::Ago { elapsed, refusal } => {
                assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
                assert_eq!(refusal, None);
            }
            never => panic!("{never:?}"),
        }
    }

    #[test]
    fn the_last_check_wins() {
        let health = Health::default();
        let refusal = Response::retry_later("not installed");
        health.checked(Some(refusal.clone()));
        assert!(
            matches!(health.last_check(), Checked::Ago { refusal: Some(r), .. } if r == refusal)
        );
        health.checked(None);
        assert!(matches!(
            health.last_check(),
            Checked::Ago { refusal: None, .. }
        ));
    }
}
