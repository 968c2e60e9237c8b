//! What a listener's network thread knows of a workflow before it reads a
//! request's body: whether the workflow takes requests at all, whether it
//! wants its body parsed, and how its senders are verified.
//!
//! The main thread owns the workflow definitions (only it may read them
//! through SPI) and publishes this much of each enabled one it loads into a
//! [`Directory`] the network thread reads. For a workflow not there, the
//! network thread asks the main thread before it reads a byte of the body,
//! so an unknown or disabled workflow is answered without reading,
//! decompressing or parsing anything. (Only enabled workflows are kept: the
//! main thread learns of changes when it next starts a transaction, so an
//! answer "no such workflow" from a copy could outlive the commit that
//! created or enabled it; an enabled one that is gone meanwhile is still
//! refused by the main thread.) With the directory the network thread also
//! checks a signature over the raw body on its parser threads before parsing
//! it, so a forged body costs an HMAC and never a parse, and the main thread
//! spends time on neither.
//!
//! A request carries the [`FrontDoor`] it was checked against. The main
//! thread compares it with the workflow's current one: if the workflow's
//! verification or body handling changed meanwhile, the request is answered
//! 503 with `Retry-After` rather than judged by rules it was not checked
//! against. Nothing here calls PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use uuid::Uuid;
use webhook_core::body::{BodyError, MemoryBudget};
use webhook_core::handshake::Handshake;
use webhook_core::request::Response;
use webhook_core::verify::{ConfigError, Scheme, SignedRequest};

/// How requests are verified (a row of webhook.verifications): `None` when
/// they are not; `Err` when the stored configuration is unusable, and then
/// every request is refused.
pub type Verification = Option<Result<Scheme, ConfigError>>;

/// The part of a workflow that decides how its request bodies are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontDoor {
    /// The whole body is one text parameter: it is decoded, never parsed.
    pub full_body: bool,
    /// For every method without its own (`*`).
    pub verification: Verification,
    /// Methods verified their own way (GET, POST).
    pub by_method: Vec<(String, Verification)>,
    /// The provider's endpoint check answered here (webhook_set_handshake).
    pub handshake: Option<Handshake>,
}

impl FrontDoor {
    /// From the workflow's rows of webhook.verifications (a JSON array of
    /// `{method, scheme, secrets, options}`) and its handshake.
    pub fn new(
        full_body: bool,
        verifications: Option<Value>,
        handshake: Option<&str>,
    ) -> FrontDoor {
        let mut door = FrontDoor {
            full_body,
            verification: None,
            by_method: Vec::new(),
            handshake: handshake.and_then(|kind| Handshake::parse(kind).ok()),
        };
        let rows = match verifications {
            Some(Value::Array(rows)) => rows,
            _ => Vec::new(),
        };
        for row in rows {
            let text = |key: &str| row.get(key).and_then(Value::as_str).unwrap_or("");
            let verification = match text("scheme") {
                "none" => None,
                scheme => {
                    let secrets: Vec<String> = match row.get("secrets") {
                        Some(Value::Array(secrets)) => secrets
                            .iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect(),
                        _ => Vec::new(),
                    };
                    let options = match row.get("options") {
                        Some(Value::Object(options)) => options.clone(),
                        _ => Map::new(),
                    };
                    Some(Scheme::from_config(scheme, &secrets, &options))
                }
            };
            match text("method") {
                "*" => door.verification = verification,
                method => door.by_method.push((method.to_string(), verification)),
            }
        }
        door
    }

    /// How a request with `method` is verified.
    pub fn verification_for(&self, method: &str) -> &Verification {
        self.by_method
            .iter()
            .find(|(m, _)| m == method)
            .map_or(&self.verification, |(_, v)| v)
    }

    /// Whether some method's scheme signs the URL the sender called.
    pub fn signs_url(&self, method: &str) -> bool {
        matches!(self.verification_for(method), Some(Ok(scheme)) if scheme.signs_url())
    }

    /// Headers whose value is a token some method's scheme compares (stored
    /// redacted, as credentials).
    pub fn token_headers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&self.verification)
            .chain(self.by_method.iter().map(|(_, v)| v))
            .flat_map(|v| match v {
                Some(Ok(scheme)) => scheme.token_headers(),
                _ => &[],
            })
            .map(String::as_str)
    }

    /// The first active secret of the workflow's verification for `method`
    /// (Zoom's handshake answer is signed with it).
    pub fn first_secret(&self, method: &str) -> Option<&[u8]> {
        match self.verification_for(method) {
            Some(Ok(scheme)) => scheme.first_secret(),
            _ => None,
        }
    }
}

/// Most workflows the directory holds; past it, it starts again empty, as
/// the main thread's own cache does (src/pg/catalog.rs).
const MAX_DOORS: usize = 10_000;

/// The enabled workflows the main thread has loaded, shared with the network
/// thread.
#[derive(Default)]
pub struct Directory {
    doors: Mutex<HashMap<Uuid, Arc<FrontDoor>>>,
}

impl Directory {
    pub fn get(&self, id: Uuid) -> Option<Arc<FrontDoor>> {
        self.lock().get(&id).cloned()
    }

    pub fn publish(&self, id: Uuid, door: Arc<FrontDoor>) {
        let mut doors = self.lock();
        if doors.len() >= MAX_DOORS && !doors.contains_key(&id) {
            doors.clear();
        }
        doors.insert(id, door);
    }

    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<FrontDoor>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.doors.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A refused verification: the answer, and the reason counted with the
/// rejection (webhook.rejection_counts), which is never sent.
pub type Refusal = (Response, String);

/// Checks a request against the workflow's verification, if it has one,
/// holding what the check allocates to `budget` (Twilio's sorts the form's
/// pairs); `Err` when the budget refuses. An unusable stored configuration
/// refuses everything.
pub fn verify_within(
    door: &FrontDoor,
    signed: &SignedRequest<'_>,
    budget: &mut dyn MemoryBudget,
) -> Result<Result<(), Refusal>, BodyError> {
    let scheme = match door.verification_for(signed.method) {
        None => return Ok(Ok(())),
        Some(Ok(scheme)) => scheme,
        Some(Err(_)) => {
            return Ok(Err((
                Response::error(401, "Invalid signature"),
                "Invalid signature: the workflow's verification is misconfigured".into(),
            )))
        }
    };
    Ok(scheme.verify_within(signed, budget)?.map_err(|failure| {
        let reason = format!("{}: {}", scheme.refusal_message(), failure.reason());
        (scheme.refusal(), reason)
    }))
}

/// The URL a scheme signs, as the sender called it (the public base URL,
/// the workflow's path and the query string as sent); empty for schemes that
/// do not sign it.
pub fn signed_url(
    door: &FrontDoor,
    method: &str,
    base_url: &str,
    id: Uuid,
    raw_query: Option<&str>,
) -> String {
    if !door.signs_url(method) {
        return String::new();
    }
    let base = webhook_core::config::workflow_url(base_url, &id.hyphenated().to_string());
    match raw_query {
        Some(query) => format!("{base}?{query}"),
        None => base,
    }
}

/// What the network thread concluded about a request's sender, handed to the
/// main thread with the request.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The rules the request was checked against.
    pub door: Arc<FrontDoor>,
    pub outcome: Result<(), Refusal>,
}

impl Verdict {
    /// Whether the request was checked against the workflow's rules as they
    /// are now.
    pub fn is_for(&self, current: &FrontDoor) -> bool {
        *self.door == *current
    }
}

/// The main thread's answer to a request checked against rules that have
/// changed since: the network thread checks it again (once), and only if
/// that happens again does the sender get it, as a 503 to retry.
pub fn workflow_changed() -> Response {
    Response::retry_later("Workflow changed, retry later")
}
