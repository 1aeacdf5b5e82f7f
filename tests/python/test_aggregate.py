"""Aggregations (stream UDFs) through the official Python client: map, filter, aggregate,
reduce and groupby over a secondary-index query and over a whole set, arguments passed to
the stream function, no result when nothing matches, a failing function as UDFError (100),
an unregistered module refused; and on a 3-node cluster, each node's part reduced by the
client to the same answer as on one node."""
import os
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike import predicates as p

from conftest import start_cluster, stop_all, wait_cluster_stable

NS, SET = "test", "agg"
MODULE = os.path.join(os.path.dirname(__file__), "udf", "petrel_test_stream.lua")
RECORDS = 200


def connect(hosts, lua_dir):
    # The client runs the final reduce itself, with its copy of the module in the user path.
    config = {"hosts": hosts, "policies": {"total_timeout": 10000}, "lua": {"user_path": str(lua_dir)}}
    return aerospike.client(config).connect()


def load(c):
    c.udf_put(MODULE)
    c.index_single_value_create(NS, SET, "n", aerospike.INDEX_NUMERIC, "agg_n_idx")
    for i in range(RECORDS):
        c.put((NS, SET, i), {"n": i, "color": ["red", "green", "blue", "black"][i % 4]})
    # A record of another set is never part of the answer.
    c.put((NS, "agg_other", 1), {"n": 5, "color": "red"})


def aggregate(c, module_fn, args=None, where=None):
    q = c.query(NS, SET)
    if where is not None:
        q.where(where)
    q.apply("petrel_test_stream", module_fn, args or [])
    return q.results()


def wait_for_index(c, timeout_secs=30):
    """Waits (bounded) until a query through the index counts every record: built and complete
    on every node."""
    deadline = time.monotonic() + timeout_secs
    while True:
        try:
            if aggregate(c, "count", where=p.between("n", 0, RECORDS)) == [RECORDS]:
                return
        except ex.AerospikeError:  # still building (203)
            pass
        assert time.monotonic() < deadline, "index not complete on every node"
        time.sleep(0.1)


def check_answers(c):
    assert aggregate(c, "count") == [RECORDS]
    assert aggregate(c, "count", where=p.between("n", 10, 19)) == [10]
    assert aggregate(c, "sum_of", ["n"], where=p.between("n", 0, 99)) == [sum(range(100))]
    assert sorted(aggregate(c, "values_over", ["n", 195])) == [196, 197, 198, 199]
    assert aggregate(c, "count_by", ["color"]) == [{"red": 50, "green": 50, "blue": 50, "black": 50}]
    groups = aggregate(c, "group_by", ["color"], where=p.between("n", 0, 7))
    assert len(groups) == 1 and {k: len(v) for k, v in groups[0].items()} == {
        "red": 2, "green": 2, "blue": 2, "black": 2}
    assert sorted(r["n"] for r in groups[0]["blue"]) == [2, 6]
    # Nothing matches: a reduce has nothing to give.
    assert aggregate(c, "count", where=p.equals("n", 10_000)) == []


@pytest.fixture(scope="module")
def client(petreld, tmp_path_factory):
    host, port, _ = petreld
    c = connect([(host, port)], tmp_path_factory.mktemp("lua"))
    load(c)
    wait_for_index(c)
    yield c
    c.index_remove(NS, "agg_n_idx")
    c.udf_remove("petrel_test_stream.lua")
    c.close()


def test_stream_functions_run_over_queries_and_scans(client):
    check_answers(client)


def test_failures_are_udf_errors(client):
    with pytest.raises(ex.UDFError):
        aggregate(client, "broken")
    with pytest.raises(ex.UDFError):
        aggregate(client, "no_such_function")
    q = client.query(NS, SET)
    q.apply("no_such_module", "count", [])
    with pytest.raises(ex.AerospikeError) as err:
        q.results()
    assert err.value.code == 100
    # An aggregation over an unindexed bin is refused like the query itself.
    with pytest.raises(ex.AerospikeError) as err:
        aggregate(client, "count", where=p.equals("color", "red"))
    assert err.value.code == 201


def test_each_node_aggregates_its_part_on_a_cluster(tmp_path):
    procs = []
    try:
        specs = start_cluster(44, 3, "agg-test", procs)
        c = connect([specs[0][:2]], tmp_path)
        try:
            wait_cluster_stable(c, 3)
            load(c)
            wait_for_index(c)
            check_answers(c)
        finally:
            c.close()
    finally:
        stop_all(procs)
