//! What to do with one request, given the workflow it addresses: reject it, take
//! it as a captured sample, or accept it with these parameters; and which HTTP
//! response each outcome gets.
//!
//! The worker's main thread calls these between its SPI steps; keeping the
//! decisions here means every status code and body of the HTTP contract
//! (docs/http.md) is unit tested without PostgreSQL.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::body::ParsedBody;
use crate::infer::{count_parameters, infer_parameters, InferredParam};
use crate::template::{self, ContentKind};
use crate::validate::{
    self, ParamSpec, ParamType, RequestParams, Source, MAX_NAME_BYTES, MAX_PARAMETERS,
};

/// A request as the network thread hands it over.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// Upper-case HTTP method.
    pub method: String,
    pub query: Map<String, Value>,
    /// Lower-case header names; repeated headers joined with ", ".
    pub headers: Map<String, Value>,
    pub body: BodyOutcome,
    /// The body exactly as received (after transfer decoding, before any
    /// Content-Encoding): what signatures are checked against. Empty for
    /// `webhook_trigger` and `webhook_replay`, which are never verified.
    pub raw_body: bytes::Bytes,
}

/// The body as far as the network thread could parse it without knowing the
/// workflow: a workflow that takes its body as text does not care that it is
/// not valid JSON.
#[derive(Debug, Clone)]
pub enum BodyOutcome {
    Parsed(ParsedBody),
    Unparseable { error: String, text: String },
}

impl BodyOutcome {
    pub fn text(&self) -> &str {
        match self {
            BodyOutcome::Parsed(parsed) => &parsed.text,
            BodyOutcome::Unparseable { text, .. } => text,
        }
    }
}

/// How a workflow answers: the `default`, `custom` or `workflow` response method.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseConfig {
    Default,
    Custom {
        status: u16,
        content_type: String,
        body_template: String,
        headers: Vec<(String, String)>,
    },
    Workflow {
        failure_status: u16,
        failure_content_type: Option<String>,
        failure_body: Option<String>,
    },
}

/// The parts of a workflow definition that decide admission and responses.
#[derive(Debug, Clone)]
pub struct WorkflowRules {
    pub id: Uuid,
    pub enabled: bool,
    pub allowed_methods: Vec<String>,
    /// `Some(name)`: the raw body is the single text parameter `name`.
    pub full_body_param: Option<String>,
    pub params: Vec<ParamSpec>,
    /// Where the event type is read from (e.g. header `x-github-event`, body
    /// `type`), for parameters required only for some event types.
    pub discriminator: Option<(Source, String)>,
    pub response: ResponseConfig,
    /// A capture window is open: the next request becomes the sample.
    pub capture_armed: bool,
}

/// An HTTP response to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: &Value) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// An error response: JSON with a `msg` field.
    pub fn error(status: u16, msg: &str) -> Response {
        Response::json(status, &json!({ "msg": msg }))
    }

    /// 503 with `Retry-After: 1`: nothing was stored, the sender should retry.
    pub fn retry_later(msg: &str) -> Response {
        Response::error(503, msg).with_header("retry-after", "1")
    }

    pub fn workflow_not_found() -> Response {
        Response::error(404, "Workflow not found")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// Every parsed parameter by name, declared ones coerced to their type:
    /// query parameters, then body parameters (a body value wins over a query
    /// value of the same name), then the declared header parameters.
    pub params: Map<String, Value>,
}

/// Parameters derived from a captured request, by source.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedSample {
    /// `None` when the workflow takes its full body: body parameters stay as they are.
    pub body: Option<Vec<InferredParam>>,
    pub query: Vec<InferredParam>,
    pub headers: Vec<InferredParam>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Rejected(Response),
    Capture(CapturedSample),
    Accepted(Accepted),
}

/// Headers that describe the connection or the transfer, not the caller's data;
/// a captured sample does not turn them into parameters.
const TRANSPORT_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-connection",
];

/// Decides what happens to `request` sent to the workflow `rules`.
///
/// Only an accepted request is changed: its body's parameters are moved out
/// of `request.body` into [`Accepted::params`] (the body's text stays, for
/// [`stored_body`]). The caller runs on the listener's main thread, which
/// serves every tenant, so a large body is not copied there; a rejected
/// request is still whole for the record of the refusal, and a capture that
/// another listener process took first can be admitted again.
pub fn admit(rules: &WorkflowRules, request: &mut IncomingRequest) -> Admission {
    let full_body = match decide(rules, request) {
        Decision::Done(admission) => return admission,
        Decision::Accept { full_body } => full_body,
    };
    let body_params = match full_body {
        Some(map) => map,
        None => match &mut request.body {
            BodyOutcome::Parsed(parsed) => std::mem::take(&mut parsed.params),
            // Refused by decide unless the workflow takes its full body.
            BodyOutcome::Unparseable { .. } => Map::new(),
        },
    };
    Admission::Accepted(Accepted {
        params: collect_params(rules, request, body_params),
    })
}

/// What [`decide`] found: the answer, or that the request is accepted (with
/// the body's one parameter when the workflow takes its full body).
enum Decision {
    Done(Admission),
    Accept {
        full_body: Option<Map<String, Value>>,
    },
}

/// Every check of [`admit`], on the request as received.
fn decide(rules: &WorkflowRules, request: &IncomingRequest) -> Decision {
    let reject = |response| Decision::Done(Admission::Rejected(response));
    if !rules.enabled {
        return reject(Response::workflow_not_found());
    }
    // Method names are case-sensitive (RFC 9110 §9.1): `get` is not GET.
    if !rules.allowed_methods.contains(&request.method) {
        return reject(
            Response::json(
                405,
                &json!({"msg": "Method not allowed", "allowed": rules.allowed_methods}),
            )
            .with_header("allow", &rules.allowed_methods.join(", ")),
        );
    }
    let full_body = rules.full_body_param.as_ref().map(|name| {
        let mut map = Map::new();
        map.insert(name.clone(), Value::String(request.body.text().to_string()));
        map
    });
    let body_params = match (&full_body, &request.body) {
        (Some(map), _) => map,
        (None, BodyOutcome::Parsed(parsed)) => &parsed.params,
        (None, BodyOutcome::Unparseable { error, .. }) => {
            return reject(Response::error(400, error));
        }
    };
    if has_nul(request, body_params) {
        return reject(Response::error(
            400,
            "Request contains a NUL character (\\u0000), which PostgreSQL text cannot store",
        ));
    }
    if rules.capture_armed {
        return Decision::Done(match capture(rules, request, body_params) {
            Ok(sample) => Admission::Capture(sample),
            Err(response) => Admission::Rejected(response),
        });
    }
    let view = RequestParams {
        body: body_params,
        query: &request.query,
        headers: &request.headers,
    };
    let event_type = rules
        .discriminator
        .as_ref()
        .and_then(|(source, name)| view.get(*source, name))
        .and_then(|value| match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        });
    if let Err(e) = validate::validate(&rules.params, &view, event_type.as_deref()) {
        return reject(Response::json(400, &e.to_json()));
    }
    Decision::Accept { full_body }
}

/// PostgreSQL text and jsonb cannot hold U+0000. Such a request is refused
/// rather than stored altered; only a multipart body's raw text may contain it
/// (binary file parts), since its parts are kept in `params` and the raw text
/// is then not stored (see [`stored_body`]).
fn has_nul(request: &IncomingRequest, body_params: &Map<String, Value>) -> bool {
    fn in_value(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(in_value),
            Value::Object(map) => in_map(map),
            _ => false,
        }
    }
    fn in_map(map: &Map<String, Value>) -> bool {
        map.iter().any(|(k, v)| k.contains('\0') || in_value(v))
    }
    let raw_body_nul = request.body.text().contains('\0') && !is_multipart(&request.body);
    raw_body_nul || in_map(&request.query) || in_map(&request.headers) || in_map(body_params)
}

fn is_multipart(body: &BodyOutcome) -> bool {
    matches!(body, BodyOutcome::Parsed(p) if p.kind == crate::body::BodyKind::Multipart)
}

/// What `webhook.events.body` stores: the body as text; `None` when empty or
/// when it is a multipart body with binary content (its parts are in `params`).
pub fn stored_body(body: &BodyOutcome) -> Option<String> {
    let text = body.text();
    if text.is_empty() || (is_multipart(body) && text.contains('\0')) {
        None
    } else {
        Some(text.to_string())
    }
}

fn collect_params(
    rules: &WorkflowRules,
    request: &IncomingRequest,
    body_params: Map<String, Value>,
) -> Map<String, Value> {
    // Body parameters win over query ones of the same name.
    let mut params = if request.query.is_empty() {
        body_params
    } else {
        let mut params = request.query.clone();
        params.extend(body_params);
        params
    };
    let view = RequestParams {
        body: &Map::new(),
        query: &request.query,
        headers: &request.headers,
    };
    for spec in &rules.params {
        match spec.source {
            // The same (case-insensitive) lookup validation used.
            Source::Header => {
                if let Some(value) = view.get(Source::Header, &spec.name) {
                    params.insert(spec.name.clone(), validate::coerce(value, spec.ty));
                }
            }
            // Coerce declared top-level parameters in place ("42" → 42 for a
            // number); nested leaves stay as sent.
            Source::Body | Source::Query => {
                if let Some(value) = params.get_mut(&spec.name) {
                    *value = validate::coerce(value, spec.ty);
                }
            }
        }
    }
    params
}

/// The sample a captured request gives; a 413 when the parameter list it
/// would make is over the limits a workflow's list is held to (sql/api.sql
/// would refuse to store it). The capture then stays armed for a smaller
/// request.
fn capture(
    rules: &WorkflowRules,
    request: &IncomingRequest,
    body_params: &Map<String, Value>,
) -> Result<CapturedSample, Response> {
    let headers: Map<String, Value> = request
        .headers
        .iter()
        .filter(|(name, _)| !TRANSPORT_HEADERS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let sampled_body = rules.full_body_param.is_none();
    // Counted before anything is inferred, so an oversized request is refused
    // without copying its values. A full-body workflow keeps its body
    // parameters.
    let body_count = if sampled_body {
        count_parameters(body_params, MAX_PARAMETERS)
    } else {
        rules
            .params
            .iter()
            .filter(|p| p.source == Source::Body)
            .count()
    };
    let total = body_count
        + count_parameters(&request.query, MAX_PARAMETERS)
        + count_parameters(&headers, MAX_PARAMETERS);
    if total > MAX_PARAMETERS {
        return Err(Response::error(
            413,
            &format!("Sample has more than {MAX_PARAMETERS} parameters"),
        ));
    }
    // Exactly the structure a request gets at run time (form fields holding
    // JSON are already parsed by the body parser), so any captured request
    // passes validation when sent again. Strings from the wire (query, headers,
    // form fields) are text: `94070` today may be `tomorrow in Paris` tomorrow.
    let sample = CapturedSample {
        body: sampled_body.then(|| infer_parameters(body_params)),
        query: infer_parameters(&request.query),
        headers: infer_parameters(&headers),
    };
    let lists = [
        sample.body.as_deref().unwrap_or_default(),
        &sample.query,
        &sample.headers,
    ];
    if lists
        .iter()
        .flat_map(|list| list.iter())
        .any(|p| p.name.len() > MAX_NAME_BYTES)
    {
        return Err(Response::error(
            413,
            &format!("Sample has a parameter name longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(sample)
}

/// The response for a captured sample.
pub fn capture_response(workflow_id: Uuid, sample: &CapturedSample) -> Response {
    let count = |list: &Option<Vec<InferredParam>>| list.as_ref().map_or(0, |l| l.len());
    Response::json(
        200,
        &json!({
            "msg": "Sample captured",
            "workflow_id": workflow_id,
            "parameters": {
                "body": count(&sample.body),
                "query": sample.query.len(),
                "header": sample.headers.len(),
            },
        }),
    )
}

/// Inferred parameters in the JSON shape `webhook._replace_parameters` takes.
pub fn inferred_to_json(params: &[InferredParam]) -> Value {
    Value::Array(
        params
            .iter()
            .map(|p| json!({"name": p.name, "type": p.ty.as_str(), "sample": p.sample, "depth": p.depth}))
            .collect(),
    )
}

/// What a template can reference: the parameters plus `event_id` and
/// `workflow_id` (a parameter of the same name wins).
fn template_context(
    workflow_id: Uuid,
    event_id: i64,
    params: &Map<String, Value>,
) -> Map<String, Value> {
    let mut ctx = params.clone();
    ctx.entry("event_id").or_insert(json!(event_id));
    ctx.entry("workflow_id")
        .or_insert(json!(workflow_id.to_string()));
    ctx
}

/// The response for an accepted event under the default or custom method, sent
/// once the event is committed. `None` for the workflow method, whose response
/// comes from the handler.
pub fn accepted_response(
    rules: &WorkflowRules,
    event_id: i64,
    params: &Map<String, Value>,
) -> Option<Response> {
    match &rules.response {
        ResponseConfig::Default => Some(Response::json(
            200,
            &json!({"msg": "success", "event_id": event_id, "workflow_id": rules.id}),
        )),
        ResponseConfig::Custom {
            status,
            content_type,
            body_template,
            headers,
        } => Some(render_configured(
            *status,
            content_type,
            body_template,
            headers,
            &template_context(rules.id, event_id, params),
            event_id,
        )),
        ResponseConfig::Workflow { .. } => None,
    }
}

/// Headers the listener itself frames the response with (and hop-by-hop
/// ones): a configured value would let a workflow's settings split one
/// response into two on a keep-alive connection.
const RESERVED_RESPONSE_HEADERS: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

/// Whether a configured response header may be sent: its name is an HTTP
/// token (RFC 9110 §5.6.2) and not reserved, and its value is one line of
/// visible characters, spaces and tabs. `sql/api.sql` refuses the rest when
/// they are configured; this holds even for rows written around it.
pub fn is_settable_response_header(name: &str, value: &str) -> bool {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let one_line = value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    token && one_line && !RESERVED_RESPONSE_HEADERS.contains(&name.to_ascii_lowercase().as_str())
}

fn render_configured(
    status: u16,
    content_type: &str,
    body_template: &str,
    headers: &[(String, String)],
    ctx: &Map<String, Value>,
    event_id: i64,
) -> Response {
    let kind = ContentKind::from_content_type(content_type).unwrap_or(ContentKind::Text);
    match template::render(body_template, kind, ctx) {
        Ok(body) => {
            let mut response = Response {
                status,
                headers: vec![("content-type".into(), content_type.to_string())],
                body: body.into_bytes(),
            };
            response.headers.extend(
                headers
                    .iter()
                    .filter(|(name, value)| is_settable_response_header(name, value))
                    .cloned(),
            );
            response
        }
        // Templates are checked when configured; this only guards against rows
        // written around the API.
        Err(_) => Response::json(
            500,
            &json!({"msg": "Response template failed", "event_id": event_id}),
        ),
    }
}

/// The type a handler returned, which decides the Content-Type of a workflow
/// response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerOutput {
    Json,
    Text,
    Xml,
}

impl HandlerOutput {
    /// From the handler's return type name (`pg_type.typname`).
    pub fn from_type_name(name: &str) -> Option<HandlerOutput> {
        match name {
            "jsonb" | "json" => Some(HandlerOutput::Json),
            "text" | "varchar" | "bpchar" => Some(HandlerOutput::Text),
            "xml" => Some(HandlerOutput::Xml),
            _ => None,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            HandlerOutput::Json => "application/json",
            HandlerOutput::Text => "text/plain; charset=utf-8",
            HandlerOutput::Xml => "application/xml; charset=utf-8",
        }
    }
}

/// The response of the workflow method: the handler's return value; a NULL
/// result is 204 No Content.
pub fn handler_response(output: HandlerOutput, value: Option<String>) -> Response {
    match value {
        Some(text) => Response {
            status: 200,
            headers: vec![("content-type".into(), output.content_type().into())],
            body: text.into_bytes(),
        },
        None => Response {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        },
    }
}

/// The response when the handler failed or missed its deadline: the workflow's
/// configured failure response, by default 500 `{"msg":"Workflow failed","event_id":…}`.
/// The error text is never sent (it may reveal internals); it is in the event row.
pub fn failure_response(
    rules: &WorkflowRules,
    event_id: i64,
    params: &Map<String, Value>,
) -> Response {
    let (status, content_type, body) = match &rules.response {
        ResponseConfig::Workflow {
            failure_status,
            failure_content_type,
            failure_body,
        } => (
            *failure_status,
            failure_content_type.clone(),
            failure_body.clone(),
        ),
        _ => (500, None, None),
    };
    match body {
        Some(template_text) => render_configured(
            status,
            content_type.as_deref().unwrap_or("application/json"),
            &template_text,
            &[],
            &template_context(rules.id, event_id, params),
            event_id,
        ),
        None => Response::json(
            status,
            &json!({"msg": "Workflow failed", "event_id": event_id}),
        ),
    }
}

/// Parses a parameter type stored in `webhook.parameters.type`.
pub fn param_type(name: &str) -> ParamType {
    name.parse().unwrap_or(ParamType::Text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{parse_body, BodyLimits};

    fn rules() -> WorkflowRules {
        WorkflowRules {
            id: Uuid::nil(),
            enabled: true,
            allowed_methods: vec!["GET".into(), "POST".into()],
            full_body_param: None,
            discriminator: None,
            params: vec![
                ParamSpec {
                    name: "order_id".into(),
                    source: Source::Body,
                    ty: ParamType::Text,
                    required: true,
                    strict: true,
                    nullable: true,
                    required_for: None,
                },
                ParamSpec {
                    name: "amount".into(),
                    source: Source::Body,
                    ty: ParamType::Number,
                    required: false,
                    strict: true,
                    nullable: true,
                    required_for: None,
                },
                ParamSpec {
                    name: "x-shop".into(),
                    source: Source::Header,
                    ty: ParamType::Text,
                    required: false,
                    strict: true,
                    nullable: true,
                    required_for: None,
                },
            ],
            response: ResponseConfig::Default,
            capture_armed: false,
        }
    }

    fn request(method: &str, content_type: &str, body: &str) -> IncomingRequest {
        let outcome = match parse_body(
            Some(content_type),
            None,
            body.as_bytes(),
            &BodyLimits::default(),
        ) {
            Ok(parsed) => BodyOutcome::Parsed(parsed),
            Err(e) => BodyOutcome::Unparseable {
                error: e.to_string(),
                text: body.into(),
            },
        };
        let mut headers = Map::new();
        headers.insert("x-shop".into(), json!("berlin"));
        headers.insert("host".into(), json!("localhost"));
        IncomingRequest {
            method: method.into(),
            query: crate::body::parse_query("source=web&amount=3"),
            headers,
            body: outcome,
            raw_body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn accepted_params_merge_and_coerce() {
        let mut req = request(
            "POST",
            "application/x-www-form-urlencoded",
            "order_id=7&amount=12.5",
        );
        let Admission::Accepted(accepted) = admit(&rules(), &mut req) else {
            panic!("not accepted")
        };
        assert_eq!(
            Value::Object(accepted.params),
            json!({"source": "web", "amount": 12.5, "order_id": "7", "x-shop": "berlin"})
        );
    }

    #[test]
    fn missing_required_is_the_contract_body() {
        let mut req = request("POST", "application/json", r#"{"amount": 1}"#);
        let Admission::Rejected(response) = admit(&rules(), &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 400);
        assert_eq!(
            String::from_utf8(response.body).unwrap(),
            r#"{"msg":"Missing required parameter(s)","missing":["order_id"]}"#
        );
    }

    #[test]
    fn wrong_type_is_400() {
        let mut req = request(
            "POST",
            "application/json",
            r#"{"order_id": "1", "amount": "lots"}"#,
        );
        let Admission::Rejected(response) = admit(&rules(), &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 400);
        assert_eq!(response.body_json().unwrap()["parameter"], "amount");
    }

    #[test]
    fn disabled_is_404_and_wrong_method_405() {
        let mut r = rules();
        let mut req = request("PUT", "application/json", "{}");
        let Admission::Rejected(response) = admit(&r, &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 405);
        assert!(response
            .headers
            .contains(&("allow".into(), "GET, POST".into())));
        r.enabled = false;
        let Admission::Rejected(response) = admit(&r, &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 404);
        assert_eq!(response.body, br#"{"msg":"Workflow not found"}"#);
    }

    #[test]
    fn method_names_are_case_sensitive() {
        let r = rules();
        let Admission::Rejected(response) =
            admit(&r, &mut request("post", "application/json", "{}"))
        else {
            panic!("a lower-case method was admitted")
        };
        assert_eq!(response.status, 405);
        assert_eq!(
            response.body,
            br#"{"msg":"Method not allowed","allowed":["GET","POST"]}"#
        );
    }

    #[test]
    fn unparseable_body_is_400_unless_full_body() {
        let mut req = request("POST", "application/json", "{nope");
        let Admission::Rejected(response) = admit(&rules(), &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 400);
        assert!(response.body_json().unwrap()["msg"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON body"));

        let mut r = rules();
        r.full_body_param = Some("raw".into());
        r.params = vec![ParamSpec {
            name: "raw".into(),
            source: Source::Body,
            ty: ParamType::Text,
            required: true,
            strict: true,
            nullable: true,
            required_for: None,
        }];
        let Admission::Accepted(accepted) = admit(&r, &mut req) else {
            panic!()
        };
        assert_eq!(accepted.params["raw"], json!("{nope"));
    }

    #[test]
    fn capture_groups_by_source_and_skips_transport_headers() {
        let mut r = rules();
        r.capture_armed = true;
        let mut req = request("POST", "application/x-www-form-urlencoded", "n=5&flag=true");
        let Admission::Capture(sample) = admit(&r, &mut req) else {
            panic!()
        };
        // Strings from the wire are text: Twilio's FromZip=60517 may be empty next time.
        let body = sample.body.unwrap();
        assert_eq!(body[0].name, "n");
        assert_eq!(body[0].ty, ParamType::Text);
        assert_eq!(body[1].ty, ParamType::Text);
        assert_eq!(sample.query.len(), 2);
        assert_eq!(
            sample
                .headers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            vec!["x-shop"]
        );
        let response = capture_response(
            Uuid::nil(),
            &CapturedSample {
                body: Some(body),
                ..sample
            },
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.body_json().unwrap()["msg"], "Sample captured");
    }

    fn body_params(req: &IncomingRequest) -> &Map<String, Value> {
        match &req.body {
            BodyOutcome::Parsed(parsed) => &parsed.params,
            BodyOutcome::Unparseable { .. } => panic!("unparseable"),
        }
    }

    #[test]
    fn only_an_accepted_request_gives_up_its_body_parameters() {
        let body = r#"{"order_id": "7", "deep": {"a": [1, 2]}}"#;
        let mut req = request("POST", "application/json", r#"{"amount": 1}"#);
        assert!(matches!(admit(&rules(), &mut req), Admission::Rejected(_)));
        assert_eq!(
            Value::Object(body_params(&req).clone()),
            json!({"amount": 1})
        );

        // A capture another listener took first is admitted again, whole.
        let mut r = rules();
        r.capture_armed = true;
        let mut req = request("POST", "application/json", body);
        assert!(matches!(admit(&r, &mut req), Admission::Capture(_)));
        r.capture_armed = false;
        let Admission::Accepted(accepted) = admit(&r, &mut req) else {
            panic!("not accepted")
        };
        assert_eq!(accepted.params["deep"], json!({"a": [1, 2]}));
        assert_eq!(accepted.params["amount"], json!(3));
        // Moved, not copied; the text stays for events.body.
        assert!(body_params(&req).is_empty());
        assert_eq!(stored_body(&req.body).as_deref(), Some(body));
    }

    #[test]
    fn a_long_missing_list_is_the_contract_body() {
        let mut r = rules();
        r.params = (0..MAX_PARAMETERS)
            .map(|i| ParamSpec {
                name: format!("p{i}"),
                source: Source::Body,
                ty: ParamType::Text,
                required: true,
                strict: false,
                nullable: true,
                required_for: None,
            })
            .collect();
        let mut req = request("POST", "application/json", "{}");
        let Admission::Rejected(response) = admit(&r, &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 400);
        let names: Vec<String> = (0..MAX_PARAMETERS).map(|i| format!("p{i}")).collect();
        assert_eq!(
            response.body_json().unwrap(),
            json!({"msg": "Missing required parameter(s)", "missing": names})
        );
    }

    /// `count` query parameters and `body` in the form body, to a workflow
    /// whose capture is armed.
    fn capture_of(r: &WorkflowRules, query_count: usize, body: &str) -> Admission {
        let mut req = request("POST", "application/x-www-form-urlencoded", body);
        req.query = (0..query_count)
            .map(|i| (format!("q{i}"), json!("v")))
            .collect();
        req.headers.clear();
        admit(r, &mut req)
    }

    #[test]
    fn a_sample_over_the_parameter_limits_is_refused_and_the_capture_stays_armed() {
        let mut r = rules();
        r.capture_armed = true;
        let too_many = br#"{"msg":"Sample has more than 1000 parameters"}"#;
        // At the limit, body and query together.
        let Admission::Capture(sample) = capture_of(&r, MAX_PARAMETERS - 2, "a=1&b=2") else {
            panic!("a sample at the limit is taken")
        };
        assert_eq!(
            sample.query.len() + sample.body.unwrap().len(),
            MAX_PARAMETERS
        );
        let Admission::Rejected(response) = capture_of(&r, MAX_PARAMETERS - 1, "a=1&b=2") else {
            panic!("one over the limit is refused")
        };
        assert_eq!(
            (response.status, response.body.as_slice()),
            (413, &too_many[..])
        );
        let wide: String = (0..5000).map(|i| format!("k{i}=1&")).collect();
        let Admission::Rejected(response) = capture_of(&r, 0, &wide) else {
            panic!()
        };
        assert_eq!(response.body, too_many);

        // A full-body workflow keeps its body parameters: they count.
        let mut full = r.clone();
        full.full_body_param = Some("raw".into());
        full.params = vec![ParamSpec {
            name: "raw".into(),
            source: Source::Body,
            ty: ParamType::Text,
            required: false,
            strict: false,
            nullable: true,
            required_for: None,
        }];
        assert!(matches!(
            capture_of(&full, MAX_PARAMETERS - 1, &wide),
            Admission::Capture(_)
        ));
        assert!(matches!(
            capture_of(&full, MAX_PARAMETERS, "x"),
            Admission::Rejected(_)
        ));

        // Names: a nested leaf's dotted path counts in full.
        let name = |len: usize| "n".repeat(len);
        let at = format!("{}=1", name(MAX_NAME_BYTES));
        assert!(matches!(capture_of(&r, 0, &at), Admission::Capture(_)));
        let over = format!("{}=1", name(MAX_NAME_BYTES + 1));
        let Admission::Rejected(response) = capture_of(&r, 0, &over) else {
            panic!()
        };
        assert_eq!(
            (response.status, response.body_json().unwrap()),
            (
                413,
                json!({"msg": "Sample has a parameter name longer than 256 bytes"})
            )
        );
        let mut req = request(
            "POST",
            "application/json",
            &format!(r#"{{"a": {{"{}": 1}}}}"#, name(MAX_NAME_BYTES - 1)),
        );
        assert!(matches!(admit(&r, &mut req), Admission::Rejected(_)));
    }

    #[test]
    fn nul_characters_are_refused_except_in_multipart_raw_text() {
        let mut req = request("POST", "application/json", r#"{"order_id": "a\u0000b"}"#);
        let Admission::Rejected(response) = admit(&rules(), &mut req) else {
            panic!()
        };
        assert_eq!(response.status, 400);
        let mut req = request("POST", "text/plain", "abc\0def");
        let mut r = rules();
        r.params.clear();
        assert!(matches!(admit(&r, &mut req), Admission::Rejected(_)));
        let multipart = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.bin\"\r\n\r\n\0\x01\r\n--b--\r\n";
        let mut req = request("POST", "multipart/form-data; boundary=b", multipart);
        let Admission::Accepted(accepted) = admit(&r, &mut req) else {
            panic!("multipart with a binary file is accepted")
        };
        assert_eq!(accepted.params["f"]["size"], json!(2));
        assert_eq!(stored_body(&req.body), None);
    }

    #[test]
    fn declared_header_parameters_match_any_case() {
        let mut r = rules();
        r.params = vec![ParamSpec {
            name: "X-Shop".into(),
            source: Source::Header,
            ty: ParamType::Text,
            required: true,
            strict: true,
            nullable: true,
            required_for: None,
        }];
        let mut req = request("POST", "application/json", "{}");
        let Admission::Accepted(accepted) = admit(&r, &mut req) else {
            panic!()
        };
        assert_eq!(accepted.params["X-Shop"], json!("berlin"));
    }

    #[test]
    fn reserved_and_malformed_response_headers_are_never_sent() {
        assert!(is_settable_response_header("x-shop", "berlin"));
        assert!(is_settable_response_header(
            "Cache-Control",
            "no-store\tprivate"
        ));
        for (name, value) in [
            ("content-length", "0"),
            ("Content-Length", "0"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("content-type", "text/html"),
            ("x-a", "b\r\nContent-Length: 0"),
            ("x-a", "b\n"),
            ("x a", "b"),
            ("x:a", "b"),
            ("", "b"),
        ] {
            assert!(
                !is_settable_response_header(name, value),
                "{name}: {value:?}"
            );
        }
        let rules = WorkflowRules {
            response: ResponseConfig::Custom {
                status: 200,
                content_type: "text/plain".into(),
                body_template: "ok".into(),
                headers: vec![
                    ("content-length".into(), "0".into()),
                    ("x-split".into(), "a\r\n\r\nHTTP/1.1 200 OK".into()),
                    ("x-ok".into(), "1".into()),
                ],
            },
            ..rules()
        };
        let response = accepted_response(&rules, 1, &Map::new()).expect("custom");
        let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["content-type", "x-ok"]);
    }

    #[test]
    fn default_and_custom_responses() {
        let mut params = Map::new();
        params.insert("order_id".into(), json!("A \"1\""));
        let r = rules();
        let response = accepted_response(&r, 42, &params).unwrap();
        assert_eq!(
            response.body_json().unwrap(),
            json!({"msg": "success", "event_id": 42, "workflow_id": Uuid::nil()})
        );
        let mut r = rules();
        r.response = ResponseConfig::Custom {
            status: 201,
            content_type: "application/json".into(),
            body_template: r#"{"got": "{{order_id}}", "id": {{event_id}}}"#.into(),
            headers: vec![("x-a".into(), "b".into())],
        };
        let response = accepted_response(&r, 42, &params).unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(
            response.body_json().unwrap(),
            json!({"got": "A \"1\"", "id": 42})
        );
        assert!(response.headers.contains(&("x-a".into(), "b".into())));
    }

    #[test]
    fn workflow_and_failure_responses() {
        let ok = handler_response(HandlerOutput::Json, Some(r#"{"a":1}"#.into()));
        assert_eq!(ok.status, 200);
        assert_eq!(handler_response(HandlerOutput::Text, None).status, 204);
        let failed = failure_response(&rules(), 9, &Map::new());
        assert_eq!(failed.status, 500);
        assert_eq!(
            failed.body_json().unwrap(),
            json!({"msg": "Workflow failed", "event_id": 9})
        );
        let mut r = rules();
        r.response = ResponseConfig::Workflow {
            failure_status: 503,
            failure_content_type: Some("text/plain; charset=utf-8".into()),
            failure_body: Some("retry event {{event_id}}".into()),
        };
        let failed = failure_response(&r, 9, &Map::new());
        assert_eq!(
            (failed.status, failed.body),
            (503, b"retry event 9".to_vec())
        );
    }
}
