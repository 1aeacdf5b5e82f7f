"""Small behaviours of a stock Aerospike server that the official client's own suite checks:
truncate argument checks, scans selecting bins, reads naming no bins, the order of an unordered
list's rank-range values, which of two errors a bit operation answers, read-touch."""
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers import cdt_ctx
from aerospike_helpers.expressions import Eq, ListBin, ListGetByValueRelRankRange
from aerospike_helpers.operations import bitwise_operations as bo
from aerospike_helpers.operations import list_operations as lo

NS = "test"


def test_truncate_arguments(client):
    set_name = "trunc_args"
    k = (NS, set_name, "k")
    client.put(k, {"a": 1})
    with pytest.raises(ex.NamespaceNotFound):
        client.truncate("", set_name, 0)
    with pytest.raises(ex.InvalidRequest):
        client.truncate(NS, "", 0)
    with pytest.raises(ex.InvalidRequest):
        client.truncate(NS, set_name, 1)  # before the Citrusleaf epoch
    with pytest.raises(ex.InvalidRequest):
        client.truncate(NS, set_name, time.time_ns() + 10**12)  # in the future
    with pytest.raises(ex.InvalidRequest):
        client.truncate(NS, set_name, 2**63 + 1)
    assert client.truncate("no_such_namespace", set_name, 0) == 0
    # None of the refused calls truncated anything.
    assert client.exists(k)[1] is not None
    client.truncate(NS, set_name, 0)
    assert client.exists(k)[1] is None


def test_scan_selecting_bins_skips_records_without_them(client):
    set_name = "scan_select"
    client.put((NS, set_name, 1), {"name": "a", "age": 1})
    client.put((NS, set_name, 2), {"name": "b"})
    client.put((NS, set_name, 3), {"other": 3})
    scan = client.scan(NS, set_name)
    scan.select("name")
    bins = sorted((b for _, _, b in scan.results()), key=lambda b: b["name"])
    assert bins == [{"name": "a"}, {"name": "b"}]


def test_select_of_no_bins_is_refused(client):
    k = (NS, "select_none", "k")
    client.put(k, {"a": 1})
    with pytest.raises(ex.InvalidRequest):
        client.select(k, [])
    assert client.select(k, ["a"])[2] == {"a": 1}


def test_unordered_list_rank_ranges_answer_values_as_aerospike_does(client):
    # Aerospike picks a rank range with a heap from the nearer end: from the low end the
    # values come highest rank first, from the high end lowest rank first.
    k = (NS, "rank_order", 1)
    client.put(k, {"l": [7, 6, 5, 8, 9, 10], "nested": [0, [26, 27, 28, 3]]})

    def values(op):
        return client.operate(k, [op])[2]

    assert values(lo.list_get_by_rank_range("l", 0, aerospike.LIST_RETURN_VALUE, 3)) == {"l": [7, 6, 5]}
    assert values(lo.list_get_by_rank_range("l", 3, aerospike.LIST_RETURN_VALUE, 3)) == {"l": [8, 9, 10]}
    assert values(lo.list_get_by_rank_range("l", 0, aerospike.LIST_RETURN_RANK, 3)) == {"l": [0, 1, 2]}
    ctx = [cdt_ctx.cdt_ctx_list_index(1)]
    expr = Eq(ListGetByValueRelRankRange(ctx, aerospike.LIST_RETURN_VALUE, 26, 0, 2, ListBin("nested")), [27, 26])
    assert client.get(k, {"expressions": expr.compile()})[2]["l"] == [7, 6, 5, 8, 9, 10]


def test_a_bit_range_past_the_bin_is_refused_before_a_short_operand(client):
    k = (NS, "bit_order", 1)
    client.put(k, {"b": bytearray(5)})
    # 48 bits do not fit a 5-byte bin (26), though the 5-byte operand is also short.
    with pytest.raises(ex.OpNotApplicable):
        client.operate(k, [bo.bit_set("b", 0, 48, 6, bytearray([255] * 5), None)])
    # 16 bits fit, but a 1-byte operand does not cover them (4).
    with pytest.raises(ex.InvalidRequest):
        client.operate(k, [bo.bit_set("b", 0, 16, 1, bytearray([255]), None)])
    assert client.get(k)[2]["b"] == bytearray(5)


def test_read_touch_resets_the_ttl_near_the_end_of_life(client):
    # Aerospike 7.1's read_touch_ttl_percent: a read within that percentage of the TTL of the
    # last write from the record's end of life touches it (a write: generation + 1, TTL anew).
    k = (NS, "read_touch", 1)
    client.put(k, {"a": 1}, meta={"ttl": 100})
    time.sleep(1.2)
    # 1 %: not within the last second of 100 s; -1: never.
    client.get(k, {"read_touch_ttl_percent": 1})
    client.get(k, {"read_touch_ttl_percent": -1})
    assert client.get(k)[1]["gen"] == 1
    # 100 %: any read touches, and the TTL starts again from now.
    client.get(k, {"read_touch_ttl_percent": 100})
    _, meta, bins = client.get(k)
    assert meta["gen"] == 2 and 99 <= meta["ttl"] <= 100 and bins == {"a": 1}
    # Batch rows and operates ask for it the same way (a few ms on: a read in the very
    # millisecond of the last write has none of its TTL behind it, so nothing to touch).
    time.sleep(0.01)
    client.batch_read([k], policy={"read_touch_ttl_percent": 100})
    assert client.get(k)[1]["gen"] == 3
