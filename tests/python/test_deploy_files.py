"""The deployment files say what the node does: the Kubernetes manifests (headless service
that publishes not-ready pods, probes on the node's real HTTP paths and port, a grace period
longer than the graceful leave, a disruption budget of one, a volume on the data directory),
the Compose cluster (one scalable service seeded by its own name), and the Grafana dashboard,
whose every metric a running node exports."""
import json
import os
import re
import urllib.request

import aerospike
import yaml

from conftest import free_port, start_petreld

DOCKER = os.path.join(os.path.dirname(__file__), "../../docker")


def env_of(container):
    return {e["name"]: e["value"] for e in container["env"]}


def test_kubernetes_manifests_hang_together():
    with open(os.path.join(DOCKER, "k8s/petrel.yaml")) as f:
        docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(f)}
    mesh, sts, pdb = docs[("Service", "petrel-mesh")], docs[("StatefulSet", "petrel")], \
        docs[("PodDisruptionBudget", "petrel")]
    assert ("Service", "petrel") in docs
    assert mesh["spec"]["clusterIP"] == "None" and mesh["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == "petrel-mesh"
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for selector in (mesh["spec"]["selector"], sts["spec"]["selector"]["matchLabels"], pdb["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    (c,) = pod["spec"]["containers"]
    env = env_of(c)
    heartbeat_port = int(env["PETREL_CLUSTER__HEARTBEAT"].rsplit(":", 1)[1])
    assert json.loads(env["PETREL_CLUSTER__SEEDS"]) == [f"petrel-mesh:{heartbeat_port}"]
    assert {p["port"] for p in mesh["spec"]["ports"]} >= {heartbeat_port}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == int(env["PETREL_SERVICE__HTTP_LISTEN"].rsplit(":", 1)[1])
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert pod["spec"]["terminationGracePeriodSeconds"] > int(env["PETREL_CLUSTER__LEAVE_GRACE_SECS"])
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == env["PETREL_SERVICE__DATA_DIR"]


def test_compose_cluster_is_one_scalable_service():
    with open(os.path.join(DOCKER, "compose.cluster.yaml")) as f:
        compose = yaml.safe_load(f)
    (name, svc), = compose["services"].items()
    env = svc["environment"]
    assert "ports" not in svc and "networks" not in compose, "fixed ports or networks stop scaling"
    assert json.loads(env["PETREL_CLUSTER__SEEDS"]) == [f"{name}:3002"]
    assert "PETREL_CLUSTER__ADVERTISE" not in env
    grace_s = int(svc["stop_grace_period"].rstrip("s"))
    assert grace_s > int(env["PETREL_CLUSTER__LEAVE_GRACE_SECS"])
    assert svc["healthcheck"]["test"][-1] == "ready"


def test_every_dashboard_metric_is_exported():
    with open(os.path.join(DOCKER, "grafana/petrel-dashboard.json")) as f:
        dashboard = json.load(f)
    wanted = {name for p in dashboard["panels"] for t in p["targets"]
              for name in re.findall(r"aerospike_[a-z0-9_]+", t["expr"])}
    assert len(wanted) >= 10
    port, http = free_port(), free_port()
    proc = start_petreld(["--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}"], http)
    try:
        c = aerospike.client({"hosts": [("127.0.0.1", port)]}).connect()
        c.put(("test", "dash", 1), {"v": 1})
        c.get(("test", "dash", 1))
        c.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
            page = r.read().decode()
        exported = set(re.findall(r"^(aerospike_[a-z0-9_]+)", page, re.M))
        assert wanted <= exported, f"not exported: {sorted(wanted - exported)}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
