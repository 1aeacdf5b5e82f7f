"""Logs for collectors: with PETREL_LOG_FORMAT=json every line petreld writes is one JSON
object, and a clustered node logs its membership changes and its graceful leave at info
level."""
import json
import time

from conftest import free_port, spawn_cluster_node, stop_all


def json_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def messages(path):
    return [rec.get("message", "") for rec in json_lines(path)]


def test_json_lines_and_a_logged_leave(tmp_path):
    specs = [("127.0.0.1", free_port(), free_port(), free_port()) for _ in range(2)]
    seed = f"127.0.0.1:{specs[0][3]}"
    paths = [tmp_path / f"node{i}.log" for i in range(2)]
    env = {"PETREL_LOG_FORMAT": "json", "PETREL_LOG": "info"}
    procs = []
    try:
        for spec, path in zip(specs, paths):
            with open(path, "w") as log:
                procs.append(spawn_cluster_node(spec, seed, "logs-test", env=env, stderr=log))
        # Both nodes install a plan with two members.
        deadline = time.monotonic() + 30
        while not all(any(r.get("message") == "partition plan installed" and r.get("members") == 2
                          for r in json_lines(p)) for p in paths):
            assert time.monotonic() < deadline, "no two-member plan logged"
            time.sleep(0.2)
        procs[1].terminate()
        assert procs[1].wait(timeout=40) == 0
        leaving = messages(paths[1])
        assert "leaving the cluster: handing partitions over" in leaving, leaving
        assert "partitions handed over" in leaving, leaving
        assert "cluster view changed" in messages(paths[0])
        for rec in json_lines(paths[0]) + json_lines(paths[1]):
            assert {"timestamp", "level", "target"} <= rec.keys(), rec
    finally:
        stop_all(procs)
