#!/usr/bin/env bash
# Cluster timings on this machine, with release binaries on loopback:
#   1. migration: one node holds N records (rf 2, so one copy); a second node joins from a
#      seed; time until the cluster is stable, i.e. all N records were copied to the new node;
#   2. failover: three nodes hold N records; one is killed with SIGKILL; time until every
#      partition has an acting master again (cluster-stable with ignore-migrations), and until
#      the lost copies are restored (cluster-stable).
# Usage: bench/cluster-timing.sh [--keys N]     (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=1000000
[ "${1:-}" = --keys ] && KEYS=$2
cargo build --release --locked -q -p petrel-server -p petrel-bench
INFO=target/release/petrel-info
WORK=$(mktemp -d)
EXTRA_PIDS=()
cleanup() {
  for p in "${EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  STATE_DIR="$WORK/c" scripts/local-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
wait_stable() { # port command timeout_s -> prints ms waited
  local start; start=$(now_ms)
  for _ in $(seq $(($3 * 20))); do
    if "$INFO" -p "$1" -t 1000 -v "$2" 2>/dev/null | grep -qv ERROR; then echo $(($(now_ms) - start)); return 0; fi
    sleep 0.05
  done
  echo "not stable: $2" >&2; exit 1
}
BASE=$(( (20000 + RANDOM % 20000) / 10 * 10 ))

echo "== migration: $KEYS records to a joining node" >&2
STATE_DIR="$WORK/c" BASE_PORT=$BASE RF=2 scripts/local-cluster.sh 1 >&2
target/release/petrel-bench -h "127.0.0.1:$BASE" -w I -k "$KEYS" -o B100 -z 64 >/dev/null
start=$(now_ms)
p=$((BASE + 10))
target/release/petreld --listen "127.0.0.1:$p" --fabric "127.0.0.1:$((p + 1))" --heartbeat "127.0.0.1:$((p + 2))" \
  --seed "127.0.0.1:$((BASE + 2))" --cluster-name petrel-local --replication-factor 2 >"$WORK/join.log" 2>&1 &
EXTRA_PIDS+=($!)
wait_stable "$BASE" "cluster-stable:size=2" 300 >/dev/null
MIGRATE_MS=$(($(now_ms) - start))
objects=$("$INFO" -p "$p" -v namespace/test | tr ';' '\n' | awk -F= '$1 == "objects" {print $2}')
echo "migration: node started -> $objects records received and cluster stable: $MIGRATE_MS ms" >&2
kill "${EXTRA_PIDS[@]}"; EXTRA_PIDS=()
STATE_DIR="$WORK/c" scripts/local-cluster.sh stop >/dev/null

echo "== failover: 3 nodes, $KEYS records, one killed" >&2
STATE_DIR="$WORK/c" BASE_PORT=$BASE RF=2 scripts/local-cluster.sh 3 >&2
target/release/petrel-bench -h "127.0.0.1:$BASE" -w I -k "$KEYS" -o B100 -z 64 >/dev/null
victim=$(sed -n 3p "$WORK/c/pids")
start=$(now_ms)
kill -9 "$victim"
SERVED_MS=$(wait_stable "$BASE" "cluster-stable:size=2;ignore-migrations=true" 60)
SETTLED_MS=$(wait_stable "$BASE" "cluster-stable:size=2" 300)
SETTLED_MS=$((SERVED_MS + SETTLED_MS))
echo "failover: every partition served again after $SERVED_MS ms; two copies restored after $SETTLED_MS ms" >&2
printf '| records | join: migration done (ms) | kill -9: all partitions served (ms) | kill -9: copies restored (ms) |\n'
printf '|---:|---:|---:|---:|\n'
printf '| %s | %s | %s | %s |\n' "$KEYS" "$MIGRATE_MS" "$SERVED_MS" "$SETTLED_MS"
