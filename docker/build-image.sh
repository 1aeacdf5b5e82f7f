#!/usr/bin/env bash
# Builds the petreld container image from what is on this machine: the release binary and
# the shared libraries it links, on an empty (scratch) base. No registry is needed.
# Usage: docker/build-image.sh [TAG]   (default petrel:dev)
set -euo pipefail
cd "$(dirname "$0")/.."
TAG=${1:-petrel:dev}
cargo build --release --locked -q -p petrel-server -p petrel-bench
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/rootfs/usr/bin" "$CTX/rootfs/etc/petrel" "$CTX/rootfs/var/lib/petrel" "$CTX/rootfs/tmp"
cp target/release/petreld target/release/petrel-info "$CTX/rootfs/usr/bin/"
# The release profile keeps line tables for profiling; the image does not need them.
strip --strip-debug "$CTX"/rootfs/usr/bin/* 2>/dev/null || true
# Every library the binaries load, at the same path, plus the dynamic loader.
for bin in target/release/petreld target/release/petrel-info; do
  ldd "$bin" | awk '/=> \// {print $3} $1 ~ /^\// {print $1}'
done | sort -u | while read -r lib; do
  mkdir -p "$CTX/rootfs$(dirname "$lib")"
  cp -L "$lib" "$CTX/rootfs$lib"
done
cp docker/petrel.toml "$CTX/rootfs/etc/petrel/petrel.toml"
cat > "$CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
EXPOSE 3000
ENV PETREL_LOG=info
ENTRYPOINT ["/usr/bin/petreld", "--config", "/etc/petrel/petrel.toml"]
DOCKERFILE
docker build -q -t "$TAG" "$CTX" >/dev/null
echo "$TAG"
