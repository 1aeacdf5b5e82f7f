//! Time, behind a seam: the namespace asks a [`Clock`] for "now", so tests can move time by
//! hand instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use petrel_proto::wire::CITRUSLEAF_EPOCH_SECS;

/// A source of the current time, in milliseconds since the Citrusleaf epoch (2010-01-01).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;

    /// Seconds since the Citrusleaf epoch, the unit of void times.
    fn now_secs(&self) -> u32 {
        u32::try_from(self.now_ms() / 1000).unwrap_or(u32::MAX)
    }
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        unix_ms.saturating_sub(CITRUSLEAF_EPOCH_SECS * 1000)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// Starts at `now_ms` milliseconds since the Citrusleaf epoch.
    pub fn new(now_ms: u64) -> Self {
        ManualClock { now_ms: AtomicU64::new(now_ms) }
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Most this node's clock is moved ahead to follow a peer's. A peer further ahead than this
/// has a broken clock, and following it would put every record's last-update time, and its
/// expiry, that far off.
pub const CLUSTER_LEAD_MS_MAX: u64 = 60_000;

/// This machine's clock, kept level with the fastest clock heard in the cluster: peers'
/// pulses tell their time, and a peer ahead by some milliseconds moves this clock ahead by
/// as many (never back). Record last-update times then order writes across nodes even when
/// their machines' clocks disagree: a node that takes over a partition after a split stamps
/// its writes later than the writes it replaces, whatever its own clock says, so that
/// last-update-time conflict resolution keeps them.
#[derive(Debug)]
pub struct ClusterClock {
    local: std::sync::Arc<dyn Clock>,
    lead_ms: AtomicU64,
}

impl ClusterClock {
    pub fn new(local: std::sync::Arc<dyn Clock>) -> Self {
        ClusterClock { local, lead_ms: AtomicU64::new(0) }
    }

    /// A peer said its (cluster) time was `peer_now_ms`: this clock follows it if it is
    /// ahead, up to [`CLUSTER_LEAD_MS_MAX`]. Returns how far the peer was ahead of this
    /// clock (0 if behind or level), for the caller to report.
    pub fn heard(&self, peer_now_ms: u64) -> u64 {
        let local = self.local.now_ms();
        let ahead_ms = peer_now_ms.saturating_sub(local + self.lead_ms.load(Ordering::Relaxed));
        if ahead_ms > 0 {
            let lead = peer_now_ms.saturating_sub(local).min(CLUSTER_LEAD_MS_MAX);
            self.lead_ms.fetch_max(lead, Ordering::Relaxed);
        }
        ahead_ms
    }

    /// How far this clock runs ahead of the machine's.
    pub fn lead_ms(&self) -> u64 {
        self.lead_ms.load(Ordering::Relaxed)
    }
}

impl Clock for ClusterClock {
    fn now_ms(&self) -> u64 {
        self.local.now_ms() + self.lead_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_cluster_clock_follows_peers_ahead_and_never_goes_back() {
        let local = Arc::new(ManualClock::new(1_000_000));
        let clock = ClusterClock::new(Arc::clone(&local) as Arc<dyn Clock>);
        assert_eq!(clock.heard(999_000), 0, "a peer behind moves nothing");
        assert_eq!(clock.now_ms(), 1_000_000);
        assert_eq!(clock.heard(1_002_500), 2_500);
        assert_eq!((clock.lead_ms(), clock.now_ms()), (2_500, 1_002_500));
        assert_eq!(clock.heard(1_001_000), 0, "a slower peer later takes no lead back");
        local.advance_ms(100);
        assert_eq!(clock.now_ms(), 1_002_600, "the lead rides on the machine's clock");
        assert_eq!(clock.heard(1_000_000 + 10 * CLUSTER_LEAD_MS_MAX), 10 * CLUSTER_LEAD_MS_MAX - 2_600);
        assert_eq!(clock.lead_ms(), CLUSTER_LEAD_MS_MAX, "a broken clock is followed only so far");
    }
}
