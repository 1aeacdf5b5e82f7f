"""Alternate access addresses (clients behind NAT): each node answers its own alternate
endpoint to `service-clear-alt` and its peers' to `peers-clear-alt` and `services-alternate`,
while the standard answers keep the addresses the nodes listen on."""
import time

import aerospike

from conftest import free_port, spawn_cluster_node, stop_all, wait_port


def test_alternate_endpoints_are_answered_per_node():
    specs = [(f"127.0.0.{30 + i}", free_port(), free_port(), free_port()) for i in range(2)]
    seed = f"{specs[0][0]}:{specs[0][3]}"
    procs = []
    try:
        for i, spec in enumerate(specs):
            env = {"PETREL_SERVICE__ALTERNATE_ACCESS_ADDRESS": f"alt{i}.example",
                   "PETREL_SERVICE__ALTERNATE_ACCESS_PORT": str(4000 + i)}
            procs.append(spawn_cluster_node(spec, seed, "alt-test", env=env))
        deadline = time.monotonic() + 30
        for (host, service, _, _), proc in zip(specs, procs):
            wait_port(host, service, proc, deadline)
        c = aerospike.client({"hosts": [specs[0][:2]], "policies": {"total_timeout": 5000}}).connect()
        try:
            def ask(i, command):
                host, port = specs[i][:2]
                while True:
                    names = {(n["address"], n["port"]): n["node_name"] for n in c.get_node_names()}
                    if (host, port) in names:
                        break
                    assert time.monotonic() < deadline, f"the client did not find {host}:{port}"
                    time.sleep(0.2)
                return c.info_single_node(command, names[(host, port)]).strip().split("\t", 1)[-1]

            while "alt1.example:4001" not in ask(0, "peers-clear-alt"):
                assert time.monotonic() < deadline, ask(0, "peers-clear-alt")
                time.sleep(0.2)
            assert "alt0.example:4000" in ask(1, "peers-clear-alt")
            assert ask(0, "service-clear-alt") == "alt0.example:4000"
            assert ask(1, "service-clear-alt") == "alt1.example:4001"
            assert ask(0, "services-alternate") == "alt1.example:4001"
            assert ask(0, "service-clear-std") == f"{specs[0][0]}:{specs[0][1]}"
            assert f"{specs[1][0]}:{specs[1][1]}" in ask(0, "peers-clear-std")
        finally:
            c.close()
    finally:
        stop_all(procs)
