//! Calling a workflow's handler: as its owner, with the owner's search_path,
//! under a deadline, through one kept plan per handler. Errors are raised
//! (PostgreSQL ERRORs), for the caller's subtransaction to catch.

use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};
use pgrx::{pg_sys, PgOid};

use crate::pg::catalog::{HandlerUnavailable, Workflow};
use crate::pg::errors::SqlError;
use crate::pg::event_row::EventRow;
use crate::pg::spi::{as_handler_owner, ok_or_raise, with_deadline};

/// Kept plans of handler calls, shared by the workflows that use the same one.
#[derive(Default)]
pub struct HandlerPlans {
    plans: HashMap<String, OwnedPreparedStatement>,
}

impl HandlerPlans {
    pub fn clear(&mut self) {
        self.plans.clear();
    }

    /// Runs the workflow's handler with the event's columns as `args`
    /// ([`EventRow::args`]); returns what it returned, as text. A handler
    /// that takes the workflow's record also gets the record's values,
    /// mapped here from the event's `params` (only then read).
    pub fn call(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        args: Vec<DatumWithOid<'_>>,
        params: impl FnOnce() -> serde_json::Map<String, serde_json::Value>,
        timeout_ms: Option<i32>,
        lock_timeout: &CStr,
    ) -> Option<String> {
        let handler = match &workflow.handler {
            Ok(handler) => handler,
            Err(HandlerUnavailable::Dropped) => SqlError::HandlerDropped.report(),
            Err(HandlerUnavailable::NotCallableByOwner) => SqlError::HandlerNotCallable.report(),
        };
        if !self.plans.contains_key(&handler.sql) {
            let mut types = EventRow::arg_types();
            if handler.record.is_some() {
                types.extend([PgOid::from(pg_sys::TEXTOID), PgOid::from(pg_sys::TEXTOID)]);
            }
            let plan = ok_or_raise(client.prepare_mut(handler.sql.as_str(), &types));
            self.plans.insert(handler.sql.clone(), plan.keep());
        }
        let record_args = handler.record.as_ref().map(|attributes| {
            let (values, keys) = webhook_core::record::record_values(attributes, &params());
            [values.to_string(), keys.to_string()]
        });
        let mut args = args;
        if let Some([values, keys]) = &record_args {
            args.push(DatumWithOid::from(values.as_str()));
            args.push(DatumWithOid::from(keys.as_str()));
        }
        let plan = &self.plans[&handler.sql];
        let mut call = || {
            crate::pg::signals::while_running_handler(|| {
                as_handler_owner(
                    workflow.owner,
                    &workflow.handler_search_path,
                    lock_timeout,
                    || {
                        let table = ok_or_raise(client.update(plan, None, &args));
                        if table.is_empty() {
                            None
                        } else {
                            ok_or_raise(table.first().get_one::<String>())
                        }
                    },
                )
            })
        };
        let returned = match timeout_ms {
            Some(ms) => with_deadline(ms, call),
            None => call(),
        };
        // The record's values are copies made in the batch's memory: freed
        // now rather than with the batch (an error frees them with it).
        if record_args.is_some() {
            for arg in &args[args.len() - 2..] {
                if let Some(datum) = arg.datum() {
                    // SAFETY: a text datum palloc'd by DatumWithOid::from above,
                    // used only by the statement that has returned.
                    unsafe {
                        pg_sys::pfree(datum.sans_lifetime().cast_mut_ptr::<std::ffi::c_void>())
                    };
                }
            }
        }
        returned
    }
}
