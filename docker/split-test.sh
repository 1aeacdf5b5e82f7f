#!/usr/bin/env bash
# Network splits and heals, with real containers. Three petreld nodes talk to each other on
# one private bridge network (heartbeat and fabric) and to clients on a second one, so that
# cutting a node off the first (`docker network disconnect`) splits the cluster while clients
# still reach both sides, as in a real split between racks.
#
# Round 1, writes on the majority side only: every acknowledged write (and everything written
# before the split) is read back after the heal, with two copies in the cluster.
# Round 2, writes on both sides: each side updates the same records, writes records of its
# own and (the majority) deletes some; after the heal the script prints what was kept, and
# fails if a record written on one side only is missing or a record holds a value no side
# wrote. The figures are in docs/reliability.md.
# Every wait is bounded; containers and networks are removed by id on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${TAG:-$(bash docker/build-image.sh petrel:test)}
PY=${PYTHON:-tests/.venv/bin/python}
CLIENTS=docker/split_clients.py
CLUSTER_NET="petrel-split-$$"
CLIENT_NET="petrel-split-clients-$$"
# Private subnets of our own, so that each node can be given (and get back) its address.
SUBNET_BASE=${SPLIT_SUBNET_BASE:-10.213.17}
CLIENT_SUBNET_BASE=${SPLIT_CLIENT_SUBNET_BASE:-10.213.18}
CIDS=()
WORK=$(mktemp -d)
cleanup() {
  # SPLIT_KEEP=1 leaves the containers running for a look after a failure.
  if [ "${SPLIT_KEEP:-0}" = 1 ]; then echo "kept: ${CIDS[*]} $CLUSTER_NET $CLIENT_NET"; return; fi
  for c in "${CIDS[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  docker network rm "$CLUSTER_NET" "$CLIENT_NET" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
docker network create --subnet "$SUBNET_BASE.0/24" "$CLUSTER_NET" >/dev/null
docker network create --subnet "$CLIENT_SUBNET_BASE.0/24" "$CLIENT_NET" >/dev/null
ip() { echo "$SUBNET_BASE.$((10 + $1))"; }
client_ip() { echo "$CLIENT_SUBNET_BASE.$((10 + $1))"; }
for i in 1 2 3; do
  cid=$(docker create --network "$CLUSTER_NET" --ip "$(ip "$i")" \
    -e PETREL_CLUSTER__HEARTBEAT=0.0.0.0:3002 -e PETREL_CLUSTER__FABRIC=0.0.0.0:3001 \
    -e PETREL_CLUSTER__ADVERTISE="$(ip "$i")" -e PETREL_CLUSTER__SEEDS="[\"$(ip 1):3002\"]" \
    -e PETREL_SERVICE__CLUSTER_NAME=split-test "$TAG")
  CIDS+=("$cid")
  docker network connect --ip "$(client_ip "$i")" "$CLIENT_NET" "$cid"
  docker start "$cid" >/dev/null
done
# Node i as clients reach it whatever the cluster network does.
info() { target/release/petrel-info -h "$(client_ip "$1")" -t 1000 -v "$2" 2>/dev/null || true; }
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
split() {
  docker network disconnect "$CLUSTER_NET" "${CIDS[2]}"
  wait_for 30 info 1 "cluster-stable:size=2"
  wait_for 30 info 3 "cluster-stable:size=1"
}
heal() {
  docker network connect --ip "$(ip 3)" "$CLUSTER_NET" "${CIDS[2]}"
  for i in 1 2 3; do wait_for 60 info "$i" "cluster-stable:size=3"; done
}
MAJORITY=("$(client_ip 1):3000" "$(client_ip 2):3000")
MINORITY=("$(client_ip 3):3000")
ALL=("${MAJORITY[@]}" "${MINORITY[@]}")

wait_for 30 info 1 "cluster-stable:size=3"
wait_for 30 info 3 "cluster-stable:size=3"
echo "split: 3 nodes formed one cluster"

# Round 1: writes on the majority side only.
timeout 120 "$PY" "$CLIENTS" put pre 1000 "${MAJORITY[@]}"
split
echo "split: the majority (2 nodes) and the minority (1 node) each formed a cluster"
timeout 300 "$PY" "$CLIENTS" majority "$WORK/acked" "${MAJORITY[@]}"
heal
echo "split: healed and merged"
timeout 120 "$PY" "$CLIENTS" check-majority "$WORK/acked" "${ALL[@]}"

# Round 2: writes on both sides. Records both0..999 are updated twice by the majority, and
# by the minority once (below 500) or three times (from 500).
timeout 120 "$PY" "$CLIENTS" put both 1000 "${MAJORITY[@]}"
timeout 120 "$PY" "$CLIENTS" put del 200 "${MAJORITY[@]}"
split
echo "split: split again; clients write on both sides"
timeout 300 "$PY" "$CLIENTS" both maj 2 2 "$WORK/maj.json" "${MAJORITY[@]}" &
writer=$!
timeout 300 "$PY" "$CLIENTS" both min 1 3 "$WORK/min.json" "${MINORITY[@]}"
wait "$writer"
heal
echo "split: healed and merged"
timeout 120 "$PY" "$CLIENTS" check-both "$WORK/maj.json" "$WORK/min.json" "$WORK/acked" "${ALL[@]}"
echo "split: 2 passed, 0 failed"
