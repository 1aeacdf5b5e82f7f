-- Record UDFs the Python tests register and run.

function bump(rec, bin, by)
  rec[bin] = (rec[bin] or 0) + by
  if aerospike:exists(rec) then aerospike:update(rec) else aerospike:create(rec) end
  return rec[bin]
end

function tag(rec, bin, value)
  rec[bin] = value
  aerospike:update(rec)
end

function drop_bin(rec, bin)
  rec[bin] = nil
  aerospike:update(rec)
  return record.numbins(rec)
end

function shapes(rec)
  local l = list{1, 2}
  list.append(l, 3)
  return map{l = l, n = list.size(l), gen = record.gen(rec), names = record.bin_names(rec)}
end

function remove(rec)
  aerospike:remove(rec)
end

function fail(rec)
  error("refused on purpose")
end
