#!/usr/bin/env bash
# What a filter expression costs a client, end to end: batch reads of 100 keys and full scans
# of the set, each run without a filter and with one every record passes (`testbin>=0`, so
# the same records come back and only the server's evaluation differs), through petrel-bench
# (the Rust client) against one release node on loopback. Prints each pair and its ratio.
#
# Usage: bench/filter-cost.sh [--keys N] [--seconds S]
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=100000
SECONDS_RUN=10
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    *) echo "usage: $0 [--keys N] [--seconds S]" >&2; exit 2 ;;
  esac
done

cargo build --release --locked -q -p petrel-server -p petrel-bench
BENCH=target/release/petrel-bench
WORK=$(mktemp -d)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/release/petreld --listen "127.0.0.1:$PORT" >"$WORK/node.log" 2>&1 &
PID=$!
for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.05; done
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

"$BENCH" -h "127.0.0.1:$PORT" -w I -k "$KEYS" -o I -z 32 >/dev/null 2>&1
run() { # run NAME OP ARGS...: ops/s and p50 (µs) of OP
  local name=$1 op=$2; shift 2
  "$BENCH" -h "127.0.0.1:$PORT" -k "$KEYS" -t "$SECONDS_RUN" --output-json "$WORK/$name.json" "$@" >/dev/null 2>&1
  json "$WORK/$name.json" "f\"{d['ops']['$op']['ops_per_sec']:.1f} {d['ops']['$op']['latency_us']['50']} {d['ops']['$op']['errors']} {d['ops']['$op']['misses']}\""
}
report() { # report WHAT PLAIN FILTERED
  read -r ops0 p0 e0 m0 <<<"$2"
  read -r ops1 p1 e1 m1 <<<"$3"
  [ "$e0$e1$m0$m1" = 0000 ] || { echo "$1: errors or misses ($2 / $3)" >&2; exit 1; }
  python3 -c "import sys; a,b,c,d=map(float,sys.argv[2:]); print(f'{sys.argv[1]}: unfiltered {a:.1f}/s p50 {c:.0f} us, filtered {b:.1f}/s p50 {d:.0f} us; time per operation {a/b:.3f}x')" \
    "$1" "$ops0" "$ops1" "$p0" "$p1"
}
BATCH_PLAIN=$(run batch read -w RU,100 --batch-size 100 -z 8)
BATCH_FILTERED=$(run batch_f read -w RU,100 --batch-size 100 -z 8 --filter 'testbin>=0')
SCAN_PLAIN=$(run scan scan -w S -z 1)
SCAN_FILTERED=$(run scan_f scan -w S -z 1 --filter 'testbin>=0')
echo "filter cost, $KEYS records of one integer bin, one node on loopback, $SECONDS_RUN s per run:"
report "batch read of 100 keys (8 in flight)" "$BATCH_PLAIN" "$BATCH_FILTERED"
report "scan of every record (one at a time)" "$SCAN_PLAIN" "$SCAN_FILTERED"
