//! Latency histograms per namespace and operation, in Aerospike's `latencies:` format.
//!
//! Each histogram counts operations in power-of-two millisecond buckets with plain atomics, so
//! recording costs one relaxed increment on the request path. A report covers the window since
//! the previous report (at most every 10 s: a newer window is widened to the last one of at
//! least that length), as `msec,<ops/sec>,<% over 1 ms>,<% over 2 ms>,…,<% over 65536 ms>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Buckets: [0,1) ms, [1,2), [2,4) … [65536, ∞).
const BUCKETS: usize = 18;
const WINDOW_MIN: Duration = Duration::from_secs(10);

/// The operations timed per namespace, with their names in `latencies:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    Read = 0,
    Write = 1,
    Udf = 2,
    BatchSubRead = 3,
    BatchSubWrite = 4,
    PiQuery = 5,
    SiQuery = 6,
}

const KINDS: [(LatencyKind, &str); 7] = [
    (LatencyKind::Read, "read"),
    (LatencyKind::Write, "write"),
    (LatencyKind::Udf, "udf"),
    (LatencyKind::BatchSubRead, "batch-sub-read"),
    (LatencyKind::BatchSubWrite, "batch-sub-write"),
    (LatencyKind::PiQuery, "pi-query"),
    (LatencyKind::SiQuery, "si-query"),
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS],
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let ms = elapsed.as_millis() as u64;
        let bucket = if ms == 0 { 0 } else { (64 - ms.leading_zeros() as usize).min(BUCKETS - 1) };
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }
}

#[derive(Debug)]
struct Snapshot {
    at: Instant,
    counts: Vec<[u64; BUCKETS]>,
}

/// The histograms of one namespace.
#[derive(Debug)]
pub struct Latencies {
    hists: [Histogram; KINDS.len()],
    /// The window start: counts at the last report of a window at least 10 s long.
    last: Mutex<Snapshot>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hists: Default::default(),
            last: Mutex::new(Snapshot { at: Instant::now(), counts: vec![[0; BUCKETS]; KINDS.len()] }),
        }
    }
}

impl Latencies {
    pub fn record(&self, kind: LatencyKind, elapsed: Duration) {
        self.hists[kind as usize].record(elapsed);
    }

    /// Appends this namespace's histograms as Prometheus histograms (cumulative counts since
    /// the start, buckets in milliseconds) with `labels`.
    pub fn prometheus(&self, labels: &str, out: &mut String) {
        use std::fmt::Write as _;
        for (i, (_, name)) in KINDS.iter().enumerate() {
            let metric = format!("aerospike_latencies_{}_ms", name.replace('-', "_"));
            let counts = self.hists[i].snapshot();
            let _ = writeln!(out, "# TYPE {metric} histogram");
            let mut cumulative = 0;
            for (b, count) in counts.iter().enumerate().take(BUCKETS - 1) {
                cumulative += count;
                // Bucket b holds [2^(b-1), 2^b) ms (bucket 0: under 1 ms).
                let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"{}\"}} {cumulative}", 1u64 << b);
            }
            cumulative += counts[BUCKETS - 1];
            let _ = writeln!(out, "{metric}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
            let _ = writeln!(out, "{metric}_count{{{labels}}} {cumulative}");
        }
    }

    /// Appends this namespace's histograms to a `latencies:` answer, `;`-separated; a
    /// histogram with no operations in the window answers with an empty value.
    pub fn report(&self, ns: &str, only: Option<&str>, out: &mut String) {
        let now = Instant::now();
        let current: Vec<[u64; BUCKETS]> = self.hists.iter().map(Histogram::snapshot).collect();
        let mut last = self.last.lock();
        let secs = now.duration_since(last.at).as_secs_f64().max(0.001);
        for (i, (_, name)) in KINDS.iter().enumerate() {
            let label = format!("{{{ns}}}-{name}");
            if only.is_some_and(|o| o != label) {
                continue;
            }
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(&label);
            out.push(':');
            let delta: Vec<u64> = (0..BUCKETS).map(|b| current[i][b].saturating_sub(last.counts[i][b])).collect();
            let total: u64 = delta.iter().sum();
            if total == 0 {
                continue;
            }
            out.push_str(&format!("msec,{:.1}", total as f64 / secs));
            // Share over 2^k ms, k = 0..=16: every bucket from k+1 up.
            for k in 0..17 {
                let over: u64 = delta[k + 1..].iter().sum();
                out.push_str(&format!(",{:.2}", over as f64 * 100.0 / total as f64));
            }
        }
        if now.duration_since(last.at) >= WINDOW_MIN {
            *last = Snapshot { at: now, counts: current };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histograms_answer_empty_values() {
        let l = Latencies::default();
        let mut out = String::new();
        l.report("test", None, &mut out);
        assert_eq!(
            out,
            "{test}-read:;{test}-write:;{test}-udf:;{test}-batch-sub-read:;{test}-batch-sub-write:;{test}-pi-query:;{test}-si-query:"
        );
    }

    #[test]
    fn shares_over_thresholds() {
        let l = Latencies::default();
        for _ in 0..3 {
            l.record(LatencyKind::Read, Duration::from_micros(100));
        }
        l.record(LatencyKind::Read, Duration::from_millis(5));
        let mut out = String::new();
        l.report("test", Some("{test}-read"), &mut out);
        let values: Vec<&str> = out.trim_start_matches("{test}-read:").split(',').collect();
        assert_eq!(values[0], "msec");
        assert_eq!(values.len(), 2 + 17);
        assert_eq!(&values[2..6], &["25.00", "25.00", "25.00", "0.00"], "5 ms is over 1, 2 and 4 ms only");
    }
}
