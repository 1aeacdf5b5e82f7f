//! Running one record UDF: a Lua 5.4 state with Petrel's prelude (record, aerospike, list,
//! map, bytes, logging; `prelude.lua`) and only the safe standard libraries (no io, os,
//! package or debug), the module loaded, the function called with the record and its
//! arguments, and what it did read back: the bins it changed, whether it asked to write or
//! remove the record, a new TTL, and its return value. Bounded: at most
//! [`INSTRUCTIONS_MAX`] Lua instructions and [`MEMORY_MAX_BYTES`] of Lua memory per call.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue, VmState};
use petrel_proto::msgpack::{MsgMap, MsgValue};
use petrel_proto::wire::ParticleType;

/// Lua instructions one call may run before it is stopped.
pub const INSTRUCTIONS_MAX: u64 = 50_000_000;
/// Lua memory one call may use.
pub const MEMORY_MAX_BYTES: usize = 64 << 20;
/// Deepest nesting of lists and maps crossing between Lua and the record.
const DEPTH_MAX: usize = 32;
/// How often (in instructions) the budget is checked.
const HOOK_EVERY: u32 = 10_000;

const PRELUDE: &str = include_str!("prelude.lua");
const STREAM: &str = include_str!("stream.lua");

/// The record a UDF is called on.
#[derive(Debug, Default)]
pub struct RecordIn {
    pub exists: bool,
    pub bins: Vec<(String, MsgValue)>,
    pub generation: u16,
    /// Seconds left to live; -1 never expires.
    pub ttl: i64,
    pub set: String,
    pub key: Option<MsgValue>,
    pub digest: [u8; 20],
    pub lut_ms: u64,
}

/// What the UDF asked to do with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOp {
    Nothing,
    Write,
    Remove,
}

/// What a call did.
#[derive(Debug)]
pub struct RecordOut {
    pub op: RecordOp,
    /// Bins set by the UDF: a value, or `None` to remove the bin.
    pub changes: Vec<(String, Option<MsgValue>)>,
    pub new_ttl: Option<i64>,
    pub result: MsgValue,
}

/// Compiles `source` in a bare state: the error message when it does not compile.
pub fn check(name: &str, source: &[u8]) -> Result<(), String> {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).map_err(|e| e.to_string())?;
    lua.load(source).set_name(format!("@{name}")).into_function().map(|_| ()).map_err(|e| e.to_string())
}

/// A sandboxed state with the prelude, and the count of instructions it has run (which the
/// caller may reset to give each step of a long run its own budget).
pub(crate) fn state() -> mlua::Result<(Lua, Rc<Cell<u64>>)> {
    let lua = Lua::new_with(StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8, LuaOptions::default())?;
    lua.set_memory_limit(MEMORY_MAX_BYTES)?;
    let spent = Rc::new(Cell::new(0u64));
    let counter = Rc::clone(&spent);
    lua.set_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_, _| {
        counter.set(counter.get() + HOOK_EVERY as u64);
        if counter.get() > INSTRUCTIONS_MAX {
            return Err(mlua::Error::runtime("UDF exceeded its instruction budget"));
        }
        Ok(VmState::Continue)
    });
    lua.load(PRELUDE).set_name("@petrel-prelude").exec()?;
    lua.load(STREAM).set_name("@petrel-stream").exec()?;
    let helpers: Table = lua.globals().get("__petrel")?;
    helpers.set(
        "log",
        lua.create_function(|_, (level, text): (String, String)| {
            match level.as_str() {
                "warn" => tracing::warn!(target: "petrel_udf", "{text}"),
                "info" => tracing::info!(target: "petrel_udf", "{text}"),
                _ => tracing::debug!(target: "petrel_udf", "{text}"),
            }
            Ok(())
        })?,
    )?;
    Ok((lua, spent))
}

/// Calls `function` of module `source` on `rec` with `args`.
pub fn call(
    module: &str,
    source: &str,
    function: &str,
    rec: &RecordIn,
    args: &[MsgValue],
) -> Result<RecordOut, String> {
    let run = || -> mlua::Result<Result<RecordOut, String>> {
        let (lua, _) = state()?;
        lua.load(source).set_name(format!("@{module}")).exec()?;
        let Ok(f) = lua.globals().get::<mlua::Function>(function) else {
            return Ok(Err(format!("function not found: {module}.{function}")));
        };
        let helpers: Table = lua.globals().get("__petrel")?;
        let record = record_value(&lua, &helpers, rec)?;
        let mut call_args = vec![record.clone()];
        for a in args {
            call_args.push(to_lua(&lua, &helpers, a, 0)?);
        }
        let returned: MultiValue = f.call(MultiValue::from_iter(call_args))?;
        let result = match returned.into_iter().next() {
            Some(v) => from_lua(&helpers, &v, 0)?,
            None => MsgValue::Nil,
        };
        let (bins, dirty, meta): (Table, Table, Table) = helpers.get::<mlua::Function>("changes")?.call(record)?;
        let mut changes = Vec::new();
        for pair in dirty.pairs::<String, bool>() {
            let (name, _) = pair?;
            let v: LuaValue = bins.get(name.as_str())?;
            let value = if v.is_nil() { None } else { Some(from_lua(&helpers, &v, 0)?) };
            changes.push((name, value));
        }
        changes.sort_by(|a, b| a.0.cmp(&b.0));
        let op = match meta.get::<Option<String>>("op")?.as_deref() {
            Some("write") => RecordOp::Write,
            Some("remove") => RecordOp::Remove,
            _ => RecordOp::Nothing,
        };
        let new_ttl = meta.get::<Option<i64>>("new_ttl")?;
        Ok(Ok(RecordOut { op, changes, new_ttl, result }))
    };
    run().unwrap_or_else(|e| Err(lua_error_text(&e)))
}

/// `rec` as a Lua record object.
pub(crate) fn record_value(lua: &Lua, helpers: &Table, rec: &RecordIn) -> mlua::Result<LuaValue> {
    let bins = lua.create_table()?;
    for (name, v) in &rec.bins {
        bins.set(name.as_str(), to_lua(lua, helpers, v, 0)?)?;
    }
    let meta = lua.create_table()?;
    meta.set("exists", rec.exists)?;
    meta.set("gen", rec.generation)?;
    meta.set("ttl", rec.ttl)?;
    meta.set("set", rec.set.as_str())?;
    meta.set("lut", rec.lut_ms)?;
    if let Some(k) = &rec.key {
        meta.set("key", to_lua(lua, helpers, k, 0)?)?;
    }
    let digest = helpers.get::<mlua::Function>("new_bytes")?.call::<LuaValue>(lua.create_string(rec.digest)?)?;
    meta.set("digest", digest)?;
    helpers.get::<mlua::Function>("new_record")?.call((bins, meta))
}

/// The message of a Lua error, without the traceback.
pub(crate) fn lua_error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => lua_error_text(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => {
            m.split("\nstack traceback").next().unwrap_or_default().to_string()
        }
        other => other.to_string().lines().next().unwrap_or_default().to_string(),
    }
}

pub(crate) fn to_lua(lua: &Lua, helpers: &Table, v: &MsgValue, depth: usize) -> mlua::Result<LuaValue> {
    if depth > DEPTH_MAX {
        return Err(mlua::Error::runtime("value nested too deeply"));
    }
    Ok(match v {
        MsgValue::Nil | MsgValue::Ext(..) => LuaValue::Nil,
        MsgValue::Bool(b) => LuaValue::Boolean(*b),
        MsgValue::Int(i) => LuaValue::Integer(*i),
        MsgValue::UInt(u) => LuaValue::Number(*u as f64),
        MsgValue::Float(f) => LuaValue::Number(*f),
        MsgValue::Str(s) => LuaValue::String(lua.create_string(s)?),
        MsgValue::Blob(t, b) if *t == ParticleType::GeoJson as u8 => LuaValue::String(lua.create_string(b)?),
        MsgValue::Blob(_, b) => helpers.get::<mlua::Function>("new_bytes")?.call(lua.create_string(b)?)?,
        MsgValue::List(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, helpers, item, depth + 1)?)?;
            }
            helpers.get::<mlua::Function>("new_list")?.call(t)?
        }
        MsgValue::Map(m) => {
            let t = lua.create_table_with_capacity(0, m.entries.len())?;
            for (k, val) in &m.entries {
                t.raw_set(to_lua(lua, helpers, k, depth + 1)?, to_lua(lua, helpers, val, depth + 1)?)?;
            }
            helpers.get::<mlua::Function>("new_map")?.call(t)?
        }
    })
}

pub(crate) fn from_lua(helpers: &Table, v: &LuaValue, depth: usize) -> mlua::Result<MsgValue> {
    if depth > DEPTH_MAX {
        return Err(mlua::Error::runtime("value nested too deeply (or a table that holds itself)"));
    }
    Ok(match v {
        LuaValue::Nil => MsgValue::Nil,
        LuaValue::Boolean(b) => MsgValue::Bool(*b),
        LuaValue::Integer(i) => MsgValue::Int(*i),
        LuaValue::Number(f) => MsgValue::Float(*f),
        LuaValue::String(s) => MsgValue::Str(s.as_bytes().to_vec()),
        LuaValue::Table(t) => {
            let kind: String = helpers.get::<mlua::Function>("kind")?.call(t.clone())?;
            match kind.as_str() {
                "list" => {
                    let (items, n): (Table, i64) = helpers.get::<mlua::Function>("list_items")?.call(t.clone())?;
                    let mut out = Vec::with_capacity(n.max(0) as usize);
                    for i in 1..=n {
                        out.push(from_lua(helpers, &items.raw_get::<LuaValue>(i)?, depth + 1)?);
                    }
                    MsgValue::List(out)
                }
                "bytes" => {
                    let s: mlua::String = helpers.get::<mlua::Function>("bytes_string")?.call(t.clone())?;
                    MsgValue::Blob(ParticleType::Blob as u8, s.as_bytes().to_vec())
                }
                "map" => {
                    let entries: Table = helpers.get::<mlua::Function>("map_entries")?.call(t.clone())?;
                    map_from(helpers, &entries, depth)?
                }
                // A record that reaches a stream's end is answered as the map of its bins.
                "record" => {
                    let bins: Table = helpers.get::<mlua::Function>("record_bins")?.call(t.clone())?;
                    map_from(helpers, &bins, depth)?
                }
                // A plain table: a sequence is a list, anything else a map.
                _ => {
                    let n = t.raw_len();
                    if n > 0 && t.clone().pairs::<LuaValue, LuaValue>().count() == n {
                        let mut out = Vec::with_capacity(n);
                        for i in 1..=n {
                            out.push(from_lua(helpers, &t.raw_get::<LuaValue>(i)?, depth + 1)?);
                        }
                        MsgValue::List(out)
                    } else {
                        map_from(helpers, t, depth)?
                    }
                }
            }
        }
        other => return Err(mlua::Error::runtime(format!("a UDF cannot store or return a {}", other.type_name()))),
    })
}

fn map_from(helpers: &Table, t: &Table, depth: usize) -> mlua::Result<MsgValue> {
    let mut entries = Vec::new();
    for pair in t.clone().pairs::<LuaValue, LuaValue>() {
        let (k, v) = pair?;
        entries.push((from_lua(helpers, &k, depth + 1)?, from_lua(helpers, &v, depth + 1)?));
    }
    // A stable order, so equal maps store equal bytes.
    entries.sort_by_cached_key(|a| petrel_proto::msgpack::to_vec(&a.0));
    Ok(MsgValue::Map(MsgMap { flags: 0, entries }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"
function bump(rec, bin, by)
  rec[bin] = (rec[bin] or 0) + by
  if aerospike:exists(rec) then aerospike:update(rec) else aerospike:create(rec) end
  return rec[bin]
end
function shapes(rec)
  local l = list{1, 2}
  list.append(l, 3)
  local m = map{a = 1}
  m["b"] = l
  local b = bytes(2)
  b[1] = 10
  return map{l = l, m = m, b = b, n = list.size(l), d = record.digest(rec)}
end
function drop(rec) aerospike:remove(rec) end
function forever(rec) while true do end end
"#;

    fn rec(bins: Vec<(String, MsgValue)>) -> RecordIn {
        RecordIn { exists: !bins.is_empty(), bins, digest: [7; 20], ..Default::default() }
    }

    #[test]
    fn a_udf_changes_bins_and_returns_values() {
        let out = call(
            "m",
            MODULE,
            "bump",
            &rec(vec![("n".into(), MsgValue::Int(4))]),
            &[MsgValue::str("n"), MsgValue::Int(3)],
        )
        .expect("runs");
        assert_eq!(out.op, RecordOp::Write);
        assert_eq!(out.changes, vec![("n".to_string(), Some(MsgValue::Int(7)))]);
        assert_eq!(out.result, MsgValue::Int(7));
        let MsgValue::Map(m) = call("m", MODULE, "shapes", &rec(vec![]), &[]).expect("runs").result else {
            panic!("a map")
        };
        let get = |k: &str| m.entries.iter().find(|(key, _)| *key == MsgValue::str(k)).map(|(_, v)| v.clone());
        assert_eq!(get("l"), Some(MsgValue::List(vec![MsgValue::Int(1), MsgValue::Int(2), MsgValue::Int(3)])));
        assert_eq!(get("n"), Some(MsgValue::Int(3)));
        assert_eq!(get("b"), Some(MsgValue::Blob(4, vec![10, 0])));
        assert_eq!(get("d"), Some(MsgValue::Blob(4, vec![7; 20])));
        assert_eq!(call("m", MODULE, "drop", &rec(vec![]), &[]).expect("runs").op, RecordOp::Remove);
    }

    #[test]
    fn errors_are_messages_and_loops_are_stopped() {
        assert!(call("m", MODULE, "missing", &rec(vec![]), &[]).unwrap_err().contains("function not found"));
        assert!(call("m", MODULE, "forever", &rec(vec![]), &[]).unwrap_err().contains("instruction budget"));
        let err = call(
            "m",
            MODULE,
            "bump",
            &rec(vec![("n".into(), MsgValue::str("x"))]),
            &[MsgValue::str("n"), MsgValue::Int(1)],
        )
        .unwrap_err();
        assert!(err.starts_with("m:3: attempt to"), "{err}");
        assert!(!err.contains("traceback"), "{err}");
        assert!(check("bad.lua", b"function f( end").is_err());
        assert!(check("good.lua", MODULE.as_bytes()).is_ok());
    }

    #[test]
    fn the_sandbox_has_no_io_or_os() {
        let src = "function f(r) return io == nil and os == nil and require == nil end";
        assert_eq!(call("m", src, "f", &rec(vec![]), &[]).expect("runs").result, MsgValue::Bool(true));
    }
}
