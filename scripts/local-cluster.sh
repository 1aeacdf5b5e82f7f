#!/usr/bin/env bash
# Starts an N-node Petrel cluster on loopback for trying it out, or stops it.
#
#   scripts/local-cluster.sh 3        # nodes on 127.0.0.1:3000, :3010, :3020 (fabric +1, heartbeat +2)
#   scripts/local-cluster.sh stop     # stops the nodes this script started (by pid)
#
# Settings: PETREL_BIN (default target/release/petreld, built if missing), BASE_PORT
# (default 3000), RF (replication factor, default 2), STATE_DIR (default ./local-cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
state="${STATE_DIR:-local-cluster}"
bin="${PETREL_BIN:-target/release/petreld}"
base="${BASE_PORT:-3000}"

stop() {
    [ -f "$state/pids" ] || { echo "no cluster started from $state"; return 0; }
    while read -r pid; do
        kill "$pid" 2>/dev/null || true
    done <"$state/pids"
    # Bounded wait for a clean exit, then force.
    for _ in $(seq 1 50); do
        alive=0
        while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$state/pids"
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$state/pids"
    rm -f "$state/pids"
    echo "stopped"
}

case "${1:-}" in
stop) stop; exit 0 ;;
'' | *[!0-9]*) echo "usage: $0 N | stop" >&2; exit 2 ;;
esac
n="$1"
if [ "$n" -lt 1 ] || [ "$n" -gt 32 ]; then echo "N must be 1 to 32" >&2; exit 2; fi
[ -f "$state/pids" ] && stop
[ -x "$bin" ] || cargo build --release -p petrel-server --bin petreld
mkdir -p "$state"
: >"$state/pids"
seed="127.0.0.1:$((base + 2))"
for i in $(seq 0 $((n - 1))); do
    port=$((base + 10 * i))
    "$bin" --listen "127.0.0.1:$port" --heartbeat "127.0.0.1:$((port + 2))" --fabric "127.0.0.1:$((port + 1))" \
        --seed "$seed" --cluster-name "${CLUSTER_NAME:-petrel-local}" --replication-factor "${RF:-2}" \
        ${PERSIST:+--data-dir "$state/node-$i"} >"$state/node-$i.log" 2>&1 &
    echo $! >>"$state/pids"
    echo "node $i: service 127.0.0.1:$port, fabric $((port + 1)), heartbeat $((port + 2)), log $state/node-$i.log"
done
# Wait (bounded) until the first node reports the whole cluster, settled.
info="target/release/petrel-info"
if [ -x "$info" ]; then
    for _ in $(seq 1 100); do
        if "$info" -p "$base" -v "cluster-stable:size=$n" 2>/dev/null | grep -qv ERROR; then
            echo "cluster of $n is up"
            exit 0
        fi
        sleep 0.2
    done
    echo "cluster not settled after 20 s; see $state/*.log" >&2
    exit 1
fi
