#!/usr/bin/env bash
# The flash store on this machine: raw sequential write speed of the file system (dd with
# fdatasync) against sustained insert throughput into a device namespace; DRAM per record
# with the data on the device; cold restart (SIGKILL, then start on the same data) and fast
# restart (SIGTERM saves the state, then start); the mixed workload (50 % reads, 50 %
# updates) on the device namespace beside a memory one; reads right after the data file's
# pages were evicted from the page cache (cold cache).
# With --restart-only (for sizes a memory namespace would not hold here, e.g. 10 M records):
# insert, then the two restarts alone.
#
# Usage: bench/device.sh [--keys N] [--value-bytes B] [--seconds S] [--file-bytes N] [--restart-only]
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=1000000
VALUE=1000
SECONDS_RUN=20
FILE_BYTES=4294967296
RESTART_ONLY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --value-bytes) VALUE=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --file-bytes) FILE_BYTES=$2; shift 2 ;;
    --restart-only) RESTART_ONLY=1; shift ;;
    *) echo "usage: $0 [--keys N] [--value-bytes B] [--seconds S] [--file-bytes N] [--restart-only]" >&2; exit 2 ;;
  esac
done
export PETREL_NAMESPACE__TEST__FILE_SIZE=$FILE_BYTES

cargo build --release --locked -q -p petrel-server -p petrel-bench
BENCH=target/release/petrel-bench
PETRELD=target/release/petreld
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/petrel-device-bench.XXXXXX")
PID=""
cleanup() {
  [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
stat_of() { target/release/petrel-info -h 127.0.0.1 -p "$1" -v "namespace/test" | tr ';' '\n' | sed -n "s/^$2=//p"; }

echo "raw sequential write: 1 GiB with dd, fdatasync at the end" >&2
RAW=$(dd if=/dev/zero of="$WORK/raw" bs=1M count=1024 conv=fdatasync 2>&1 | sed -n 's/.*, \([0-9.]*\) \([GM]\)B\/s$/\1 \2/p')
RAW_MBS=$(echo "$RAW" | awk '{ print ($2 == "G") ? $1 * 1000 : $1 }')
rm -f "$WORK/raw"

PORT=$(free_port)
start() { "$PETRELD" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" "$@" >>"$WORK/petreld.log" 2>&1 & PID=$!; wait_port "$PORT"; }
start
echo "inserting $KEYS records of $VALUE bytes into the device namespace" >&2
"$BENCH" -h "127.0.0.1:$PORT" -w I -k "$KEYS" -o "B$VALUE" -z 64 --output-json "$WORK/load.json" >"$WORK/load.out" 2>&1
LOAD_OPS=$(json "$WORK/load.json" "round(d['ops']['write']['ops_per_sec'])")
WRITE_MBS=$(python3 -c "print(round($LOAD_OPS * ($VALUE + 80) / 1e6, 1))")
INDEX=$(stat_of "$PORT" index_used_bytes)
OBJECTS=$(stat_of "$PORT" objects)
restart_ms() { grep "namespace restored" "$WORK/petreld.log" | tail -1 | sed -n 's/.* ms=\([0-9]*\).*/\1/p'; }
if [ "$RESTART_ONLY" = 1 ]; then
  echo "cold restart: SIGKILL, then start on the same data" >&2
  kill -9 "$PID"; wait "$PID" 2>/dev/null || true
  T0=$(date +%s%N); start; T1=$(date +%s%N)
  echo "fast restart: SIGTERM (the state saved), then start on the same data" >&2
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
  T2=$(date +%s%N); start; T3=$(date +%s%N)
  echo "insert into the device namespace:  $LOAD_OPS records/s, $WRITE_MBS MB/s of records ($(python3 -c "print(round($WRITE_MBS / $RAW_MBS, 2))")x raw $RAW_MBS MB/s)"
  echo "DRAM for the index:                $(python3 -c "print(round($INDEX / max($OBJECTS, 1), 1))") bytes per record ($OBJECTS records)"
  echo "cold restart:                      $(python3 -c "print(round(($T1 - $T0) / 1e9, 2))") s to serving"
  echo "fast restart of $(stat_of "$PORT" objects) records: $(python3 -c "print(round(($T3 - $T2) / 1e9, 2))") s to serving ($(restart_ms) ms loading the saved state)"
  exit 0
fi
echo "reads with a cold cache: the data file's pages evicted (fsync, then POSIX_FADV_DONTNEED)" >&2
for f in $(find "$WORK/data" -name '*.dat'); do
  python3 -c "import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)" "$f"
done
"$BENCH" -h "127.0.0.1:$PORT" -w RU,100 -k "$KEYS" -o "B$VALUE" -z 64 -t 5 --output-json "$WORK/cold.json" >"$WORK/cold.out" 2>&1
echo "mixed workload on the device namespace" >&2
"$BENCH" -h "127.0.0.1:$PORT" -w RU,50 -k "$KEYS" -o "B$VALUE" -z 64 -t "$SECONDS_RUN" --output-json "$WORK/mix_device.json" >"$WORK/mix.out" 2>&1
CACHE=$(stat_of "$PORT" cache_read_pct)

echo "cold restart: SIGKILL, then start on the same data" >&2
kill -9 "$PID"; wait "$PID" 2>/dev/null || true
T0=$(date +%s%N)
start
T1=$(date +%s%N)
COLD_MS=$(restart_ms)
RESTORED_OBJECTS=$(stat_of "$PORT" objects)
echo "fast restart: SIGTERM (the state saved), then start on the same data" >&2
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
T2=$(date +%s%N)
start
T3=$(date +%s%N)
FAST_OBJECTS=$(stat_of "$PORT" objects)
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

echo "the same mixed workload on a memory namespace" >&2
"$PETRELD" --listen "127.0.0.1:$PORT" >>"$WORK/petreld.log" 2>&1 & PID=$!; wait_port "$PORT"
"$BENCH" -h "127.0.0.1:$PORT" -w I -k "$KEYS" -o "B$VALUE" -z 64 >/dev/null 2>&1
"$BENCH" -h "127.0.0.1:$PORT" -w RU,50 -k "$KEYS" -o "B$VALUE" -z 64 -t "$SECONDS_RUN" --output-json "$WORK/mix_memory.json" >/dev/null 2>&1
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""

D_OPS=$(json "$WORK/mix_device.json" "round(sum(o['ops_per_sec'] for o in d['ops'].values()))")
M_OPS=$(json "$WORK/mix_memory.json" "round(sum(o['ops_per_sec'] for o in d['ops'].values()))")
cat <<EOF
raw sequential write (dd, 1 GiB, fdatasync):   $RAW_MBS MB/s
insert into the device namespace:              $LOAD_OPS records/s, $WRITE_MBS MB/s of records ($(python3 -c "print(round($WRITE_MBS / $RAW_MBS, 2))")x raw)
DRAM for the index:                            $(python3 -c "print(round($INDEX / max($OBJECTS, 1), 1))") bytes per record ($OBJECTS records)
cold restart of $RESTORED_OBJECTS records:     $(python3 -c "print(round(($T1 - $T0) / 1e9, 2))") s to serving ($COLD_MS ms rebuilding the index)
fast restart of $FAST_OBJECTS records:     $(python3 -c "print(round(($T3 - $T2) / 1e9, 2))") s to serving ($(restart_ms) ms loading the saved state)
reads, cold cache (first 5 s):                 $(json "$WORK/cold.json" "round(d['ops']['read']['ops_per_sec'])") reads/s, p50 $(json "$WORK/cold.json" "d['ops']['read']['latency_us']['50']") us, p99 $(json "$WORK/cold.json" "d['ops']['read']['latency_us']['99']") us
mixed 50/50, device namespace:                 $D_OPS ops/s, read p50 $(json "$WORK/mix_device.json" "d['ops']['read']['latency_us']['50']") us, p99 $(json "$WORK/mix_device.json" "d['ops']['read']['latency_us']['99']") us; $CACHE% of reads from the block cache
mixed 50/50, memory namespace:                 $M_OPS ops/s ($(python3 -c "print(round($D_OPS / max($M_OPS, 1), 2))")x device/memory)
EOF
