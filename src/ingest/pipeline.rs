//! Ingest, the PostgreSQL side of a request: find the workflow, admit the
//! request (pure rules in `webhook_core::request`), claim its delivery key,
//! store the event, and pick the response.
//!
//! Used by the listener's main thread (many requests per transaction), which
//! leaves handlers to executors (src/execution), and by `webhook_trigger` /
//! `webhook_replay` in ordinary backends, which run the handler at once.

use std::time::SystemTime;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use serde_json::{json, Value};
use uuid::Uuid;

use webhook_core::request::{
    self as rules, Accepted, Admission, CapturedSample, IncomingRequest, Response, ResponseConfig,
};

use crate::pg::catalog::{pg_uuid, Catalog, Workflow};
use crate::pg::event_row::{
    insert_event_sql, insert_events_sql, response_json, unix, EventRow, Origin,
};
use crate::pg::notify::{check_notify_queue, notify_consumers, notify_event};
use webhook_core::delivery;
use webhook_core::infer::InferredParam;
use webhook_core::validate::Source;
use webhook_core::verify::redact_headers;

use crate::pg::front_door::{self, Verdict};
use crate::pg::gucs;

use crate::execution::{record_attempts, Attempt, HandlerPlans, Outcome};
use crate::pg::spi::{self, as_role_with_safe_path, in_subtransaction, ok_or_raise};

use webhook_core::counters::RequestTally;

use super::storage_quota::Holder;
use super::{delivery_keys as redelivery, rate_limits, rejections, storage_quota};

/// At the first batch, and again whenever cached definitions may be stale
/// (src/ingest/listener_main.rs): the extension's epoch (to forget cached workflows of a
/// dropped and re-created extension), the tables whose invalidations mean
/// "definitions changed" (src/pg/invalidation.rs), and the events' sequence.
/// Fails, and so fails the batch, when the extension is gone. (Dropping the
/// extension invalidates those tables, so a batch after it runs this again.)
const BEGIN_BATCH: &str = "
SELECT v.epoch::pg_catalog.text AS epoch,
       'webhook.workflow_changes'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8
           AS workflow_changes,
       'webhook.config_version'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8
           AS config_version,
       'webhook.events_id_seq'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.int8
           AS events_sequence
  FROM webhook.config_version v";

/// Claims a request's delivery key: `Some((original event, its recorded
/// response))` when it is a redelivery.
type ClaimDelivery<'a> = dyn Fn(&mut SpiClient<'_>) -> Option<(i64, Option<Value>)> + 'a;

/// `accepted_response` answers for every method but `workflow`, whose answer
/// comes from the handler.
/// Counts an answered handshake, keeping the last one (webhook.handshakes).
const RECORD_HANDSHAKE: &str = "
INSERT INTO webhook.handshakes AS h (workflow_id, kind, answered, last_at, last_method, last_query)
SELECT w.id, $2, 1, pg_catalog.now(), $3, $4
  FROM webhook.workflows w
 WHERE w.id OPERATOR(pg_catalog.=) $1
ON CONFLICT (workflow_id) DO UPDATE
   SET kind = EXCLUDED.kind, answered = h.answered OPERATOR(pg_catalog.+) 1,
       last_at = EXCLUDED.last_at, last_method = EXCLUDED.last_method,
       last_query = EXCLUDED.last_query";

const SUCCESS_FOR_NON_WORKFLOW: &str = "default and custom methods have a response";

/// Facts about a request besides its content.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub received_at: SystemTime,
    /// The client checked and recorded (see webhook_core::access::client_address).
    pub remote_addr: Option<std::net::IpAddr>,
    pub origin: Origin,
    pub replay_of: Option<i64>,
    /// The request target as received: path, and query string (original order).
    pub raw_path: Option<String>,
    pub raw_query: Option<String>,
    /// What the network thread found checking the sender (HTTP only).
    pub verdict: Option<Verdict>,
}

/// What to answer, and whether only after the transaction commits.
pub enum Handled {
    /// Nothing was written: answer now.
    Immediate(Response),
    /// An event or sample was written: answer once it is committed.
    AfterCommit(Response),
    /// A `workflow`-method event was stored: once it is committed, wait (at
    /// most `timeout_ms`, the handler's deadline) for an executor to record
    /// its response; `failure` if none comes.
    AwaitHandler {
        event_id: i64,
        timeout_ms: Option<i32>,
        failure: Response,
    },
    /// Nothing was written: the request was checked against rules that
    /// changed since, and goes back to the network thread to be checked
    /// against the current ones (src/ingest/network/http.rs). Said apart from any
    /// answer, so that no workflow's own response can pass for it.
    CheckAgain,
}

impl Handled {
    /// The response as such (`webhook_trigger`, `webhook_replay`: they run
    /// the handler themselves, so nothing is awaited).
    pub fn into_response(self) -> Response {
        match self {
            Handled::Immediate(response) | Handled::AfterCommit(response) => response,
            Handled::AwaitHandler { failure, .. } => failure,
            Handled::CheckAgain => front_door::workflow_changed(),
        }
    }
}

/// Who may send, in this order: the client's network (403), the client's
/// rate (429), the request's signature or credentials (401), the
/// workflow's rate (429). The workflow-wide bucket comes after verification,
/// so forged requests cannot use up the limit of the real sender.
fn admit_sender(workflow: &Workflow, meta: &RequestMeta) -> Result<(), (Response, String)> {
    let client = meta.remote_addr;
    if let Some(networks) = &workflow.allowed_networks {
        if !client.is_some_and(|ip| webhook_core::access::contains(networks, ip)) {
            return Err((
                Response::error(403, "Address not allowed"),
                "Address not allowed".into(),
            ));
        }
    }
    let now_ms = (unix(meta.received_at) * 1000.0) as u64;
    let limited = |seconds: u64, reason: &str| {
        (
            Response::error(429, "Too many requests")
                .with_header("retry-after", &seconds.to_string()),
            reason.to_string(),
        )
    };
    if let Some(limit) = workflow.client_rate_limit {
        rate_limits::take(workflow.rules.id, workflow.owner, client, limit, now_ms)
            .map_err(|wait| limited(wait, "Too many requests: client over its rate"))?;
    }
    verify(meta)?;
    if let Some(limit) = workflow.rate_limit {
        rate_limits::take(workflow.rules.id, workflow.owner, None, limit, now_ms)
            .map_err(|wait| limited(wait, "Too many requests: workflow over its rate"))?;
    }
    Ok(())
}

/// The network thread's verdict on the request's sender (src/pg/front_door.rs):
/// a request over HTTP is always verified there, on a parser thread, never
/// here. [`Pipeline::handle`] has made sure it was checked against the
/// workflow's current rules.
fn verify(meta: &RequestMeta) -> Result<(), (Response, String)> {
    match &meta.verdict {
        Some(verdict) => verdict.outcome.clone(),
        None => Err((front_door::workflow_changed(), "Workflow changed".into())),
    }
}

/// Per-process state: cached workflows and prepared statements.
pub struct Pipeline {
    pub catalog: Catalog,
    insert_plan: Option<OwnedPreparedStatement>,
    batch_plan: Option<OwnedPreparedStatement>,
    handler_plans: HandlerPlans,
    /// Role that may write webhook.events when the session user may not
    /// (webhook_trigger called by a workflow owner).
    pub privileged_role: Option<pg_sys::Oid>,
    /// Deadline for handlers (ms) unless the workflow sets its own; `None`
    /// leaves the session's statement_timeout in charge.
    pub handler_timeout_ms: Option<i32>,
    /// The id of the last event stored (for `webhook_trigger`'s result).
    pub last_event_id: Option<i64>,
    /// Run handlers in this transaction (`webhook_trigger`, `webhook_replay`);
    /// the listener leaves them to executors.
    pub run_handlers_now: bool,
    /// Owners of the events stored since the listener last took this list:
    /// their executors are woken (or started) once the batch committed.
    pub stored_for_owners: Vec<pg_sys::Oid>,
    /// Requests over HTTP stored or redelivered since the listener last took
    /// this tally: counted once the batch committed
    /// (webhook.workflow_counters, src/ingest/listener_main.rs).
    pub counted: RequestTally,
    /// Store events without a delivery key at the end of the batch, all in
    /// one statement ([`Pipeline::store_deferred`]); the listener does.
    pub defer_inserts: bool,
    /// With the owner whose executors run it (None: a queued workflow's).
    deferred: Vec<(EventRow, Option<pg_sys::Oid>)>,
    /// The id of the event the last `handle` deferred, if it did.
    pub last_deferred: Option<i64>,
    bulk_plan: Option<OwnedPreparedStatement>,
    /// webhook.events_id_seq, once [`BEGIN_BATCH`] read it (again after
    /// definitions changed).
    events_sequence: Option<pg_sys::Oid>,
    /// How many refused requests per workflow `webhook.rejections` keeps.
    pub rejections_kept: i32,
    rejection_log: rejections::RejectionLog,
    /// The lock_timeout handlers run with: the server default, read once
    /// (again after a configuration reload, see `reload_settings`).
    handler_lock_timeout: std::ffi::CString,
}

impl Pipeline {
    pub fn new(privileged_role: Option<pg_sys::Oid>, handler_timeout_ms: Option<i32>) -> Pipeline {
        Pipeline {
            catalog: Catalog::default(),
            insert_plan: None,
            batch_plan: None,
            handler_plans: HandlerPlans::default(),
            run_handlers_now: true,
            stored_for_owners: Vec::new(),
            counted: RequestTally::default(),
            defer_inserts: false,
            deferred: Vec::new(),
            last_deferred: None,
            bulk_plan: None,
            events_sequence: None,
            privileged_role,
            handler_timeout_ms,
            last_event_id: None,
            rejections_kept: 100,
            rejection_log: Default::default(),
            handler_lock_timeout: spi::reset_value(c"lock_timeout"),
        }
    }

    /// After a configuration reload: server defaults that handlers run with
    /// (lock_timeout here, search_path in cached workflows) may have changed.
    pub fn reload_settings(&mut self) {
        self.handler_lock_timeout = spi::reset_value(c"lock_timeout");
        self.forget_workflows();
    }

    /// Forgets prepared statements and cached workflows (after the extension
    /// was dropped or a transaction failed in a way that may have left them stale).
    pub fn reset(&mut self) {
        self.forget_workflows();
        self.insert_plan = None;
        self.batch_plan = None;
        self.bulk_plan = None;
        self.deferred.clear();
    }

    /// Forgets cached workflows and their handler plans (a handler function or
    /// an owner role changed).
    /// Whether the catalog must look for changed workflows even without a
    /// signal (`Catalog::needs_look`).
    pub fn catalog_needs_look(&self) -> bool {
        self.catalog.needs_look()
    }

    /// Forgets the cached workflows that changed since the last look
    /// (`Catalog::forget_changed`).
    pub fn forget_changed_workflows(
        &mut self,
        client: &SpiClient<'_>,
    ) -> Result<(), pgrx::spi::Error> {
        let catalog = &mut self.catalog;
        run_privileged(self.privileged_role, || catalog.forget_changed(client))
    }

    pub fn forget_workflows(&mut self) {
        self.catalog.clear();
        self.handler_plans.clear();
        self.events_sequence = None;
    }

    /// Starts a batch: refreshes what [`BEGIN_BATCH`] reads if definitions
    /// changed since the last batch (then it returns the OIDs of
    /// webhook.workflows, webhook.parameters and webhook.verifications, to
    /// watch), and whether the NOTIFY queue has room. Returns the events'
    /// sequence, for [`next_event_id`].
    pub fn begin_batch(
        &mut self,
        client: &mut SpiClient<'_>,
    ) -> Result<(pg_sys::Oid, Option<[u32; 2]>), pgrx::spi::Error> {
        check_notify_queue();
        if let Some(sequence) = self.events_sequence {
            return Ok((sequence, None));
        }
        if self.batch_plan.is_none() {
            self.batch_plan = Some(client.prepare_mut(BEGIN_BATCH, &[])?.keep());
        }
        let plan = self.batch_plan.as_ref().expect("prepared above");
        let table = client.update(plan, Some(1), &[])?;
        let row = table.first();
        if let Some(epoch) = row.get_by_name::<String, _>("epoch")? {
            self.catalog.observe_epoch(epoch);
        }
        let oid = |name: &str| -> Result<u32, pgrx::spi::Error> {
            Ok(row.get_by_name::<i64, _>(name)?.unwrap_or(0) as u32)
        };
        let tables = [oid("workflow_changes")?, oid("config_version")?];
        let sequence = pg_sys::Oid::from(oid("events_sequence")?);
        self.events_sequence = Some(sequence);
        Ok((sequence, Some(tables)))
    }

    /// Processes one request inside the caller's transaction. A request
    /// over HTTP is verified first (webhook.verifications); then its
    /// credential headers are redacted, so nothing stored from it (event,
    /// sample, rejection) holds them.
    pub fn handle(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow_id: Uuid,
        request: &mut IncomingRequest,
        meta: &RequestMeta,
        event_id: &mut dyn FnMut(&SpiClient<'_>) -> Result<i64, pgrx::spi::Error>,
    ) -> Result<Handled, pgrx::spi::Error> {
        let Some(workflow) = self.catalog.get(client, workflow_id)? else {
            return Ok(Handled::Immediate(Response::workflow_not_found()));
        };
        // A disabled workflow answers 404 like an unknown one (rules::admit),
        // whatever the request: nothing about its settings shows.
        if meta.origin == Origin::Http && workflow.rules.enabled {
            if !meta
                .verdict
                .as_ref()
                .is_some_and(|verdict| verdict.is_for(&workflow.front_door))
            {
                // Read and checked by rules that changed since: back to the
                // network thread, to be checked by the current ones.
                return Ok(Handled::CheckAgain);
            }
            if let Err((response, reason)) = admit_sender(&workflow, meta) {
                self.record_refusal_of(client, &workflow, request, &response, meta, Some(&reason));
                return Ok(Handled::Immediate(response));
            }
        }
        redact_headers(&mut request.headers, &workflow.redact_headers);
        // The workflow's rules as they are, unless a capture is armed now
        // (no copy of them per request).
        let mut rules_now = std::borrow::Cow::Borrowed(&workflow.rules);
        let capture_armed =
            meta.origin == Origin::Http && workflow.capture_armed(unix(SystemTime::now()));
        if rules_now.capture_armed != capture_armed {
            rules_now.to_mut().capture_armed = capture_armed;
        }
        loop {
            // Only an accepted request gives up its body's parameters (moved
            // into the event, not copied): a refused one is recorded whole,
            // and a capture taken first elsewhere is admitted again here.
            match rules::admit(&rules_now, request) {
                Admission::Rejected(response) => {
                    if meta.origin == Origin::Http {
                        self.record_refusal_of(client, &workflow, request, &response, meta, None);
                    }
                    return Ok(Handled::Immediate(response));
                }
                Admission::Capture(sample) => match self.capture(client, &workflow, &sample)? {
                    Some(response) => return Ok(Handled::AfterCommit(response)),
                    // Another listener process took this capture first: an
                    // ordinary request after all.
                    None => rules_now.to_mut().capture_armed = false,
                },
                Admission::Accepted(accepted) => {
                    let id = event_id(client)?;
                    return self.accept(client, &workflow, request, accepted, meta, id);
                }
            }
        }
    }

    /// Answers the network thread before it reads a request's body: 200
    /// when the workflow takes requests (it is then in the network thread's
    /// directory), else the 404 to answer, recorded for the owner when the
    /// workflow is disabled.
    pub fn look_up(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow_id: Uuid,
        request: &IncomingRequest,
        meta: &RequestMeta,
    ) -> Result<Response, pgrx::spi::Error> {
        let not_found = Response::workflow_not_found();
        match self.catalog.look_up(client, workflow_id)? {
            Some(workflow) if workflow.rules.enabled => Ok(Response::error(200, "Workflow found")),
            Some(workflow) => {
                self.record_refusal_of(client, &workflow, request, &not_found, meta, None);
                Ok(not_found)
            }
            None => Ok(not_found),
        }
    }

    /// Records a refused request (by admission, or by the network thread:
    /// 413, 415, 408, …) if it was addressed to a workflow that exists. Best
    /// effort: a failure to record never changes the answer.
    pub fn record_refusal(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow_id: Uuid,
        request: &IncomingRequest,
        response: &Response,
        meta: &RequestMeta,
    ) -> Result<(), pgrx::spi::Error> {
        if let Some(workflow) = self.catalog.get(client, workflow_id)? {
            self.record_refusal_of(client, &workflow, request, response, meta, None);
        }
        Ok(())
    }

    /// The answer to a provider's endpoint check the network thread found
    /// (src/ingest/network/http.rs): given if the workflow's rules are still those
    /// it was checked against and the sender is admitted (allow-list, rate
    /// limits, in the order of any request), and counted. Nothing is stored.
    /// `None`: the rules changed; the network thread checks it again.
    pub fn handshake(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow_id: Uuid,
        request: &IncomingRequest,
        meta: &RequestMeta,
        kind: webhook_core::handshake::Handshake,
        answer: &Response,
    ) -> Result<Option<Response>, pgrx::spi::Error> {
        let workflow = match self.catalog.get(client, workflow_id)? {
            Some(workflow) if workflow.rules.enabled => workflow,
            _ => return Ok(Some(Response::workflow_not_found())),
        };
        if !meta
            .verdict
            .as_ref()
            .is_some_and(|verdict| verdict.is_for(&workflow.front_door))
        {
            return Ok(None);
        }
        if let Err((response, reason)) = admit_sender(&workflow, meta) {
            self.record_refusal_of(client, &workflow, request, &response, meta, Some(&reason));
            return Ok(Some(response));
        }
        self.record_handshake(
            client,
            workflow_id,
            kind,
            &request.method,
            meta.raw_query.as_deref(),
        );
        Ok(Some(answer.clone()))
    }

    /// Counts an answered endpoint check (webhook.handshakes), keeping the
    /// last one's method and query. Best effort, in its own subtransaction:
    /// a failure (a lock, the workflow just dropped) loses the count, never
    /// the batch.
    fn record_handshake(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow_id: Uuid,
        kind: webhook_core::handshake::Handshake,
        method: &str,
        raw_query: Option<&str>,
    ) {
        let args = [
            DatumWithOid::from(pg_uuid(workflow_id)),
            DatumWithOid::from(kind.name()),
            DatumWithOid::from(method),
            DatumWithOid::from(raw_query),
        ];
        let privileged = self.privileged_role;
        let failure = match in_subtransaction(|| {
            run_privileged(privileged, || client.update(RECORD_HANDSHAKE, None, &args))
        }) {
            Ok(Ok(_)) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.describe(),
        };
        pgrx::debug1!("webhook_ext could not count a handshake: {failure}");
    }

    /// Writes the refusals counted since the last call (once per batch).
    pub fn flush_rejection_counts(&mut self, client: &mut SpiClient<'_>) {
        self.rejection_log.flush(client, self.privileged_role);
    }

    /// Records a refusal of a request to `workflow`; `reason` when the
    /// response does not say it all (see rejections::Refusal).
    fn record_refusal_of(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        request: &IncomingRequest,
        response: &Response,
        meta: &RequestMeta,
        reason: Option<&str>,
    ) {
        let refusal = rejections::Refusal {
            workflow_id: workflow.rules.id,
            request,
            response,
            reason,
            redact_headers: &workflow.redact_headers,
        };
        self.rejection_log.record(
            client,
            self.privileged_role,
            self.rejections_kept,
            refusal,
            meta,
        );
    }

    /// Stores the captured sample as the workflow's parameter list. `None` when
    /// the capture is no longer armed (another listener process took it).
    fn capture(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        sample: &CapturedSample,
    ) -> Result<Option<Response>, pgrx::spi::Error> {
        let id = workflow.rules.id;
        let mut sources: Vec<(Source, &[InferredParam])> = vec![
            (Source::Query, &sample.query),
            (Source::Header, &sample.headers),
        ];
        if let Some(body) = &sample.body {
            sources.push((Source::Body, body));
        }
        // The sources whose lists shrink are replaced first: the workflow's
        // parameter count then only falls and rises to its final value, and
        // never passes its cap (checked at every statement) on the way when
        // neither the list before nor the sample does.
        let held = |source: Source| {
            workflow
                .rules
                .params
                .iter()
                .filter(|p| p.source == source)
                .count()
        };
        sources.sort_by_key(|(source, new)| new.len() as i64 - held(*source) as i64);
        let sources: Vec<(&str, Value)> = sources
            .into_iter()
            .map(|(source, new)| (source.as_str(), rules::inferred_to_json(new)))
            .collect();
        let privileged = self.privileged_role;
        let result = in_subtransaction(|| {
            run_privileged(privileged, || -> Result<bool, pgrx::spi::Error> {
                // Taking the capture first, under the row lock, makes exactly one
                // request the sample even with several listener processes.
                let taken = client.update(
                    "UPDATE webhook.workflows SET captured_at = pg_catalog.now()
                      WHERE id OPERATOR(pg_catalog.=) $1 AND captured_at IS NULL
                        AND capture_until OPERATOR(pg_catalog.>) pg_catalog.now()",
                    None,
                    &[DatumWithOid::from(pg_uuid(id))],
                )?;
                if taken.is_empty() {
                    return Ok(false);
                }
                for (source, inferred) in &sources {
                    client.update(
                        "SELECT pg_catalog.count(*)
                           FROM webhook._replace_parameters($1, $2, $3::pg_catalog.jsonb, false)",
                        None,
                        &[
                            DatumWithOid::from(pg_uuid(id)),
                            DatumWithOid::from(*source),
                            DatumWithOid::from(inferred.to_string()),
                        ],
                    )?;
                }
                // The record type, once, to the whole new list: a parameter
                // moving between sources is then no drop and add.
                client.update(
                    "SELECT webhook._sync_record_type($1)",
                    None,
                    &[DatumWithOid::from(pg_uuid(id))],
                )?;
                Ok(true)
            })
        });
        self.catalog.forget(id);
        match result {
            Ok(Ok(true)) => Ok(Some(rules::capture_response(id, sample))),
            Ok(Ok(false)) => Ok(None),
            Ok(Err(e)) => Err(e),
            Err(e) if is_lock_timeout(&e) => Ok(Some(busy_retry_later())),
            Err(e) => Ok(Some(Response::json(
                500,
                &json!({"msg": "Sample could not be stored", "sqlstate": e.sqlstate}),
            ))),
        }
    }

    /// Stores the event. In the listener it is stored `pending` for an
    /// executor to run (src/execution); `webhook_trigger` and `webhook_replay`
    /// run the handler here, in the caller's transaction, as the first
    /// attempt. Returns what to answer once the transaction commits.
    pub fn accept(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        request: &IncomingRequest,
        accepted: Accepted,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<Handled, pgrx::spi::Error> {
        self.last_event_id = Some(id);
        let wf_rules = &workflow.rules;
        let success = rules::accepted_response(wf_rules, id, &accepted.params);
        let now = unix(SystemTime::now());
        let row = EventRow {
            id,
            workflow_id: wf_rules.id,
            received_at: unix(meta.received_at),
            method: request.method.clone(),
            query: Value::Object(request.query.clone()),
            headers: Value::Object(request.headers.clone()),
            params: Value::Object(accepted.params),
            body: stored_body(workflow, request),
            status: "pending",
            error: None,
            response: success.as_ref().map(response_json),
            origin: meta.origin,
            remote_addr: meta.remote_addr.map(|ip| ip.to_string()),
            handled_at: now,
            replay_of: meta.replay_of,
            raw_path: meta.raw_path.clone(),
            raw_query: meta.raw_query.clone(),
            attempts: 0,
            next_attempt_at: Some(now),
            // SAFETY: MyProcPid is set before any extension code runs.
            listener_pid: (!self.run_handlers_now).then_some(unsafe { pg_sys::MyProcPid }),
        };
        self.prepare_insert(client)?;
        let privileged = self.privileged_role;
        // A replay is a new run of a stored event, never a redelivery.
        let key = match meta.origin {
            Origin::Replay => None,
            _ => match &row.params {
                Value::Object(params) => {
                    delivery::delivery_key(&workflow.delivery_key, &request.headers, params)
                }
                _ => None,
            },
        };
        // Storage quotas bound what senders store, not what the owner's own
        // SQL (webhook_trigger, webhook_replay) does. Checked after the
        // delivery key is known: a redelivery still gets its original's answer.
        // The workflow's quota, then its owner's over all its workflows.
        let quota = (meta.origin == Origin::Http).then(|| {
            let bytes = webhook_core::quota::stored_bytes(request, body_copies(workflow, request));
            let workflow_quota = (
                Holder::Workflow(wf_rules.id),
                gucs::storage_quota(workflow.storage_quota),
            );
            let owner_quota =
                gucs::owner_storage_quota().map(|limit| (Holder::Owner(workflow.owner), limit));
            (bytes, [Some(workflow_quota), owner_quota])
        });
        if let Some((_, quotas)) = &quota {
            for (holder, limit) in quotas.iter().flatten() {
                if let Err(wait) = storage_quota::check(*holder, *limit) {
                    return self.over_storage_quota(
                        client,
                        workflow,
                        request,
                        meta,
                        key.as_deref(),
                        (*holder, wait),
                    );
                }
            }
        }
        let charge = || {
            if let Some((bytes, quotas)) = &quota {
                storage_quota::charge(quotas.iter().flatten(), *bytes);
            }
        };
        let claim = |client: &mut SpiClient<'_>| -> Option<(i64, Option<Value>)> {
            let key = key.as_deref()?;
            ok_or_raise(run_privileged(privileged, || {
                redelivery::claim_delivery(
                    client,
                    wf_rules.id,
                    key,
                    id,
                    workflow.delivery_window_secs,
                )
            }))
        };
        // Applications read a queued workflow's events (src/queue.rs): its
        // handler never runs them, not even from webhook_trigger.
        if self.run_handlers_now && !workflow.queued {
            return self.accept_and_run(client, workflow, row, success, &claim);
        }
        let executors_for = (!workflow.queued).then_some(workflow.owner);

        if key.is_none() && self.defer_inserts {
            // Stored with the rest of the batch (store_deferred).
            charge();
            self.last_deferred = Some(id);
            let handled = self.stored_response(workflow, &row, success);
            self.deferred.push((row, executors_for));
            return Ok(handled);
        }
        let insert_plan = self.insert_plan.as_ref().expect("prepared above");
        // Everything that can fail for this request runs in its subtransaction,
        // so one bad request never fails the others in the batch.
        let duplicate_of = std::cell::Cell::new(None);
        let stored = in_subtransaction(|| {
            if let Some((original, recorded)) = claim(client) {
                // A redelivery: the original's answer, nothing stored, no handler.
                duplicate_of.set(Some(original));
                return Err(delivery::duplicate_response(
                    wf_rules.id,
                    original,
                    recorded.as_ref(),
                ));
            }
            ok_or_raise(run_privileged(privileged, || {
                client.update(insert_plan, None, &row.args())
            }));
            Ok(())
        });
        if let Some(original) = duplicate_of.get() {
            self.last_event_id = Some(original);
        }
        Ok(match stored {
            Ok(Err(duplicate)) => {
                self.counted.redelivered(wf_rules.id);
                Handled::AfterCommit(duplicate)
            }
            Ok(Ok(())) => {
                charge();
                announce_stored(&mut self.stored_for_owners, id, executors_for);
                self.counted.accepted(wf_rules.id);
                self.stored_response(workflow, &row, success)
            }
            Err(error) => {
                let refusal = not_stored(&error);
                if refusal.status != BUSY_STATUS {
                    self.record_refusal_of(client, workflow, request, &refusal, meta, None);
                }
                Handled::Immediate(refusal)
            }
        })
    }

    /// The answer to a request whose workflow, or whose workflow's owner
    /// (`over`), has stored its quota in the current window: a redelivery of an event still gets the original's
    /// answer, anything else 429 until the window ends (counted as a
    /// rejection); nothing is stored.
    fn over_storage_quota(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        request: &IncomingRequest,
        meta: &RequestMeta,
        key: Option<&str>,
        (over, wait_secs): (Holder, u64),
    ) -> Result<Handled, pgrx::spi::Error> {
        let id = workflow.rules.id;
        self.last_event_id = None;
        if let Some(key) = key {
            let window = workflow.delivery_window_secs;
            let privileged = self.privileged_role;
            // In its own subtransaction: whatever goes wrong answers this
            // request alone, never the batch.
            let original = in_subtransaction(|| {
                run_privileged(privileged, || {
                    redelivery::find_delivery(client, id, key, window)
                })
            });
            if let Ok(Ok(Some((original, recorded)))) = original {
                self.last_event_id = Some(original);
                self.counted.redelivered(id);
                return Ok(Handled::Immediate(delivery::duplicate_response(
                    id,
                    original,
                    recorded.as_ref(),
                )));
            }
        }
        let message = match over {
            Holder::Workflow(_) => "Storage quota exceeded",
            Holder::Owner(_) => "Storage quota of the workflow's owner exceeded",
        };
        let response =
            Response::error(429, message).with_header("retry-after", &wait_secs.to_string());
        self.record_refusal_of(client, workflow, request, &response, meta, None);
        Ok(Handled::Immediate(response))
    }

    /// The answer for a stored (pending) event.
    fn stored_response(
        &self,
        workflow: &Workflow,
        row: &EventRow,
        success: Option<Response>,
    ) -> Handled {
        match &workflow.rules.response {
            ResponseConfig::Workflow { .. } => Handled::AwaitHandler {
                event_id: row.id,
                timeout_ms: self.handler_timeout(workflow),
                failure: rules::failure_response(&workflow.rules, row.id, &row.params_map()),
            },
            _ => Handled::AfterCommit(success.expect(SUCCESS_FOR_NON_WORKFLOW)),
        }
    }

    /// Stores the batch's deferred events: all in one statement, or, if that
    /// fails, each in its own subtransaction. Returns the answers for the
    /// events that could not be stored, by event id.
    pub fn store_deferred(
        &mut self,
        client: &mut SpiClient<'_>,
    ) -> Result<Vec<(i64, Response)>, pgrx::spi::Error> {
        let deferred = std::mem::take(&mut self.deferred);
        if deferred.is_empty() {
            return Ok(Vec::new());
        }
        self.prepare_insert(client)?;
        let privileged = self.privileged_role;
        // One statement for the whole batch; a lone request (or a batch with
        // a bad row) goes row by row through the one-row INSERT, which needs
        // no arrays built and unnested.
        let stored_all = if deferred.len() > 1 {
            if self.bulk_plan.is_none() {
                let types = EventRow::column_types();
                self.bulk_plan = Some(client.prepare_mut(insert_events_sql(), &types)?.keep());
            }
            let bulk = self.bulk_plan.as_ref().expect("prepared above");
            // The columns are built inside the subtransaction too: a value
            // PostgreSQL refuses (a number numeric_in cannot hold) fails this
            // statement, and then only its own row, not the batch.
            in_subtransaction(|| {
                let columns = EventRow::columns(deferred.iter().map(|(row, _)| row));
                ok_or_raise(run_privileged(privileged, || {
                    client.update(bulk, None, &columns)
                }));
            })
            .is_ok()
        } else {
            false
        };
        let mut failures = Vec::new();
        let insert_plan = self.insert_plan.as_ref().expect("prepared above");
        for (row, owner) in &deferred {
            let stored = if stored_all {
                Ok(())
            } else {
                in_subtransaction(|| {
                    ok_or_raise(run_privileged(privileged, || {
                        client.update(insert_plan, None, &row.args())
                    }));
                })
            };
            match stored {
                Ok(()) => {
                    announce_stored(&mut self.stored_for_owners, row.id, *owner);
                    self.counted.accepted(row.workflow_id);
                }
                Err(error) => {
                    let refusal = not_stored(&error);
                    if refusal.status != BUSY_STATUS {
                        self.rejection_log
                            .count_only(row.workflow_id, &refusal, row.received_at);
                    }
                    failures.push((row.id, refusal));
                }
            }
        }
        Ok(failures)
    }

    /// The deadline of the workflow's handler: its own, else
    /// webhook.handler_timeout (in `webhook_trigger`, the session's
    /// statement_timeout), never more than webhook.max_handler_timeout.
    pub fn handler_timeout(&self, workflow: &Workflow) -> Option<i32> {
        let cap = crate::pg::gucs::MAX_HANDLER_TIMEOUT_MS.get();
        Some(
            workflow
                .timeout_ms
                .or(self.handler_timeout_ms)
                .map_or(cap, |ms| ms.min(cap)),
        )
    }

    /// `webhook_trigger` and `webhook_replay`: stores the event and runs its
    /// handler as the first attempt, recorded like an executor's.
    fn accept_and_run(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        mut row: EventRow,
        success: Option<Response>,
        claim: &ClaimDelivery<'_>,
    ) -> Result<Handled, pgrx::spi::Error> {
        let wf_rules = &workflow.rules;
        let id = row.id;
        let insert_plan = self.insert_plan.as_ref().expect("prepared above");
        let privileged = self.privileged_role;
        let timeout = self.handler_timeout(workflow);
        let handler_plans = &mut self.handler_plans;
        let handler_lock_timeout = &self.handler_lock_timeout;
        let started = unix(SystemTime::now());
        // This run is the event's first attempt, recorded like an executor's.
        let first_attempt = |outcome: Outcome, response: &Response| {
            Attempt::finished(
                id,
                wf_rules.id,
                1,
                started,
                unix(SystemTime::now()),
                outcome,
                &workflow.retry,
                Some(response_json(response)),
            )
        };
        row.attempts = 1;
        let stored = std::cell::Cell::new(false);
        let redelivery_of = std::cell::Cell::new(None);
        let outcome = in_subtransaction(|| {
            if let Some((original, recorded)) = claim(client) {
                redelivery_of.set(Some(original));
                return delivery::duplicate_response(wf_rules.id, original, recorded.as_ref());
            }
            // Built once (each jsonb value parsed once) for the INSERT and the handler.
            let args = row.args();
            ok_or_raise(run_privileged(privileged, || {
                client.update(insert_plan, None, &args)
            }));
            stored.set(true);
            let returned = handler_plans.call(
                client,
                workflow,
                args,
                || row.params_map(),
                timeout,
                handler_lock_timeout,
            );
            let response = match wf_rules.response {
                ResponseConfig::Workflow { .. } => workflow.handler_response(returned),
                _ => success.clone().expect(SUCCESS_FOR_NON_WORKFLOW),
            };
            let attempt = first_attempt(Outcome::Succeeded, &response);
            ok_or_raise(run_privileged(privileged, || {
                record_attempts(client, &[attempt])
            }));
            response
        });
        if let Some(original) = redelivery_of.get() {
            self.last_event_id = Some(original);
        }
        let error = match outcome {
            Ok(response) => {
                if redelivery_of.get().is_none() {
                    notify_event(id, "succeeded");
                }
                return Ok(Handled::AfterCommit(response));
            }
            Err(error) if !stored.get() => return Ok(Handled::Immediate(not_stored(&error))),
            Err(error) => error,
        };

        // The handler failed: its subtransaction (and the optimistic event row)
        // is gone. Record the event and the failed attempt.
        let response = match wf_rules.response {
            ResponseConfig::Workflow { .. } => {
                rules::failure_response(wf_rules, id, &row.params_map())
            }
            _ => success.expect(SUCCESS_FOR_NON_WORKFLOW),
        };
        let attempt = first_attempt(Outcome::from_error(error), &response);
        let status = attempt.status;
        row.status = "pending";
        row.attempts = 0;
        let recorded = in_subtransaction(|| {
            // The claim was rolled back with the handler's subtransaction.
            claim(client);
            ok_or_raise(run_privileged(privileged, || {
                client.update(insert_plan, None, &row.args())?;
                record_attempts(client, std::slice::from_ref(&attempt))
            }));
        });
        Ok(match recorded {
            Ok(()) => {
                notify_event(id, status);
                Handled::AfterCommit(response)
            }
            Err(error) => Handled::Immediate(not_stored(&error)),
        })
    }

    fn prepare_insert(&mut self, client: &SpiClient<'_>) -> Result<(), pgrx::spi::Error> {
        if self.insert_plan.is_none() {
            self.insert_plan = Some(
                client
                    .prepare_mut(insert_event_sql(), &EventRow::arg_types())?
                    .keep(),
            );
        }
        Ok(())
    }
}

/// The next event id from the events' sequence (see [`Pipeline::begin_batch`]),
/// without a statement to run: ids are taken in arrival order, as requests
/// are accepted.
pub fn next_event_id(sequence: pg_sys::Oid) -> i64 {
    // SAFETY: the SQL function nextval(regclass), called directly on the main
    // thread inside a transaction; it raises an ERROR if the sequence is gone.
    unsafe {
        pgrx::direct_function_call::<i64>(
            pg_sys::nextval_oid,
            &[Some(pg_sys::Datum::from(sequence))],
        )
    }
    .expect("nextval never returns NULL")
}

/// Another session holds a lock this request needs (webhook.lock_timeout).
fn is_lock_timeout(error: &spi::CaughtSqlError) -> bool {
    error.sqlstate == "55P03"
}

fn busy_retry_later() -> Response {
    Response::retry_later("Workflow busy, retry later")
}

/// Whether the event's parameters hold its body: the whole-body parameter,
/// or a body parsed into parameters (JSON, a form, multipart, XML). Plain
/// text and other bodies are in the body column only.
fn params_hold_body(workflow: &Workflow, request: &IncomingRequest) -> bool {
    use webhook_core::body::BodyKind;
    workflow.rules.full_body_param.is_some()
        || matches!(
            &request.body,
            webhook_core::request::BodyOutcome::Parsed(parsed)
                if matches!(parsed.kind, BodyKind::Json | BodyKind::Form | BodyKind::Multipart | BodyKind::Xml)
        )
}

/// What `webhook.events.body` keeps: the body text, unless the workflow
/// keeps only the parameters and they hold the body; any other body is kept
/// whatever the setting, since it is all there is.
fn stored_body(workflow: &Workflow, request: &IncomingRequest) -> Option<String> {
    if workflow.keep_body || !params_hold_body(workflow, request) {
        rules::stored_body(&request.body)
    } else {
        None
    }
}

/// How many copies of the body text an event stores: in the body column,
/// in the parameters, or both.
fn body_copies(workflow: &Workflow, request: &IncomingRequest) -> u64 {
    let in_params = params_hold_body(workflow, request);
    let in_column = workflow.keep_body || !in_params;
    u64::from(in_params) + u64::from(in_column)
}

pub(super) fn run_privileged<R>(role: Option<pg_sys::Oid>, f: impl FnOnce() -> R) -> R {
    match role {
        Some(role) => as_role_with_safe_path(role, f),
        None => f(),
    }
}

/// The answer when a request's event could not be stored: a data error in
/// the request (class 22, e.g. a value jsonb refuses) is the caller's 400;
/// anything else is ours.
/// The status of [`busy_retry_later`]: a request that found its workflow
/// locked was not refused, only delayed, and is not counted as a refusal.
const BUSY_STATUS: u16 = 503;

/// The answer to a request whose event could not be stored: counted as a
/// refusal of its workflow (webhook.rejection_counts) unless it was only
/// delayed (busy).
fn not_stored(error: &spi::CaughtSqlError) -> Response {
    if is_lock_timeout(error) {
        busy_retry_later()
    } else if error.sqlstate.starts_with("22") {
        Response::json(
            400,
            &json!({"msg": format!("Request cannot be stored: {}", error.message)}),
        )
    } else {
        Response::json(
            500,
            &json!({"msg": "Event could not be stored", "sqlstate": error.sqlstate}),
        )
    }
}

/// An event stored: announced, and its owner added to those whose executors
/// are woken after the commit (`None`: a queued workflow's, announced to its
/// consumers whatever webhook.notify says, and no executor woken).
fn announce_stored(
    woken: &mut Vec<pg_sys::Oid>,
    event_id: i64,
    executors_for: Option<pg_sys::Oid>,
) {
    match executors_for {
        Some(owner) => {
            notify_event(event_id, "pending");
            woken.push(owner);
        }
        None => notify_consumers(event_id),
    }
}
