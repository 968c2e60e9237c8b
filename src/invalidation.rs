//! Knowing when cached workflow definitions are stale, in listener and
//! executor processes: PostgreSQL's own cache invalidations, received at the
//! start of each transaction, set a flag that the next batch reads.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::pg_sys;

/// Set when cached workflows may be stale: a workflow or parameter changed
/// (a relcache invalidation of one of the two tables, sent at commit by the
/// `_config_changed` triggers), or a function, schema or role changed
/// (cached workflows name their handler, its schema's privileges and owner).
/// Invalidations arrive only after the change is visible, so whatever is
/// loaded after the flag is seen is current.
pub static DEFINITIONS_CHANGED: AtomicBool = AtomicBool::new(false);
/// OIDs of webhook.workflows, webhook.parameters and webhook.verifications
/// (0 until the first batch).
pub static WATCHED_TABLES: [AtomicU32; 3] =
    [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

pub fn watch_definitions() {
    unsafe extern "C-unwind" fn syscache_changed(
        _arg: pg_sys::Datum,
        _cache: std::ffi::c_int,
        _hash: u32,
    ) {
        DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
    }
    unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
        let relid = relid.to_u32();
        // InvalidOid: "every relation" (after a cache reset).
        if relid == 0
            || WATCHED_TABLES
                .iter()
                .any(|t| t.load(Ordering::SeqCst) == relid)
        {
            DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
        }
    }
    for cache in [
        pg_sys::SysCacheIdentifier::PROCOID,
        pg_sys::SysCacheIdentifier::AUTHOID,
        pg_sys::SysCacheIdentifier::NAMESPACEOID,
        // Role memberships: schema USAGE or EXECUTE may come through a group.
        pg_sys::SysCacheIdentifier::AUTHMEMROLEMEM,
        pg_sys::SysCacheIdentifier::AUTHMEMMEMROLE,
    ] {
        // SAFETY: registers a callback that only sets an atomic flag; called
        // once per process on the main thread after connecting.
        unsafe {
            pg_sys::CacheRegisterSyscacheCallback(
                cache as i32,
                Some(syscache_changed),
                pg_sys::Datum::from(0),
            )
        };
    }
    // SAFETY: as above.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0))
    };
}
