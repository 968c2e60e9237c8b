//! Answers going from the main thread back to the network thread, a batch at
//! a time. Each answer sent on its own wakes the network thread's runtime
//! with a system call; a committed batch of sixteen answers made sixteen of
//! them on the main thread, which every request waits for. Through the outbox
//! the main thread makes one, and the network thread hands the answers out.

use std::sync::Mutex;

use tokio::sync::{oneshot, Notify};
use webhook_core::request::Response;

/// Where a caller's answer goes: the request's task on the network thread.
pub type Reply = oneshot::Sender<Response>;

#[derive(Default)]
pub struct Outbox {
    answers: Mutex<Vec<(Reply, Response)>>,
    posted: Notify,
}

impl Outbox {
    /// Queues these answers and wakes the network thread once. A lone
    /// answer goes straight to its caller: one wake-up either way, and no
    /// hand-over on the network thread.
    pub fn send_all(&self, mut answers: Vec<(Reply, Response)>) {
        if answers.len() <= 1 {
            if let Some((reply, response)) = answers.pop() {
                let _ = reply.send(response);
            }
            return;
        }
        self.lock().extend(answers);
        self.posted.notify_one();
    }

    /// Hands queued answers to their callers, as they are posted (runs on the
    /// network thread for as long as its runtime does). A caller that went
    /// away just does not get its answer.
    pub(super) async fn deliver(&self) {
        loop {
            self.posted.notified().await;
            let answers = std::mem::take(&mut *self.lock());
            for (reply, response) in answers {
                let _ = reply.send(response);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Reply, Response)>> {
        // Nothing panics while holding it; if something did, the queue is
        // still a plain vector.
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }
}
