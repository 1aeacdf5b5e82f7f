//! The cluster-wide catalog of secondary-index definitions: per (namespace, index name) the
//! last change — a definition (the `sindex-create` arguments) or a deletion — with its stamp
//! (milliseconds since the Unix epoch, made strictly later than the entry's previous stamp).
//!
//! A change is stamped where a client asked for it and sent to every member with its stamp;
//! members apply a change only when it is later than what they hold (last writer wins), so
//! the order changes arrive in does not matter. Every second a clustered node also pulls each
//! peer's catalog (`sindex-catalog`) and applies what is later, so a node that joins, or was
//! away when an index was created or deleted, catches up; deletions are kept as entries so an
//! absent node cannot bring a deleted index back. With a data directory the catalog is saved
//! in `<data_dir>/sindex-catalog` (written to a temporary file, then renamed) and applied
//! again at start-up.
//!
//! File and `sindex-catalog` answer: one entry per line / per `;`: `stamp,namespace,name,arg`
//! where `arg` is the base64 of the create arguments, or `-` for a deletion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use parking_lot::Mutex;

/// Most entries a catalog holds (live definitions and deletions of every namespace).
pub const ENTRIES_MAX: usize = 4096;

/// The last change to one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub stamp_ms: u64,
    /// `sindex-create` arguments without the stamp; `None` for a deletion.
    pub create_args: Option<String>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Catalog {
    entries: Mutex<BTreeMap<(String, String), Change>>,
    path: Option<PathBuf>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Catalog {
    /// A catalog kept in `path` (none: memory only), with what the file holds.
    pub fn open(path: Option<PathBuf>) -> Result<Catalog, String> {
        let catalog = Catalog { entries: Mutex::new(BTreeMap::new()), path };
        if let Some(p) = &catalog.path {
            match std::fs::read_to_string(p) {
                Ok(text) => {
                    let mut entries = catalog.entries.lock();
                    for line in text.lines().filter(|l| !l.is_empty()) {
                        let (key, change) =
                            parse_entry(line).ok_or_else(|| format!("{}: malformed entry {line:?}", p.display()))?;
                        entries.insert(key, change);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(catalog)
    }

    /// A stamp later than every change of (ns, name) so far.
    pub fn next_stamp(&self, ns: &str, name: &str) -> u64 {
        let held = self.entries.lock().get(&(ns.to_string(), name.to_string())).map_or(0, |c| c.stamp_ms);
        now_ms().max(held + 1)
    }

    /// Whether a change stamped `stamp_ms` is later than what is held for (ns, name).
    pub fn is_later(&self, ns: &str, name: &str, stamp_ms: u64) -> bool {
        self.entries.lock().get(&(ns.to_string(), name.to_string())).is_none_or(|c| stamp_ms > c.stamp_ms)
    }

    /// Records an applied change and saves the catalog.
    pub fn record(&self, ns: &str, name: &str, change: Change) -> Result<(), String> {
        let mut entries = self.entries.lock();
        let key = (ns.to_string(), name.to_string());
        if !entries.contains_key(&key) && entries.len() >= ENTRIES_MAX {
            return Err("the index catalog is full".to_string());
        }
        entries.insert(key, change);
        self.save(&entries)
    }

    /// Every entry, in (namespace, name) order.
    pub fn entries(&self) -> Vec<((String, String), Change)> {
        self.entries.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The `sindex-catalog` answer.
    pub fn describe(&self) -> String {
        self.entries().iter().map(|(k, c)| format_entry(k, c)).collect::<Vec<_>>().join(";")
    }

    fn save(&self, entries: &BTreeMap<(String, String), Change>) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut text = String::new();
        for (k, c) in entries {
            text.push_str(&format_entry(k, c));
            text.push('\n');
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn format_entry((ns, name): &(String, String), c: &Change) -> String {
    let arg = c.create_args.as_ref().map_or("-".to_string(), |a| base64::engine::general_purpose::STANDARD.encode(a));
    format!("{},{ns},{name},{arg}", c.stamp_ms)
}

/// One entry of a catalog file or answer.
pub fn parse_entry(s: &str) -> Option<((String, String), Change)> {
    let mut parts = s.splitn(4, ',');
    let stamp_ms = parts.next()?.parse().ok()?;
    let ns = parts.next()?.to_string();
    let name = parts.next()?.to_string();
    let create_args = match parts.next()? {
        "-" => None,
        b64 => Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?),
    };
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some(((ns, name), Change { stamp_ms, create_args }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("petrel-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("sindex-catalog");
        let c = Catalog::open(Some(path.clone())).expect("open");
        let args = "ns=test;set=demo;indexname=a;indexdata=age,NUMERIC".to_string();
        c.record("test", "a", Change { stamp_ms: 5, create_args: Some(args.clone()) }).expect("record");
        c.record("test", "b", Change { stamp_ms: 7, create_args: None }).expect("record");
        assert!(c.is_later("test", "a", 6) && !c.is_later("test", "a", 5));
        assert!(c.next_stamp("test", "a") > 5);
        let again = Catalog::open(Some(path)).expect("reopen");
        assert_eq!(again.entries(), c.entries());
        assert_eq!(parse_entry(again.describe().split(';').next().unwrap()).unwrap().1.create_args, Some(args));
        std::fs::remove_dir_all(dir).expect("clean");
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["", "x,test,a,-", "1,,a,-", "1,test,a,%%%", "1,test"] {
            assert!(parse_entry(bad).is_none(), "{bad:?}");
        }
    }
}
