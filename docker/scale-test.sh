#!/usr/bin/env bash
# Elastic cluster with Compose: `up --scale petrel=3`, then 5, then 3, from
# docker/compose.cluster.yaml (one service, seeds by service name, no fixed addresses), while
# the official Python client on the host writes steadily. Checks: no acknowledged write lost,
# client errors under 0.1 % of operations, migrations finish by themselves, master partitions
# per node within 10 % of the mean; then `down` keeping the volume and `up` again brings every
# record back. Prints the figures. Every wait is bounded; the project's
# containers, network and volumes are removed on exit, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-$(bash docker/build-image.sh petrel:test)}
PY=${PYTHON:-tests/.venv/bin/python}
PROJECT="petrel-scale-$$"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi
compose() { PETREL_IMAGE="$TAG" "${COMPOSE[@]}" -p "$PROJECT" -f docker/compose.cluster.yaml "$@"; }
WORK=$(mktemp -d)
LOAD_PID=
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ips() { compose ps -q petrel | xargs -r docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' | sort; }
info() { target/release/petrel-info -h "$1" -t 1000 -v "$2" 2>/dev/null || true; }
# wait_stable N SECONDS: N containers, each answering cluster-stable:size=N with one key.
wait_stable() {
  local n=$1 limit=$2 started=$SECONDS
  while :; do
    mapfile -t addrs < <(ips)
    if [ "${#addrs[@]}" -eq "$n" ]; then
      keys=$(for a in "${addrs[@]}"; do info "$a" "cluster-stable:size=$n"; done | sort -u)
      if [ -n "$keys" ] && [ "$(wc -l <<<"$keys")" -eq 1 ] && ! grep -q ERROR <<<"$keys"; then
        echo "scale: $n nodes stable after $((SECONDS - started)) s"
        return 0
      fi
    fi
    if [ $((SECONDS - started)) -ge "$limit" ]; then
      echo "scale: $n nodes not stable within $limit s: ${keys:-no answer}" >&2
      compose logs --tail 20 >&2 || true
      return 1
    fi
    sleep 0.5
  done
}
# Master partitions of namespace test per node, each within 10 % of the mean.
check_masters() {
  mapfile -t addrs < <(ips)
  "$PY" - "${addrs[@]}" <<'PYTHON'
import base64, subprocess, sys
counts = []
for host in sys.argv[1:]:
    out = subprocess.run(["target/release/petrel-info", "-h", host, "-v", "replicas-master"],
                         capture_output=True, text=True, check=True).stdout.strip()
    bitmap = dict(part.split(":", 1) for part in out.split(";") if ":" in part)["test"]
    counts.append(sum(bin(b).count("1") for b in base64.b64decode(bitmap)))
mean = sum(counts) / len(counts)
assert sum(counts) == 4096, f"master partitions {counts} do not add up to 4096"
spread = max(abs(c - mean) / mean for c in counts)
print(f"scale: master partitions per node {counts} (largest gap from the mean {spread:.1%})")
assert spread <= 0.10, "master partitions not within 10 % of the mean"
PYTHON
}

# read_back load|restart: every acknowledged key read back from the nodes running now; after
# the load, also the client's error rate.
read_back() {
  mapfile -t addrs < <(ips)
  "$PY" - "$WORK/acked" "$1" "${addrs[@]}" <<'PYTHON'
import sys, aerospike
lines = open(sys.argv[1]).read().split("\n")
errors, acked, stage = int(lines[0]), [int(x) for x in lines[1:] if x], sys.argv[2]
c = aerospike.client({"hosts": [(h, 3000) for h in sys.argv[3:]]}).connect()
def kept(i):
    try:
        return c.get(("test", "scale", f"k{i}"))[2] == {"v": i}
    except aerospike.exception.RecordNotFound:
        return False
lost = [i for i in acked if not kept(i)]
c.close()
if stage == "load":
    ops = len(acked) + errors
    rate = errors / ops if ops else 1.0
    print(f"scale: 3 -> 5 -> 3 under load: {len(acked)} writes acknowledged, {errors} client errors "
          f"({rate:.3%} of {ops}), {len(lost)} acknowledged writes lost")
    assert len(acked) > 1000, "the load kept running"
    assert rate < 0.001, "client errors at or above 0.1 % of operations"
else:
    print(f"scale: down and up again with the volume: {len(acked) - len(lost)} of {len(acked)} records back")
assert not lost, f"lost acknowledged writes ({stage}), first {lost[:10]}"
PYTHON
}

compose up -d --scale petrel=3 >/dev/null 2>&1
wait_stable 3 60
check_masters
mapfile -t SEEDS < <(ips)

# Steady load: one client writing unique keys until told to stop; every acknowledged key is
# recorded, every error counted.
"$PY" - "$WORK" "${SEEDS[@]}" <<'PYTHON' &
import os, sys, time, aerospike
work, hosts = sys.argv[1], [(h, 3000) for h in sys.argv[2:]]
c = aerospike.client({"hosts": hosts, "policies": {"write": {"total_timeout": 5000, "max_retries": 3}}}).connect()
acked, errors, i = [], 0, 0
while not os.path.exists(os.path.join(work, "stop")):
    try:
        c.put(("test", "scale", f"k{i}"), {"v": i})
        acked.append(i)
    except aerospike.exception.AerospikeError as e:
        errors += 1
        if errors <= 5:
            print(f"load: write k{i}: {e}", file=sys.stderr)
    i += 1
c.close()
with open(os.path.join(work, "acked"), "w") as f:
    f.write(f"{errors}\n" + "\n".join(map(str, acked)))
PYTHON
LOAD_PID=$!
sleep 3

compose up -d --no-recreate --scale petrel=5 >/dev/null 2>&1
wait_stable 5 120
check_masters
sleep 2
# Scale down by two at once: each leaving node hands its partitions over before it exits.
compose up -d --no-recreate -t 60 --scale petrel=3 >/dev/null 2>&1
wait_stable 3 120
check_masters
sleep 2
touch "$WORK/stop"
for _ in $(seq 100); do [ -f "$WORK/acked" ] && break; sleep 0.2; done
wait "$LOAD_PID" || { echo "scale: the load client failed" >&2; exit 1; }
LOAD_PID=

read_back load

# The whole service down with its volume kept, then up again: every record comes back.
compose down -t 60 >/dev/null 2>&1
compose up -d --scale petrel=3 >/dev/null 2>&1
wait_stable 3 120
read_back restart
echo "scale: 2 passed, 0 failed"
