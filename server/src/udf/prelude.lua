-- Petrel's Lua environment for record UDFs: the record object, the aerospike object, the
-- list, map and bytes types, and the logging functions. Values cross into Rust through the
-- constructors and the `__petrel` helpers below; nothing here touches storage itself.

local P = {}
__petrel = P

-- list -----------------------------------------------------------------------------------
local ListMT = {}
local list_fns = {}
ListMT.__index = function(t, k)
  if type(k) == "number" then return rawget(t, "__v")[k] end
  return list_fns[k]
end
ListMT.__newindex = function(t, k, v)
  if type(k) ~= "number" then error("list index must be a number", 2) end
  local v_ = rawget(t, "__v")
  v_[k] = v
  if k > rawget(t, "__n") then rawset(t, "__n", k) end
end
ListMT.__len = function(t) return rawget(t, "__n") end
-- `for v in l do`: each call gives the next element.
ListMT.__call = function(t)
  local i = (rawget(t, "__it") or 0) + 1
  if i > rawget(t, "__n") then rawset(t, "__it", nil); return nil end
  rawset(t, "__it", i)
  return rawget(t, "__v")[i]
end
ListMT.__tostring = function(t)
  local parts = {}
  for i = 1, rawget(t, "__n") do parts[#parts + 1] = tostring(rawget(t, "__v")[i]) end
  return "List(" .. table.concat(parts, ", ") .. ")"
end
local function new_list(items)
  items = items or {}
  local n = 0
  for k in pairs(items) do if type(k) == "number" and k > n then n = k end end
  return setmetatable({ __v = items, __n = n }, ListMT)
end
list = setmetatable({}, { __call = function(_, items) return new_list(items) end })
function list.create(_) return new_list({}) end
function list.size(l) return rawget(l, "__n") end
function list.append(l, v) local n = rawget(l, "__n") + 1; rawget(l, "__v")[n] = v; rawset(l, "__n", n); return l end
function list.prepend(l, v) table.insert(rawget(l, "__v"), 1, v); rawset(l, "__n", rawget(l, "__n") + 1); return l end
function list.insert(l, i, v) table.insert(rawget(l, "__v"), i, v); rawset(l, "__n", rawget(l, "__n") + 1); return l end
function list.remove(l, i) local v = table.remove(rawget(l, "__v"), i); rawset(l, "__n", math.max(0, rawget(l, "__n") - 1)); return v end
function list.take(l, n) local out = {}; for i = 1, math.min(n, rawget(l, "__n")) do out[i] = rawget(l, "__v")[i] end; return new_list(out) end
function list.drop(l, n) local out = {}; for i = n + 1, rawget(l, "__n") do out[#out + 1] = rawget(l, "__v")[i] end; return new_list(out) end
function list.clone(l) local out = {}; for i = 1, rawget(l, "__n") do out[i] = rawget(l, "__v")[i] end; return new_list(out) end
function list.concat(a, b) for i = 1, rawget(b, "__n") do list.append(a, rawget(b, "__v")[i]) end; return a end
function list.merge(a, b) return list.concat(list.clone(a), b) end
function list.iterator(l)
  local i = 0
  return function() i = i + 1; if i <= rawget(l, "__n") then return rawget(l, "__v")[i] end end
end
for k, f in pairs(list) do list_fns[k] = f end

-- map ------------------------------------------------------------------------------------
local MapMT = {}
MapMT.__index = function(t, k) return rawget(t, "__m")[k] end
MapMT.__newindex = function(t, k, v) rawget(t, "__m")[k] = v end
MapMT.__len = function(t) local n = 0; for _ in pairs(rawget(t, "__m")) do n = n + 1 end; return n end
MapMT.__tostring = function(t)
  local parts = {}
  for k, v in pairs(rawget(t, "__m")) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
  table.sort(parts)
  return "Map(" .. table.concat(parts, ", ") .. ")"
end
local function new_map(entries) return setmetatable({ __m = entries or {} }, MapMT) end
map = setmetatable({}, { __call = function(_, entries) return new_map(entries) end })
function map.create(_) return new_map({}) end
function map.size(m) return MapMT.__len(m) end
function map.pairs(m) return pairs(rawget(m, "__m")) end
function map.keys(m) local k_ = nil; local t = rawget(m, "__m"); return function() k_ = next(t, k_); return k_ end end
function map.values(m) local k_ = nil; local t = rawget(m, "__m"); return function() local v; k_, v = next(t, k_); return v end end
function map.remove(m, k) rawget(m, "__m")[k] = nil; return m end
function map.clone(m) local out = {}; for k, v in pairs(rawget(m, "__m")) do out[k] = v end; return new_map(out) end
function map.merge(a, b, f)
  local out = {}
  for k, v in pairs(rawget(a, "__m")) do out[k] = v end
  for k, v in pairs(rawget(b, "__m")) do
    if out[k] ~= nil and f then out[k] = f(out[k], v) else out[k] = v end
  end
  return new_map(out)
end

-- bytes ----------------------------------------------------------------------------------
local BytesMT = {}
BytesMT.__index = function(t, k) return rawget(t, "__b")[k] end
BytesMT.__newindex = function(t, k, v)
  if type(k) ~= "number" or k < 1 or math.type(v) ~= "integer" or v < 0 or v > 255 then
    error("bytes: an index from 1 and a byte value 0..255 are needed", 2)
  end
  local b = rawget(t, "__b")
  for i = #b + 1, k - 1 do b[i] = 0 end
  b[k] = v
end
BytesMT.__len = function(t) return #rawget(t, "__b") end
BytesMT.__tostring = function(t)
  local hex = {}
  for i, v in ipairs(rawget(t, "__b")) do hex[i] = string.format("%02X", v) end
  return table.concat(hex)
end
local function new_bytes(s)
  local b = {}
  for i = 1, #s do b[i] = string.byte(s, i) end
  return setmetatable({ __b = b }, BytesMT)
end
bytes = setmetatable({}, { __call = function(_, n)
  local b = {}
  for i = 1, (n or 0) do b[i] = 0 end
  return setmetatable({ __b = b }, BytesMT)
end })
function bytes.size(b) return #rawget(b, "__b") end

-- record ---------------------------------------------------------------------------------
local RecordMT = {}
RecordMT.__index = function(t, k) return rawget(t, "__bins")[k] end
RecordMT.__newindex = function(t, k, v)
  if type(k) ~= "string" then error("bin names are strings", 2) end
  rawget(t, "__bins")[k] = v
  rawget(t, "__dirty")[k] = true
end
local function meta(r) return rawget(r, "__meta") end
record = {}
function record.ttl(r) return meta(r).ttl end
function record.gen(r) return meta(r).gen end
function record.setname(r) return meta(r).set end
function record.key(r) return meta(r).key end
function record.digest(r) return meta(r).digest end
function record.last_update_time(r) return meta(r).lut end
function record.set_ttl(r, ttl) meta(r).new_ttl = ttl end
function record.bin_names(r)
  local names = {}
  for k in pairs(rawget(r, "__bins")) do names[#names + 1] = k end
  table.sort(names)
  return names
end
function record.numbins(r) return #record.bin_names(r) end

aerospike = {}
function aerospike:exists(r) return meta(r).exists end
function aerospike:create(r) meta(r).op = "write"; meta(r).exists = true; return 0 end
function aerospike:update(r) meta(r).op = "write"; meta(r).exists = true; return 0 end
function aerospike:remove(r) meta(r).op = "remove"; meta(r).exists = false; return 0 end

-- logging --------------------------------------------------------------------------------
for _, level in ipairs({ "trace", "debug", "info", "warn" }) do
  _G[level] = function(fmt, ...) P.log(level, string.format(tostring(fmt), ...)) end
end

-- helpers for the host -------------------------------------------------------------------
P.new_list = new_list
P.new_map = new_map
P.new_bytes = new_bytes
function P.new_record(bins, m) return setmetatable({ __bins = bins, __dirty = {}, __meta = m }, RecordMT) end
function P.kind(v)
  local mt = getmetatable(v)
  if mt == ListMT then return "list" elseif mt == MapMT then return "map" elseif mt == BytesMT then return "bytes" end
  if mt == RecordMT then return "record" end
  return type(v)
end
function P.list_items(l) return rawget(l, "__v"), rawget(l, "__n") end
function P.map_entries(m) return rawget(m, "__m") end
function P.bytes_string(b)
  local parts = {}
  for i, v in ipairs(rawget(b, "__b")) do parts[i] = string.char(v) end
  return table.concat(parts)
end
function P.record_bins(r) return rawget(r, "__bins") end
function P.changes(r) return rawget(r, "__bins"), rawget(r, "__dirty"), meta(r) end
