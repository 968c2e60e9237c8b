//! The listener process's file-descriptor limit.
//!
//! Every connection is a descriptor; at the usual soft limit of 1,024 one client
//! holding idle sockets made `accept` fail with EMFILE and good requests wait.
//! The soft limit is raised to the hard limit (which needs no privilege), and
//! the connection cap is kept below what the process can actually open.

/// Descriptors kept for everything that is not a client connection: the
/// backend's own files, the listening sockets, the eventfd, TLS key files.
const RESERVED_FDS: u64 = 128;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit and returns how many
/// connections the process can hold (the new soft limit minus a reserve), or
/// `None` if the limit could not be read. Process-wide, so calling it again
/// (a restarted network thread) is harmless.
pub(super) fn raise_to_hard_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit; an unprivileged process may raise
        // its soft limit up to the hard limit. On failure the old limit stays.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            eprintln!(
                "webhook_ext: could not raise the open-files limit from {} to {}",
                limit.rlim_cur, limit.rlim_max
            );
        }
    }
    let usable = limit.rlim_cur.saturating_sub(RESERVED_FDS).max(1);
    Some(usize::try_from(usable).unwrap_or(usize::MAX))
}
