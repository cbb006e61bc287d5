#!/usr/bin/env bash
# Generates shared/proto/src/gen from proto/ with buf + ts-proto (see buf.gen.yaml).
#   --check   regenerate into a temporary tree and fail if the committed code differs (CI uses this).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf=node_modules/.bin/buf
if [ "${1:-}" = "--check" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  "$buf" generate --template buf.gen.yaml -o "$tmp"
  if ! diff -r "$tmp/shared/proto/src/gen" shared/proto/src/gen >/dev/null; then
    echo "shared/proto/src/gen is stale: run 'npm run proto:gen' and commit the result" >&2
    diff -r "$tmp/shared/proto/src/gen" shared/proto/src/gen | head -40 >&2
    exit 1
  fi
  echo "generated proto code is up to date"
else
  rm -rf shared/proto/src/gen
  "$buf" generate --template buf.gen.yaml
  echo "generated shared/proto/src/gen"
fi
