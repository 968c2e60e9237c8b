//! Knowing when cached workflow definitions are stale, in listener and
//! executor processes: PostgreSQL's own cache invalidations, received at the
//! start of each transaction, set a flag that the next batch reads.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pgrx::pg_sys;

/// Set when every cached workflow may be stale: a function, schema or role
/// changed (cached workflows name their handler, its schema's privileges and
/// owner), one of the watched tables was truncated (an invalidation of
/// webhook.config_version), or PostgreSQL reset its caches. Invalidations
/// arrive only after the change is visible, so whatever is loaded after the
/// flag is seen is current.
pub static DEFINITIONS_CHANGED: AtomicBool = AtomicBool::new(false);
/// Set when some workflows changed (a relcache invalidation of
/// webhook.workflow_changes, sent at commit by the `_config_changed`
/// triggers): the next batch reloads those named there
/// (src/pg/catalog.rs `Catalog::forget_changed`), not the whole cache.
pub static WORKFLOWS_CHANGED: AtomicBool = AtomicBool::new(false);
/// OIDs of webhook.workflow_changes (some workflows changed) and
/// webhook.config_version (everything may have), 0 until the first batch.
pub static WATCHED_TABLES: [AtomicU32; 2] = [AtomicU32::new(0), AtomicU32::new(0)];

pub fn watch_definitions() {
    /// # Safety
    /// Called by PostgreSQL's invalidation processing only; sets a flag.
    unsafe extern "C-unwind" fn syscache_changed(
        _arg: pg_sys::Datum,
        _cache: std::ffi::c_int,
        _hash: u32,
    ) {
        DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
    }
    /// # Safety
    /// Called by PostgreSQL's invalidation processing only; sets a flag.
    unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
        let relid = relid.to_u32();
        // InvalidOid: "every relation" (after a cache reset).
        if relid == 0 || WATCHED_TABLES[1].load(Ordering::SeqCst) == relid {
            DEFINITIONS_CHANGED.store(true, Ordering::SeqCst);
        } else if WATCHED_TABLES[0].load(Ordering::SeqCst) == relid {
            WORKFLOWS_CHANGED.store(true, Ordering::SeqCst);
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
