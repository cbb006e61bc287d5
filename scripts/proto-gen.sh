#!/usr/bin/env bash
# Generates shared/proto/src/gen from proto/ with buf + ts-proto (see buf.gen.yaml), and beside the code
# shared/proto/src/gen/descriptor-set.binpb: the compiled FileDescriptorSet that server reflection serves
# (every specloop file under its import path with its dependencies, google/protobuf/timestamp.proto, and
# grpc.health.v1 from grpc-health-check's health.proto). A FileDescriptorSet is one repeated field, so two
# serialised sets concatenated are the set of both files.
#   --check   regenerate into a temporary tree and fail if the committed code differs (CI uses this).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=node_modules/.bin/buf
health_root=node_modules/grpc-health-check/proto

# build_descriptors OUT_DIR: writes OUT_DIR/descriptor-set.binpb.
build_descriptors() {
  local out=$1 tmp
  tmp=$(mktemp -d)
  "$buf" build proto --as-file-descriptor-set -o "$tmp/specloop.binpb"
  "$buf" build "$health_root" --path "$health_root/health/v1/health.proto" --as-file-descriptor-set \
    -o "$tmp/health.binpb"
  cat "$tmp/specloop.binpb" "$tmp/health.binpb" >"$out/descriptor-set.binpb"
  rm -rf "$tmp"
}

if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$buf" generate --template buf.gen.yaml -o "$tmp"
  build_descriptors "$tmp/shared/proto/src/gen"
  if ! diff -r "$tmp/shared/proto/src/gen" shared/proto/src/gen >/dev/null; then
    echo "shared/proto/src/gen is stale: run 'npm run proto:gen' and commit the result" >&2
    diff -r "$tmp/shared/proto/src/gen" shared/proto/src/gen | head -40 >&2
    exit 1
  fi
  echo "generated proto code is up to date"
else
  rm -rf shared/proto/src/gen
  "$buf" generate --template buf.gen.yaml
  build_descriptors shared/proto/src/gen
  echo "generated shared/proto/src/gen"
fi
