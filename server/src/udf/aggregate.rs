//! Running one aggregation (a stream UDF over a query or scan): one Lua state for the whole
//! run, the module's stream function called once to build the pipeline (`stream.lua`), each
//! record pushed through it, and the values that come out taken in batches so they can be
//! answered while the run goes on. Each pushed record (and the final flush) has its own
//! instruction budget; the state's memory is bounded as for record UDFs.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};
use petrel_proto::msgpack::MsgValue;

use super::lua::{self, RecordIn};

/// One aggregation in progress.
#[derive(Debug)]
pub struct Aggregation {
    lua: Lua,
    helpers: Table,
    push: Function,
    finish: Function,
    take: Function,
    spent: Rc<Cell<u64>>,
}

impl Aggregation {
    /// Loads `source` and calls its stream function `function` with `args`; the error message
    /// when the module does not load, the function is missing or does not return a stream.
    pub fn start(module: &str, source: &str, function: &str, args: &[MsgValue]) -> Result<Aggregation, String> {
        let build = || -> mlua::Result<Result<Aggregation, String>> {
            let (lua, spent) = lua::state()?;
            lua.load(source).set_name(format!("@{module}")).exec()?;
            let Ok(f) = lua.globals().get::<Function>(function) else {
                return Ok(Err(format!("function not found: {module}.{function}")));
            };
            let helpers: Table = lua.globals().get("__petrel")?;
            let mut call_args = vec![LuaValue::Function(f)];
            for a in args {
                call_args.push(lua::to_lua(&lua, &helpers, a, 0)?);
            }
            let pipeline: Table = helpers.get::<Function>("stream_pipeline")?.call(MultiValue::from_iter(call_args))?;
            Ok(Ok(Aggregation {
                push: pipeline.get("push")?,
                finish: pipeline.get("finish")?,
                take: pipeline.get("take")?,
                helpers,
                lua,
                spent,
            }))
        };
        build().unwrap_or_else(|e| Err(lua::lua_error_text(&e)))
    }

    /// Pushes one record through the pipeline.
    pub fn push(&mut self, rec: &RecordIn) -> Result<(), String> {
        self.spent.set(0);
        let run = || -> mlua::Result<()> {
            let record = lua::record_value(&self.lua, &self.helpers, rec)?;
            self.push.call::<()>(record)
        };
        run().map_err(|e| lua::lua_error_text(&e))
    }

    /// Ends the input: what the pipeline's aggregates and reduces hold comes out.
    pub fn finish(&mut self) -> Result<(), String> {
        self.spent.set(0);
        self.finish.call::<()>(()).map_err(|e| lua::lua_error_text(&e))
    }

    /// The values that came out since the last call.
    pub fn take(&mut self) -> Result<Vec<MsgValue>, String> {
        let run = || -> mlua::Result<Vec<MsgValue>> {
            let (values, n): (Table, i64) = self.take.call(())?;
            let mut out = Vec::with_capacity(n.max(0) as usize);
            for i in 1..=n {
                out.push(lua::from_lua(&self.helpers, &values.raw_get::<LuaValue>(i)?, 0)?);
            }
            Ok(out)
        };
        run().map_err(|e| lua::lua_error_text(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = r#"
local function one(rec) return 1 end
local function add(a, b) return a + b end
function count(s) return s : map(one) : reduce(add) end
function ages_over(s, limit)
  return s : filter(function(r) return r.age > limit end) : map(function(r) return r.age end)
end
function by_parity(s)
  return s : aggregate(map{}, function(m, r)
    local k = (r.age % 2 == 0) and "even" or "odd"
    m[k] = (m[k] or 0) + 1
    return m
  end) : reduce(function(a, b) return map.merge(a, b, add) end)
end
function grouped(s) return s : groupby(function(r) return r.age % 2 end) end
function whole(s) return s : filter(function(r) return r.age == 2 end) end
function not_a_stream(s) return 5 end
function fails(s) return s : map(function(r) return r.missing + 1 end) end
"#;

    fn ages(n: i64) -> Vec<RecordIn> {
        (0..n)
            .map(|age| RecordIn { exists: true, bins: vec![("age".into(), MsgValue::Int(age))], ..Default::default() })
            .collect()
    }

    fn run(function: &str, args: &[MsgValue], recs: &[RecordIn]) -> Result<Vec<MsgValue>, String> {
        let mut agg = Aggregation::start("m", MODULE, function, args)?;
        let mut out = Vec::new();
        for r in recs {
            agg.push(r)?;
            out.extend(agg.take()?);
        }
        agg.finish()?;
        out.extend(agg.take()?);
        Ok(out)
    }

    fn map_get(v: &MsgValue, key: MsgValue) -> Option<MsgValue> {
        let MsgValue::Map(m) = v else { return None };
        m.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn map_filter_aggregate_reduce_and_groupby_run_on_the_records() {
        assert_eq!(run("count", &[], &ages(7)).unwrap(), vec![MsgValue::Int(7)]);
        // A reduce over nothing gives nothing.
        assert_eq!(run("count", &[], &[]).unwrap(), Vec::<MsgValue>::new());
        assert_eq!(run("ages_over", &[MsgValue::Int(4)], &ages(7)).unwrap(), vec![MsgValue::Int(5), MsgValue::Int(6)]);
        let parity = run("by_parity", &[], &ages(5)).unwrap();
        assert_eq!(parity.len(), 1);
        assert_eq!(map_get(&parity[0], MsgValue::str("even")), Some(MsgValue::Int(3)));
        assert_eq!(map_get(&parity[0], MsgValue::str("odd")), Some(MsgValue::Int(2)));
        let groups = run("grouped", &[], &ages(4)).unwrap();
        let MsgValue::List(odd) = map_get(&groups[0], MsgValue::Int(1)).expect("odd group") else { panic!() };
        assert_eq!(odd.len(), 2);
        // A record that reaches the end is answered as its bins.
        let whole = run("whole", &[], &ages(4)).unwrap();
        assert_eq!(map_get(&whole[0], MsgValue::str("age")), Some(MsgValue::Int(2)));
    }

    #[test]
    fn errors_are_messages() {
        assert!(run("missing", &[], &[]).unwrap_err().contains("function not found"));
        assert!(run("not_a_stream", &[], &[]).unwrap_err().contains("must return the stream"));
        assert!(run("fails", &[], &ages(1)).unwrap_err().contains("attempt to perform arithmetic"));
        assert!(run("count", &[], &[]).is_ok());
    }
}
