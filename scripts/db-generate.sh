#!/usr/bin/env bash
# Generates the SQLite migrations of every service that owns a database (services/*/drizzle.config.ts)
# from its src/db/schema.ts with drizzle-kit, into services/<svc>/drizzle (commit the .sql and meta/).
#   scripts/db-generate.sh [--name NAME]   write a migration for each schema that changed (NAME: its suffix)
#   scripts/db-generate.sh --check         generate into a scratch copy and fail if that adds anything, i.e.
#                                          a schema has changes no committed migration captures (CI uses this)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
kit=node_modules/.bin/drizzle-kit

mode=generate
name=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check ;;
    --name) name=(--name "${2:?--name needs a value}"); shift ;;
    -h | --help) sed -n '2,6p' "$0"; exit 0 ;;
    *) echo "db-generate: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done

configs=(services/*/drizzle.config.ts)
[ -e "${configs[0]}" ] || { echo "db-generate: no services/*/drizzle.config.ts found" >&2; exit 1; }

# drizzle-kit can print an error and still exit 0, so success is read from what it says: a new migration
# file, or nothing to do. </dev/null: it asks about ambiguous renames only on a terminal; to answer those,
# run `npx drizzle-kit generate --config services/<svc>/drizzle.config.ts` by hand.
generate() { # generate LOG [drizzle-kit args...]
  local log=$1
  shift
  "$kit" generate "$@" </dev/null >"$log" 2>&1 || true
  grep -qE 'Your SQL migration file|No schema changes' "$log"
}

tmp=""
trap '[ -z "$tmp" ] || rm -rf "$tmp"' EXIT
stale=0
for config in "${configs[@]}"; do
  svc=$(dirname "$config")
  tmp=$(mktemp -d)
  if [ "$mode" = generate ]; then
    ok=0
    generate "$tmp/log" --config "$config" ${name[@]+"${name[@]}"} || ok=1
    cat "$tmp/log"
    rm -rf "$tmp"
    [ "$ok" = 0 ] || { echo "db-generate: drizzle-kit failed for $svc" >&2; exit 1; }
    continue
  fi
  mkdir -p "$svc/drizzle"
  cp -R "$svc/drizzle" "$tmp/drizzle"
  # drizzle-kit puts "./" before the out folder, so it must be relative to the repository root.
  out=$(node -e 'console.log(require("node:path").relative(process.cwd(), process.argv[1]))' "$tmp/drizzle")
  if ! DRIZZLE_OUT="$out" generate "$tmp/log" --config "$config" --name check; then
    echo "db-generate: drizzle-kit failed for $svc:" >&2
    cat "$tmp/log" >&2
    stale=1
  elif ! diff -r "$svc/drizzle" "$tmp/drizzle" >/dev/null; then
    echo "db-generate: $svc/src/db/schema.ts has changes no migration in $svc/drizzle captures:" >&2
    for sql in "$tmp"/drizzle/*_check.sql; do
      [ -e "$sql" ] && { echo "  the migration it needs:"; sed 's/^/    /' "$sql"; echo; } >&2
    done
    echo "  run 'bash scripts/db-generate.sh --name <what-changed>' and commit $svc/drizzle" >&2
    stale=1
  else
    "$kit" check --config "$config" >"$tmp/log" 2>&1 || {
      echo "db-generate: drizzle-kit check found inconsistent migrations in $svc/drizzle:" >&2
      cat "$tmp/log" >&2
      stale=1
    }
  fi
  rm -rf "$tmp"
done
if [ "$mode" = check ]; then
  [ "$stale" = 0 ] || exit 1
  echo "migrations are up to date with the schemas (${configs[*]%/drizzle.config.ts})"
fi
