//! Per-namespace outcomes of single-record client requests, under the names Aerospike's
//! namespace statistics (and so its Prometheus exporter) use: `client_read_success`,
//! `client_write_error`, `client_delete_not_found`, … Counted where the request runs (the
//! partition's master), so a proxied request counts once, on the node that served it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use petrel_proto::ResultCode;

/// What a client request did to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
    Delete,
}

#[derive(Debug, Default)]
struct Outcomes {
    success: AtomicU64,
    error: AtomicU64,
    timeout: AtomicU64,
    not_found: AtomicU64,
    filtered_out: AtomicU64,
}

/// The counters of one namespace.
#[derive(Debug, Default)]
pub struct ClientCounters {
    read: Outcomes,
    write: Outcomes,
    delete: Outcomes,
}

impl ClientCounters {
    /// Counts one request of `kind` answered with `code`.
    pub fn count(&self, kind: RequestKind, code: ResultCode) {
        let o = match kind {
            RequestKind::Read => &self.read,
            RequestKind::Write => &self.write,
            RequestKind::Delete => &self.delete,
        };
        let counter = match code {
            ResultCode::Ok => &o.success,
            // A missing record is an answer for a read or a delete; for a write (update-only,
            // replace-only) it is the request failing.
            ResultCode::NotFound if kind != RequestKind::Write => &o.not_found,
            ResultCode::FilteredOut => &o.filtered_out,
            ResultCode::Timeout => &o.timeout,
            _ => &o.error,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Appends `;client_<kind>_<outcome>=<n>` for every counter (a write that finds no
    /// record failed, so writes have no not-found count).
    pub fn render(&self, out: &mut String) {
        for (kind, o) in [("read", &self.read), ("write", &self.write), ("delete", &self.delete)] {
            for (outcome, c) in [
                ("success", &o.success),
                ("error", &o.error),
                ("timeout", &o.timeout),
                ("not_found", &o.not_found),
                ("filtered_out", &o.filtered_out),
            ] {
                if kind == "write" && outcome == "not_found" {
                    continue;
                }
                let _ = write!(out, ";client_{kind}_{outcome}={}", c.load(Relaxed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind_under_aerospike_names() {
        let c = ClientCounters::default();
        c.count(RequestKind::Read, ResultCode::Ok);
        c.count(RequestKind::Read, ResultCode::NotFound);
        c.count(RequestKind::Write, ResultCode::NotFound);
        c.count(RequestKind::Write, ResultCode::FilteredOut);
        c.count(RequestKind::Delete, ResultCode::Timeout);
        let mut s = String::new();
        c.render(&mut s);
        for want in [
            ";client_read_success=1",
            ";client_read_not_found=1",
            ";client_write_error=1",
            ";client_write_filtered_out=1",
            ";client_delete_timeout=1",
            ";client_delete_success=0",
        ] {
            assert!(s.contains(want), "{want} in {s}");
        }
        assert!(!s.contains("client_write_not_found"));
    }
}
