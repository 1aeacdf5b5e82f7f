//! Lua UDF modules: registering (compiled first, so a module that does not compile is refused
//! and changes nothing), listing, reading back and removing them with Aerospike's info
//! commands (`udf-put`, `udf-list`, `udf-get`, `udf-remove`), kept in the data directory
//! across restarts and sent to every member when registered or removed through any node, each
//! change stamped in a [`Catalog`] (scope `lua`, definition: the source's SHA-1) so members
//! apply only later changes and a node that joins or was away takes what it missed from its
//! peers ([`sync`]); and running them on records ([`lua`], the command in `cmd/udf.rs`) and
//! over queries ([`aggregate`]).

pub mod aggregate;
pub mod lua;
pub mod sync;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use sha1::{Digest as _, Sha1};

use crate::catalog::{Catalog, Change};
use crate::info::param;

/// The catalog scope of UDF modules.
pub const CATALOG_SCOPE: &str = "lua";
/// The catalog's file in the module directory (a name no module can have).
const CATALOG_FILE: &str = ".catalog";

/// Largest module source accepted.
pub const MODULE_BYTES_MAX: usize = 1 << 20;
/// Most modules per node.
pub const MODULES_MAX: usize = 1024;
/// Longest module file name.
const NAME_LEN_MAX: usize = 127;

/// One registered module.
#[derive(Debug)]
pub struct Module {
    pub name: String,
    pub source: String,
    /// SHA-1 of the source: hex in `udf-list`, base64 as `gen` in `udf-get`.
    pub sha1: [u8; 20],
}

/// The node's modules.
#[derive(Debug, Default)]
pub struct Udfs {
    modules: RwLock<BTreeMap<String, Arc<Module>>>,
    /// Where modules are kept (`<data_dir>/udf`); none without a data directory.
    dir: Option<PathBuf>,
    /// The stamped changes, kept in the module directory.
    pub catalog: Catalog,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LEN_MAX
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Udfs {
    /// The modules kept in `dir` (created when missing), or none without one.
    pub fn open(dir: Option<PathBuf>) -> Result<Udfs, String> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let catalog = Catalog::open(dir.as_ref().map(|d| d.join(CATALOG_FILE)))?;
        let udfs = Udfs { modules: RwLock::new(BTreeMap::new()), dir, catalog };
        let Some(dir) = &udfs.dir else { return Ok(udfs) };
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            match std::fs::read(entry.path()) {
                Ok(source) => {
                    if let Err(e) = Self::check(&name, &source).and_then(|_| udfs.insert(&name, source)) {
                        tracing::warn!(module = name, error = e, "kept UDF module not loaded");
                    }
                }
                Err(e) => tracing::warn!(module = name, error = %e, "kept UDF module unreadable"),
            }
        }
        Ok(udfs)
    }

    /// The module a request names: `name`, or `name.lua`.
    pub fn get(&self, name: &str) -> Option<Arc<Module>> {
        let modules = self.modules.read();
        modules.get(name).or_else(|| modules.get(&format!("{name}.lua"))).cloned()
    }

    /// Checks a module's size and that it compiles.
    fn check(name: &str, source: &[u8]) -> Result<(), String> {
        if source.len() > MODULE_BYTES_MAX {
            return Err(format!("module larger than {MODULE_BYTES_MAX} bytes"));
        }
        lua::check(name, source)
    }

    fn insert(&self, name: &str, source: Vec<u8>) -> Result<[u8; 20], String> {
        let source = String::from_utf8(source).map_err(|_| "module source is not UTF-8".to_string())?;
        let sha1: [u8; 20] = Sha1::digest(source.as_bytes()).into();
        let mut modules = self.modules.write();
        if !modules.contains_key(name) && modules.len() >= MODULES_MAX {
            return Err(format!("at most {MODULES_MAX} modules"));
        }
        modules.insert(name.to_string(), Arc::new(Module { name: name.to_string(), source, sha1 }));
        Ok(sha1)
    }

    /// Registers (or replaces) module `name`, kept in the data directory when there is one;
    /// the SHA-1 of its source.
    pub fn put(&self, name: &str, source: Vec<u8>) -> Result<[u8; 20], String> {
        if !valid_name(name) {
            return Err("module names have 1 to 127 letters, digits, '.', '_' or '-'".into());
        }
        Self::check(name, &source)?;
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, &source)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        self.insert(name, source)
    }

    /// Removes module `name`; false when there is none.
    pub fn remove(&self, name: &str) -> bool {
        let removed = self.modules.write().remove(name).is_some();
        if let (true, Some(dir)) = (removed, &self.dir) {
            let _ = std::fs::remove_file(dir.join(name));
        }
        removed
    }

    /// `udf-put:filename=<f>;content=<base64>;content-len=<n>;udf-type=LUA`.
    pub fn info_put(&self, rest: &str) -> String {
        let Some(name) = param(rest, "filename") else { return "error=invalid_filename".into() };
        if param(rest, "udf-type").is_some_and(|t| !t.eq_ignore_ascii_case("LUA")) {
            return "error=invalid_udf_type;message=only LUA modules".into();
        }
        let Some(content) = param(rest, "content") else { return "error=empty_content".into() };
        let Ok(source) = base64::engine::general_purpose::STANDARD.decode(content) else {
            return "error=invalid_content;message=content is not base64".into();
        };
        if param(rest, "content-len").and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n != content.len()) {
            return "error=invalid_content_len".into();
        }
        let stamp = match stamp_param(rest) {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        // A peer's change older than what this node holds is already superseded.
        if stamp.is_some_and(|s| !self.catalog.is_later(CATALOG_SCOPE, name, s)) {
            return "ok".into();
        }
        match self.put(name, source) {
            Ok(sha1) => {
                let stamp_ms = stamp.unwrap_or_else(|| self.catalog.next_stamp(CATALOG_SCOPE, name));
                let change = Change { stamp_ms, definition: Some(hex(&sha1)) };
                if let Err(e) = self.catalog.record(CATALOG_SCOPE, name, change) {
                    tracing::warn!(module = name, error = e, "UDF catalog not updated");
                }
                tracing::info!(module = name, "UDF module registered");
                "ok".into()
            }
            Err(message) => {
                let message = message.replace([';', '\n', '\t'], " ");
                format!("error=compile_error;file={name};message={message}")
            }
        }
    }

    /// `udf-list`: `filename=<f>,hash=<sha1 hex>,type=LUA;` per module.
    pub fn info_list(&self) -> String {
        self.modules.read().values().map(|m| format!("filename={},hash={},type=LUA;", m.name, hex(&m.sha1))).collect()
    }

    /// `udf-get:filename=<f>`: `gen=<sha1 base64>;type=LUA;content=<base64>;`.
    pub fn info_get(&self, rest: &str) -> String {
        let Some(m) = param(rest, "filename").and_then(|n| self.modules.read().get(n).cloned()) else {
            return "error=not_found".into();
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("gen={};type=LUA;content={};", b64.encode(m.sha1), b64.encode(m.source.as_bytes()))
    }

    /// `udf-remove:filename=<f>`: `ok`, whether or not the module was there.
    pub fn info_remove(&self, rest: &str) -> String {
        let Some(name) = param(rest, "filename") else { return "error=invalid_filename".into() };
        let stamp = match stamp_param(rest) {
            Ok(s) => s,
            Err(answer) => return answer,
        };
        if stamp.is_some_and(|s| !self.catalog.is_later(CATALOG_SCOPE, name, s)) {
            return "ok".into();
        }
        // Removing a module that is not there is not an error (as on Aerospike 6+); the
        // removal is recorded all the same, so no peer that missed it brings the module back.
        if self.remove(name) {
            tracing::info!(module = name, "UDF module removed");
        }
        if valid_name(name) {
            let stamp_ms = stamp.unwrap_or_else(|| self.catalog.next_stamp(CATALOG_SCOPE, name));
            if let Err(e) = self.catalog.record(CATALOG_SCOPE, name, Change { stamp_ms, definition: None }) {
                tracing::warn!(module = name, error = e, "UDF catalog not updated");
            }
        }
        "ok".into()
    }

    /// A forwarded `udf-put` / `udf-remove` line carrying the stamp this node recorded for
    /// the module, so every member records the same change.
    pub fn stamped_for_peers(&self, line: &str, rest: &str) -> String {
        if param(rest, "stamp").is_some() {
            return line.to_string();
        }
        let stamp = self.catalog.stamp_of(CATALOG_SCOPE, param(rest, "filename").unwrap_or_default());
        format!("{line};stamp={stamp}")
    }
}

/// The `stamp` a peer's forwarded change carries: `Ok(None)` from a client.
fn stamp_param(rest: &str) -> Result<Option<u64>, String> {
    match param(rest, "stamp") {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| "error=invalid_stamp".to_string()),
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Udfs {
    /// The `udf-catalog` answer.
    pub fn catalog_answer(&self) -> String {
        self.catalog.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_line(name: &str, source: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(source);
        format!("filename={name};content={b64};content-len={};udf-type=LUA;", b64.len())
    }

    #[test]
    fn modules_are_checked_listed_read_back_and_kept() {
        let dir = std::env::temp_dir().join(format!("petrel-udf-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let udfs = Udfs::open(Some(dir.clone())).expect("open");
        assert_eq!(udfs.info_put(&put_line("a.lua", "function f(r) return 1 end")), "ok");
        assert!(udfs.info_put(&put_line("bad.lua", "function f( end")).starts_with("error=compile_error"));
        assert!(udfs.get("bad").is_none(), "a module that does not compile changes nothing");
        assert!(udfs.info_list().starts_with("filename=a.lua,hash="));
        assert!(udfs.info_get("filename=a.lua").contains(";type=LUA;content="));
        assert!(udfs.get("a").is_some(), "found without its extension");
        let again = Udfs::open(Some(dir.clone())).expect("reopen");
        assert!(again.get("a.lua").is_some(), "kept across restarts");
        assert_eq!(again.info_remove("filename=a.lua"), "ok");
        assert_eq!(again.info_remove("filename=a.lua"), "ok");
        assert!(again.get("a.lua").is_none());
        assert!(Udfs::open(Some(dir.clone())).expect("reopen").get("a.lua").is_none());
        assert!(udfs.info_put(&put_line("../x.lua", "")).starts_with("error="));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_later_changes_apply_and_removals_are_remembered() {
        let dir = std::env::temp_dir().join(format!("petrel-udf-stamps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let udfs = Udfs::open(Some(dir.clone())).expect("open");
        let v1 = "function f(r) return 1 end";
        let v2 = "function f(r) return 2 end";
        assert_eq!(udfs.info_put(&format!("{};stamp=100", put_line("m.lua", v2))), "ok");
        assert_eq!(udfs.info_put(&format!("{};stamp=50", put_line("m.lua", v1))), "ok");
        assert_eq!(udfs.get("m.lua").expect("kept").source, v2, "an older change does not apply");
        assert_eq!(udfs.info_remove("filename=m.lua;stamp=40"), "ok");
        assert!(udfs.get("m.lua").is_some());
        assert_eq!(udfs.info_remove("filename=m.lua;stamp=200"), "ok");
        assert!(udfs.get("m.lua").is_none());
        assert_eq!(udfs.info_put(&format!("{};stamp=150", put_line("m.lua", v1))), "ok");
        assert!(udfs.get("m.lua").is_none(), "a put older than the removal does not bring it back");
        // The catalog is kept: after a restart the removal still wins.
        let again = Udfs::open(Some(dir.clone())).expect("reopen");
        assert!(again.catalog_answer().contains(",lua,m.lua,-"), "{}", again.catalog_answer());
        assert_eq!(again.info_put(&format!("{};stamp=150", put_line("m.lua", v1))), "ok");
        assert!(again.get("m.lua").is_none());
        // A client's change is stamped later than anything held.
        assert_eq!(again.info_put(&put_line("m.lua", v1)), "ok");
        assert!(again.get("m.lua").is_some());
        assert!(again.info_put("filename=m.lua;content=;stamp=x").starts_with("error="));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
