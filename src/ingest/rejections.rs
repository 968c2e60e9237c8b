//! The rejection log: refused requests to a workflow, recorded for its owner
//! (`webhook.rejections`, `webhook.rejection_counts`). Best effort: a record
//! never changes the answer, never waits for a lock, and never fails the batch.
//!
//! A flood of refused requests (forged signatures, a rate-limited client)
//! must not cost a write each: counts are added up in the process and
//! written once per batch ([`RejectionLog::flush`]), and at most
//! [`DETAILS_PER_SECOND`] refusals per workflow and second are kept in full.

use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::spi::SpiClient;
use pgrx::{pg_sys, JsonB};
use serde_json::{json, Value};
use uuid::Uuid;

use webhook_core::request::{IncomingRequest, Response};
use webhook_core::verify::redact_headers as redact_headers_in;

use crate::pg::log_rarely::OncePerMinute;

use super::pipeline::{run_privileged, RequestMeta};
use crate::pg::catalog::pg_uuid;
use crate::pg::event_row::unix;
use crate::pg::spi::ok_or_raise;
use crate::pg::spi::{self, in_subtransaction};

/// Records one refused request for the workflow's owner (`$10`, the whole
/// message) and trims the workflow's records to the newest `$9` (the new row
/// is not yet visible to the DELETE, hence `$9 - 1`).
const RECORD_REJECTION: &str = "
WITH recorded AS (
    INSERT INTO webhook.rejections (workflow_id, received_at, status, reason, method, query, headers,
                                    body_prefix, remote_addr)
    VALUES ($1, pg_catalog.to_timestamp($2), $3, $10, $4, $5, $6, $7, $8::pg_catalog.inet)
    RETURNING id
)
DELETE FROM webhook.rejections r
 WHERE r.workflow_id OPERATOR(pg_catalog.=) $1
   AND r.id OPERATOR(pg_catalog.<=) (
       SELECT x.id FROM webhook.rejections x
        WHERE x.workflow_id OPERATOR(pg_catalog.=) $1
        ORDER BY x.id DESC
       OFFSET GREATEST($9 OPERATOR(pg_catalog.-) 1, 0) LIMIT 1)";

/// Adds the counts gathered since the last flush (`$1`, a jsonb array), in
/// key order so that two listeners never wait on each other in a cycle;
/// counts of a workflow dropped meanwhile are left out.
const FLUSH_COUNTS: &str = "
INSERT INTO webhook.rejection_counts AS c (workflow_id, status, reason, count, last_at)
SELECT r.workflow_id, r.status, r.reason, r.count, pg_catalog.to_timestamp(r.last_at)
  FROM pg_catalog.jsonb_to_recordset($1)
       AS r (workflow_id pg_catalog.uuid, status pg_catalog.int4, reason pg_catalog.text,
             count pg_catalog.int8, last_at pg_catalog.float8)
 WHERE EXISTS (SELECT FROM webhook.workflows w WHERE w.id OPERATOR(pg_catalog.=) r.workflow_id)
 ORDER BY r.workflow_id, r.status, r.reason
ON CONFLICT (workflow_id, status, reason)
DO UPDATE SET count = c.count OPERATOR(pg_catalog.+) EXCLUDED.count,
              last_at = GREATEST(c.last_at, EXCLUDED.last_at)";

/// How much of a refused request's body `webhook.rejections` keeps.
const REJECTED_BODY_PREFIX: usize = 4096;

/// Refusals per workflow and second (per listener process) kept in full.
pub const DETAILS_PER_SECOND: u32 = 10;

/// Most distinct (workflow, status, reason) counts held between flushes; if
/// flushing keeps failing beyond it, the oldest counts are dropped.
const MAX_PENDING_COUNTS: usize = 10_000;

/// Counts not yet written, and how many refusals each workflow had kept in
/// full in the current second.
#[derive(Default)]
pub struct RejectionLog {
    counts: HashMap<(Uuid, i32, String), (i64, f64)>,
    details: HashMap<Uuid, (u64, u32)>,
}

/// A refused request to record.
pub struct Refusal<'a> {
    pub workflow_id: Uuid,
    pub request: &'a IncomingRequest,
    pub response: &'a Response,
    /// Why, when the response does not say it all (a failed verification
    /// answers only "Invalid signature"): also what the refusal is counted as.
    pub reason: Option<&'a str>,
    /// The workflow's own headers to redact (besides the credential headers).
    pub redact_headers: &'a [String],
}

impl RejectionLog {
    /// Counts a refusal without recording it (an event whose row PostgreSQL
    /// refused, found when the batch's events were stored together: its
    /// request is no longer at hand). Counted by the message's head, as
    /// [`RejectionLog::record`] counts.
    pub fn count_only(&mut self, workflow_id: Uuid, response: &Response, received: f64) {
        let message = response
            .body_json()
            .and_then(|body| body["msg"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("HTTP {}", response.status));
        let category = message
            .split_once(": ")
            .map_or(message.as_str(), |(head, _)| head);
        self.count(workflow_id, response.status, category, received);
    }

    fn count(&mut self, workflow_id: Uuid, status: u16, category: &str, received: f64) {
        if self.counts.len() >= MAX_PENDING_COUNTS {
            self.counts.clear();
        }
        let count = self
            .counts
            .entry((workflow_id, status as i32, category.replace('\0', "")))
            .or_insert((0, received));
        count.0 += 1;
        count.1 = count.1.max(received);
    }

    /// Counts a refusal and, unless the workflow had its share this second,
    /// records it, keeping the newest `kept` records of the workflow.
    /// Credential headers are stored redacted.
    pub fn record(
        &mut self,
        client: &mut SpiClient<'_>,
        privileged: Option<pg_sys::Oid>,
        kept: i32,
        refusal: Refusal<'_>,
        meta: &RequestMeta,
    ) {
        let Refusal {
            workflow_id,
            request,
            response,
            reason: known_reason,
            redact_headers,
        } = refusal;
        let reason = match known_reason {
            Some(reason) => reason.to_string(),
            None => response
                .body_json()
                .and_then(|body| body["msg"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {}", response.status)),
        };
        // Counted by the part of the message before any detail, which may echo
        // the request ("Invalid JSON body: … at line 1 column 14"): a client
        // must not be able to add count rows at will. A reason given by the
        // caller comes from a fixed set and is counted whole.
        let category = match known_reason {
            Some(reason) => reason.to_string(),
            None => reason
                .split_once(": ")
                .map_or(reason.as_str(), |(head, _)| head)
                .to_string(),
        };
        let received = unix(meta.received_at);
        self.count(workflow_id, response.status, &category, received);
        let second = received as u64;
        let kept_now = self.details.entry(workflow_id).or_insert((second, 0));
        // Requests reach the main thread in the order their bodies were
        // read, not quite in receipt order: one stamped in a second already
        // left behind is only counted, so no second ever gets more.
        // (A clock stepped back by more than that starts afresh.)
        if second > kept_now.0 || second + 2 < kept_now.0 {
            *kept_now = (second, 0);
        }
        if second < kept_now.0 || kept_now.1 >= DETAILS_PER_SECOND {
            return;
        }
        kept_now.1 += 1;
        if self.details.len() > MAX_PENDING_COUNTS {
            self.details.retain(|_, (at, _)| *at == second);
        }
        let text = request.body.text();
        let mut cut = text.len().min(REJECTED_BODY_PREFIX);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        // PostgreSQL text and jsonb cannot hold NUL (a request may be refused
        // for carrying one): the record keeps everything else.
        let body_prefix = (!text.is_empty()).then(|| text[..cut].replace('\0', ""));
        let query = without_nul(Value::Object(request.query.clone()));
        let mut headers = request.headers.clone();
        redact_headers_in(&mut headers, redact_headers);
        let headers = without_nul(Value::Object(headers));
        let kept = kept.max(1);
        let recorded = in_subtransaction(|| {
            let args = [
                DatumWithOid::from(pg_uuid(workflow_id)),
                DatumWithOid::from(received),
                DatumWithOid::from(response.status as i32),
                DatumWithOid::from(request.method.replace('\0', "")),
                DatumWithOid::from(JsonB(query)),
                DatumWithOid::from(JsonB(headers)),
                DatumWithOid::from(body_prefix),
                DatumWithOid::from(meta.remote_addr.map(|ip| ip.to_string())),
                DatumWithOid::from(kept),
                DatumWithOid::from(reason.replace('\0', "")),
            ];
            // A record is not worth waiting for: rows another batch holds
            // (the same count, the trimmed rows) drop this record instead of
            // holding up every request in this batch.
            spi::with_settings(&[(c"lock_timeout", c"1ms")], || {
                ok_or_raise(run_privileged(privileged, || {
                    client.update(RECORD_REJECTION, None, &args)
                }))
            })
        });
        if let Err(error) = recorded {
            log_rarely(&format!(
                "webhook_ext could not record a refused request: {}",
                error.describe()
            ));
        }
    }

    /// Writes the counts gathered since the last flush, in the caller's
    /// transaction; kept for the next flush if that fails (a lock held by
    /// another listener's batch).
    pub fn flush(&mut self, client: &mut SpiClient<'_>, privileged: Option<pg_sys::Oid>) {
        if self.counts.is_empty() {
            return;
        }
        let rows: Vec<Value> = self
            .counts
            .iter()
            .map(|((workflow_id, status, reason), (count, last_at))| {
                json!({"workflow_id": workflow_id, "status": status, "reason": reason,
                   "count": count, "last_at": last_at})
            })
            .collect();
        let args = [DatumWithOid::from(JsonB(Value::Array(rows)))];
        let flushed = in_subtransaction(|| {
            spi::with_settings(&[(c"lock_timeout", c"1ms")], || {
                ok_or_raise(run_privileged(privileged, || {
                    client.update(FLUSH_COUNTS, None, &args)
                }))
            })
        });
        match flushed {
            Ok(_) => self.counts.clear(),
            Err(error) => log_rarely(&format!(
                "webhook_ext could not count refused requests yet: {}",
                error.describe()
            )),
        }
    }
}

/// Logs `message` at most once a minute (per process): refusals can come
/// as fast as a client sends them.
fn log_rarely(message: &str) {
    static RECORD_FAILED: OncePerMinute = OncePerMinute::new();
    if RECORD_FAILED.due() {
        pgrx::log!("{message} (further ones are not logged for a minute)");
    }
}

/// The value with every NUL character removed from its strings and keys.
fn without_nul(value: Value) -> Value {
    match value {
        Value::String(s) if s.contains('\0') => Value::String(s.replace('\0', "")),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('\0', ""), without_nul(v)))
                .collect(),
        ),
        other => other,
    }
}
