#!/usr/bin/env bash
# Side-by-side: a fresh single petreld and a fresh redis-server (persistence off, loopback),
# the same 1 M keys with 100-byte values loaded into each, then the same mixed workload (50 %
# reads, 50 % updates, uniform keys, 50 requests in flight, no pipelining, 30 s) from the same
# load generator. Prints ops/s, p50/p99/p99.9, server CPU µs per operation (from
# /proc/PID/stat over the run) and server memory per record (RSS delta / records), with
# Petrel/Redis ratios.
#
# Usage: bench/compare.sh [--keys N] [--seconds S] [--cluster 3]
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000000
SECONDS_RUN=30
CLUSTER=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --cluster) CLUSTER=$2; shift 2 ;;
    *) echo "usage: $0 [--keys N] [--seconds S] [--cluster N]" >&2; exit 2 ;;
  esac
done
if [ "$CLUSTER" != 0 ]; then
  if [ ! -x scripts/local-cluster.sh ]; then
    echo "compare.sh: --cluster needs scripts/local-cluster.sh, which comes with the cluster layer" >&2
    exit 2
  fi
fi

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null
fi

cargo build --release --locked -q -p petrel-server -p petrel-bench
BENCH=target/release/petrel-bench
PETRELD=target/release/petreld
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "compare.sh: nothing listens on port $1" >&2; exit 1
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

PPORT=$(free_port)
RPORT=$(free_port)
PETREL_SERVICE__SERVICE_THREADS=${PETREL_SERVICE_THREADS:-0} PETREL_NAMESPACE__TEST__MEMORY_SIZE=$((8 << 30)) "$PETRELD" --listen "127.0.0.1:$PPORT" >"$WORK/petreld.log" 2>&1 &
PPID_=$!; PIDS+=("$PPID_")
redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$WORK/redis.log" 2>&1 &
RPID=$!; PIDS+=("$RPID")
wait_port "$PPORT"; wait_port "$RPORT"

run() { # name target-args workload extra... -> writes $WORK/<name>.json
  local name=$1; shift
  "$BENCH" "$@" --output-json "$WORK/$name.json" >"$WORK/$name.out" 2>&1 || { cat "$WORK/$name.out" >&2; echo "compare.sh: $name failed" >&2; exit 1; }
}

P_RSS0=$(rss_kb "$PPID_"); R_RSS0=$(rss_kb "$RPID")
echo "loading $KEYS keys of 100 bytes into each server" >&2
run p_load -h "127.0.0.1:$PPORT" -w I -k "$KEYS" -o B100 -z 50
run r_load --redis "127.0.0.1:$RPORT" -w I -k "$KEYS" -o B100 -z 50
P_RSS1=$(rss_kb "$PPID_"); R_RSS1=$(rss_kb "$RPID")

echo "mixed workload: 50% reads, 50% updates, 50 in flight, ${SECONDS_RUN}s each" >&2
P_CPU0=$(cpu_ticks "$PPID_")
run p_mix -h "127.0.0.1:$PPORT" -w RU,50 -k "$KEYS" -o B100 -z 50 -t "$SECONDS_RUN"
P_CPU1=$(cpu_ticks "$PPID_")
R_CPU0=$(cpu_ticks "$RPID")
run r_mix --redis "127.0.0.1:$RPORT" -w RU,50 -k "$KEYS" -o B100 -z 50 -t "$SECONDS_RUN"
R_CPU1=$(cpu_ticks "$RPID")

python3 - "$WORK" "$KEYS" "$TCK" "$P_RSS0" "$P_RSS1" "$R_RSS0" "$R_RSS1" "$P_CPU0" "$P_CPU1" "$R_CPU0" "$R_CPU1" <<'PY'
import json, sys
work, keys, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
p_rss0, p_rss1, r_rss0, r_rss1, p_cpu0, p_cpu1, r_cpu0, r_cpu1 = map(int, sys.argv[4:12])
def load(n):
    with open(f"{work}/{n}.json") as f:
        return json.load(f)
def mixed(s):
    ops = s["ops"]
    count = sum(o["count"] for o in ops.values())
    errors = sum(o["errors"] + o["timeouts"] for o in ops.values())
    # Latency of all operations: the larger of the read and write percentiles (both are ~50 %).
    pct = lambda p: max(o["latency_us"][p] for o in ops.values())
    return count, count / s["seconds"], pct("50"), pct("99"), pct("99.9"), errors
p, r = mixed(load("p_mix")), mixed(load("r_mix"))
p_cpu_us = (p_cpu1 - p_cpu0) * 1e6 / tck / p[0]
r_cpu_us = (r_cpu1 - r_cpu0) * 1e6 / tck / r[0]
p_mem = (p_rss1 - p_rss0) * 1024 / keys
r_mem = (r_rss1 - r_rss0) * 1024 / keys
rows = [
    ("ops/s (mixed 50/50)", p[1], r[1], "{:,.0f}"),
    ("p50 latency (us)", p[2], r[2], "{:,.0f}"),
    ("p99 latency (us)", p[3], r[3], "{:,.0f}"),
    ("p99.9 latency (us)", p[4], r[4], "{:,.0f}"),
    ("server CPU per op (us)", p_cpu_us, r_cpu_us, "{:.2f}"),
    ("server memory per record (B)", p_mem, r_mem, "{:.1f}"),
]
print(f"{'':32} {'Petrel':>12} {'Redis':>12} {'Petrel/Redis':>13}")
for name, a, b, f in rows:
    ratio = a / b if b else float("nan")
    print(f"{name:32} {f.format(a):>12} {f.format(b):>12} {ratio:>13.2f}")
print(f"{'errors + timeouts':32} {p[5]:>12} {r[5]:>12}")
PY
