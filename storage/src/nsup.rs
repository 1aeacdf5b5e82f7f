//! The namespace supervisor: a background thread that, every `nsup-period`, reclaims expired
//! and truncated records, evicts above the high-water mark, and refreshes stop-writes.
//!
//! Reads never depend on it (a dead record is invisible at once); it exists to give memory
//! back and to keep the namespace below its marks.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::engine::StorageEngine;
use crate::namespace::Namespace;

/// A running supervisor; stopping it (or dropping it) joins its thread.
#[derive(Debug)]
pub struct Supervisor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `ns` every `nsup-period` (read again before each pass, so a change
    /// takes effect at the next one).
    pub fn start<E: StorageEngine>(ns: Arc<Namespace<E>>) -> std::io::Result<Supervisor> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("nsup-{}", ns.name())).spawn(move || {
            let (lock, cvar) = &*stop_thread;
            loop {
                {
                    let period = Duration::from_secs(ns.config().nsup_period_secs as u64);
                    let mut stopped = lock.lock();
                    if !*stopped {
                        cvar.wait_for(&mut stopped, period);
                    }
                    if *stopped {
                        return;
                    }
                }
                let before = ns.stats();
                ns.supervise();
                let after = ns.stats();
                if after.expired_objects + after.evicted_objects + after.truncated_objects
                    != before.expired_objects + before.evicted_objects + before.truncated_objects
                {
                    tracing::debug!(
                        namespace = ns.name(),
                        expired = after.expired_objects - before.expired_objects,
                        evicted = after.evicted_objects - before.evicted_objects,
                        truncated = after.truncated_objects - before.truncated_objects,
                        "supervisor pass"
                    );
                }
            }
        })?;
        Ok(Supervisor { stop, thread: Some(thread) })
    }

    /// Stops the supervisor and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock() = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}
