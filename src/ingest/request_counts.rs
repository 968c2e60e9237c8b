//! Requests each workflow accepted and redelivered, added to this listener's
//! own rows of `webhook.workflow_counters` (keyed by its PGPROC number, which
//! no other running process has, so no two writers ever wait on each other)
//! once a second and when the listener stops. Counted only once a batch
//! committed; a flush that fails keeps its counts for the next one, so a
//! count is lost only if the server crashes within that second.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::JsonB;

use webhook_core::counters::RequestTally;

use crate::pg::log_rarely::OncePerMinute;
use crate::pg::spi::in_transaction;

/// Adds the counts (`$1`, webhook_core::counters's JSON rows, in workflow
/// order) to writer `$2`'s rows; counts of a workflow dropped meanwhile are
/// left out.
const FLUSH_COUNTS: &str = "
INSERT INTO webhook.workflow_counters AS c (workflow_id, writer, accepted, redelivered)
SELECT r.workflow_id, $2, r.accepted, r.redelivered
  FROM pg_catalog.jsonb_to_recordset($1)
       AS r (workflow_id pg_catalog.uuid, accepted pg_catalog.int8, redelivered pg_catalog.int8)
 WHERE EXISTS (SELECT FROM webhook.workflows w WHERE w.id OPERATOR(pg_catalog.=) r.workflow_id)
ON CONFLICT (workflow_id, writer)
DO UPDATE SET accepted = c.accepted OPERATOR(pg_catalog.+) EXCLUDED.accepted,
              redelivered = c.redelivered OPERATOR(pg_catalog.+) EXCLUDED.redelivered,
              updated_at = pg_catalog.now()";

#[derive(Default)]
pub struct RequestCounts {
    unflushed: RequestTally,
}

static FLUSH_FAILED: OncePerMinute = OncePerMinute::new();

impl RequestCounts {
    /// A batch committed with these counts.
    pub fn committed(&mut self, batch: RequestTally) {
        self.unflushed.absorb(batch);
    }

    /// Writes what was counted since the last flush, in a transaction of its
    /// own (on the main thread, with no transaction open).
    pub fn flush(&mut self) {
        if self.unflushed.is_empty() {
            return;
        }
        let counts = std::mem::take(&mut self.unflushed);
        // The arguments are made inside the transaction: between two, the
        // current memory context is TopMemoryContext, where a datum would
        // stay for the life of the process.
        let written = in_transaction(|| {
            let args = [
                DatumWithOid::from(JsonB(counts.to_json())),
                DatumWithOid::from(crate::execution::my_procno()),
            ];
            Spi::connect_mut(|client| client.update(FLUSH_COUNTS, None, &args).map(|_| ()))
        });
        let failure = match written {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(caught) => caught.describe(),
        };
        if FLUSH_FAILED.due() {
            pgrx::warning!(
                "webhook_ext listener could not write its request counts (kept for the next try): {failure}"
            );
        }
        self.unflushed.absorb(counts);
    }
}
