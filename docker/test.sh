#!/usr/bin/env bash
# Container test: builds the image, runs it on a loopback port, checks that the official
# Python client and petrel-info work against it and that it stops cleanly on SIGTERM.
# Every wait is bounded; the container is removed by its id.
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=$(bash docker/build-image.sh petrel:test)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CID=$(docker run -d -p "127.0.0.1:$PORT:3000" -e PETREL_NAMESPACE__TEST__DEFAULT_TTL=3600 "$TAG")
cleanup() { docker rm -f "$CID" >/dev/null 2>&1 || true; }
trap cleanup EXIT
for _ in $(seq 100); do
  target/release/petrel-info -p "$PORT" -t 500 >/dev/null 2>&1 && break
  sleep 0.1
done
[ "$(target/release/petrel-info -p "$PORT" -v status)" = ok ] || { docker logs "$CID"; echo "container did not answer" >&2; exit 1; }
target/release/petrel-info -p "$PORT" -v get-config:context=namespace\;id=test | grep -q 'default-ttl=3600' \
  || { echo "environment override not applied" >&2; exit 1; }
PY=${PYTHON:-tests/.venv/bin/python}
"$PY" - "$PORT" <<'PYTEST'
import sys, aerospike
c = aerospike.client({"hosts": [("127.0.0.1", int(sys.argv[1]))]}).connect()
k = ("test", "docker", "k1")
c.put(k, {"a": 1, "s": "container"})
_, meta, bins = c.get(k)
assert bins == {"a": 1, "s": "container"}, bins
assert 3500 < meta["ttl"] <= 3600, meta
c.close()
print("container: put/get ok")
PYTEST
docker stop -t 20 "$CID" >/dev/null
CODE=$(docker inspect -f '{{.State.ExitCode}}' "$CID")
[ "$CODE" = 0 ] || { docker logs "$CID" | tail -5; echo "exit code $CODE after SIGTERM" >&2; exit 1; }
echo "container: 1 passed, 0 failed"
