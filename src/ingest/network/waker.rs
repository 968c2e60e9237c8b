//! Wakes the main thread from network threads without `SetLatch` (which is not
//! safe to call from a thread PostgreSQL does not know): an eventfd that the
//! main thread waits on with `WaitLatchOrSocket`. The eventfd is written only
//! when the main thread is about to sleep or sleeping: under load it is awake
//! and takes the queue as it is, so most requests cost no system call here.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Waker {
    fd: OwnedFd,
    /// The main thread is going to sleep (or sleeps) until woken.
    sleeping: AtomicBool,
    /// Jobs sent and not yet taken by the main thread.
    queued: AtomicUsize,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd(2) with constant flags; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: fd is a new descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        })
    }

    /// A network thread queued a job: wakes the main thread if it sleeps.
    /// Called after the job is in the queue.
    pub fn job_queued(&self) {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }

    /// The main thread took `count` jobs.
    pub fn jobs_taken(&self, count: usize) {
        self.queued.fetch_sub(count, Ordering::SeqCst);
    }

    /// Jobs queued for the main thread.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Whether jobs are queued for the main thread.
    pub fn has_jobs(&self) -> bool {
        self.queued() > 0
    }

    /// The main thread is about to sleep: false if a job is already queued
    /// (it must not sleep then). A job queued after this wakes it.
    pub fn prepare_to_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// The main thread woke up.
    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }

    /// Makes the fd readable; cheap and safe from any thread.
    fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    /// Resets the fd after the main thread woke up.
    pub fn drain(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own eventfd.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut count as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
