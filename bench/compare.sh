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
case "$CLUSTER" in 0 | [2-9]) ;; *) echo "compare.sh: --cluster takes 2 to 9 nodes" >&2; exit 2 ;; esac

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
  [ -f "$WORK/cluster/pids" ] && STATE_DIR="$WORK/cluster" scripts/local-cluster.sh stop >/dev/null 2>&1
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
# RSS (kB) and CPU ticks, summed over the given pids.
rss_kb() { for p in "$@"; do awk '/^VmRSS:/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }
cpu_ticks() { for p in "$@"; do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
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

# One Petrel side: load, then the mixed workload; prints "rss0 rss1 cpu0 cpu1".
petrel_side() { # name seed pids...
  local name=$1 seed=$2; shift 2
  local rss0 rss1 cpu0 cpu1
  rss0=$(rss_kb "$@")
  run "${name}_load" -h "$seed" -w I -k "$KEYS" -o B100 -z 50
  rss1=$(rss_kb "$@")
  cpu0=$(cpu_ticks "$@")
  run "${name}_mix" -h "$seed" -w RU,50 -k "$KEYS" -o B100 -z 50 -t "$SECONDS_RUN"
  cpu1=$(cpu_ticks "$@")
  echo "$rss0 $rss1 $cpu0 $cpu1"
}

echo "loading $KEYS keys of 100 bytes, then the mixed workload (50% reads, 50% updates, 50 in flight, ${SECONDS_RUN}s)" >&2
P=$(petrel_side p "127.0.0.1:$PPORT" "$PPID_")
R_RSS0=$(rss_kb "$RPID")
run r_load --redis "127.0.0.1:$RPORT" -w I -k "$KEYS" -o B100 -z 50
R_RSS1=$(rss_kb "$RPID")
R_CPU0=$(cpu_ticks "$RPID")
run r_mix --redis "127.0.0.1:$RPORT" -w RU,50 -k "$KEYS" -o B100 -z 50 -t "$SECONDS_RUN"
R_CPU1=$(cpu_ticks "$RPID")
C="0 0 0 0"
if [ "$CLUSTER" != 0 ]; then
  # The single node is done: stop it so that the cluster has the machine to itself.
  kill "$PPID_"; for _ in $(seq 100); do kill -0 "$PPID_" 2>/dev/null || break; sleep 0.1; done
  BASE=$(( (20000 + RANDOM % 20000) / 10 * 10 ))
  echo "starting a $CLUSTER-node cluster (rf 2) on 127.0.0.1:$BASE.." >&2
  STATE_DIR="$WORK/cluster" BASE_PORT=$BASE RF=2 scripts/local-cluster.sh "$CLUSTER" >&2
  mapfile -t CPIDS <"$WORK/cluster/pids"
  C=$(petrel_side c "127.0.0.1:$BASE" "${CPIDS[@]}")
fi

# shellcheck disable=SC2086
python3 - "$WORK" "$KEYS" "$TCK" "$CLUSTER" $P "$R_RSS0" "$R_RSS1" $C "$R_CPU0" "$R_CPU1" <<'PY'
import json, sys
work, keys, tck, cluster = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
p_rss0, p_rss1, p_cpu0, p_cpu1, r_rss0, r_rss1, c_rss0, c_rss1, c_cpu0, c_cpu1, r_cpu0, r_cpu1 = map(int, sys.argv[5:17])
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
def side(name, rss0, rss1, cpu0, cpu1):
    m = mixed(load(f"{name}_mix"))
    cpu_us = (cpu1 - cpu0) * 1e6 / tck / m[0]
    mem = (rss1 - rss0) * 1024 / keys
    return [m[1], m[2], m[3], m[4], cpu_us, mem, m[5]]
p = side("p", p_rss0, p_rss1, p_cpu0, p_cpu1)
r = side("r", r_rss0, r_rss1, r_cpu0, r_cpu1)
names = [("ops/s (mixed 50/50)", "{:,.0f}"), ("p50 latency (us)", "{:,.0f}"), ("p99 latency (us)", "{:,.0f}"),
         ("p99.9 latency (us)", "{:,.0f}"), ("server CPU per op (us)", "{:.2f}"), ("server memory per record (B)", "{:.1f}")]
if cluster:
    c = side("c", c_rss0, c_rss1, c_cpu0, c_cpu1)
    head = f"{'':32} {'Petrel':>12} {'Petrel x' + str(cluster):>12} {'Redis':>12} {'Petrel/Redis':>13} {'cluster/Redis':>14}"
    print(head)
    for i, (name, f) in enumerate(names):
        ratio = lambda a: a / r[i] if r[i] else float("nan")
        print(f"{name:32} {f.format(p[i]):>12} {f.format(c[i]):>12} {f.format(r[i]):>12} {ratio(p[i]):>13.2f} {ratio(c[i]):>14.2f}")
    print(f"{'errors + timeouts':32} {p[6]:>12} {c[6]:>12} {r[6]:>12}")
    print(f"(cluster: rf 2, so memory per record counts both copies, summed over {cluster} nodes)")
else:
    print(f"{'':32} {'Petrel':>12} {'Redis':>12} {'Petrel/Redis':>13}")
    for i, (name, f) in enumerate(names):
        ratio = p[i] / r[i] if r[i] else float("nan")
        print(f"{name:32} {f.format(p[i]):>12} {f.format(r[i]):>12} {ratio:>13.2f}")
    print(f"{'errors + timeouts':32} {p[6]:>12} {r[6]:>12}")
PY
