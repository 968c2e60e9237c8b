//! serde_json values as jsonb datums, written in jsonb's binary format by
//! `webhook_core::jsonb` instead of printed as text for `jsonb_in` to parse
//! again: that round trip was about a tenth of the listener's work per
//! request. Numbers other than integers are made by `numeric_in`, as
//! `jsonb_in` makes them, so both give the same jsonb, byte for byte
//! (tests/e2e/test_real_deliveries.py compares them on every delivery of the
//! corpus).

use std::ffi::CString;

use pgrx::datum::IntoDatum;
use pgrx::pg_sys;
use pgrx::JsonB;
use serde_json::{Number, Value};

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
/// too long for jsonb) goes through `jsonb_in`, which raises its own error.
pub fn to_jsonb(value: &Value) -> JsonbDatum {
    if let Ok(bytes) = webhook_core::jsonb::encode(value, &mut numeric) {
        // SAFETY: main thread; palloc raises an error rather than return
        // NULL, and the copy fills exactly the bytes allocated.
        let copy = unsafe {
            let copy = pg_sys::palloc(bytes.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), copy, bytes.len());
            copy
        };
        return JsonbDatum(pg_sys::Datum::from(copy));
    }
    let datum = JsonB(value.clone())
        .into_datum()
        .expect("jsonb_in returns a value or raises an error");
    JsonbDatum(datum)
}

/// The numeric varlena `numeric_in` makes of the number's text (arbitrary
/// precision: the digits as the request had them); integers, the usual kind,
/// are written here without calling it.
fn numeric(number: &Number) -> Vec<u8> {
    let text = number.to_string();
    if let Some(bytes) = webhook_core::jsonb::integer_numeric(&text) {
        return bytes;
    }
    let text = CString::new(text).expect("a number has no NUL");
    // SAFETY: numeric_in with the arguments jsonb_in gives it (no type
    // modifier); it returns a palloc'd numeric or raises an error. Its bytes
    // are copied, then it is freed.
    unsafe {
        let datum = pgrx::fcinfo::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                Some(pg_sys::Datum::from(text.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
        .expect("numeric_in returns a value");
        let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
        let bytes =
            std::slice::from_raw_parts(varlena.cast::<u8>(), pgrx::varlena::varsize_any(varlena))
                .to_vec();
        pg_sys::pfree(varlena.cast());
        bytes
    }
}
