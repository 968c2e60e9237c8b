//! The one way the extension's Rust code raises SQL errors: every error is a
//! [`SqlError`] with its SQLSTATE, message, DETAIL and HINT written here once,
//! and [`SqlError::report`] raises it. Errors a user causes carry the SQLSTATE
//! PostgreSQL itself would use for them; only a failure of the extension's
//! own statements is `XX000` (internal error).
//!
//! (A setting's check hook reports through PostgreSQL's GUC machinery
//! instead, src/pg/gucs.rs, which is how every setting is checked.)

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

use webhook_core::kv::KvError;
use webhook_core::template::TemplateError;
use webhook_core::verify::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("a JSON sample must be an object or an array")]
    SampleNotObject { found: &'static str },
    #[error("invalid key-value sample")]
    KvSample(#[from] KvError),
    #[error("unsupported response content type \"{0}\"")]
    UnsupportedContentType(String),
    #[error("invalid response body template")]
    Template(#[from] TemplateError),
    /// Its message never contains a secret (webhook_core::verify).
    #[error("invalid verification: {0}")]
    Verification(#[from] ConfigError),
    /// `webhook_replay` of an event the caller cannot see (another owner's
    /// looks the same as none).
    #[error("event {0} does not exist")]
    EventNotFound(i64),
    /// `webhook.max_config_changes_per_second` would make the change wait
    /// longer than the statement may.
    #[error("too many changes to workflow definitions by this role at once")]
    ConfigChangesPaced { wait_secs: u64, rate: f64 },
    #[error("the workflow's handler function no longer exists")]
    HandlerDropped,
    #[error(
        "permission denied: the workflow's owner may not call its handler \
         (USAGE on its schema and EXECUTE on it are required)"
    )]
    HandlerNotCallable,
    /// Raised when a handler's deadline fired (after PostgreSQL's own
    /// cancellation), so the attempt records why it ended.
    #[error("handler exceeded its deadline of {0} ms")]
    HandlerDeadline(u128),
    /// Handlers share their executor's transaction with the batch's others.
    #[error("SET CONSTRAINTS is not allowed in a webhook handler")]
    SetConstraintsInHandler,
    /// `webhook_read` of a workflow whose handler runs its events.
    #[error("workflow {0} is not read by applications: its handler runs its events")]
    NotQueued(String),
    /// An argument of a queue function out of its range.
    #[error("{0}")]
    QueueArgument(String),
    /// A parameter change would drop or retype attributes of a workflow's
    /// record type while functions take it (src/record_type.rs).
    #[error("cannot drop or retype attributes of type {type_name} while a function takes it")]
    RecordTypeInUse {
        type_name: String,
        attributes: Vec<String>,
        functions: Vec<String>,
    },
    /// A statement of the extension's own failed where PostgreSQL raised no
    /// error of its own (pgrx's SPI layer): a defect, not the user's doing.
    #[error("webhook_ext: {context}: {message}")]
    Internal {
        context: &'static str,
        message: String,
    },
}

impl SqlError {
    /// A failure of the extension's own statement (`context` says which).
    pub fn internal(context: &'static str, error: impl std::fmt::Display) -> SqlError {
        SqlError::Internal {
            context,
            message: error.to_string(),
        }
    }

    fn code(&self) -> PgSqlErrorCode {
        use PgSqlErrorCode::*;
        match self {
            SqlError::SampleNotObject { .. }
            | SqlError::UnsupportedContentType(_)
            | SqlError::Template(_)
            | SqlError::Verification(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            SqlError::KvSample(_) => ERRCODE_INVALID_TEXT_REPRESENTATION,
            SqlError::EventNotFound(_) => ERRCODE_UNDEFINED_OBJECT,
            SqlError::NotQueued(_) => ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            SqlError::QueueArgument(_) => ERRCODE_INVALID_PARAMETER_VALUE,
            SqlError::ConfigChangesPaced { .. } => ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            SqlError::HandlerDropped => ERRCODE_UNDEFINED_FUNCTION,
            SqlError::HandlerNotCallable | SqlError::SetConstraintsInHandler => {
                ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            SqlError::HandlerDeadline(_) => ERRCODE_QUERY_CANCELED,
            SqlError::RecordTypeInUse { .. } => ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            SqlError::Internal { .. } => ERRCODE_INTERNAL_ERROR,
        }
    }

    fn detail(&self) -> Option<String> {
        Some(match self {
            SqlError::SampleNotObject { found } => format!("The sample is a JSON {found}."),
            SqlError::KvSample(e) => format!("{}.", capitalize(&e.to_string())),
            SqlError::UnsupportedContentType(_) => {
                "Custom responses are JSON, plain text, XML or HTML.".to_string()
            }
            SqlError::Template(e) => format!("{}.", capitalize(&e.to_string())),
            SqlError::Verification(_) => {
                "Schemes: standard-webhooks, github, stripe, slack, shopify, twilio, gitlab, hmac, bearer, basic, none.".to_string()
            }
            SqlError::SetConstraintsInHandler => {
                "It would change constraint timing for the other handlers in the same batch."
                    .to_string()
            }
            SqlError::ConfigChangesPaced { wait_secs, rate } => format!(
                "Its turn would come in {wait_secs} s; webhook.max_config_changes_per_second allows {rate} transactions a second."
            ),
            SqlError::RecordTypeInUse {
                attributes,
                functions,
                ..
            } => format!(
                "The parameter change would drop or retype {} {}; {} {} {} the type.",
                if attributes.len() == 1 { "attribute" } else { "attributes" },
                attributes.join(", "),
                if functions.len() == 1 { "function" } else { "functions" },
                functions.join(", "),
                if functions.len() == 1 { "takes or returns" } else { "take or return" },
            ),
            SqlError::EventNotFound(_)
            | SqlError::NotQueued(_)
            | SqlError::QueueArgument(_)
            | SqlError::HandlerDropped
            | SqlError::HandlerNotCallable
            | SqlError::HandlerDeadline(_)
            | SqlError::Internal { .. } => return None,
        })
    }

    fn hint(&self) -> Option<&'static str> {
        Some(match self {
            SqlError::SampleNotObject { .. } => {
                r#"Pass an object whose keys are the parameters, e.g. '{"order_id": 42, "customer": {"email": "a@example.com"}}'."#
            }
            SqlError::KvSample(_) => {
                "Write one key=value or key: value pair per line, or a single query string such as 'a=1&b=2'."
            }
            SqlError::UnsupportedContentType(_) => {
                "Use application/json, text/plain, application/xml or text/html (+json and +xml types work too)."
            }
            SqlError::Verification(_) => {
                "e.g. webhook_set_verification(id, 'github', secret => $1); see docs/verification.md in the extension's repository."
            }
            SqlError::Template(_) => {
                "Placeholders look like {{order_id}} or {{customer.email}}; a JSON template must be valid JSON, with placeholders as values or inside strings."
            }
            SqlError::EventNotFound(_) => "A role sees only the events of the workflows it owns.",
            SqlError::NotQueued(_) => {
                "webhook_set_queue(workflow) makes applications read its events."
            }
            SqlError::ConfigChangesPaced { .. } => {
                "Make several changes in one transaction, or wait."
            }
            SqlError::RecordTypeInUse { .. } => {
                "Keep those parameters as they are, or first change or drop the functions (a handler may take webhook.events or jsonb instead: webhook_set_handler)."
            }
            SqlError::HandlerDropped
            | SqlError::HandlerNotCallable
            | SqlError::HandlerDeadline(_)
            | SqlError::SetConstraintsInHandler
            | SqlError::QueueArgument(_)
            | SqlError::Internal { .. } => return None,
        })
    }

    /// Raises this error in PostgreSQL; does not return. Inside a
    /// subtransaction (src/pg/spi.rs) it is caught and rolls it back.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.code(), self.to_string(), "webhook_ext");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        if let Some(hint) = self.hint() {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

/// Raises [`SqlError::Internal`] for a pgrx SPI error of the extension's own
/// statement, so that the enclosing subtransaction rolls back whatever was
/// done.
pub fn ok_or_raise<T>(result: Result<T, pgrx::spi::Error>) -> T {
    result.unwrap_or_else(|e| SqlError::internal("statement failed", e).report())
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
