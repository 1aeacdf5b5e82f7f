#!/usr/bin/env bash
# Network split and heal, with real containers: three petreld nodes on a private bridge
# network; one node is cut off (`docker network disconnect`), each side forms its own
# cluster, the official Python client writes to the majority side, the node is reconnected,
# the sides merge, and every acknowledged write is read back with two copies in the cluster.
# Every wait is bounded; containers and the network are removed by id on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-$(bash docker/build-image.sh petrel:test)}
PY=${PYTHON:-tests/.venv/bin/python}
NET="petrel-split-$$"
# A private subnet of our own, so that each node can be given (and get back) its address.
SUBNET_BASE=${SPLIT_SUBNET_BASE:-10.213.17}
docker network create --subnet "$SUBNET_BASE.0/24" "$NET" >/dev/null
CIDS=()
ACKED=$(mktemp)
cleanup() {
  for c in "${CIDS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -f "$ACKED"
}
trap cleanup EXIT
ip() { echo "$SUBNET_BASE.$((10 + $1))"; }
for i in 1 2 3; do
  CIDS+=("$(docker run -d --network "$NET" --ip "$(ip "$i")" \
    -e PETREL_CLUSTER__HEARTBEAT=0.0.0.0:3002 -e PETREL_CLUSTER__FABRIC=0.0.0.0:3001 \
    -e PETREL_CLUSTER__ADVERTISE="$(ip "$i")" -e PETREL_CLUSTER__SEEDS="[\"$(ip 1):3002\"]" \
    -e PETREL_SERVICE__CLUSTER_NAME=split-test "$TAG")")
done
info() { target/release/petrel-info -h "$(ip "$1")" -t 1000 -v "$2" 2>/dev/null || true; }
# Inside a container that is cut off from the host: petrel-info is in the image.
info_inside() { docker exec "${CIDS[$(($1 - 1))]}" /usr/bin/petrel-info -v "$2" 2>/dev/null || true; }
wait_for() { # wait_for SECONDS COMMAND...: until the command's output has no ERROR and is non-empty
  local limit=$1; shift
  for _ in $(seq $((limit * 5))); do
    out=$("$@")
    if [ -n "$out" ] && ! grep -q ERROR <<<"$out"; then return 0; fi
    sleep 0.2
  done
  echo "timed out: $*: $out" >&2
  for c in "${CIDS[@]}"; do docker logs "$c" 2>&1 | tail -5; done
  return 1
}
wait_for 30 info 1 "cluster-stable:size=3"
wait_for 30 info 3 "cluster-stable:size=3"
echo "split: 3 nodes formed one cluster"

"$PY" - "$(ip 1)" "$(ip 2)" pre 0 1000 <<'PYTHON'
import sys, aerospike
hosts = [(h, 3000) for h in sys.argv[1:3]]
prefix, start, end = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
c = aerospike.client({"hosts": hosts, "policies": {"total_timeout": 5000}}).connect()
for i in range(start, end):
    c.put(("test", "split", f"{prefix}{i}"), {"v": i})
c.close()
PYTHON

# Cut node 3 off: both sides re-form.
docker network disconnect "$NET" "${CIDS[2]}"
wait_for 30 info 1 "cluster-stable:size=2"
wait_for 30 info_inside 3 "cluster-stable:size=1"
echo "split: the majority (2 nodes) and the minority (1 node) each formed a cluster"

# Writes on the majority side, each acknowledged one recorded.
"$PY" - "$(ip 1)" "$(ip 2)" <<'PYTHON' >"$ACKED"
import sys, aerospike
from aerospike import exception as ex
hosts = [(h, 3000) for h in sys.argv[1:3]]
policy = {"total_timeout": 5000, "max_retries": 5, "sleep_between_retries": 100}
c = aerospike.client({"hosts": hosts, "policies": {"write": policy}}).connect()
for i in range(2000):
    try:
        c.put(("test", "split", f"maj{i}"), {"v": i})
        print(i)
    except ex.AerospikeError as e:
        print(f"write maj{i}: {e}", file=sys.stderr)
c.close()
PYTHON
acked=$(wc -l <"$ACKED")
echo "split: $acked writes acknowledged by the majority side"

# Heal: node 3 comes back at its address, and the sides merge.
docker network connect --ip "$(ip 3)" "$NET" "${CIDS[2]}"
for i in 1 2 3; do wait_for 60 info "$i" "cluster-stable:size=3"; done
echo "split: healed and merged"

"$PY" - "$(ip 1)" "$(ip 2)" "$(ip 3)" "$ACKED" <<'PYTHON'
import sys, aerospike
hosts = [(h, 3000) for h in sys.argv[1:4]]
acked = [int(l) for l in open(sys.argv[4]) if l.strip()]
c = aerospike.client({"hosts": hosts, "policies": {"total_timeout": 5000}}).connect()
lost = []
for prefix, keys in (("pre", range(1000)), ("maj", acked)):
    for i in keys:
        try:
            _, _, bins = c.get(("test", "split", f"{prefix}{i}"))
            if bins.get("v") != i:
                lost.append(f"{prefix}{i}")
        except Exception:
            lost.append(f"{prefix}{i}")
objects = 0
for name, (err, text) in c.info_all("namespace/test").items():
    stats = dict(kv.split("=", 1) for kv in text.strip().split("\t", 1)[-1].split(";") if "=" in kv)
    objects += int(stats["objects"])
c.close()
assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
assert objects == 2 * (1000 + len(acked)), f"objects {objects}, want {2 * (1000 + len(acked))}"
print(f"split: every acknowledged write read back after the merge; {objects} copies")
PYTHON
echo "split: 1 passed, 0 failed"
