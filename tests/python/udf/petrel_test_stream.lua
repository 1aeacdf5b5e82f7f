-- Stream UDFs (aggregations) the Python tests run over queries and scans.

local function one(rec) return 1 end
local function add(a, b) return a + b end

function count(stream)
  return stream : map(one) : reduce(add)
end

function sum_of(stream, bin)
  return stream : map(function(rec) return rec[bin] end) : reduce(add)
end

function values_over(stream, bin, limit)
  return stream : filter(function(rec) return rec[bin] > limit end) : map(function(rec) return rec[bin] end)
end

function count_by(stream, bin)
  local function tally(groups, rec)
    local k = rec[bin]
    groups[k] = (groups[k] or 0) + 1
    return groups
  end
  return stream : aggregate(map{}, tally) : reduce(function(a, b) return map.merge(a, b, add) end)
end

function group_by(stream, bin)
  return stream : groupby(function(rec) return rec[bin] end)
end

function broken(stream)
  return stream : map(function(rec) return rec.no_such_bin + 1 end)
end
