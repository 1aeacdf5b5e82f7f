-- Petrel's stream UDF support (aggregations): the object a stream function receives and
-- chains `filter`, `map`, `aggregate`, `reduce` and `groupby` on, and the pipeline the host
-- pushes each record through. The server runs the chain up to and including its first
-- `reduce`; the client runs that `reduce` again over every node's results, then the rest of
-- the chain. Values are pushed, not pulled: the host walks the records, so nothing here
-- waits on storage.

local P = __petrel

local StreamMT = {}
StreamMT.__index = StreamMT

local function add_op(s, op)
  local ops = rawget(s, "__ops")
  ops[#ops + 1] = op
  return s
end

local function callable(f, what)
  if type(f) ~= "function" then error(what .. " needs a function", 3) end
  return f
end

function StreamMT:filter(f) return add_op(self, { kind = "filter", f = callable(f, "filter") }) end
function StreamMT:map(f) return add_op(self, { kind = "map", f = callable(f, "map") }) end
function StreamMT:aggregate(init, f)
  return add_op(self, { kind = "aggregate", init = init, f = callable(f, "aggregate") })
end
function StreamMT:reduce(f) return add_op(self, { kind = "reduce", f = callable(f, "reduce") }) end

-- groupby(f): a map from f(value) to the list of values with that key.
function StreamMT:groupby(f)
  callable(f, "groupby")
  local function collect(groups, v)
    local k = f(v)
    local l = groups[k] or list()
    list.append(l, v)
    groups[k] = l
    return groups
  end
  local function join(a, b) return list.merge(a, b) end
  return self:aggregate(map(), collect):reduce(function(a, b) return map.merge(a, b, join) end)
end

-- A fresh accumulator for each run: a copy of a list or map start value, so one run never
-- changes the value the function was given.
local function start_value(init)
  local kind = P.kind(init)
  if kind == "map" then return map.clone(init) elseif kind == "list" then return list.clone(init) end
  return init
end

-- One stage: push(v) takes a value, finish() flushes what the stage holds and finishes the
-- next stage.
local function stage(op, next_stage)
  if op.kind == "filter" then
    return {
      push = function(v) if op.f(v) then next_stage.push(v) end end,
      finish = next_stage.finish,
    }
  elseif op.kind == "map" then
    return {
      push = function(v)
        local out = op.f(v)
        if out ~= nil then next_stage.push(out) end
      end,
      finish = next_stage.finish,
    }
  elseif op.kind == "aggregate" then
    local acc = start_value(op.init)
    return {
      push = function(v) acc = op.f(acc, v) end,
      finish = function()
        if acc ~= nil then next_stage.push(acc) end
        next_stage.finish()
      end,
    }
  else -- reduce
    local acc = nil
    return {
      push = function(v)
        if acc == nil then acc = v else acc = op.f(acc, v) end
      end,
      finish = function()
        if acc ~= nil then next_stage.push(acc) end
        next_stage.finish()
      end,
    }
  end
end

-- Calls the stream function with a new stream object and the request's arguments, and builds
-- the server's part of the chain it returns. The pipeline's results gather in `out`.
function P.stream_pipeline(f, ...)
  local s = f(setmetatable({ __ops = {} }, StreamMT), ...)
  if getmetatable(s) ~= StreamMT then
    error("a stream function must return the stream it was given, with its operations", 0)
  end
  local ops = {}
  for _, op in ipairs(rawget(s, "__ops")) do
    ops[#ops + 1] = op
    if op.kind == "reduce" then break end
  end
  local out = {}
  local head = { push = function(v) out[#out + 1] = v end, finish = function() end }
  for i = #ops, 1, -1 do head = stage(ops[i], head) end
  local pipeline = {}
  function pipeline.push(v) head.push(v) end
  function pipeline.finish() head.finish() end
  -- The results gathered so far, handed over once.
  function pipeline.take()
    local taken = out
    out = {}
    return taken, #taken
  end
  return pipeline
end
