//! The `webhook.events` row, its columns in one place: the INSERT the
//! pipeline stores an event with, the `ROW(...)` a handler receives (built from
//! the same parameters, so the handler gets its argument without reading the
//! row back), and what the row records of a response.

use std::time::SystemTime;

use pgrx::datum::{DatumWithOid, IntoDatum};
use pgrx::{JsonB, PgOid};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use webhook_core::request::Response;

use super::catalog::pg_uuid;
use super::jsonb::to_jsonb;

/// Where an event came from (`webhook.events.origin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Http,
    Trigger,
    Replay,
}

impl Origin {
    pub fn parse(text: &str) -> Origin {
        match text {
            "trigger" => Origin::Trigger,
            "replay" => Origin::Replay,
            _ => Origin::Http,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Origin::Http => "http",
            Origin::Trigger => "trigger",
            Origin::Replay => "replay",
        }
    }
}

pub const INSERT_EVENT: &str = "
INSERT INTO webhook.events (id, workflow_id, received_at, method, query, headers, params, body,
                            status, error, response, origin, remote_addr, handled_at, replay_of,
                            raw_path, raw_query, attempts, next_attempt_at, listener_pid)
VALUES ($1, $2, pg_catalog.to_timestamp($3), $4, $5, $6, $7, $8,
        $9, $10, $11, $12, $13::pg_catalog.inet, pg_catalog.to_timestamp($14), $15, $16, $17,
        $18, pg_catalog.to_timestamp($19), $20)";

/// The same INSERT for many rows at once ([`EventRow::columns`] of the rows,
/// one array per column): the listener stores a batch's events with one
/// statement.
pub const INSERT_EVENTS: &str = "
INSERT INTO webhook.events (id, workflow_id, received_at, method, query, headers, params, body,
                            status, error, response, origin, remote_addr, handled_at, replay_of,
                            raw_path, raw_query, attempts, next_attempt_at, listener_pid)
SELECT r.id, r.workflow_id, pg_catalog.to_timestamp(r.received_at), r.method,
       r.query, r.headers, r.params, r.body,
       r.status, r.error, r.response, r.origin, r.remote_addr::pg_catalog.inet,
       pg_catalog.to_timestamp(r.handled_at), r.replay_of, r.raw_path, r.raw_query, r.attempts,
       pg_catalog.to_timestamp(r.next_attempt_at), r.listener_pid
  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),
                  pg_catalog.unnest($2::pg_catalog.uuid[]),
                  pg_catalog.unnest($3::pg_catalog.float8[]),
                  pg_catalog.unnest($4::pg_catalog.text[]),
                  pg_catalog.unnest($5::pg_catalog.jsonb[]),
                  pg_catalog.unnest($6::pg_catalog.jsonb[]),
                  pg_catalog.unnest($7::pg_catalog.jsonb[]),
                  pg_catalog.unnest($8::pg_catalog.text[]),
                  pg_catalog.unnest($9::pg_catalog.text[]),
                  pg_catalog.unnest($10::pg_catalog.text[]),
                  pg_catalog.unnest($11::pg_catalog.jsonb[]),
                  pg_catalog.unnest($12::pg_catalog.text[]),
                  pg_catalog.unnest($13::pg_catalog.text[]),
                  pg_catalog.unnest($14::pg_catalog.float8[]),
                  pg_catalog.unnest($15::pg_catalog.int8[]),
                  pg_catalog.unnest($16::pg_catalog.text[]),
                  pg_catalog.unnest($17::pg_catalog.text[]),
                  pg_catalog.unnest($18::pg_catalog.int4[]),
                  pg_catalog.unnest($19::pg_catalog.float8[]),
                  pg_catalog.unnest($20::pg_catalog.int4[]))
    AS r (id, workflow_id, received_at, method, query, headers, params, body, status, error,
          response, origin, remote_addr, handled_at, replay_of, raw_path, raw_query, attempts,
          next_attempt_at, listener_pid)";

/// The handler's argument, in table column order, from the INSERT's
/// parameters: status `pending`, and `attempts` the number of the attempt
/// that is running (1 for the first).
pub const EVENT_ROW: &str = "ROW($1, $2, pg_catalog.to_timestamp($3), $4, $5, $6, $7, $8, \
     'pending'::pg_catalog.text, NULL::pg_catalog.text, NULL::pg_catalog.jsonb, $12, \
     $13::pg_catalog.inet, pg_catalog.to_timestamp($14), $15, $16, $17, $18, \
     NULL::pg_catalog.timestamptz, $20)::webhook.events";

pub fn unix(time: SystemTime) -> f64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What `webhook.events.response` records of a response.
pub fn response_json(response: &Response) -> Value {
    let content_type = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.clone());
    let body = if content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        serde_json::from_slice(&response.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&response.body).into_owned()))
    } else {
        Value::String(String::from_utf8_lossy(&response.body).into_owned())
    };
    let headers: Map<String, Value> = response
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), Value::String(value.clone())))
        .collect();
    json!({"status": response.status, "headers": headers, "body": body})
}

/// One `webhook.events` row, as the INSERT and the handler call take it.
pub struct EventRow {
    pub id: i64,
    pub workflow_id: Uuid,
    pub received_at: f64,
    pub method: String,
    pub query: Value,
    pub headers: Value,
    pub params: Value,
    pub body: Option<String>,
    pub status: &'static str,
    pub error: Option<String>,
    pub response: Option<Value>,
    pub origin: Origin,
    pub remote_addr: Option<String>,
    pub handled_at: f64,
    pub replay_of: Option<i64>,
    pub raw_path: Option<String>,
    pub raw_query: Option<String>,
    /// Attempts made (stored), or the attempt running (the handler's argument).
    pub attempts: i32,
    /// When the next attempt is due (Unix seconds); `None` once done.
    pub next_attempt_at: Option<f64>,
    pub listener_pid: Option<i32>,
}

impl EventRow {
    /// The parsed parameters, as templates take them.
    pub fn params_map(&self) -> Map<String, Value> {
        match &self.params {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        }
    }

    /// [`INSERT_EVENTS`]'s parameters for these rows: one array per column.
    pub fn columns<'a>(
        rows: impl Iterator<Item = &'a EventRow> + Clone,
    ) -> Vec<DatumWithOid<'static>> {
        use super::spi::array_column as column;
        vec![
            column(rows.clone(), |r| r.id),
            column(rows.clone(), |r| pg_uuid(r.workflow_id)),
            column(rows.clone(), |r| r.received_at),
            column(rows.clone(), |r| r.method.as_str()),
            column(rows.clone(), |r| to_jsonb(&r.query)),
            column(rows.clone(), |r| to_jsonb(&r.headers)),
            column(rows.clone(), |r| to_jsonb(&r.params)),
            column(rows.clone(), |r| r.body.as_deref()),
            column(rows.clone(), |r| r.status),
            column(rows.clone(), |r| r.error.as_deref()),
            column(rows.clone(), |r| r.response.as_ref().map(to_jsonb)),
            column(rows.clone(), |r| r.origin.as_str()),
            column(rows.clone(), |r| r.remote_addr.as_deref()),
            column(rows.clone(), |r| r.handled_at),
            column(rows.clone(), |r| r.replay_of),
            column(rows.clone(), |r| r.raw_path.as_deref()),
            column(rows.clone(), |r| r.raw_query.as_deref()),
            column(rows.clone(), |r| r.attempts),
            column(rows.clone(), |r| r.next_attempt_at),
            column(rows, |r| r.listener_pid),
        ]
    }

    /// [`INSERT_EVENTS`]'s parameter types: an array of each column's type.
    pub fn column_types() -> Vec<PgOid> {
        Self::arg_types()
            .into_iter()
            // SAFETY: a catalog lookup of built-in types' array types, on the
            // main thread inside a transaction.
            .map(|element| PgOid::from(unsafe { pgrx::pg_sys::get_array_type(element.value()) }))
            .collect()
    }

    pub fn arg_types() -> Vec<PgOid> {
        let text = PgOid::from(String::type_oid());
        let jsonb = PgOid::from(JsonB::type_oid());
        vec![
            PgOid::from(i64::type_oid()),
            PgOid::from(pgrx::Uuid::type_oid()),
            PgOid::from(f64::type_oid()),
            text,
            jsonb,
            jsonb,
            jsonb,
            text,
            text,
            text,
            jsonb,
            text,
            text,
            PgOid::from(f64::type_oid()),
            PgOid::from(i64::type_oid()),
            text,
            text,
            PgOid::from(i32::type_oid()),
            PgOid::from(f64::type_oid()),
            PgOid::from(i32::type_oid()),
        ]
    }

    pub fn args(&self) -> Vec<DatumWithOid<'static>> {
        self.args_with_json([
            DatumWithOid::from(to_jsonb(&self.query)),
            DatumWithOid::from(to_jsonb(&self.headers)),
            DatumWithOid::from(to_jsonb(&self.params)),
        ])
    }

    /// [`EventRow::args`] with query, headers and params given as datums
    /// (as an executor read them from the table: no conversion either way).
    pub fn args_with_json<'a>(
        &self,
        [query, headers, params]: [DatumWithOid<'a>; 3],
    ) -> Vec<DatumWithOid<'a>> {
        vec![
            DatumWithOid::from(self.id),
            DatumWithOid::from(pg_uuid(self.workflow_id)),
            DatumWithOid::from(self.received_at),
            DatumWithOid::from(self.method.clone()),
            query,
            headers,
            params,
            DatumWithOid::from(self.body.clone()),
            DatumWithOid::from(self.status),
            DatumWithOid::from(self.error.clone()),
            DatumWithOid::from(self.response.as_ref().map(to_jsonb)),
            DatumWithOid::from(self.origin.as_str()),
            DatumWithOid::from(self.remote_addr.clone()),
            DatumWithOid::from(self.handled_at),
            DatumWithOid::from(self.replay_of),
            DatumWithOid::from(self.raw_path.clone()),
            DatumWithOid::from(self.raw_query.clone()),
            DatumWithOid::from(self.attempts),
            DatumWithOid::from(self.next_attempt_at),
            DatumWithOid::from(self.listener_pid),
        ]
    }
}
