//! The `webhook.events` row, declared once (the `events_row!` invocation
//! below): the columns in table order, each with its SQL type and the
//! [`EventRow`] field that carries it. Every statement that writes or reads
//! the whole row is generated from that declaration: the INSERTs the
//! pipeline stores an event with, the `ROW(...)` a handler receives (built
//! from the same parameters, so the handler gets its argument without
//! reading the row back), the select list the executor's claim reads by
//! column name, and the parameter types. `webhook._event_columns()`
//! (src/sql_helpers.rs) reports the declaration, and
//! tests/e2e/test_events_row.py checks it against the table in
//! sql/schema.sql, order included: `ROW(...)::webhook.events` fills the
//! columns by position.

use std::sync::OnceLock;
use std::time::SystemTime;

use pgrx::datum::{DatumWithOid, IntoDatum};
use pgrx::PgOid;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use webhook_core::request::Response;

use super::catalog::pg_uuid;
use super::jsonb::{to_jsonb, JsonbDatum};
use super::spi::array_column;

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

/// Declares the columns of `webhook.events` once, in table order, as
/// `field: RustType = ColumnType[, handler sees "SQL"];`, and generates from
/// that: [`EventRow`] (a field per column, named as the column),
/// [`EVENT_COLUMNS`], [`EVENTS`] (the names) and the parameters
/// ([`EventRow::arg_types`], [`EventRow::args`], [`EventRow::columns`]).
macro_rules! events_row {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident: $ty:ty = $column_type:ident $(, handler sees $seen:literal)?;
    )*) => {
        /// One `webhook.events` row, as the INSERT and the handler call take it.
        pub struct EventRow {
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        /// The columns of `webhook.events`, in table order.
        pub const EVENT_COLUMNS: &[EventColumn] = &[
            $( EventColumn {
                name: stringify!($name),
                column_type: ColumnType::$column_type,
                handler_sees: events_row!(@seen $($seen)?),
            }, )*
        ];

        /// The name of each column, for reading a row by name
        /// (`row.get_by_name(EVENTS.id)`): a misspelt column does not compile.
        #[allow(dead_code, reason = "every column has its name; not every one is read by name")]
        pub struct EventColumnNames {
            $( pub $name: &'static str, )*
        }

        /// See [`EventColumnNames`].
        pub const EVENTS: EventColumnNames = EventColumnNames {
            $( $name: stringify!($name), )*
        };

        impl EventRow {
            /// The statements' parameter types: those of the values
            /// [`EventRow::args`] passes, so that the two cannot disagree.
            pub fn arg_types() -> Vec<PgOid> {
                vec![$(
                    PgOid::from(<<$ty as Carried>::Datum<'static> as IntoDatum>::type_oid()),
                )*]
            }

            /// [`EventRow::args`], except where `stored(column)` gives a datum:
            /// that is passed as it is instead of the field's value.
            pub fn args_with<'a>(
                &self,
                stored: impl Fn(&str) -> Option<DatumWithOid<'a>>,
            ) -> Vec<DatumWithOid<'a>> {
                vec![$(
                    stored(stringify!($name))
                        .unwrap_or_else(|| DatumWithOid::from(self.$name.carried())),
                )*]
            }

            /// [`insert_events_sql`]'s parameters for these rows: one array per column.
            pub fn columns<'a>(
                rows: impl Iterator<Item = &'a EventRow> + Clone,
            ) -> Vec<DatumWithOid<'static>> {
                vec![$( array_column(rows.clone(), |row| row.$name.carried()), )*]
            }
        }
    };
    (@seen) => { None };
    (@seen $seen:literal) => { Some($seen) };
}

// The columns of webhook.events (sql/schema.sql), in its order. A column
// added there is added here, once: the statements then write it and the
// handler receives it, and the compiler asks for its value where rows are
// built (src/ingest/pipeline.rs, the claim in src/execution/executor.rs).
events_row! {
    id: i64 = Int8;
    workflow_id: Uuid = Uuid;
    received_at: f64 = Timestamptz;
    method: String = Text;
    query: Value = Jsonb;
    headers: Value = Jsonb;
    params: Value = Jsonb;
    body: Option<String> = Text;
    /// The handler sees `pending` whatever is stored: its run is not over.
    status: &'static str = Text, handler sees "'pending'";
    error: Option<String> = Text, handler sees "NULL";
    response: Option<Value> = Jsonb, handler sees "NULL";
    origin: Origin = Text;
    remote_addr: Option<String> = Inet;
    handled_at: f64 = Timestamptz;
    replay_of: Option<i64> = Int8;
    raw_path: Option<String> = Text;
    raw_query: Option<String> = Text;
    /// Attempts made (stored), or the attempt running (the handler's argument).
    attempts: i32 = Int4;
    /// When the next attempt is due (Unix seconds); `None` once done.
    next_attempt_at: Option<f64> = Timestamptz, handler sees "NULL";
    listener_pid: Option<i32> = Int4;
}

/// The SQL type of a column, and how an [`EventRow`] field carries its value
/// to and from the statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int8,
    Int4,
    Uuid,
    Text,
    Jsonb,
    /// Carried as text.
    Inet,
    /// Carried as Unix seconds (float8).
    Timestamptz,
}

impl ColumnType {
    /// The type as `pg_catalog.format_type` names it, as
    /// `webhook._event_columns()` reports it.
    pub const fn catalog_name(self) -> &'static str {
        match self {
            ColumnType::Int8 => "bigint",
            ColumnType::Int4 => "integer",
            ColumnType::Uuid => "uuid",
            ColumnType::Text => "text",
            ColumnType::Jsonb => "jsonb",
            ColumnType::Inet => "inet",
            ColumnType::Timestamptz => "timestamp with time zone",
        }
    }

    /// The column's type in casts.
    const fn sql(self) -> &'static str {
        match self {
            ColumnType::Int8 => "pg_catalog.int8",
            ColumnType::Int4 => "pg_catalog.int4",
            ColumnType::Uuid => "pg_catalog.uuid",
            ColumnType::Text => "pg_catalog.text",
            ColumnType::Jsonb => "pg_catalog.jsonb",
            ColumnType::Inet => "pg_catalog.inet",
            ColumnType::Timestamptz => "pg_catalog.timestamptz",
        }
    }

    /// The type of the value an [`EventRow`] field carries: the statements'
    /// parameter type (checked against the fields' types by this file's test).
    const fn carried(self) -> &'static str {
        match self {
            ColumnType::Inet => "pg_catalog.text",
            ColumnType::Timestamptz => "pg_catalog.float8",
            other => other.sql(),
        }
    }

    /// The column's value made of a carried one.
    fn column_value(self, carried: &str) -> String {
        match self {
            ColumnType::Inet => format!("{carried}::pg_catalog.inet"),
            ColumnType::Timestamptz => format!("pg_catalog.to_timestamp({carried})"),
            _ => carried.to_string(),
        }
    }

    /// The carried value read from the column.
    fn carried_value(self, column: &str) -> String {
        match self {
            ColumnType::Inet => format!("{column}::pg_catalog.text"),
            ColumnType::Timestamptz => format!("extract(epoch FROM {column})::pg_catalog.float8"),
            _ => column.to_string(),
        }
    }
}

/// One column of `webhook.events`, as declared by `events_row!`.
pub struct EventColumn {
    pub name: &'static str,
    pub column_type: ColumnType,
    /// What a handler's argument holds in this column instead of the
    /// parameter (SQL, cast to the column's type), if anything.
    pub handler_sees: Option<&'static str>,
}

/// `INSERT INTO webhook.events (…) VALUES (…)`: one row from [`EventRow::args`]
/// (parameter types [`EventRow::arg_types`]).
pub fn insert_event_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT INTO webhook.events ({})\nVALUES ({})",
            column_names(),
            list(|n, column| column.column_type.column_value(&parameter(n))),
        )
    })
}

/// The same INSERT for many rows at once ([`EventRow::columns`] of the rows,
/// one array per column, parameter types [`EventRow::column_types`]): the
/// listener stores a batch's events with one statement.
pub fn insert_events_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let names = column_names();
        format!(
            "INSERT INTO webhook.events ({names})\nSELECT {}\n  FROM ROWS FROM ({})\n    AS r ({names})",
            list(|_, column| column.column_type.column_value(&format!("r.{}", column.name))),
            list(|n, column| format!(
                "pg_catalog.unnest({}::{}[])",
                parameter(n),
                column.column_type.carried()
            )),
        )
    })
}

/// The handler's argument, in table column order, from the INSERT's
/// parameters ([`EventRow::args`]): status `pending`, and `attempts` the
/// number of the attempt that is running (1 for the first).
pub fn event_row_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let values = list(|n, column| match column.handler_sees {
            Some(value) => format!("{value}::{}", column.column_type.sql()),
            None => column.column_type.column_value(&parameter(n)),
        });
        format!("ROW({values})::webhook.events")
    })
}

/// The columns of `webhook.events e` that a handler's argument takes from
/// the stored event (all but those it sees fixed values in), each as its
/// [`EventRow`] field carries it and named as the column
/// (`extract(epoch FROM e.received_at)::… AS received_at`): what the
/// executor's claim reads, by name ([`EVENTS`]).
pub fn handler_columns_select_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let selected: Vec<String> = EVENT_COLUMNS
            .iter()
            .filter(|column| column.handler_sees.is_none())
            .map(|column| {
                let value = column
                    .column_type
                    .carried_value(&format!("e.{}", column.name));
                format!("{value} AS {}", column.name)
            })
            .collect();
        selected.join(", ")
    })
}

/// The declaration as `webhook._event_columns()` reports it:
/// `[{name, type}]` in table order, types as `format_type` names them.
pub fn event_columns_json() -> Value {
    EVENT_COLUMNS
        .iter()
        .map(|column| json!({"name": column.name, "type": column.column_type.catalog_name()}))
        .collect()
}

fn column_names() -> String {
    list(|_, column| column.name.to_string())
}

/// The placeholder of the `n`th column (0-based).
fn parameter(n: usize) -> String {
    format!("${}", n + 1)
}

fn list(item: impl Fn(usize, &EventColumn) -> String) -> String {
    let items: Vec<String> = EVENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(n, column)| item(n, column))
        .collect();
    items.join(", ")
}

impl EventRow {
    /// The parsed parameters, as templates take them.
    pub fn params_map(&self) -> Map<String, Value> {
        match &self.params {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        }
    }

    /// [`insert_event_sql`]'s parameters, and the handler call's.
    pub fn args(&self) -> Vec<DatumWithOid<'static>> {
        self.args_with(|_| None)
    }

    /// [`insert_events_sql`]'s parameter types: an array of each column's type.
    pub fn column_types() -> Vec<PgOid> {
        Self::arg_types()
            .into_iter()
            // SAFETY: a catalog lookup of built-in types' array types, on the
            // main thread inside a transaction.
            .map(|element| PgOid::from(unsafe { pgrx::pg_sys::get_array_type(element.value()) }))
            .collect()
    }
}

/// How an [`EventRow`] field is passed to the statements: as the value its
/// column's parameter takes ([`ColumnType::carried`]).
pub trait Carried {
    type Datum<'a>: IntoDatum
    where
        Self: 'a;
    fn carried(&self) -> Self::Datum<'_>;
}

macro_rules! carried_as_is {
    ($($ty:ty),*) => {$(
        impl Carried for $ty {
            type Datum<'a> = $ty;
            fn carried(&self) -> $ty {
                *self
            }
        }
    )*};
}
carried_as_is!(i64, i32, f64);

impl Carried for String {
    type Datum<'a> = &'a str;
    fn carried(&self) -> &str {
        self
    }
}

impl Carried for &'static str {
    type Datum<'a> = &'static str;
    fn carried(&self) -> &'static str {
        self
    }
}

impl Carried for Uuid {
    type Datum<'a> = pgrx::Uuid;
    fn carried(&self) -> pgrx::Uuid {
        pg_uuid(*self)
    }
}

impl Carried for Value {
    type Datum<'a> = JsonbDatum;
    fn carried(&self) -> JsonbDatum {
        to_jsonb(self)
    }
}

impl Carried for Origin {
    type Datum<'a> = &'static str;
    fn carried(&self) -> &'static str {
        self.as_str()
    }
}

impl<T: Carried> Carried for Option<T> {
    type Datum<'a>
        = Option<T::Datum<'a>>
    where
        T: 'a;
    fn carried(&self) -> Self::Datum<'_> {
        self.as_ref().map(T::carried)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use pgrx::pg_sys;

    /// What the statements declare a parameter to be ([`ColumnType::carried`])
    /// is what the field passes ([`EventRow::arg_types`]).
    #[test]
    fn fields_carry_the_parameter_types_the_statements_declare() {
        let oid = |name: &str| match name {
            "pg_catalog.int8" => pg_sys::INT8OID,
            "pg_catalog.int4" => pg_sys::INT4OID,
            "pg_catalog.uuid" => pg_sys::UUIDOID,
            "pg_catalog.text" => pg_sys::TEXTOID,
            "pg_catalog.jsonb" => pg_sys::JSONBOID,
            "pg_catalog.float8" => pg_sys::FLOAT8OID,
            other => panic!("no OID listed for {other}"),
        };
        let types = EventRow::arg_types();
        assert_eq!(types.len(), EVENT_COLUMNS.len());
        for (column, passed) in EVENT_COLUMNS.iter().zip(types) {
            let declared = oid(column.column_type.carried());
            assert_eq!(passed.value(), declared, "column {}", column.name);
        }
    }

    /// Each statement names every column once and numbers the parameters
    /// 1 to N.
    #[test]
    fn statements_cover_every_column() {
        let n = EVENT_COLUMNS.len();
        for sql in [insert_event_sql(), insert_events_sql(), event_row_sql()] {
            assert!(sql.contains(&format!("${n}")), "{sql}");
            assert!(!sql.contains(&format!("${}", n + 1)), "{sql}");
        }
        for column in EVENT_COLUMNS {
            let named = format!("AS {},", column.name);
            let selected = format!("{}, ", handler_columns_select_sql()).contains(&named);
            assert_eq!(selected, column.handler_sees.is_none(), "{}", column.name);
        }
        assert_eq!(event_row_sql().matches(", ").count(), n - 1);
    }
}
