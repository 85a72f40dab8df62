#!/usr/bin/env bash
# skopeo push/pull of one fresh 50 MB layer: Flotilla's built-in registry vs Debian's docker-registry
# (CNCF distribution 2.8.2, filesystem storage). Both on 127.0.0.1, same disk, same client.
#   bench/registry/throughput.sh [runs=3] [size_mb=50]
# Needs a Release build (dotnet build Cluster.sln -c Release), skopeo and docker-registry.
set -euo pipefail
RUNS=${1:-3}
SIZE_MB=${2:-50}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/flotilla-regbench-XXXXXX)
FLOTILLA_PID=""; DISTRIBUTION_PID=""
cleanup() {
  [ -n "$FLOTILLA_PID" ] && kill "$FLOTILLA_PID" 2>/dev/null && wait "$FLOTILLA_PID" 2>/dev/null || true
  [ -n "$DISTRIBUTION_PID" ] && kill "$DISTRIBUTION_PID" 2>/dev/null && wait "$DISTRIBUTION_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }

# An OCI layout holding one image whose single layer is SIZE_MB of gzip (random bytes, so it does not
# shrink), a new one per call. A gzip layer is what skopeo copies as is; an uncompressed one it would
# gzip on the way, and the benchmark would time the client's compressor.
make_layout() {
  local dir=$1
  mkdir -p "$dir/blobs/sha256"
  head -c $((SIZE_MB * 1024 * 1024)) /dev/urandom | gzip -1 > "$dir/layer"
  local layer; layer=$(sha256sum "$dir/layer" | cut -d' ' -f1); mv "$dir/layer" "$dir/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$(zcat "$dir/blobs/sha256/$layer" | sha256sum | cut -d' ' -f1)" > "$dir/config"
  local config; config=$(sha256sum "$dir/config" | cut -d' ' -f1); local config_size; config_size=$(stat -c %s "$dir/config")
  mv "$dir/config" "$dir/blobs/sha256/$config"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$(stat -c %s "$dir/blobs/sha256/$layer")" > "$dir/manifest"
  local manifest; manifest=$(sha256sum "$dir/manifest" | cut -d' ' -f1); local manifest_size; manifest_size=$(stat -c %s "$dir/manifest")
  mv "$dir/manifest" "$dir/blobs/sha256/$manifest"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$manifest" "$manifest_size" > "$dir/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$dir/oci-layout"
}

# Runs alternate between the two registries, so a change of load on the shared machine hits both alike.
declare -A PUSH PULL
run_once() {
  local name=$1 host=$2 i=$3
  local layout="$WORK/layout-$name-$i"; make_layout "$layout"
  local t0; t0=$(now)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:bench" "docker://$host/bench/$name-$i:v1"
  local t1; t1=$(now)
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$host/bench/$name-$i:v1" "dir:$WORK/pulled-$name-$i"
  local t2; t2=$(now)
  rm -rf "$layout" "$WORK/pulled-$name-$i"
  PUSH[$name]=$(echo "${PUSH[$name]:-0} + $t1 - $t0" | bc -l); PULL[$name]=$(echo "${PULL[$name]:-0} + $t2 - $t1" | bc -l)
}
report() {
  local name=$1
  printf '%-18s push %6.1f MB/s   pull %6.1f MB/s   (%d runs of %d MB)\n' "$name" \
    "$(echo "$SIZE_MB * $RUNS / ${PUSH[$name]}" | bc -l)" "$(echo "$SIZE_MB * $RUNS / ${PULL[$name]}" | bc -l)" "$RUNS" "$SIZE_MB"
}

# docker-registry (distribution) with filesystem storage under WORK.
DIST_PORT=$(free_port)
cat > "$WORK/distribution.yml" <<YML
version: 0.1
log: { level: error }
storage: { filesystem: { rootdirectory: $WORK/distribution }, delete: { enabled: true } }
http: { addr: 127.0.0.1:$DIST_PORT }
YML
docker-registry serve "$WORK/distribution.yml" > "$WORK/distribution.log" 2>&1 & DISTRIBUTION_PID=$!

# Flotilla all-in-one (embedded PostgreSQL) on free ports.
REG_PORT=$(free_port)
FLOTILLA_REGISTRY_FSYNC=${FLOTILLA_REGISTRY_FSYNC:-1} dotnet "$ROOT/src/Cli/bin/Release/net10.0/flotilla.dll" up --data "$WORK/flotilla" --registry "127.0.0.1:$REG_PORT" \
  --docker-api "127.0.0.1:$(free_port)" --http "127.0.0.1:$(free_port)" --name regbench > "$WORK/flotilla.log" 2>&1 & FLOTILLA_PID=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$REG_PORT/v2/" >/dev/null 2>&1 && curl -sf "http://127.0.0.1:$DIST_PORT/v2/" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$REG_PORT/v2/" >/dev/null || { cat "$WORK/flotilla.log"; exit 1; }

# One warm-up round each (JIT, connection setup), not counted.
run_once warmup-dist "127.0.0.1:$DIST_PORT" 0; run_once warmup-flotilla "127.0.0.1:$REG_PORT" 0
for i in $(seq 1 "$RUNS"); do
  run_once docker-registry "127.0.0.1:$DIST_PORT" "$i"
  run_once flotilla "127.0.0.1:$REG_PORT" "$i"
done
report docker-registry
report flotilla
printf 'ratio flotilla/docker-registry: push %.2f, pull %.2f\n' "$(echo "${PUSH[docker-registry]} / ${PUSH[flotilla]}" | bc -l)" \
  "$(echo "${PULL[docker-registry]} / ${PULL[flotilla]}" | bc -l)"
