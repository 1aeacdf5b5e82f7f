"""The official Python client (`aerospike` from PyPI) against a real petreld."""
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike_helpers.operations import list_operations as lo
from aerospike_helpers.operations import map_operations as mo
from aerospike_helpers.operations import operations as op

NS = "test"


def key(set_name, k):
    return (NS, set_name, k)


def test_put_get_every_bin_type(client):
    k = key("types", "k1")
    bins = {
        "i": 7,
        "neg": -9223372036854775808,
        "f": 1.5,
        "s": "hi ünïcødé",
        "b": b"\x00\xff",
        "l": [1, "a", [2], {"x": 1.25}],
        "m": {"a": 2, "z": [1, 2], "n": None},
        "t": True,
        "g": aerospike.GeoJSON({"type": "Point", "coordinates": [1.5, 2.5]}),
    }
    client.put(k, bins)
    (_, meta, got) = client.get(k)
    assert meta["gen"] == 1
    assert meta["ttl"] == 4294967295  # never expires
    for name in ["i", "neg", "f", "s", "b", "l", "m", "t"]:
        assert got[name] == bins[name], name
        assert type(got[name]) is type(bins[name]), name
    assert got["g"].unwrap() == bins["g"].unwrap()


def test_select_exists_touch_remove(client):
    k = key("demo", "sel")
    client.put(k, {"a": 1, "b": 2, "c": 3})
    (_, _, got) = client.select(k, ["a", "c"])
    assert got == {"a": 1, "c": 3}
    (_, meta) = client.exists(k)
    assert meta["gen"] == 1
    (_, meta) = client.exists(key("demo", "missing"))
    assert meta is None
    client.touch(k, 100)
    (_, meta) = client.exists(k)
    assert meta["gen"] == 2
    assert 90 <= meta["ttl"] <= 100
    client.remove(k)
    with pytest.raises(ex.RecordNotFound):
        client.get(k)
    with pytest.raises(ex.RecordNotFound):
        client.remove(k)


def test_generation_and_exists_policies(client):
    k = key("demo", "gen")
    client.put(k, {"a": 1})
    with pytest.raises(ex.RecordGenerationError):
        client.put(k, {"a": 2}, meta={"gen": 99}, policy={"gen": aerospike.POLICY_GEN_EQ})
    client.put(k, {"a": 2}, meta={"gen": 1}, policy={"gen": aerospike.POLICY_GEN_EQ})
    with pytest.raises(ex.RecordExistsError):
        client.put(k, {"a": 3}, policy={"exists": aerospike.POLICY_EXISTS_CREATE})
    with pytest.raises(ex.RecordNotFound):
        client.put(key("demo", "nope"), {"a": 3}, policy={"exists": aerospike.POLICY_EXISTS_UPDATE})
    client.put(k, {"b": 1}, policy={"exists": aerospike.POLICY_EXISTS_REPLACE})
    (_, _, got) = client.get(k)
    assert got == {"b": 1}


def test_ttl_record_disappears(client):
    k = key("demo", "ttl")
    client.put(k, {"a": 1}, meta={"ttl": 1})
    (_, meta) = client.exists(k)
    assert meta is not None and meta["ttl"] <= 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (_, meta) = client.exists(k)
        if meta is None:
            break
        time.sleep(0.2)
    assert meta is None, "a 1 s record was still there after 5 s"


def test_operate_scalar_ops(client):
    k = key("demo", "ops")
    client.put(k, {"i": 7, "s": "hi"})
    (_, meta, got) = client.operate(k, [op.increment("i", 2), op.append("s", "!"), op.prepend("s", ">"), op.read("i"), op.read("s")])
    assert got == {"i": 9, "s": ">hi!"}
    assert meta["gen"] == 2
    with pytest.raises(ex.BinIncompatibleType):
        client.operate(k, [op.increment("s", 1)])


def test_operate_list_and_map(client):
    k = key("demo", "cdt")
    client.put(k, {"l": [1, "a", [2]], "m": {"a": 2, "z": 1}})
    (_, _, got) = client.operate(
        k,
        [
            lo.list_append("l", 9),
            lo.list_size("l"),
            mo.map_put("m", "q", 5),
            mo.map_get_by_key("m", "q", aerospike.MAP_RETURN_VALUE),
        ],
    )
    assert got["l"] == 4 and got["m"] == 5
    (_, _, got) = client.operate(
        k,
        [
            lo.list_append_items("l", [10, 11]),
            lo.list_get_by_index("l", -1, aerospike.LIST_RETURN_VALUE),
            lo.list_get_range("l", 0, 2),
        ],
    )
    assert got["l"] == [1, "a"]
    (_, _, got) = client.operate(k, [mo.map_increment("m", "a", 10), mo.map_remove_by_key("m", "z", aerospike.MAP_RETURN_VALUE)])
    assert got["m"] == 1
    (_, _, got) = client.get(k)
    assert got["l"] == [1, "a", [2], 9, 10, 11]
    assert got["m"] == {"a": 12, "q": 5}


def test_batch_read_with_missing_keys(client):
    keys = [key("batch", i) for i in range(20)]
    for k in keys[:10]:
        client.put(k, {"v": k[2]})
    res = client.batch_read(keys)
    found = [r for r in res.batch_records if r.result == 0]
    missing = [r for r in res.batch_records if r.result == 2]
    assert len(found) == 10 and len(missing) == 10
    assert sorted(r.record[2]["v"] for r in found) == list(range(10))


def test_batch_operate_and_remove(client):
    keys = [key("bwrite", i) for i in range(10)]
    res = client.batch_operate(keys, [op.write("v", 1), op.increment("n", 5)])
    assert all(r.result == 0 for r in res.batch_records)
    res = client.batch_operate(keys, [op.increment("n", 1), op.read("n")])
    assert [r.record[2]["n"] for r in res.batch_records] == [6] * 10
    res = client.batch_remove(keys[:5])
    assert all(r.result == 0 for r in res.batch_records)
    res = client.batch_read(keys)
    assert [r.result for r in res.batch_records] == [2] * 5 + [0] * 5


def test_scan_of_a_set(client):
    for i in range(100):
        client.put(key("scanset", i), {"v": i}, policy={"key": aerospike.POLICY_KEY_SEND})
    seen = []
    client.scan(NS, "scanset").foreach(lambda rec: seen.append(rec))
    assert len(seen) == 100
    assert sorted(r[0][2] for r in seen) == list(range(100)), "stored keys come back"
    assert sorted(r[2]["v"] for r in seen) == list(range(100))


def test_truncate_set(client):
    for i in range(10):
        client.put(key("trunc", i), {"v": i})
    client.truncate(NS, "trunc", 0)
    for i in range(10):
        (_, meta) = client.exists(key("trunc", i))
        assert meta is None
    client.put(key("trunc", 1), {"v": 1})
    assert client.exists(key("trunc", 1))[1] is not None


def test_info_commands(client):
    client.put(key("demo", "info"), {"a": 1})
    res = client.info_all("status")
    assert list(res.values())[0][1] == "ok\n"
    res = client.info_all("namespaces")
    assert list(res.values())[0][1].strip() == NS
    res = client.info_all("namespace/test")
    stats = dict(kv.split("=", 1) for kv in list(res.values())[0][1].strip().split(";"))
    assert int(stats["objects"]) > 0
    # The C client turns an ERROR answer into an exception carrying the code.
    with pytest.raises(ex.AerospikeError) as err:
        client.info_all("no-such-cmd")
    assert err.value.code == 4
