#!/usr/bin/env bash
# Rejoin on this machine, with release binaries on loopback: three nodes (rf 2) store the
# namespace on files under their data directories and hold N records; one is SIGKILLed, C of
# the records are updated while it is down, and it is started again on its data. Timed until
# the cluster is stable, with what the node received. Then the same node is killed again,
# its data directory wiped, and started again: the partition comes whole, the baseline.
# Last, the whole cluster is SIGKILLed and started again on its data: every partition has two
# restored copies under distinct versions, merged and then reconciled.
# PETREL_BIN runs another petreld build (e.g. an older one, for comparison).
# Usage: bench/rejoin.sh [--keys N] [--changed C] [--value-bytes B]   (defaults 1000000, 10000, 500)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=1000000
CHANGED=10000
VALUE=500
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --changed) CHANGED=$2; shift 2 ;;
    --value-bytes) VALUE=$2; shift 2 ;;
    *) echo "usage: $0 [--keys N] [--changed C] [--value-bytes B]" >&2; exit 2 ;;
  esac
done
cargo build --release --locked -q -p petrel-server -p petrel-bench
INFO=target/release/petrel-info
WORK=$(mktemp -d)
VICTIM_PID=
cleanup() {
  [ -n "$VICTIM_PID" ] && kill "$VICTIM_PID" 2>/dev/null || true
  STATE_DIR="$WORK/c" scripts/local-cluster.sh stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
wait_stable() { # port size timeout_s -> prints ms waited
  local start; start=$(now_ms)
  for _ in $(seq $(($3 * 20))); do
    if "$INFO" -p "$1" -t 1000 -v "cluster-stable:size=$2" 2>/dev/null | grep -qv ERROR; then
      echo $(($(now_ms) - start)); return 0
    fi
    sleep 0.05
  done
  echo "not stable: size $2" >&2; exit 1
}
stat_of() { "$INFO" -p "$1" -v statistics | tr ';' '\n' | awk -F= -v k="$2" '$1 == k {print $2}'; }
sum_stat() { local t=0 v; for p in "$BASE" $((BASE + 10)) $((BASE + 20)); do v=$(stat_of "$p" "$1"); t=$((t + ${v:-0})); done; echo "$t"; }
BASE=$(( (20000 + RANDOM % 20000) / 10 * 10 ))
P=$((BASE + 20))
export PETREL_NAMESPACE__TEST__FILE_SIZE=$((4 << 30))
STATE_DIR="$WORK/c" BASE_PORT=$BASE RF=2 PERSIST=1 scripts/local-cluster.sh 3 >&2
target/release/petrel-bench -h "127.0.0.1:$BASE" -w I -k "$KEYS" -o "B$VALUE" -z 64 >/dev/null
BIN=${PETREL_BIN:-target/release/petreld}
export PETREL_BIN=$BIN
start_victim() {
  "$BIN" --listen "127.0.0.1:$P" --heartbeat "127.0.0.1:$((P + 2))" --fabric "127.0.0.1:$((P + 1))" \
    --seed "127.0.0.1:$((BASE + 2))" --cluster-name petrel-local --replication-factor 2 \
    --data-dir "$WORK/c/node-2" >>"$WORK/c/node-2.log" 2>&1 &
  VICTIM_PID=$!
  disown "$VICTIM_PID" # killed on purpose: no job notice
}
kill_victim() { # the node's first pid is the script's; later ones are ours
  kill -9 "${VICTIM_PID:-$(sed -n 3p "$WORK/c/pids")}"
  wait_stable "$BASE" 2 120 >/dev/null
}
rejoin() { # label
  target/release/petrel-bench -h "127.0.0.1:$BASE" -w I -K 0 -k "$CHANGED" -o "B$VALUE" -z 64 >/dev/null
  start_victim
  local ms; ms=$(wait_stable "$BASE" 3 600)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$KEYS" "$CHANGED" "$ms" \
    "$(stat_of "$P" migrate_records_received)" "$(stat_of "$P" migrate_records_skipped)"
}
printf '| node restarted | records | updated while down | start to stable (ms) | records received | records kept |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
kill_victim
rejoin "on its data"
kill_victim
rm -rf "$WORK/c/node-2"
rejoin "data wiped (baseline)"
# The whole cluster at once.
kill -9 "$VICTIM_PID"; VICTIM_PID=
while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$WORK/c/pids"
start=$(now_ms)
STATE_DIR="$WORK/c" BASE_PORT=$BASE RF=2 PERSIST=1 scripts/local-cluster.sh 3 >/dev/null 2>&1 || true
wait_stable "$BASE" 3 900 >/dev/null
printf '| whole cluster, all on their data | %s | 0 | %s | %s | %s |\n' "$KEYS" "$(($(now_ms) - start))" \
  "$(sum_stat migrate_records_received)" "$(sum_stat migrate_records_skipped)"
