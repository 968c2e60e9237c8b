//! What a process checks before it touches the extension's tables: the
//! version installed in its database (it must be the library's), and
//! whether the server takes writes at all.

use pgrx::prelude::*;

use super::spi::in_transaction;

/// The installed version of webhook_ext (None: not installed) and whether
/// transactions are read-only (default_transaction_read_only, as
/// pg_auto_failover keeps a promoted node until it is sure the old primary
/// is gone), in one statement; (None, false) when it cannot be read.
pub fn installed_version_and_read_only() -> (Option<String>, bool) {
    in_transaction(|| {
        Spi::get_two::<String, bool>(
            "SELECT (SELECT extversion FROM pg_catalog.pg_extension
                      WHERE extname OPERATOR(pg_catalog.=) 'webhook_ext'),
                    pg_catalog.current_setting('transaction_read_only')::pg_catalog.bool",
        )
        .map(|(installed, read_only)| (installed, read_only.unwrap_or(false)))
        .unwrap_or((None, false))
    })
    .unwrap_or((None, false))
}
