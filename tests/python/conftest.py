"""Starts a real petreld for the official-client tests and stops it by pid afterwards."""
import os
import socket
import subprocess
import time

import aerospike
import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def petreld_binary():
    return os.environ.get("PETREL_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/petreld"))


def wait_port(host, port, proc, deadline):
    """Returns once `host:port` accepts; raises when `proc` exits or `deadline` passes."""
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"petreld on {host}:{port} did not start")
            time.sleep(0.05)


def spawn_cluster_node(spec, seed, cluster_name, extra=(), env=None, stderr=None):
    """Starts one clustered petreld: `spec` is (host, service, fabric, heartbeat ports), `seed`
    the first node's heartbeat address, `env` extra environment variables, `stderr` where its
    log goes (inherited by default)."""
    host, service, fabric, heartbeat = spec
    args = [petreld_binary(), "--listen", f"{host}:{service}", "--fabric", f"{host}:{fabric}",
            "--heartbeat", f"{host}:{heartbeat}", "--seed", seed, "--cluster-name", cluster_name,
            "--replication-factor", "2", *extra]
    return subprocess.Popen(args, env=dict(os.environ, **{"PETREL_LOG": "warn", **(env or {})}), stderr=stderr)


def start_cluster(first_ip, count, cluster_name, procs):
    """Starts `count` clustered nodes on 127.0.0.<first_ip>, .<first_ip + 1>, ... (each as a
    distinct host), seeded from the first; appends their processes to `procs` (for
    `stop_all`) and returns their specs once every service port accepts (30 s at most)."""
    specs = [(f"127.0.0.{first_ip + i}", free_port(), free_port(), free_port()) for i in range(count)]
    seed = f"{specs[0][0]}:{specs[0][3]}"
    for spec in specs:
        procs.append(spawn_cluster_node(spec, seed, cluster_name))
    deadline = time.monotonic() + 30
    for (host, service, _, _), proc in zip(specs, procs[-count:]):
        wait_port(host, service, proc, deadline)
    return specs


def wait_cluster_stable(client, size, timeout_secs=30):
    """Returns once `client` sees `size` nodes and every node answers `cluster-stable`."""
    deadline = time.monotonic() + timeout_secs

    def stable():
        if len(client.get_nodes()) < size:
            return False
        try:
            answers = client.info_all(f"cluster-stable:size={size}").values()
        except aerospike.exception.ServerError:  # a node answering "unstable-cluster"
            return False
        return not any(v[1] != "" and "ERROR" in v[1] for v in answers)

    while not stable():
        assert time.monotonic() < deadline, "cluster not stable"
        time.sleep(0.2)


def stop_all(procs):
    """SIGTERM to each process, SIGKILL to any still running after 20 s."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def start_petreld(args, wait_port, env=None):
    """Starts petreld with `args`; returns the process once `wait_port` accepts (30 s at most)."""
    proc = subprocess.Popen([petreld_binary(), *args], env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", wait_port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("petreld did not start")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def petreld():
    port = free_port()
    env = dict(os.environ, PETREL_NAMESPACE__TEST__NSUP_PERIOD="1")
    proc = start_petreld(["--listen", f"127.0.0.1:{port}"], port, env)
    yield ("127.0.0.1", port, proc)
    proc.terminate()
    try:
        assert proc.wait(timeout=20) == 0, "petreld did not exit cleanly on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="session")
def client(petreld):
    import aerospike

    host, port, _ = petreld
    c = aerospike.client({"hosts": [(host, port)], "policies": {"total_timeout": 5000}}).connect()
    yield c
    c.close()
