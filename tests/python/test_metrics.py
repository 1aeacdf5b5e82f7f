"""The HTTP endpoint's /metrics parses with the Prometheus text-format parser, and its figures
follow what the official client does to the node."""
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, start_petreld


@pytest.fixture(scope="module")
def node_with_http():
    port, http = free_port(), free_port()
    proc = start_petreld(["--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}"], http)
    yield port, http
    proc.terminate()
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def scrape(http):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(r.read().decode()) for s in f.samples}


def test_metrics_parse_and_count_what_the_client_did(node_with_http):
    import aerospike

    port, http = node_with_http
    before = scrape(http)
    objects = [v for (name, labels), v in before.items()
               if name == "aerospike_namespace_objects" and ("ns", "test") in labels]
    assert objects == [0.0]
    c = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
    for i in range(25):
        c.put(("test", "metrics", i), {"v": i})
        c.get(("test", "metrics", i))
    with pytest.raises(aerospike.exception.RecordNotFound):
        c.get(("test", "metrics", "missing"))
    c.remove(("test", "metrics", 0))
    c.put(("test", "metrics", 0), {"v": 0})
    c.close()
    after = scrape(http)

    def client_count(name):
        return [v for (n, labels), v in after.items()
                if n == f"aerospike_namespace_client_{name}" and ("ns", "test") in labels]

    # Outcome counters under the exporter's names.
    assert client_count("write_success") == [26.0]
    assert client_count("read_success") == [25.0]
    assert client_count("read_not_found") == [1.0]
    assert client_count("delete_success") == [1.0]
    assert client_count("write_error") == [0.0]
    objects = [v for (name, labels), v in after.items()
               if name == "aerospike_namespace_objects" and ("ns", "test") in labels]
    assert objects == [25.0]
    reads = [v for (name, labels), v in after.items()
             if name == "aerospike_latencies_read_ms_count" and ("ns", "test") in labels]
    assert reads and reads[0] >= 25
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in after.items()
                     if name == "aerospike_latencies_write_ms_bucket" and ("ns", "test") in labels)
    assert buckets[-1] == (float("inf"), 27.0)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "buckets are cumulative"
