//! serde_json values as jsonb datums, built by PostgreSQL's own jsonb builder
//! (`pushJsonbValue`, as `jsonb_in` builds them) from the value itself,
//! instead of printing it as text for `jsonb_in` to parse again: that round
//! trip was about a tenth of the listener's work per request. Numbers go
//! through `numeric_in`, as `jsonb_in` sends them, so both give the same
//! jsonb, byte for byte.

use std::ffi::CString;

use pgrx::datum::IntoDatum;
use pgrx::pg_sys;
use pgrx::JsonB;
use serde_json::Value;

/// A jsonb datum made by [`to_jsonb`], for statement parameters and arrays.
#[derive(Clone, Copy)]
pub struct JsonbDatum(pg_sys::Datum);

impl IntoDatum for JsonbDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

/// The value as jsonb, in the current memory context. A value PostgreSQL
/// would refuse (a string holding U+0000, which text cannot hold, or one
/// longer than a jsonb string can be) goes through `jsonb_in`, which raises
/// its own error for it.
pub fn to_jsonb(value: &Value) -> JsonbDatum {
    if refused_by_jsonb(value) {
        let datum = JsonB(value.clone())
            .into_datum()
            .expect("jsonb_in returns a value or raises an error");
        return JsonbDatum(datum);
    }
    let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
    // SAFETY: main thread, inside a transaction. Every JsonbValue pushed
    // points into `value` (strings) or into numerics just made; PostgreSQL
    // copies them into the result before this returns, and `value` outlives
    // the call.
    unsafe {
        let root = match value {
            Value::Object(_) | Value::Array(_) => push(&mut state, value, None),
            scalar => {
                // jsonb_in's form for a lone scalar: a one-element "raw
                // scalar" array.
                let mut array: pg_sys::JsonbValue = std::mem::zeroed();
                array.type_ = pg_sys::jbvType::jbvArray;
                array.val.array.rawScalar = true;
                array.val.array.nElems = 1;
                pg_sys::pushJsonbValue(
                    &mut state,
                    pg_sys::JsonbIteratorToken::WJB_BEGIN_ARRAY,
                    &mut array,
                );
                push(
                    &mut state,
                    scalar,
                    Some(pg_sys::JsonbIteratorToken::WJB_ELEM),
                );
                pg_sys::pushJsonbValue(
                    &mut state,
                    pg_sys::JsonbIteratorToken::WJB_END_ARRAY,
                    std::ptr::null_mut(),
                )
            }
        };
        JsonbDatum(pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(root)))
    }
}

/// Pushes `value`: a container as its begin, contents and end tokens (the
/// end returns the finished container), a scalar with `token` (`WJB_VALUE`
/// in an object, `WJB_ELEM` in an array).
///
/// # Safety
/// As in [`to_jsonb`]: `value` must outlive the building of the result.
unsafe fn push(
    state: &mut *mut pg_sys::JsonbParseState,
    value: &Value,
    token: Option<pg_sys::JsonbIteratorToken::Type>,
) -> *mut pg_sys::JsonbValue {
    use pg_sys::JsonbIteratorToken::*;
    let null = std::ptr::null_mut();
    match value {
        Value::Object(map) => {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_OBJECT, null);
            for (key, member) in map {
                let mut key = string(key);
                pg_sys::pushJsonbValue(state, WJB_KEY, &mut key);
                push(state, member, Some(WJB_VALUE));
            }
            pg_sys::pushJsonbValue(state, WJB_END_OBJECT, null)
        }
        Value::Array(items) => {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_ARRAY, null);
            for item in items {
                push(state, item, Some(WJB_ELEM));
            }
            pg_sys::pushJsonbValue(state, WJB_END_ARRAY, null)
        }
        scalar_value => {
            let mut scalar = scalar(scalar_value);
            pg_sys::pushJsonbValue(state, token.unwrap_or(WJB_ELEM), &mut scalar)
        }
    }
}

/// A string, key or value, pointing into `text` (not copied).
fn string(text: &str) -> pg_sys::JsonbValue {
    // SAFETY: a zeroed JsonbValue is a valid jbvNull; the fields set below
    // are the string variant's.
    let mut value: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    value.type_ = pg_sys::jbvType::jbvString;
    value.val.string = pg_sys::JsonbValue__bindgen_ty_1__bindgen_ty_1 {
        len: text.len() as std::ffi::c_int,
        val: text.as_ptr() as *mut std::ffi::c_char,
    };
    value
}

/// A scalar (not an object or array) as a JsonbValue.
fn scalar(value: &Value) -> pg_sys::JsonbValue {
    // SAFETY: as in `string`: zeroed is jbvNull, and each arm sets one
    // variant with its type.
    let mut scalar: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    match value {
        Value::Null => scalar.type_ = pg_sys::jbvType::jbvNull,
        Value::Bool(b) => {
            scalar.type_ = pg_sys::jbvType::jbvBool;
            scalar.val.boolean = *b;
        }
        Value::Number(number) => {
            let text = CString::new(number.to_string()).expect("a number has no NUL");
            // SAFETY: numeric_in with the arguments jsonb_in gives it (no
            // type modifier); it returns a numeric or raises an error.
            let numeric = unsafe {
                pgrx::fcinfo::direct_function_call_as_datum(
                    pg_sys::numeric_in,
                    &[
                        Some(pg_sys::Datum::from(text.as_ptr())),
                        Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                        Some(pg_sys::Datum::from(-1i32)),
                    ],
                )
            }
            .expect("numeric_in returns a value");
            scalar.type_ = pg_sys::jbvType::jbvNumeric;
            scalar.val.numeric = numeric.cast_mut_ptr();
        }
        Value::String(text) => return string(text),
        Value::Object(_) | Value::Array(_) => unreachable!("containers are pushed whole"),
    }
    scalar
}

/// Whether a string or key anywhere in the value is one jsonb cannot hold.
fn refused_by_jsonb(value: &Value) -> bool {
    // JENTRY_OFFLENMASK: the longest string a jsonb entry can hold.
    const LONGEST_STRING: usize = 0x0FFF_FFFF;
    let refused = |text: &str| text.len() > LONGEST_STRING || text.contains('\0');
    match value {
        Value::String(text) => refused(text),
        Value::Array(items) => items.iter().any(refused_by_jsonb),
        Value::Object(map) => map
            .iter()
            .any(|(key, member)| refused(key) || refused_by_jsonb(member)),
        _ => false,
    }
}
