"""Secondary indexes on a cluster that changes under them, through the official Python
client: a paginated query across a node joining mid-query returns every matching record
exactly once, and after a write/delete/expiry storm with a node joining (migrations), each
node's index entries equal what a full scan finds."""
import time

import aerospike
import pytest
from aerospike import exception as ex
from aerospike import predicates as p

from conftest import free_port, spawn_cluster_node, stop_all, wait_port

NS = "test"


def info_values(client, command):
    return {name: text.strip().split("\t", 1)[-1] for name, (err, text) in client.info_all(command).items()}


def wait_settled(client, size, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            values = set(info_values(client, f"cluster-stable:size={size}").values()) \
                if len(client.get_nodes()) == size else set()
        except ex.ServerError:
            values = set()  # a node answered "unstable-cluster"
        if len(values) == 1 and not next(iter(values)).startswith("ERROR"):
            return
        assert time.monotonic() < deadline, f"cluster of {size} not settled: {values}"
        time.sleep(0.2)


def wait_index(client, name, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        stats = info_values(client, f"sindex/{NS}/{name}")
        if stats and all("load_pct=100" in s for s in stats.values()):
            return stats
        assert time.monotonic() < deadline, f"index {name} not built: {stats}"
        time.sleep(0.1)


@pytest.fixture
def growing_cluster():
    """Two nodes now, a third on demand (`add()`)."""
    specs = [(f"127.0.0.{40 + i}", free_port(), free_port(), free_port()) for i in range(3)]
    seed = f"{specs[0][0]}:{specs[0][3]}"
    procs = []

    def add():
        spec = specs[len(procs)]
        # The supervisor runs every second, so expired records are reclaimed soon.
        procs.append(spawn_cluster_node(spec, seed, "py-sindex", env={"PETREL_NAMESPACE__TEST__NSUP_PERIOD": "1"}))
        wait_port(spec[0], spec[1], procs[-1], time.monotonic() + 30)

    try:
        add()
        add()
        client = aerospike.client({"hosts": [(specs[0][0], specs[0][1])],
                                   "policies": {"total_timeout": 5000}}).connect()
        wait_settled(client, 2)
        yield client, add
        client.close()
    finally:
        stop_all(procs)


def test_pagination_across_a_joining_node_loses_and_repeats_nothing(growing_cluster):
    client, add = growing_cluster
    for i in range(3000):
        client.put((NS, "page", i), {"n": i % 100})
    client.index_integer_create(NS, "page", "n", "page_n")
    wait_index(client, "page_n")
    q = client.query(NS, "page")
    q.where(p.between("n", 0, 49))
    q.max_records = 200
    q.paginate()
    seen = []
    pages = 0
    policy = {"max_retries": 20, "sleep_between_retries": 200}
    while not q.is_done():
        page = q.results(policy)
        seen.extend(bytes(r[0][3]) for r in page)
        pages += 1
        if pages == 2:
            add()  # a third node joins: partitions migrate while the query goes on
        assert pages < 200
    assert len(seen) == len(set(seen)), "a record was returned twice"
    assert len(seen) == 1500, f"{len(seen)} of 1500 matching records"


def test_index_entries_equal_a_scan_after_a_storm_with_a_join(growing_cluster):
    client, add = growing_cluster
    client.index_integer_create(NS, "storm", "v", "storm_v")
    wait_index(client, "storm_v")
    # The subject is the index, not write availability during the join: a write refused
    # while the new plan installs (11, nothing applied) is retried, as a client would.
    retry = {"max_retries": 5, "sleep_between_retries": 200}
    for i in range(2000):
        key = (NS, "storm", i % 700)
        if i % 5 == 0:
            try:
                client.remove(key, policy=retry)
            except ex.RecordNotFound:
                pass
        elif i % 5 == 1:
            client.put(key, {"v": i}, policy={**retry, "ttl": 1})
        elif i % 5 == 2:
            client.put(key, {"v": "text"}, policy=retry)
        else:
            client.put(key, {"v": i}, policy=retry)
        if i == 1000:
            add()
    wait_settled(client, 3)
    time.sleep(2.5)  # the records written with a 1 s TTL are gone
    want = sorted(bytes(r[0][3]) for r in client.scan(NS, "storm").results() if isinstance(r[2].get("v"), int))
    q = client.query(NS, "storm")
    q.where(p.between("v", -(2 ** 63), 2 ** 63 - 1))
    got = sorted(bytes(r[0][3]) for r in q.results())
    assert got == want
    # Every copy is indexed where it lives (rf 2): entries = 2 x matching records, once the
    # supervisor has reclaimed the expired ones.
    deadline = time.monotonic() + 30
    while True:
        entries = sum(int(s.split("entries=")[1].split(";")[0]) for s in info_values(client, f"sindex/{NS}/storm_v").values())
        if entries == 2 * len(want):
            break
        assert time.monotonic() < deadline, f"{entries} entries for {len(want)} records"
        time.sleep(0.5)
