//! `webhook_trigger` and `webhook_replay`: the listener's pipeline, run from SQL
//! in the caller's transaction.

use std::time::SystemTime;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use webhook_core::body::{BodyKind, ParsedBody};
use webhook_core::request::{Accepted, BodyOutcome, IncomingRequest};

use crate::ingest::pipeline::{Pipeline, RequestMeta};
use crate::pg::catalog::pg_uuid;
use crate::pg::errors::SqlError;
use crate::pg::event_row::{response_json, Origin, EVENTS};
use crate::pg::spi::as_role_with_safe_path;

/// Runs the same pipeline as an HTTP request (validation, event, handler,
/// response) and returns the response HTTP would have sent:
/// `{"status", "headers", "body", "event_id"}`.
#[pg_extern(volatile)]
fn webhook_trigger(
    workflow: pgrx::Uuid,
    body: default!(Option<JsonB>, "'{}'"),
    query: default!(Option<JsonB>, "'{}'"),
    headers: default!(Option<JsonB>, "'{}'"),
    method: default!(Option<&str>, "'POST'"),
) -> JsonB {
    let workflow_id = Uuid::from_bytes(*workflow.as_bytes());
    require_visible_workflow(workflow_id);
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let params = match &body {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => Map::from_iter([("body".to_string(), other.clone())]),
    };
    let mut request = IncomingRequest {
        method: method.unwrap_or("POST").trim().to_ascii_uppercase(),
        query: object(query),
        headers: object(headers)
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        body: BodyOutcome::Parsed(ParsedBody {
            params,
            text: if body.is_null() {
                String::new()
            } else {
                body.to_string()
            },
            kind: if body.is_null() {
                BodyKind::Empty
            } else {
                BodyKind::Json
            },
        }),
        raw_body: Default::default(),
    };
    let meta = RequestMeta {
        received_at: SystemTime::now(),
        remote_addr: None,
        origin: Origin::Trigger,
        replay_of: None,
        raw_path: None,
        raw_query: None,
        verdict: None,
    };
    let mut pipeline = Pipeline::new(Some(crate::privileged::extension_owner()), None);
    let privileged = pipeline.privileged_role;
    let handled = Spi::connect_mut(|client| {
        let mut next_id = |c: &SpiClient<'_>| nextval_event_id(c, privileged);
        pipeline.handle(client, workflow_id, &mut request, &meta, &mut next_id)
    })
    .unwrap_or_else(|e| SqlError::internal("webhook_trigger", e).report());
    let response = handled.into_response();
    let mut out = response_json(&response);
    out["event_id"] = json!(pipeline.last_event_id);
    JsonB(out)
}

/// Fires the handler again for a stored event, as a new event with origin
/// 'replay' that points at the original; returns the response as
/// `webhook_trigger` does.
#[pg_extern(volatile)]
fn webhook_replay(event: i64) -> JsonB {
    let stored = Spi::connect(|client| {
        // Read by column name; the jsonb columns as text, parsed below.
        let table = client.select(
            "SELECT e.workflow_id, e.method, e.query::pg_catalog.text AS query,
                    e.headers::pg_catalog.text AS headers, e.params::pg_catalog.text AS params,
                    COALESCE(e.body, '') AS body
               FROM webhook.events e WHERE e.id OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[DatumWithOid::from(event)],
        )?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = table.first();
        let text = |column: &str| {
            row.get_by_name::<String, _>(column)
                .map(Option::unwrap_or_default)
        };
        let workflow_id = row
            .get_by_name::<pgrx::Uuid, _>(EVENTS.workflow_id)?
            .map(|id| Uuid::from_bytes(*id.as_bytes()))
            .unwrap_or_default();
        Ok(Some((
            workflow_id,
            text(EVENTS.method)?,
            text(EVENTS.query)?,
            text(EVENTS.headers)?,
            text(EVENTS.params)?,
            text(EVENTS.body)?,
        )))
    })
    .unwrap_or_else(|e| SqlError::internal("webhook_replay", e).report());
    let Some((workflow_id, method, query, headers, params, body)) = stored else {
        SqlError::EventNotFound(event).report()
    };
    let parse = |text: &str| serde_json::from_str::<Map<String, Value>>(text).unwrap_or_default();
    let request = IncomingRequest {
        method,
        query: parse(&query),
        headers: parse(&headers),
        body: BodyOutcome::Parsed(ParsedBody {
            params: Map::new(),
            text: body,
            kind: BodyKind::Other,
        }),
        raw_body: Default::default(),
    };
    let meta = RequestMeta {
        received_at: SystemTime::now(),
        remote_addr: None,
        origin: Origin::Replay,
        replay_of: Some(event),
        raw_path: None,
        raw_query: None,
        verdict: None,
    };
    let mut pipeline = Pipeline::new(Some(crate::privileged::extension_owner()), None);
    let privileged = pipeline.privileged_role;
    let response = Spi::connect_mut(|client| {
        let Some(workflow) = pipeline.catalog.get(client, workflow_id)? else {
            return Ok(None);
        };
        let id = nextval_event_id(client, privileged)?;
        let accepted = Accepted {
            params: parse(&params),
        };
        pipeline
            .accept(client, &workflow, &request, accepted, &meta, id)
            .map(Some)
    })
    .unwrap_or_else(|e| SqlError::internal("webhook_replay", e).report());
    let Some(response) = response else {
        require_visible_workflow(workflow_id);
        unreachable!("the workflow was visible a moment ago")
    };
    let mut out = response_json(&response.into_response());
    out["event_id"] = json!(pipeline.last_event_id);
    JsonB(out)
}

fn object(value: Option<JsonB>) -> Map<String, Value> {
    match value.map(|v| v.0) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Raises "workflow … does not exist" unless the caller can see the workflow
/// (row-level security decides, as for every other API function).
fn require_visible_workflow(id: Uuid) {
    crate::privileged::require_workflow(pg_uuid(id), false);
}

/// The next event id in an ordinary backend, by `nextval` as the extension's
/// owner when the caller may not use the sequence (the listener instead calls
/// the sequence directly: src/ingest/pipeline.rs `next_event_id`).
fn nextval_event_id(
    client: &SpiClient<'_>,
    privileged: Option<pg_sys::Oid>,
) -> Result<i64, pgrx::spi::Error> {
    let fetch = || {
        client
            .select(
                "SELECT pg_catalog.nextval('webhook.events_id_seq')",
                Some(1),
                &[],
            )?
            .first()
            .get_one::<i64>()
    };
    let id = match privileged {
        Some(role) => as_role_with_safe_path(role, fetch)?,
        None => fetch()?,
    };
    id.ok_or(pgrx::spi::Error::NoTupleTable)
}
