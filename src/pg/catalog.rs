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
SELECT (SELECT h.xmin::pg_catalog.text::pg_catalog.int8 FROM horizon h),
       ARRAY(SELECT c.workflow_id::pg_catalog.text FROM changed c ORDER BY c.changed_xid, c.workflow_id),
       ARRAY(SELECT c.changed_xid::pg_catalog.text::pg_catalog.int8 FROM changed c
              ORDER BY c.changed_xid, c.workflow_id)";

/// Every name is schema-qualified and the listener's session pins
/// `search_path = pg_catalog, pg_temp` (src/ingest/listener_main.rs): this runs as a superuser,
/// so nothing in it may resolve to an object a tenant created in `public`.
/// Column 21 is the owner's own `search_path` role setting, if any, which
/// its handler runs with (see `Workflow::handler_search_path`); column 22
/// whether the owner may still call the handler.
const LOAD_SQL: &str = "
SELECT w.enabled, w.allowed_methods, w.full_body, w.full_body_param, w.response_method,
       w.response_status, w.response_content_type, w.response_body,
       w.response_headers::pg_catalog.text,
       (extract(epoch FROM w.response_timeout) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,
       w.failure_status, w.failure_content_type, w.failure_body,
       CASE WHEN w.captured_at IS NULL
            THEN extract(epoch FROM w.capture_until)::pg_catalog.float8 END,
       r.oid::pg_catalog.int8,
       pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
           OPERATOR(pg_catalog.||) pg_catalog.quote_ident(p.proname::pg_catalog.text),
       p.prokind::pg_catalog.text, t.typname::pg_catalog.text,
       p.proargtypes[0] OPERATOR(pg_catalog.=) 'pg_catalog.jsonb'::pg_catalog.regtype::pg_catalog.oid,
       (SELECT COALESCE(
                   pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                       'name', q.name, 'source', q.source, 'type', q.type, 'required', q.required,
                       'strict', COALESCE(q.strict, w.strict_types), 'nullable', q.nullable,
                       'required_for', q.required_for)
                     ORDER BY q.source, q.position),
                   '[]')::pg_catalog.text
          FROM webhook.parameters q WHERE q.workflow_id OPERATOR(pg_catalog.=) w.id),
       (SELECT pg_catalog.substr(c.setting, 13)
          FROM pg_catalog.pg_db_role_setting s,
               pg_catalog.unnest(s.setconfig) AS c (setting)
         WHERE s.setrole OPERATOR(pg_catalog.=) r.oid
           AND s.setdatabase OPERATOR(pg_catalog.=) ANY (ARRAY[d.oid, 0::pg_catalog.oid])
           AND c.setting OPERATOR(pg_catalog.~~) 'search\\_path=%'
         ORDER BY s.setdatabase OPERATOR(pg_catalog.=) 0::pg_catalog.oid
         LIMIT 1),
       pg_catalog.has_schema_privilege(r.oid, p.pronamespace, 'USAGE')
           AND pg_catalog.has_function_privilege(r.oid, p.oid, 'EXECUTE'),
       w.discriminator_source, w.discriminator_name,
       w.delivery_key_source, w.delivery_key_name,
       extract(epoch FROM w.delivery_key_window)::pg_catalog.float8,
       w.max_attempts, extract(epoch FROM w.retry_delay)::pg_catalog.float8,
       extract(epoch FROM w.retry_max_delay)::pg_catalog.float8,
       w.redact_headers,
       w.allowed_networks::pg_catalog.text[],
       w.rate_limit, w.rate_burst, w.client_rate_limit, w.client_rate_burst,
       (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'method', v.method, 'scheme', v.scheme, 'secrets', v.secrets, 'options', v.options))
          FROM webhook.verifications v
         WHERE v.workflow_id OPERATOR(pg_catalog.=) w.id),
       w.handshake, NULL::pg_catalog.text,
       w.storage_quota, w.keep_body
  FROM webhook.workflows w
  LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) w.owner::pg_catalog.oid
  LEFT JOIN pg_catalog.pg_database d ON d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
  LEFT JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) w.handler
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
  LEFT JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) p.prorettype
 WHERE w.id OPERATOR(pg_catalog.=) $1";

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
        let xmin = row.get::<i64>(1)?.unwrap_or(0);
        let ids = row.get::<Vec<String>>(2)?.unwrap_or_default();
        let xids = row.get::<Vec<i64>>(3)?.unwrap_or_default();
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
    let row = table.first();
    let text = |n: usize| -> Result<Option<String>, pgrx::spi::Error> { row.get::<String>(n) };

    let params: Vec<Value> =
        serde_json::from_str(&text(20)?.unwrap_or_else(|| "[]".into())).unwrap_or_default();
    let params = params
        .iter()
        .filter_map(|p| {
            Some(ParamSpec {
                name: p["name"].as_str()?.to_string(),
                source: p["source"].as_str()?.parse::<Source>().ok()?,
                ty: webhook_core::request::param_type(p["type"].as_str()?),
                required: p["required"].as_bool()?,
                strict: p["strict"].as_bool()?,
                nullable: p["nullable"].as_bool()?,
                required_for: p["required_for"].as_array().map(|events| {
                    events
                        .iter()
                        .filter_map(|e| e.as_str().map(str::to_string))
                        .collect()
                }),
            })
        })
        .collect();
    let discriminator = match (text(23)?, text(24)?) {
        (Some(source), Some(name)) => source.parse::<Source>().ok().map(|s| (s, name)),
        _ => None,
    };

    let response = match text(5)?.as_deref() {
        Some("custom") => ResponseConfig::Custom {
            status: row.get::<i32>(6)?.unwrap_or(200) as u16,
            content_type: text(7)?.unwrap_or_else(|| "application/json".into()),
            body_template: text(8)?.unwrap_or_default(),
            headers: serde_json::from_str::<serde_json::Map<String, Value>>(
                &text(9)?.unwrap_or_else(|| "{}".into()),
            )
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
            .collect(),
        },
        Some("workflow") => ResponseConfig::Workflow {
            failure_status: row.get::<i32>(11)?.unwrap_or(500) as u16,
            failure_content_type: text(12)?,
            failure_body: text(13)?,
        },
        _ => ResponseConfig::Default,
    };

    // The owner role was dropped: the workflow is unreachable, as if deleted
    // (a role that later takes the name has another OID).
    let Some(owner) = row.get::<i64>(15)? else {
        return Ok(None);
    };
    let callable = row.get::<bool>(22)?.unwrap_or(false);
    let handler = match (text(16)?, text(17)?) {
        (Some(_), Some(_)) if !callable => Err(HandlerUnavailable::NotCallableByOwner),
        (Some(name), Some(kind)) => {
            let takes_jsonb = row.get::<bool>(19)?.unwrap_or(false);
            let arg = if takes_jsonb {
                format!("pg_catalog.to_jsonb({})", event_row_sql())
            } else {
                event_row_sql().to_string()
            };
            let sql = if kind == "p" {
                format!("CALL {name}({arg})")
            } else {
                format!("SELECT {name}({arg})::pg_catalog.text")
            };
            Ok(HandlerCall {
                sql,
                output: text(18)?.as_deref().and_then(HandlerOutput::from_type_name),
            })
        }
        _ => Err(HandlerUnavailable::Dropped),
    };

    let full_body = row.get::<bool>(3)?.unwrap_or(false);
    let front_door = Arc::new(FrontDoor::new(
        full_body,
        row.get::<JsonB>(37)?.map(|JsonB(rows)| rows),
        text(38)?.as_deref(),
    ));
    Ok(Some(Workflow {
        rules: WorkflowRules {
            id,
            enabled: row.get::<bool>(1)?.unwrap_or(false),
            allowed_methods: row.get::<Vec<String>>(2)?.unwrap_or_default(),
            full_body_param: if full_body { text(4)? } else { None },
            params,
            discriminator,
            response,
            capture_armed: false,
        },
        capture_until: row.get::<f64>(14)?,
        owner: pg_sys::Oid::from(owner as u32),
        handler,
        timeout_ms: row
            .get::<i64>(10)?
            .map(|ms| ms.clamp(1, i32::MAX as i64) as i32),
        handler_search_path: text(21)?
            .and_then(|path| CString::new(path).ok())
            .unwrap_or_else(|| reset_value(c"search_path")),
        delivery_key: KeySource::from_columns(text(25)?.as_deref(), text(26)?.as_deref()),
        delivery_window_secs: row.get::<f64>(27)?.unwrap_or(86_400.0),
        retry: RetryPolicy {
            max_attempts: row.get::<i32>(28)?.unwrap_or(5).max(1) as u32,
            base_delay: seconds(row.get::<f64>(29)?.unwrap_or(10.0)),
            max_delay: seconds(row.get::<f64>(30)?.unwrap_or(3600.0)),
            min_delay: std::time::Duration::ZERO,
        },
        redact_headers: {
            // A token a scheme reads from a header is a credential too.
            let mut redact = row.get::<Vec<String>>(31)?.unwrap_or_default();
            redact.extend(front_door.token_headers().map(str::to_string));
            redact
        },
        front_door,
        // A network PostgreSQL stored as cidr always parses; an empty list
        // admits nobody.
        allowed_networks: row.get::<Vec<String>>(32)?.map(|networks| {
            networks
                .iter()
                .filter_map(|n| webhook_core::access::parse_network(n).ok())
                .collect()
        }),
        rate_limit: limit(row.get::<f64>(33)?, row.get::<i32>(34)?),
        client_rate_limit: limit(row.get::<f64>(35)?, row.get::<i32>(36)?),
        storage_quota: row.get::<i64>(40)?,
        keep_body: row.get::<bool>(41)?.unwrap_or(true),
    }))
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
