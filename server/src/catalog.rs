//! A cluster-wide catalog of named definitions, used for secondary indexes (key: namespace and
//! index name, definition: the `sindex-create` arguments) and for UDF modules (key: `lua` and
//! the module name, definition: the SHA-1 of its source): per key the last change — a
//! definition or a deletion — with its stamp (milliseconds since the Unix epoch, made strictly
//! later than the entry's previous stamp).
//!
//! A change is stamped where a client asked for it and sent to every member with its stamp;
//! members apply a change only when it is later than what they hold (last writer wins), so
//! the order changes arrive in does not matter. Every second a clustered node also pulls each
//! peer's catalog (`sindex-catalog`, `udf-catalog`) and applies what is later, so a node that
//! joins, or was away when a definition changed, catches up; deletions are kept as entries so
//! an absent node cannot bring a deleted definition back. With a data directory the catalog is
//! saved in a file (written to a temporary file, then renamed) and applied again at start-up.
//!
//! File and answer: one entry per line / per `;`: `stamp,scope,name,definition` where
//! `definition` is the base64 of the definition, or `-` for a deletion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use parking_lot::Mutex;

/// Most entries a catalog holds (live definitions and deletions of every scope).
pub const ENTRIES_MAX: usize = 4096;

/// The last change to one definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub stamp_ms: u64,
    /// What is defined (`sindex-create` arguments without the stamp, a module's SHA-1 in
    /// hex); `None` for a deletion.
    pub definition: Option<String>,
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

    /// A stamp later than every change of (scope, name) so far.
    pub fn next_stamp(&self, scope: &str, name: &str) -> u64 {
        now_ms().max(self.stamp_of(scope, name) + 1)
    }

    /// The stamp of the last change of (scope, name); 0 when there is none.
    pub fn stamp_of(&self, scope: &str, name: &str) -> u64 {
        self.entries.lock().get(&(scope.to_string(), name.to_string())).map_or(0, |c| c.stamp_ms)
    }

    /// Whether a change stamped `stamp_ms` is later than what is held for (scope, name).
    pub fn is_later(&self, scope: &str, name: &str, stamp_ms: u64) -> bool {
        self.entries.lock().get(&(scope.to_string(), name.to_string())).is_none_or(|c| stamp_ms > c.stamp_ms)
    }

    /// Records an applied change and saves the catalog.
    pub fn record(&self, scope: &str, name: &str, change: Change) -> Result<(), String> {
        let mut entries = self.entries.lock();
        let key = (scope.to_string(), name.to_string());
        if !entries.contains_key(&key) && entries.len() >= ENTRIES_MAX {
            return Err("the catalog is full".to_string());
        }
        entries.insert(key, change);
        self.save(&entries)
    }

    /// Every entry, in (namespace, name) order.
    pub fn entries(&self) -> Vec<((String, String), Change)> {
        self.entries.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The `sindex-catalog` / `udf-catalog` answer.
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

fn format_entry((scope, name): &(String, String), c: &Change) -> String {
    let arg = c.definition.as_ref().map_or("-".to_string(), |a| base64::engine::general_purpose::STANDARD.encode(a));
    format!("{},{scope},{name},{arg}", c.stamp_ms)
}

/// The entries of every peer's catalog answer to `command` (`sindex-catalog`, `udf-catalog`);
/// peers that did not answer and malformed entries are logged and left out.
pub async fn peer_entries(node: &crate::node::Node, command: &str) -> Vec<((String, String), Change)> {
    let Some(cluster) = node.cluster() else { return Vec::new() };
    let mut out = Vec::new();
    for (peer, answer) in cluster.info_on_peers(command).await {
        if answer.starts_with("ERROR") {
            tracing::debug!(peer = %format!("{peer:X}"), %answer, command, "peer's catalog not read");
            continue;
        }
        for entry in answer.split(';').filter(|e| !e.is_empty()) {
            match parse_entry(entry) {
                Some(e) => out.push(e),
                None => tracing::warn!(%entry, command, "malformed catalog entry from a peer"),
            }
        }
    }
    out
}

/// One entry of a catalog file or answer.
pub fn parse_entry(s: &str) -> Option<((String, String), Change)> {
    let mut parts = s.splitn(4, ',');
    let stamp_ms = parts.next()?.parse().ok()?;
    let scope = parts.next()?.to_string();
    let name = parts.next()?.to_string();
    let definition = match parts.next()? {
        "-" => None,
        b64 => Some(String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).ok()?).ok()?),
    };
    if scope.is_empty() || name.is_empty() {
        return None;
    }
    Some(((scope, name), Change { stamp_ms, definition }))
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
        c.record("test", "a", Change { stamp_ms: 5, definition: Some(args.clone()) }).expect("record");
        c.record("test", "b", Change { stamp_ms: 7, definition: None }).expect("record");
        assert!(c.is_later("test", "a", 6) && !c.is_later("test", "a", 5));
        assert!(c.next_stamp("test", "a") > 5);
        let again = Catalog::open(Some(path)).expect("reopen");
        assert_eq!(again.entries(), c.entries());
        assert_eq!(parse_entry(again.describe().split(';').next().unwrap()).unwrap().1.definition, Some(args));
        std::fs::remove_dir_all(dir).expect("clean");
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in ["", "x,test,a,-", "1,,a,-", "1,test,a,%%%", "1,test"] {
            assert!(parse_entry(bad).is_none(), "{bad:?}");
        }
    }
}
