//! Internal SQL functions (schema `webhook`, names starting with `_`) that expose
//! the pure core to the SQL API in `sql/api.sql`. Users call the `webhook_*`
//! functions, not these.

use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::pg::errors::SqlError;
use webhook_core::template::{self, ContentKind};
use webhook_core::verify::{ConfigError, Scheme};
use webhook_core::{config, infer, kv, lookup};

/// pgrx places these in schema `webhook` (created first by sql/schema.sql).
#[pg_schema]
mod webhook {
    use super::*;

    /// The parameters a JSON object sample describes, as a JSON array of
    /// `{name, type, sample, depth}` in the object's (jsonb) key order. A
    /// top-level array is the one parameter `items`, as such a body is at run
    /// time.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn _infer_parameters(sample: JsonB) -> JsonB {
        let map = match sample.0 {
            Value::Object(map) => map,
            Value::Array(items) => {
                serde_json::Map::from_iter([("items".to_string(), Value::Array(items))])
            }
            other => SqlError::SampleNotObject {
                found: webhook_core::validate::json_type_name(&other),
            }
            .report(),
        };
        JsonB(inferred_json(&map))
    }

    /// Like `_infer_parameters` for key-value sample text, in line order.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn _infer_kv(pairs: &str) -> JsonB {
        match kv::parse_kv(pairs) {
            Ok(map) => JsonB(inferred_json(&map)),
            Err(e) => SqlError::from(e).report(),
        }
    }

    /// The complete workflow id contained in the input, if any.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn _full_id(input: &str) -> Option<pgrx::Uuid> {
        lookup::full_id(input).map(|id| pgrx::Uuid::from_bytes(*id.as_bytes()))
    }

    /// The hex fragment (hyphens removed, lower case) to search ids for, if usable.
    #[pg_extern(immutable, strict, parallel_safe)]
    fn _id_fragment(input: &str) -> Option<String> {
        lookup::id_fragment(input)
    }

    /// The base of workflow URLs, from `webhook.public_base_url` or derived.
    #[pg_extern(stable, parallel_safe)]
    fn _base_url() -> String {
        crate::pg::gucs::base_url()
    }

    /// `{base}/hooks/{id}` for one workflow id.
    #[pg_extern(stable, strict, parallel_safe)]
    fn _workflow_url(id: pgrx::Uuid) -> String {
        let id = uuid::Uuid::from_bytes(*id.as_bytes());
        config::workflow_url(&crate::pg::gucs::base_url(), &id.hyphenated().to_string())
    }

    /// Checks a custom response's content type and body template; returns the
    /// content type to send (as given, or completed with a charset for text kinds).
    #[pg_extern(immutable, strict, parallel_safe)]
    fn _check_response_template(content_type: &str, body: &str) -> String {
        let Some(kind) = ContentKind::from_content_type(content_type) else {
            SqlError::UnsupportedContentType(content_type.to_string()).report()
        };
        if let Err(e) = template::check(body, kind) {
            SqlError::from(e).report()
        }
        if content_type.contains(';') || kind == ContentKind::Json {
            content_type.trim().to_string()
        } else {
            format!("{}; charset=utf-8", content_type.trim())
        }
    }

    /// The providers' verification presets, `[{name, definition}]` in their
    /// listed order (webhook_verification_presets()).
    #[pg_extern(immutable, parallel_safe)]
    fn _verification_presets() -> JsonB {
        let presets = webhook_core::verify::presets::names()
            .map(|name| {
                let definition = webhook_core::verify::presets::definition(name)
                    .expect("every listed preset has a definition");
                json!({"name": name, "definition": definition})
            })
            .collect();
        JsonB(Value::Array(presets))
    }

    /// The columns of webhook.events as src/pg/event_row.rs declares them,
    /// `[{name, type}]` in table order (types as `format_type` names them):
    /// tests/e2e/test_events_row.py compares them with the table's, since
    /// every statement that writes or reads an event row is generated from
    /// that declaration.
    #[pg_extern(immutable, parallel_safe)]
    fn _event_columns() -> JsonB {
        JsonB(crate::pg::event_row::event_columns_json())
    }

    /// The running listeners and executors, `[{pid, kind, owner, state,
    /// event, since_unix_ms, settings_loaded_unix_ms}]`, read from shared memory
    /// (webhook_processes() shows them): every listener, and the executors of
    /// roles the caller is a member of (webhook_admin members may call this
    /// function itself, so the filter is here); empty when the library was
    /// not preloaded, since then there are none and no shared memory either.
    #[pg_extern(volatile, parallel_safe)]
    fn _processes() -> JsonB {
        if !crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed) {
            return JsonB(Value::Array(Vec::new()));
        }
        // SAFETY: plain catalog checks of the current user, on the backend's
        // main thread inside a transaction.
        let caller = unsafe { pgrx::pg_sys::GetUserId() };
        let may_see = |owner: Option<u32>| match owner {
            None => true,
            // SAFETY: as above; an owner that no longer exists is nobody's.
            Some(owner) => unsafe {
                pgrx::pg_sys::is_member_of_role(caller, pgrx::pg_sys::Oid::from(owner))
            },
        };
        let rows = crate::execution::processes()
            .into_iter()
            .filter(|p| may_see(p.owner))
            .map(|p| {
                json!({"pid": p.pid, "kind": p.kind, "owner": p.owner, "state": p.state,
                       "event": p.event, "since_unix_ms": p.since_unix_ms,
                       "settings_loaded_unix_ms": p.settings_loaded_unix_ms})
            })
            .collect();
        JsonB(Value::Array(rows))
    }

    /// Checks a row of webhook.verifications (the _verifications_check
    /// trigger): raises 22023 naming the problem, never a secret.
    #[pg_extern(stable, parallel_safe)]
    fn _check_verification(
        scheme: Option<&str>,
        secrets: Option<Vec<Option<String>>>,
        options: Option<JsonB>,
    ) {
        if let Err(e) = check_verification(scheme, secrets, options.map(|o| o.0)) {
            SqlError::Verification(e).report()
        }
    }

    /// Whether this server loaded webhook_ext through `shared_preload_libraries`
    /// (the only way the listener starts), and which database it serves.
    #[pg_extern(stable)]
    fn _listener_config() -> JsonB {
        JsonB(json!({
            "preloaded": crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed),
            "database": crate::pg::gucs::database(),
        }))
    }
}

fn check_verification(
    scheme: Option<&str>,
    secrets: Option<Vec<Option<String>>>,
    options: Option<Value>,
) -> Result<(), ConfigError> {
    let scheme = scheme.ok_or_else(|| ConfigError("the scheme must not be NULL".into()))?;
    let mut active = Vec::new();
    for (n, secret) in secrets.unwrap_or_default().into_iter().enumerate() {
        active.push(secret.ok_or_else(|| ConfigError(format!("secret {} is NULL", n + 1)))?);
    }
    let options = match options {
        None => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => return Err(ConfigError("options must be a JSON object".into())),
    };
    if scheme == "none" {
        if !active.is_empty() || !options.is_empty() {
            return Err(ConfigError(
                "the none scheme takes no secrets or options".into(),
            ));
        }
        return Ok(());
    }
    Scheme::from_config(scheme, &active, &options).map(|_| ())
}

fn inferred_json(map: &serde_json::Map<String, Value>) -> Value {
    webhook_core::request::inferred_to_json(&infer::infer_parameters(map))
}
