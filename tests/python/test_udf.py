"""Lua record UDFs through the official Python client on one node: registering (a module that
does not compile is refused), listing and reading modules back, apply with arguments and
return values of every shape, bins set and removed, records created and removed, errors as
UDFError with the message, and a background scan UDF over a set; and on a 3-node cluster, a
module registered through one node runs on records mastered by every node, a node that joins
later takes the module from its peers, and a removal reaches every member for good."""
import os
import time

import aerospike
import pytest
from aerospike import exception as ex

from conftest import free_port, spawn_cluster_node, start_cluster, stop_all, wait_cluster_stable, wait_port

NS, SET = "test", "udf"
MODULE = os.path.join(os.path.dirname(__file__), "udf", "petrel_test_udf.lua")


def connect(hosts, lua_dir):
    # The client keeps a copy of each module it registers in its Lua user path.
    config = {"hosts": hosts, "policies": {"total_timeout": 5000}, "lua": {"user_path": str(lua_dir)}}
    return aerospike.client(config).connect()


@pytest.fixture(scope="module")
def client(petreld, tmp_path_factory):
    host, port, _ = petreld
    c = connect([(host, port)], tmp_path_factory.mktemp("lua"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def registered(client):
    client.udf_put(MODULE)
    yield "petrel_test_udf"
    client.udf_remove("petrel_test_udf.lua")


def test_modules_are_listed_read_back_and_checked(client, registered, tmp_path):
    names = [m["name"] for m in client.udf_list()]
    assert "petrel_test_udf.lua" in names
    with open(MODULE) as f:
        assert client.udf_get("petrel_test_udf.lua") == f.read()
    bad = tmp_path / "bad_module.lua"
    bad.write_text("function broken( end\n")
    with pytest.raises(ex.AerospikeError):
        client.udf_put(str(bad))
    assert "bad_module.lua" not in [m["name"] for m in client.udf_list()]


def test_apply_changes_bins_and_returns_values(client, registered):
    key = (NS, SET, "a")
    client.put(key, {"n": 1, "s": "x"})
    assert client.apply(key, registered, "bump", ["n", 41]) == 42
    assert client.get(key)[2] == {"n": 42, "s": "x"}
    assert client.apply(key, registered, "drop_bin", ["s"]) == 1
    assert client.get(key)[2] == {"n": 42}
    shapes = client.apply(key, registered, "shapes", [])
    assert shapes["l"] == [1, 2, 3] and shapes["n"] == 3 and shapes["names"] == ["n"]
    assert shapes["gen"] == client.get(key)[1]["gen"]
    client.apply(key, registered, "tag", ["t", {"nested": [1, "two"]}])
    assert client.get(key)[2]["t"] == {"nested": [1, "two"]}


def test_records_are_created_and_removed(client, registered):
    key = (NS, SET, "new")
    client.remove(key) if client.exists(key)[1] else None
    assert client.apply(key, registered, "bump", ["c", 5]) == 5
    assert client.get(key)[2] == {"c": 5}
    client.apply(key, registered, "remove", [])
    assert client.exists(key)[1] is None


def test_errors_carry_the_message(client, registered):
    key = (NS, SET, "a")
    with pytest.raises(ex.UDFError) as err:
        client.apply(key, registered, "fail", [])
    assert "refused on purpose" in str(err.value)
    with pytest.raises(ex.UDFError):
        client.apply(key, registered, "no_such_function", [])
    with pytest.raises(ex.UDFError):
        client.apply(key, "no_such_module", "bump", ["n", 1])


def test_background_scan_udf_updates_every_record(client, registered):
    keys = [(NS, "udfbg", i) for i in range(50)]
    for i, k in enumerate(keys):
        client.put(k, {"n": i})
    job = client.scan_apply(NS, "udfbg", registered, "bump", ["n", 1000])
    deadline = time.monotonic() + 30
    while client.job_info(job, aerospike.JOB_SCAN)["status"] != aerospike.JOB_STATUS_COMPLETED:
        assert time.monotonic() < deadline, "background UDF did not finish"
        time.sleep(0.1)
    assert sorted(client.get(k)[2]["n"] for k in keys) == [1000 + i for i in range(50)]


def wait_for_modules(c, nodes, present, timeout_secs=15):
    """Waits until each of `nodes` nodes lists the test module (or none does)."""
    deadline = time.monotonic() + timeout_secs
    while True:
        lists = {name: text for name, (_, text) in c.info_all("udf-list").items()}
        if len(lists) == nodes and all(("petrel_test_udf.lua" in t) == present for t in lists.values()):
            return
        assert time.monotonic() < deadline, lists
        time.sleep(0.2)


def test_a_module_registered_on_one_node_runs_on_every_node(tmp_path):
    procs = []
    try:
        specs = start_cluster(40, 3, "udf-test", procs)
        c = connect([specs[0][:2]], tmp_path)
        try:
            wait_cluster_stable(c, 3)
            c.udf_put(MODULE)
            keys = [(NS, SET, i) for i in range(60)]
            results = [c.apply(k, "petrel_test_udf", "bump", ["n", i]) for i, k in enumerate(keys)]
            assert results == list(range(60))
            assert [c.get(k)[2]["n"] for k in keys] == list(range(60))
            lists = {name: text for name, (_, text) in c.info_all("udf-list").items()}
            assert len(lists) == 3 and all("petrel_test_udf.lua" in t for t in lists.values()), lists
            # A node that joins later takes the module from its peers and runs it.
            joiner = (f"127.0.0.{40 + 3}", free_port(), free_port(), free_port())
            procs.append(spawn_cluster_node(joiner, f"{specs[0][0]}:{specs[0][3]}", "udf-test"))
            wait_port(joiner[0], joiner[1], procs[-1], time.monotonic() + 30)
            wait_cluster_stable(c, 4)
            wait_for_modules(c, 4, present=True)
            results = [c.apply(k, "petrel_test_udf", "bump", ["n", 1]) for k in keys]
            assert results == [i + 1 for i in range(60)]
            # A removal reaches every member, and none brings the module back.
            c.udf_remove("petrel_test_udf.lua")
            wait_for_modules(c, 4, present=False)
            time.sleep(2.5)
            wait_for_modules(c, 4, present=False)
        finally:
            c.close()
    finally:
        stop_all(procs)
