//! Typed errors of the SQL-facing Rust functions, turned into PostgreSQL errors
//! (SQLSTATE, message, DETAIL, HINT) at the SQL boundary.

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
}

impl SqlError {
    fn code(&self) -> PgSqlErrorCode {
        match self {
            SqlError::SampleNotObject { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            SqlError::KvSample(_) => PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            SqlError::UnsupportedContentType(_)
            | SqlError::Template(_)
            | SqlError::Verification(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }

    fn detail(&self) -> String {
        match self {
            SqlError::SampleNotObject { found } => format!("The sample is a JSON {found}."),
            SqlError::KvSample(e) => format!("{}.", capitalize(&e.to_string())),
            SqlError::UnsupportedContentType(_) => {
                "Custom responses are JSON, plain text, XML or HTML.".to_string()
            }
            SqlError::Template(e) => format!("{}.", capitalize(&e.to_string())),
            SqlError::Verification(_) => {
                "Schemes: standard-webhooks, github, stripe, slack, shopify, twilio, gitlab, hmac, bearer, basic, none.".to_string()
            }
        }
    }

    fn hint(&self) -> &'static str {
        match self {
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
        }
    }

    /// Raises this error in PostgreSQL; does not return.
    pub fn report(self) -> ! {
        ErrorReport::new(self.code(), self.to_string(), "webhook_ext")
            .set_detail(self.detail())
            .set_hint(self.hint())
            .report(PgLogLevel::ERROR);
        unreachable!("ERROR reports do not return")
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
