"""The official Python client against a real 3-node Petrel cluster (rf 2) on loopback."""
import base64
import time

import aerospike
import pytest

from conftest import start_cluster, stop_all

NODES = 3


@pytest.fixture(scope="module")
def cluster():
    # Each node on its own loopback address, as distinct hosts.
    procs = []
    try:
        specs = start_cluster(20, NODES, "py-test", procs)
        yield [(host, service) for host, service, _, _ in specs]
    finally:
        stop_all(procs)


def info_all(client, command):
    """{node name: value} of one info command on every node."""
    out = {}
    for name, (err, text) in client.info_all(command).items():
        assert err is None, f"{name}: {err}"
        out[name] = text.strip().split("\t", 1)[-1]
    return out


@pytest.fixture(scope="module")
def client(cluster):
    c = aerospike.client({"hosts": [cluster[0]], "policies": {"total_timeout": 5000}}).connect()
    deadline = time.monotonic() + 30
    # The cluster has formed and settled, and the client has found every node.
    while True:
        stable = set(info_all(c, f"cluster-stable:size={NODES}").values()) if len(c.get_nodes()) == NODES else set()
        if len(stable) == 1 and not next(iter(stable)).startswith("ERROR"):
            break
        assert time.monotonic() < deadline, f"cluster not stable: {stable}"
        time.sleep(0.2)
    time.sleep(1.5)  # one tend interval, so the client holds every node's map
    yield c
    c.close()


def test_the_client_sees_every_node(client, cluster):
    assert len(client.get_nodes()) == NODES
    peers = info_all(client, "peers-clear-std")
    assert len(peers) == NODES
    for value in peers.values():
        assert value.count(",,[") == NODES - 1, value  # one [id,,[host:port]] per peer


def test_each_partition_has_one_master_and_rf_distinct_owners(client):
    replicas = info_all(client, "replicas")
    positions = {}  # (pid, position) -> nodes
    for node, value in replicas.items():
        ns, rest = value.split(":", 1)
        assert ns == "test"
        fields = rest.split(",")
        regime, count, maps = int(fields[0]), int(fields[1]), fields[2:]
        assert regime == 0 and count == 2 and len(maps) == 2
        for k, b64 in enumerate(maps):
            bits = base64.b64decode(b64)
            for pid in range(4096):
                if bits[pid >> 3] & (0x80 >> (pid & 7)):
                    positions.setdefault((pid, k), []).append(node)
    for pid in range(4096):
        assert len(positions.get((pid, 0), [])) == 1, f"partition {pid} masters: {positions.get((pid, 0))}"
        assert len(positions.get((pid, 1), [])) == 1, f"partition {pid} replicas: {positions.get((pid, 1))}"
        assert positions[(pid, 0)] != positions[(pid, 1)], f"partition {pid} on one node twice"
    masters = [sum(1 for (p, k), n in positions.items() if k == 0 and n == [node]) for node in replicas]
    assert max(masters) - min(masters) <= 0.1 * 4096 / NODES, masters


def test_steady_state_requests_are_never_proxied(client):
    before = {n: v for n, v in info_all(client, "statistics").items()}

    def proxied(stats):
        return sum(int(dict(kv.split("=", 1) for kv in s.split(";") if "=" in kv)["proxied_requests"])
                   for s in stats.values())

    for i in range(2000):
        client.put(("test", "py-cluster", f"k{i}"), {"v": i, "s": "x" * (i % 50)})
    for i in range(2000):
        _, meta, bins = client.get(("test", "py-cluster", f"k{i}"))
        assert bins["v"] == i and meta["gen"] == 1
    keys = [("test", "py-cluster", f"k{i}") for i in range(0, 2000, 7)]
    batch = client.batch_read(keys)
    assert len(batch.batch_records) == len(keys)
    for br in batch.batch_records:
        assert br.result == 0 and br.record[2]["v"] == int(br.key[2][1:])
    after = info_all(client, "statistics")
    assert proxied(after) - proxied(before) == 0, "a request reached a node that does not own its partition"
    # Two copies of every record, one master copy.
    objects = sum(int(dict(kv.split("=", 1) for kv in v.split(";") if "=" in kv)["master_objects"])
                  for v in info_all(client, "namespace/test").values())
    assert objects == 2000


def test_an_index_made_through_one_node_serves_queries_on_every_node(client):
    from aerospike import predicates as p

    for i in range(600):
        client.put(("test", "py-sindex", i), {"age": i % 100})
    client.index_integer_create("test", "py-sindex", "age", "py_age")
    try:
        deadline = time.monotonic() + 30
        while True:
            stats = info_all(client, "sindex/test/py_age")
            if all("load_pct=100" in s for s in stats.values()):
                break
            assert time.monotonic() < deadline, f"index not built everywhere: {stats}"
            time.sleep(0.1)
        assert len(stats) == NODES
        # Every copy is indexed on the node holding it: two entries per record.
        entries = sum(int(s.split("entries=")[1].split(";")[0]) for s in stats.values())
        assert entries == 2 * 600
        q = client.query("test", "py-sindex")
        q.where(p.between("age", 10, 19))
        digests = [bytes(r[0][3]) for r in q.results()]
        assert len(digests) == 60 and len(set(digests)) == 60, "each matching record exactly once"
    finally:
        client.index_remove("test", "py_age")
    assert all(s == "" for s in info_all(client, "sindex-list:ns=test").values()), "deleted on every node"


def test_a_background_scan_updates_every_record_once_across_the_cluster(client):
    from aerospike_helpers.operations import operations as op

    for i in range(900):
        client.put(("test", "py-bg", i), {"v": i})
    s = client.scan("test", "py-bg")
    s.add_ops([op.increment("hits", 1)])
    job = s.execute_background()
    deadline = time.monotonic() + 30
    while True:
        info = client.job_info(job, aerospike.JOB_SCAN)
        if info["status"] == aerospike.JOB_STATUS_COMPLETED:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    # Each node updated the records it masters: every record once, none twice.
    assert info["records_read"] == 900
    hits = [r[2].get("hits") for r in client.scan("test", "py-bg").results()]
    assert len(hits) == 900 and set(hits) == {1}
