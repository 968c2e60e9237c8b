//! Whether this process's last commit reached the synchronous standbys its
//! `synchronous_commit` asks for. A commit waits for them, but PostgreSQL
//! ends that wait early, with only a WARNING ("The transaction has already
//! committed locally, but might not have been replicated to the standby"),
//! when the process is cancelled, told to terminate or finds the postmaster
//! dead. A listener that then answered 2xx would acknowledge an event a
//! failover loses, so it asks here first (src/ingest/listener_main.rs).

use pgrx::pg_sys;
use pgrx::pg_sys::SyncCommitLevel::{
    SYNCHRONOUS_COMMIT_REMOTE_APPLY, SYNCHRONOUS_COMMIT_REMOTE_FLUSH,
    SYNCHRONOUS_COMMIT_REMOTE_WRITE,
};

/// True unless a synchronous standby is configured and the position it has
/// confirmed (written, flushed or applied, as `synchronous_commit` says) is
/// still behind the end of this process's last commit record: the same test
/// by which PostgreSQL releases a committing process from its wait
/// (src/backend/replication/syncrep.c), so a commit the standby confirmed
/// after the wait ended counts as confirmed.
pub fn last_commit_confirmed() -> bool {
    // SAFETY: globals of this process (max_wal_senders, synchronous_commit,
    // XactLastCommitEnd) and the walsenders' shared control block, set up
    // before any extension code runs; read on the main thread.
    unsafe {
        let mode = match pg_sys::synchronous_commit as u32 {
            SYNCHRONOUS_COMMIT_REMOTE_WRITE => pg_sys::SYNC_REP_WAIT_WRITE,
            SYNCHRONOUS_COMMIT_REMOTE_FLUSH => pg_sys::SYNC_REP_WAIT_FLUSH,
            SYNCHRONOUS_COMMIT_REMOTE_APPLY => pg_sys::SYNC_REP_WAIT_APPLY,
            _ => return true,
        } as usize;
        let control = pg_sys::WalSndCtl;
        if pg_sys::max_wal_senders == 0 || control.is_null() {
            return true;
        }
        // The commit's own fast exit, without the lock: once the
        // checkpointer has set the status up, no synchronous standby
        // defined means no commit waited (after every batch, this is the
        // common answer).
        let status = u32::from(std::ptr::read_volatile(
            &raw const (*control).sync_standbys_status,
        ));
        if status & pg_sys::SYNC_STANDBY_INIT != 0 && status & pg_sys::SYNC_STANDBY_DEFINED == 0 {
            return true;
        }
        // Under SyncRepLock, as the process that releases waiters changes
        // both: the checkpointer wakes every waiter before it clears
        // SYNC_STANDBY_DEFINED when synchronous_standby_names is emptied,
        // and a waiter reading without the lock could see the old flag
        // with a position that will never come.
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(SYNC_REP_LOCK)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
        let defined =
            u32::from((*control).sync_standbys_status) & pg_sys::SYNC_STANDBY_DEFINED != 0;
        let confirmed = (*control).lsn[mode];
        pg_sys::LWLockRelease(lock);
        !defined || confirmed >= pg_sys::XactLastCommitEnd
    }
}

/// SyncRepLock's index in MainLWLockArray (PostgreSQL 15's
/// src/include/storage/lwlocknames.h).
const SYNC_REP_LOCK: usize = 32;
