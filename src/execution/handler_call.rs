//! Calling a workflow's handler: as its owner, with the owner's search_path,
//! under a deadline, through one kept plan per handler. Errors are raised
//! (PostgreSQL ERRORs), for the caller's subtransaction to catch.

use std::collections::HashMap;
use std::ffi::CStr;

use pgrx::datum::DatumWithOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

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
    /// ([`EventRow::args`]); returns what it returned, as text.
    pub fn call(
        &mut self,
        client: &mut SpiClient<'_>,
        workflow: &Workflow,
        args: &[DatumWithOid<'_>],
        timeout_ms: Option<i32>,
        lock_timeout: &CStr,
    ) -> Option<String> {
        let handler = match &workflow.handler {
            Ok(handler) => handler,
            Err(HandlerUnavailable::Dropped) => SqlError::HandlerDropped.report(),
            Err(HandlerUnavailable::NotCallableByOwner) => SqlError::HandlerNotCallable.report(),
        };
        if !self.plans.contains_key(&handler.sql) {
            let plan =
                ok_or_raise(client.prepare_mut(handler.sql.as_str(), &EventRow::arg_types()));
            self.plans.insert(handler.sql.clone(), plan.keep());
        }
        let plan = &self.plans[&handler.sql];
        let mut call = || {
            crate::pg::signals::while_running_handler(|| {
                as_handler_owner(
                    workflow.owner,
                    &workflow.handler_search_path,
                    lock_timeout,
                    || {
                        let table = ok_or_raise(client.update(plan, None, args));
                        if table.is_empty() {
                            None
                        } else {
                            ok_or_raise(table.first().get_one::<String>())
                        }
                    },
                )
            })
        };
        match timeout_ms {
            Some(ms) => with_deadline(ms, call),
            None => call(),
        }
    }
}
