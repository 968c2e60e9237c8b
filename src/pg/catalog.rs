//! Workflow definitions as the pipeline needs them, loaded through SPI and
//! cached per process until a change is signalled (see the `_config_changed`
//! triggers in sql/api.sql and src/pg/invalidation.rs): a change to some
//! workflows reloads those, and only a change to functions, schemas or roles
//! (or a TRUNCATE) reloads them all.

use std::collections::HashMap;
use std::ffi::CString;
use std::rc::Rc;
use std::sync::Arc;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use serde_json::Value;
use uuid::Uuid;

use webhook_core::access::Limit;
use webhook_core::delivery::KeySource;
use webhook_core::retry::RetryPolicy;

use crate::pg::front_door::{Directory, FrontDoor};

use super::errors::SqlError;
use super::event_row::event_row_sql;
use super::spi::{as_role_with_safe_path, reset_value};
use webhook_core::request::{HandlerOutput, ResponseConfig, WorkflowRules};
use webhook_core::validate::{ParamSpec, Source};

/// How to call a workflow's handler.
#[derive(Debug, Clone)]
pub struct HandlerCall {
    /// The SPI statement; `$1..$20` are the event columns (see src/pg/event_row.rs).
    pub sql: String,
    /// For the workflow method: how to label what it returns.
    pub output: Option<HandlerOutput>,
    /// When it takes the workflow's record type: the record's attributes,
    /// whose values (and keys) the call takes as the two parameters after
    /// the event's columns (src/execution/handler_call.rs).
    pub record: Option<Vec<webhook_core::record::Attribute>>,
}

pub struct Workflow {
    pub rules: WorkflowRules,
    /// Capture window end (Unix seconds) while a capture is armed and not done.
    pub capture_until: Option<f64>,
    pub owner: pg_sys::Oid,
    /// Why the handler cannot run, if it cannot: it no longer exists, or the
    /// owner lost USAGE on its schema or EXECUTE on it.
    pub handler: Result<HandlerCall, HandlerUnavailable>,
    /// The workflow method's own deadline (ms), overriding webhook.handler_timeout.
    pub timeout_ms: Option<i32>,
    /// The search_path the handler runs with: the owner's `ALTER ROLE … SET
    /// search_path` if any (the path the owner's own sessions get), else the
    /// server default. Resolved once, when the workflow is loaded.
    pub handler_search_path: CString,
    /// Where a request's delivery key is, and how long (seconds) a key is
    /// remembered.
    pub delivery_key: KeySource,
    pub delivery_window_secs: f64,
    /// What happens after a failed attempt.
    pub retry: RetryPolicy,
    /// How its request bodies are read and verified, as the network thread
    /// sees it too (src/pg/front_door.rs).
    pub front_door: Arc<FrontDoor>,
    /// Headers stored redacted besides webhook_core::verify::CREDENTIAL_HEADERS.
    pub redact_headers: Vec<String>,
    /// The client networks it accepts requests from (`None`: any).
    pub allowed_networks: Option<Vec<ipnet::IpNet>>,
    /// Its rate limit as a whole, and per client address.
    pub rate_limit: Option<Limit>,
    pub client_rate_limit: Option<Limit>,
    /// Its own storage quota (bytes per webhook.storage_quota_window), if
    /// lower than the server's (`gucs::storage_quota`).
    pub storage_quota: Option<i64>,
    /// Whether events keep the raw body text besides the parameters.
    pub keep_body: bool,
    /// Its events are read by applications (webhook_read), not run by its
    /// handler: no executor is woken for them.
    pub queued: bool,
}

impl Workflow {
    /// What the `workflow` method answers with the handler's return value.
    pub fn handler_response(&self, returned: Option<String>) -> webhook_core::request::Response {
        let output = self
            .handler
            .as_ref()
            .ok()
            .and_then(|h| h.output)
            .unwrap_or(HandlerOutput::Text);
        webhook_core::request::handler_response(output, returned)
    }

    pub fn capture_armed(&self, now_unix: f64) -> bool {
        self.capture_until.is_some_and(|until| until > now_unix)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerUnavailable {
    Dropped,
    NotCallableByOwner,
}

/// Most workflow definitions a listener process keeps.
const MAX_CACHED_WORKFLOWS: usize = 10_000;

#[derive(Default)]
pub struct Catalog {
    epoch: Option<String>,
    workflows: HashMap<Uuid, Option<Rc<Workflow>>>,
    /// The role definitions are loaded as (with the pinned search_path),
    /// when the session's own is not the one to read them with (an
    /// executor's session is its owner's).
    load_as: Option<pg_sys::Oid>,
    /// Where a listener's network thread reads what it needs of each
    /// workflow; kept the same as this cache.
    directory: Option<Arc<Directory>>,
    /// The horizon of the last look at webhook.workflow_changes (the oldest
    /// transaction still running then, as an xid8), and when it was taken.
    changes_seen: Option<(i64, std::time::Instant)>,
    /// What that look found: (workflow, the transaction that changed it).
    /// While an old transaction holds the horizon back, every look finds
    /// the same rows again; only new ones are forgotten.
    changes_found: HashMap<Uuid, i64>,
}

/// A process that has not looked at webhook.workflow_changes for this long
/// reloads everything instead: rows of deleted workflows are kept an hour
/// (src/ingest/listener_main.rs), so a look this late could miss one.
const MAX_UNSEEN: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// The new horizon: the oldest transaction running now (a transaction that
/// commits later has an xid at or after it, so the next look, from there,
/// sees its rows); and the workflows changed by transactions at or after
/// `$1` (an xid8 as int8; NULL on the first look: the new horizon), with the
/// transactions that changed them.
const CHANGED_SINCE: &str = "
WITH horizon AS (
    SELECT pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot()) AS xmin
), changed AS (
    SELECT c.workflow_id, c.changed_xid FROM webhook.workflow_changes c, horizon h
     WHERE c.changed_xid OPERATOR(pg_catalog.>=)
           coalesce($1::pg_catalog.text::pg_catalog.xid8, h.xmin)
)
SELECT (SELECT h.xmin::pg_catalog.text::pg_catalog.int8 FROM horizon h) AS horizon,
       ARRAY(SELECT c.workflow_id::pg_catalog.text FROM changed c ORDER BY c.changed_xid, c.workflow_id)
           AS workflow_ids,
       ARRAY(SELECT c.changed_xid::pg_catalog.text::pg_catalog.int8 FROM changed c
              ORDER BY c.changed_xid, c.workflow_id) AS changed_xids";

/// One workflow's definition as a jsonb object: src/pg/workflow_definition.sql.
const LOAD_SQL: &str = include_str!("workflow_definition.sql");

/// What src/pg/workflow_definition.sql returns, by key. Every field is what
/// the tables hold (NULL where a join found nothing: a dropped owner or
/// handler).
#[derive(serde::Deserialize)]
struct WorkflowDefinition {
    enabled: bool,
    allowed_methods: Vec<String>,
    full_body: bool,
    full_body_param: Option<String>,
    response_method: String,
    response_status: Option<i32>,
    response_content_type: Option<String>,
    response_body: Option<String>,
    response_headers: Option<Value>,
    response_timeout_ms: Option<i64>,
    failure_status: Option<i32>,
    failure_content_type: Option<String>,
    failure_body: Option<String>,
    capture_until: Option<f64>,
    owner: Option<i64>,
    handler_name: Option<String>,
    handler_kind: Option<String>,
    handler_returns: Option<String>,
    handler_takes: Option<String>,
    record_type: Option<String>,
    parameters: Vec<ParameterDefinition>,
    owner_search_path: Option<String>,
    handler_callable: Option<bool>,
    discriminator_source: Option<String>,
    discriminator_name: Option<String>,
    delivery_key_source: Option<String>,
    delivery_key_name: Option<String>,
    delivery_key_window_secs: f64,
    max_attempts: i32,
    retry_delay_secs: f64,
    retry_max_delay_secs: f64,
    redact_headers: Vec<String>,
    allowed_networks: Option<Vec<String>>,
    rate_limit: Option<f64>,
    rate_burst: Option<i32>,
    client_rate_limit: Option<f64>,
    client_rate_burst: Option<i32>,
    verifications: Option<Value>,
    handshake: Option<String>,
    storage_quota: Option<i64>,
    keep_body: bool,
    queued: bool,
}

#[derive(serde::Deserialize)]
struct ParameterDefinition {
    name: String,
    source: String,
    #[serde(rename = "type")]
    ty: String,
    required: bool,
    strict: bool,
    nullable: bool,
    required_for: Option<Vec<String>>,
    depth: i32,
}

impl Catalog {
    /// A catalog that loads definitions as `role`; cache hits switch nothing.
    pub fn loading_as(role: pg_sys::Oid) -> Catalog {
        Catalog {
            load_as: Some(role),
            ..Catalog::default()
        }
    }

    /// A catalog that publishes what it loads to a listener's network thread.
    pub fn publishing_to(directory: Arc<Directory>) -> Catalog {
        Catalog {
            directory: Some(directory),
            ..Catalog::default()
        }
    }

    /// Drops cached definitions when the extension was re-created since the
    /// last batch (`webhook.config_version.epoch`, read by `Pipeline::begin_batch`).
    pub fn observe_epoch(&mut self, epoch: String) {
        let current = Some(epoch);
        if current != self.epoch {
            self.clear_workflows();
            self.epoch = current;
        }
    }

    /// Whether [`Catalog::forget_changed`] is due even without a signal: the
    /// first time, and after [`MAX_UNSEEN`].
    pub fn needs_look(&self) -> bool {
        self.changes_seen
            .is_none_or(|(_, at)| at.elapsed() > MAX_UNSEEN)
    }

    /// Forgets the workflows changed since the last look (everything, on
    /// the first look or one after [`MAX_UNSEEN`]). Runs in the caller's
    /// transaction, after the invalidations that signalled the change.
    pub fn forget_changed(&mut self, client: &SpiClient<'_>) -> Result<(), pgrx::spi::Error> {
        let horizon = match self.changes_seen {
            Some((xmin, at)) if at.elapsed() <= MAX_UNSEEN => Some(xmin),
            _ => None,
        };
        let table = client.select(CHANGED_SINCE, Some(1), &[DatumWithOid::from(horizon)])?;
        let row = table.first();
        let xmin = row.get_by_name::<i64, _>("horizon")?.unwrap_or(0);
        let ids = row
            .get_by_name::<Vec<String>, _>("workflow_ids")?
            .unwrap_or_default();
        let xids = row
            .get_by_name::<Vec<i64>, _>("changed_xids")?
            .unwrap_or_default();
        let found: HashMap<Uuid, i64> = ids
            .iter()
            .zip(xids)
            .filter_map(|(id, xid)| Some((id.parse().ok()?, xid)))
            .collect();
        match horizon {
            None => self.clear_workflows(),
            Some(_) => {
                for (id, xid) in &found {
                    if self.changes_found.get(id) != Some(xid) {
                        self.forget(*id);
                    }
                }
            }
        }
        self.changes_found = found;
        self.changes_seen = Some((xmin, std::time::Instant::now()));
        Ok(())
    }

    pub fn forget(&mut self, id: Uuid) {
        self.workflows.remove(&id);
        if let Some(directory) = &self.directory {
            directory.forget(id);
        }
    }

    pub fn clear(&mut self) {
        self.clear_workflows();
        self.epoch = None;
    }

    fn clear_workflows(&mut self) {
        self.workflows.clear();
        if let Some(directory) = &self.directory {
            directory.clear();
        }
    }

    /// The workflow, or `None` when it does not exist.
    pub fn get(
        &mut self,
        client: &SpiClient<'_>,
        id: Uuid,
    ) -> Result<Option<Rc<Workflow>>, pgrx::spi::Error> {
        if let Some(cached) = self.workflows.get(&id) {
            return Ok(cached.clone());
        }
        if self.workflows.len() >= MAX_CACHED_WORKFLOWS {
            // Bounded memory for traffic spread over very many workflows.
            self.clear_workflows();
        }
        let loaded = match self.load_as {
            Some(role) => as_role_with_safe_path(role, || load(client, id)),
            None => load(client, id),
        }?
        .map(Rc::new);
        self.publish(id, loaded.as_deref());
        self.workflows.insert(id, loaded.clone());
        Ok(loaded)
    }

    /// The workflow, loaded if it is not cached, and published to the
    /// network thread either way when it is enabled (the directory can have
    /// been emptied on its own, see src/pg/front_door.rs).
    pub fn look_up(
        &mut self,
        client: &SpiClient<'_>,
        id: Uuid,
    ) -> Result<Option<Rc<Workflow>>, pgrx::spi::Error> {
        let workflow = self.get(client, id)?;
        self.publish(id, workflow.as_deref());
        Ok(workflow)
    }

    /// Only enabled workflows are published: see src/pg/front_door.rs.
    fn publish(&self, id: Uuid, workflow: Option<&Workflow>) {
        if let Some(directory) = &self.directory {
            match workflow {
                Some(workflow) if workflow.rules.enabled => {
                    directory.publish(id, workflow.front_door.clone())
                }
                _ => directory.forget(id),
            }
        }
    }
}

pub fn pg_uuid(id: Uuid) -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*id.as_bytes())
}

fn load(client: &SpiClient<'_>, id: Uuid) -> Result<Option<Workflow>, pgrx::spi::Error> {
    let args = [DatumWithOid::from(pg_uuid(id))];
    let table = client.select(LOAD_SQL, Some(1), &args)?;
    if table.is_empty() {
        return Ok(None);
    }
    let Some(JsonB(definition)) = table.first().get::<JsonB>(1)? else {
        return Ok(None);
    };
    let definition = serde_json::from_value::<WorkflowDefinition>(definition)
        .unwrap_or_else(|e| SqlError::internal("reading a workflow definition", e).report());
    Ok(workflow(id, definition))
}

/// The workflow a definition describes; `None` when its owner role was
/// dropped: the workflow is then unreachable, as if deleted (a role that
/// later takes the name has another OID).
fn workflow(id: Uuid, d: WorkflowDefinition) -> Option<Workflow> {
    let owner = d.owner?;
    let listed: Vec<webhook_core::record::ListedParameter> = d
        .parameters
        .iter()
        .filter_map(|p| {
            Some(webhook_core::record::ListedParameter {
                name: p.name.clone(),
                source: p.source.parse::<Source>().ok()?,
                ty: webhook_core::request::param_type(&p.ty),
                depth: p.depth,
            })
        })
        .collect();
    let params = d
        .parameters
        .into_iter()
        .filter_map(|p| {
            Some(ParamSpec {
                source: p.source.parse::<Source>().ok()?,
                ty: webhook_core::request::param_type(&p.ty),
                name: p.name,
                required: p.required,
                strict: p.strict,
                nullable: p.nullable,
                required_for: p.required_for,
            })
        })
        .collect();
    let discriminator = match (d.discriminator_source, d.discriminator_name) {
        (Some(source), Some(name)) => source.parse::<Source>().ok().map(|s| (s, name)),
        _ => None,
    };
    let response = match d.response_method.as_str() {
        "custom" => ResponseConfig::Custom {
            status: d.response_status.unwrap_or(200) as u16,
            content_type: d
                .response_content_type
                .unwrap_or_else(|| "application/json".into()),
            body_template: d.response_body.unwrap_or_default(),
            headers: match d.response_headers {
                Some(Value::Object(headers)) => headers,
                _ => serde_json::Map::new(),
            }
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
            .collect(),
        },
        "workflow" => ResponseConfig::Workflow {
            failure_status: d.failure_status.unwrap_or(500) as u16,
            failure_content_type: d.failure_content_type,
            failure_body: d.failure_body,
        },
        _ => ResponseConfig::Default,
    };
    let handler = match (d.handler_name, d.handler_kind) {
        (Some(_), Some(_)) if d.handler_callable != Some(true) => {
            Err(HandlerUnavailable::NotCallableByOwner)
        }
        (Some(name), Some(kind)) => {
            let event = event_row_sql();
            // The record, by the type's name as it is now (the kept plan
            // holds the type's OID, and a reload names it anew), from the
            // values the caller maps to its attributes and their keys: the
            // two parameters after the event's columns (HandlerPlans::call).
            let values = super::event_row::EVENT_COLUMNS.len() + 1;
            let keys = values + 1;
            let record = |type_name: &str| {
                format!(
                    "webhook._params_record(NULL::{type_name}, ${values}::pg_catalog.jsonb, \
                     ${keys}::pg_catalog.jsonb, ({event}).id)"
                )
            };
            let (arg, takes_record) = match (d.handler_takes.as_deref(), d.record_type.as_deref()) {
                (Some("jsonb"), _) => (format!("pg_catalog.to_jsonb({event})"), false),
                (Some("record"), Some(type_name)) => (record(type_name), true),
                (Some("event_record"), Some(type_name)) => {
                    (format!("{event}, {}", record(type_name)), true)
                }
                _ => (event.to_string(), false),
            };
            let sql = if kind == "p" {
                format!("CALL {name}({arg})")
            } else {
                format!("SELECT {name}({arg})::pg_catalog.text")
            };
            Ok(HandlerCall {
                sql,
                output: d
                    .handler_returns
                    .as_deref()
                    .and_then(HandlerOutput::from_type_name),
                record: takes_record.then(|| webhook_core::record::record_attributes(&listed)),
            })
        }
        _ => Err(HandlerUnavailable::Dropped),
    };
    let front_door = Arc::new(FrontDoor::new(
        d.full_body,
        d.verifications,
        d.handshake.as_deref(),
    ));
    // A token a scheme reads from a header is a credential too.
    let mut redact_headers = d.redact_headers;
    redact_headers.extend(front_door.token_headers().map(str::to_string));
    Some(Workflow {
        rules: WorkflowRules {
            id,
            enabled: d.enabled,
            allowed_methods: d.allowed_methods,
            full_body_param: if d.full_body { d.full_body_param } else { None },
            params,
            discriminator,
            response,
            capture_armed: false,
        },
        capture_until: d.capture_until,
        owner: pg_sys::Oid::from(owner as u32),
        handler,
        timeout_ms: d
            .response_timeout_ms
            .map(|ms| ms.clamp(1, i32::MAX as i64) as i32),
        handler_search_path: d
            .owner_search_path
            .and_then(|path| CString::new(path).ok())
            .unwrap_or_else(|| reset_value(c"search_path")),
        delivery_key: KeySource::from_columns(
            d.delivery_key_source.as_deref(),
            d.delivery_key_name.as_deref(),
        ),
        delivery_window_secs: d.delivery_key_window_secs,
        retry: RetryPolicy {
            max_attempts: d.max_attempts.max(1) as u32,
            base_delay: seconds(d.retry_delay_secs),
            max_delay: seconds(d.retry_max_delay_secs),
            min_delay: std::time::Duration::ZERO,
        },
        redact_headers,
        front_door,
        // A network PostgreSQL stored as cidr always parses; an empty list
        // admits nobody.
        allowed_networks: d.allowed_networks.map(|networks| {
            networks
                .iter()
                .filter_map(|n| webhook_core::access::parse_network(n).ok())
                .collect()
        }),
        rate_limit: limit(d.rate_limit, d.rate_burst),
        client_rate_limit: limit(d.client_rate_limit, d.client_rate_burst),
        storage_quota: d.storage_quota,
        keep_body: d.keep_body,
        queued: d.queued,
    })
}

fn limit(rate: Option<f64>, burst: Option<i32>) -> Option<Limit> {
    Some(Limit {
        rate: rate.filter(|r| *r > 0.0)?,
        burst: burst.unwrap_or(1).max(1) as f64,
    })
}

fn seconds(secs: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(secs.max(0.001)).unwrap_or(std::time::Duration::MAX)
}
