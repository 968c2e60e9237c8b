//! Caps on open connections (`webhook.max_connections`,
//! `webhook.max_connections_per_client`) and the answer to a connection over them.
//!
//! A slot is an RAII guard held by the connection's task: when the connection
//! ends, however it ends, the slot frees.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use webhook_core::connections::{refusal_response, ConnectionCounts, ConnectionLimits, Refusal};

/// How long a refused connection may take to receive the answer.
const REFUSAL_GRACE: Duration = Duration::from_secs(1);

/// Refused connections being answered at once; past this they are closed
/// without an answer, so a flood of refusals cannot itself pile up sockets.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

#[derive(Default)]
pub(super) struct ConnectionSlots {
    counts: Mutex<ConnectionCounts>,
    refusals_in_flight: AtomicUsize,
}

/// One open connection's place in the counts.
pub(super) struct Slot {
    slots: Arc<ConnectionSlots>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.slots.counts.lock() {
            counts.close(self.client);
        }
    }
}

impl ConnectionSlots {
    /// A slot for a new connection from `client`, unless a cap is reached.
    pub(super) fn take(
        self: &Arc<Self>,
        client: IpAddr,
        limits: ConnectionLimits,
    ) -> Result<Slot, Refusal> {
        let mut counts = self.counts.lock().map_err(|_| Refusal::ListenerFull)?;
        counts.try_open(client, limits)?;
        Ok(Slot {
            slots: self.clone(),
            client,
        })
    }

    /// Answers a plain-HTTP connection over a cap with 503 `{"msg":"Too many
    /// connections"}`, `Retry-After: 1` and `connection: close`, without
    /// waiting for its request. What the client already sent is read and
    /// dropped before closing: closing with unread data would send a RST that
    /// can destroy the answer before the client reads it.
    pub(super) fn refuse(self: &Arc<Self>, stream: TcpStream) {
        if self.refusals_in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSALS_IN_FLIGHT {
            self.refusals_in_flight.fetch_sub(1, Ordering::Relaxed);
            return; // dropped: closed without an answer
        }
        let slots = self.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_GRACE, answer_and_drain(stream)).await;
            slots.refusals_in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

async fn answer_and_drain(mut stream: TcpStream) -> std::io::Result<()> {
    stream.write_all(refusal_response()).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 4096];
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}
