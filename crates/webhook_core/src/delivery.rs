//! Which delivery a request is, so that a redelivery fires its handler once.
//!
//! Senders retry: GitHub redelivers with the same `X-GitHub-Delivery`,
//! Standard Webhooks with the same `webhook-id`, payment APIs with the same
//! `Idempotency-Key` (Stripe's events carry their `id` in the body). A
//! workflow's *delivery key* says where that identity is; a request whose key
//! was seen within the workflow's window is a duplicate: it gets the original
//! event's response and stores nothing.

use serde_json::{json, Map, Value};

use crate::request::Response;
use crate::validate::lookup_path;

/// Where a workflow finds the delivery key of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The first present of [`DEFAULT_KEY_HEADERS`].
    Default,
    /// A header (lower-case name).
    Header(String),
    /// A body parameter, dotted paths allowed (Stripe: `id`).
    Body(String),
    /// Every request is a new delivery.
    Off,
}

/// The headers senders put their delivery id in, in this order of preference.
pub const DEFAULT_KEY_HEADERS: &[&str] = &["webhook-id", "x-github-delivery", "idempotency-key"];

/// Longest key kept; a longer one is no key at all (never truncated, which
/// could make two deliveries look alike).
pub const MAX_KEY_BYTES: usize = 512;

impl KeySource {
    /// From the workflow's `(source, name)` columns: `(NULL, NULL)` is the
    /// default, `('none', _)` turns keys off.
    pub fn from_columns(source: Option<&str>, name: Option<&str>) -> KeySource {
        match (source, name) {
            (Some("header"), Some(name)) => KeySource::Header(name.to_ascii_lowercase()),
            (Some("body"), Some(name)) => KeySource::Body(name.to_string()),
            (Some("none"), _) => KeySource::Off,
            _ => KeySource::Default,
        }
    }
}

/// The request's delivery key, if it carries one: a non-empty string (or a
/// number) of at most [`MAX_KEY_BYTES`].
pub fn delivery_key(
    source: &KeySource,
    headers: &Map<String, Value>,
    body: &Map<String, Value>,
) -> Option<String> {
    let text = |value: Option<&Value>| -> Option<String> {
        match value? {
            Value::String(s) if !s.is_empty() && s.len() <= MAX_KEY_BYTES => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()).filter(|s| s.len() <= MAX_KEY_BYTES),
            _ => None,
        }
    };
    // A redacted header (a credential, or one the workflow redacts) is never
    // a key, whichever header it is: its value is gone, and every request
    // would look like a redelivery of the first.
    let header = |name: &str| text(headers.get(name)).filter(|key| key != crate::verify::REDACTED);
    match source {
        KeySource::Off => None,
        KeySource::Header(name) => header(name),
        KeySource::Body(path) => text(lookup_path(body, path)),
        KeySource::Default => DEFAULT_KEY_HEADERS.iter().find_map(|name| header(name)),
    }
}

/// The response a duplicate gets: the original event's, as
/// `webhook.events.response` recorded it (`{"status","headers","body"}`).
/// Without a recorded response (the original is still being handled), the
/// default acknowledgement for the original event.
pub fn duplicate_response(
    workflow_id: uuid::Uuid,
    event_id: i64,
    recorded: Option<&Value>,
) -> Response {
    let recorded = recorded.and_then(|r| {
        let status = r
            .get("status")?
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())?;
        let headers: Vec<(String, String)> = r
            .get("headers")?
            .as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let is_json = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type") && v.starts_with("application/json")
        });
        let body = match r.get("body")? {
            Value::String(s) if !is_json => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        };
        Some(Response {
            status,
            headers,
            body,
        })
    });
    recorded.unwrap_or_else(|| {
        Response::json(
            200,
            &json!({"msg": "success", "event_id": event_id, "workflow_id": workflow_id}),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn default_keys_come_from_the_usual_headers_in_order() {
        let body = Map::new();
        let h = obj(json!({"x-github-delivery": "gh-1", "idempotency-key": "ik-1"}));
        assert_eq!(
            delivery_key(&KeySource::Default, &h, &body),
            Some("gh-1".into())
        );
        let h = obj(json!({"webhook-id": "msg_1", "x-github-delivery": "gh-1"}));
        assert_eq!(
            delivery_key(&KeySource::Default, &h, &body),
            Some("msg_1".into())
        );
        let h = obj(json!({"webhook-id": "", "idempotency-key": "ik-2"}));
        assert_eq!(
            delivery_key(&KeySource::Default, &h, &body),
            Some("ik-2".into())
        );
        assert_eq!(delivery_key(&KeySource::Default, &Map::new(), &body), None);
        assert_eq!(delivery_key(&KeySource::Off, &h, &body), None);
    }

    #[test]
    fn a_redacted_header_is_never_a_key() {
        let body = Map::new();
        let redacted = crate::verify::REDACTED;
        let h = obj(json!({"idempotency-key": redacted}));
        assert_eq!(delivery_key(&KeySource::Default, &h, &body), None);
        let h = obj(json!({"webhook-id": redacted, "idempotency-key": "ik-3"}));
        assert_eq!(
            delivery_key(&KeySource::Default, &h, &body),
            Some("ik-3".into())
        );
        let h = obj(json!({"x-request-id": redacted}));
        assert_eq!(
            delivery_key(&KeySource::Header("x-request-id".into()), &h, &body),
            None
        );
    }

    #[test]
    fn configured_keys_and_their_limits() {
        let h = obj(json!({"x-request-id": "r-1"}));
        let body = obj(json!({"id": "evt_1", "data": {"n": 7}, "long": "x".repeat(600)}));
        let src = KeySource::from_columns(Some("header"), Some("X-Request-Id"));
        assert_eq!(delivery_key(&src, &h, &body), Some("r-1".into()));
        let src = KeySource::from_columns(Some("body"), Some("id"));
        assert_eq!(delivery_key(&src, &h, &body), Some("evt_1".into()));
        let src = KeySource::Body("data.n".into());
        assert_eq!(delivery_key(&src, &h, &body), Some("7".into()));
        assert_eq!(
            delivery_key(&KeySource::Body("long".into()), &h, &body),
            None
        );
        // Numbers keep every digit (arbitrary_precision): the same limit applies.
        let digits: Value = serde_json::from_str(&"9".repeat(600)).unwrap();
        let body = obj(json!({ "id": digits }));
        assert_eq!(delivery_key(&KeySource::Body("id".into()), &h, &body), None);
        assert_eq!(KeySource::from_columns(Some("none"), None), KeySource::Off);
        assert_eq!(KeySource::from_columns(None, None), KeySource::Default);
        // A redacted credential header is no key.
        let redacted = obj(json!({"x-api-key": crate::verify::REDACTED}));
        let src = KeySource::Header("x-api-key".into());
        assert_eq!(delivery_key(&src, &redacted, &body), None);
    }

    #[test]
    fn duplicates_get_the_recorded_response() {
        let id = uuid::Uuid::nil();
        let recorded = json!({"status": 201, "headers": {"content-type": "text/plain; charset=utf-8", "x-a": "1"},
                              "body": "stored A-1"});
        let r = duplicate_response(id, 5, Some(&recorded));
        assert_eq!((r.status, r.body.as_slice()), (201, &b"stored A-1"[..]));
        assert!(r.headers.contains(&("x-a".into(), "1".into())));
        let recorded = json!({"status": 200, "headers": {"content-type": "application/json"},
                              "body": {"msg": "success", "event_id": 5}});
        let r = duplicate_response(id, 5, Some(&recorded));
        assert_eq!(
            r.body_json(),
            Some(json!({"msg": "success", "event_id": 5}))
        );
        let r = duplicate_response(id, 9, None);
        assert_eq!(r.body_json().unwrap()["event_id"], json!(9));
    }
}
