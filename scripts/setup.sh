#!/usr/bin/env bash
# Prepares a Debian machine (bookworm) to build and test specloop, then installs and builds the workspace.
# Idempotent: a second run skips the apt work that is already done. CI runs it as root with no stdin.
#
#   1. (root only) adds the <codename>-backports suite, reusing the Debian mirror already configured in the
#      machine's apt sources (deb822 *.sources files or one-line sources.list), and runs apt-get update;
#   2. (root only) installs nats-server, libvulkan1 and mesa-vulkan-drivers preferring backports (`-t`: Mesa
#      >= 25 comes from there, as Dawn refuses bookworm's Mesa 22 lavapipe; a package that backports lacks,
#      such as nats-server, comes from the stock suite) plus python3, make and g++ for native addons, then
#      checks the installed Mesa version and the lavapipe Vulkan ICD;
#   3. npm ci (skipped when node_modules was installed from the same lock), then npm run build.
# No network is used but Debian's package mirror and the npm registry.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export DEBIAN_FRONTEND=noninteractive

MIN_MESA_MAJOR=25
BACKPORTS_PACKAGES=(nats-server libvulkan1 mesa-vulkan-drivers)
STOCK_PACKAGES=(python3 make g++ bubblewrap)
BACKPORTS_FILE=/etc/apt/sources.list.d/specloop-backports.sources

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
  printf 'setup: error: %s\n' "$*" >&2
  exit 1
}

codename() {
  local name=""
  if [ -r /etc/os-release ]; then name=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}"); fi
  [ -n "$name" ] || die "cannot read VERSION_CODENAME from /etc/os-release: is this Debian?"
  printf '%s' "$name"
}

# Prints "URI<TAB>SIGNED-BY" of the first enabled apt source that serves suite $1 (deb822 first, then one-line).
mirror_for_suite() {
  local suite=$1 f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v suite="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " suite " ") && uris != "") {
          split(uris, u, " "); printf "%s\t%s\n", u[1], signed; found = 1; exit
        }
        types = ""; suites = ""; uris = ""; signed = ""; enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      {
        key = $0; sub(/:.*/, "", key); key = tolower(key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
        if (key == "types") types = val
        else if (key == "suites") suites = val
        else if (key == "uris") uris = val
        else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { if (!found) flush() }
    ' "$f" | head -n1 | grep . && return 0
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v suite="$suite" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
        if ($(i + 1) == suite) { printf "%s\t\n", $i; exit }
      }
    ' "$f" | head -n1 | grep . && return 0
  done
  return 1
}

has_suite() {
  mirror_for_suite "$1" >/dev/null
}

# Adds <codename>-backports unless some source already serves it. Prints "changed" when it wrote the file.
ensure_backports() {
  local code=$1 line uri signed content
  if [ ! -f "$BACKPORTS_FILE" ] && has_suite "$code-backports"; then return 0; fi
  line=$(mirror_for_suite "$code") ||
    die "no apt source serves suite '$code' (looked in /etc/apt/sources.list.d/*.sources and sources.list)"
  uri=${line%%$'\t'*}
  signed=${line#*$'\t'}
  content="# Written by specloop scripts/setup.sh: Mesa >= $MIN_MESA_MAJOR (lavapipe) and nats-server for Dawn.
Types: deb
URIs: $uri
Suites: $code-backports
Components: main"
  if [ -n "$signed" ]; then content+=$'\n'"Signed-By: $signed"; fi
  if [ -f "$BACKPORTS_FILE" ] && [ "$(cat "$BACKPORTS_FILE")" = "$content" ]; then return 0; fi
  printf '%s\n' "$content" >"$BACKPORTS_FILE"
  log "added $code-backports from $uri ($BACKPORTS_FILE)"
  echo changed
}

# True when apt's package lists know the backports suite (that is, apt-get update ran since it was added).
backports_indexed() {
  apt-cache policy 2>/dev/null | grep -q " $1-backports/"
}

# Number of packages the install would add or upgrade (0: nothing to do).
pending_installs() {
  local code=$1
  apt-get install -s -y --no-install-recommends -t "$code-backports" "${BACKPORTS_PACKAGES[@]}" \
    "${STOCK_PACKAGES[@]}" 2>/dev/null | grep -c '^Inst ' || true
}

install_packages() {
  local code=$1
  apt-get install -y -q --no-install-recommends -t "$code-backports" \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${BACKPORTS_PACKAGES[@]}" "${STOCK_PACKAGES[@]}"
}

check_mesa() {
  local version major icd
  version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) ||
    die "mesa-vulkan-drivers is not installed"
  major=${version#*:}
  major=${major%%.*}
  if ! [[ "$major" =~ ^[0-9]+$ ]] || [ "$major" -lt "$MIN_MESA_MAJOR" ]; then
    die "mesa-vulkan-drivers $version is installed, Dawn needs Mesa >= $MIN_MESA_MAJOR (from backports)"
  fi
  icd=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null | head -n1 || true)
  [ -n "$icd" ] || die "mesa-vulkan-drivers $version installed no lavapipe ICD (/usr/share/vulkan/icd.d/lvp_icd*.json)"
  log "Mesa $version with lavapipe ($icd); nats-server $(dpkg-query -W -f='${Version}' nats-server)"
}

setup_apt() {
  local code changed pending
  code=$(codename)
  changed=$(ensure_backports "$code")
  if [ -n "$changed" ] || ! backports_indexed "$code"; then
    log "apt-get update"
    apt-get update -q
  fi
  pending=$(pending_installs "$code")
  if [ "$pending" = "0" ]; then
    log "system packages already installed"
  else
    log "installing $pending package(s): ${BACKPORTS_PACKAGES[*]} (from $code-backports) ${STOCK_PACKAGES[*]}"
    if ! install_packages "$code"; then
      # Stale lists (a mirror that moved on since the last update) fail with 404s: refresh once and retry.
      log "install failed; refreshing package lists and retrying"
      apt-get update -q
      install_packages "$code"
    fi
  fi
  check_mesa
}

if [ "$(id -u)" = "0" ]; then
  command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian (bookworm)"
  setup_apt
else
  log "not root: skipping system packages. As root, install from bookworm-backports:"
  log "  ${BACKPORTS_PACKAGES[*]} (Mesa >= $MIN_MESA_MAJOR) and ${STOCK_PACKAGES[*]}"
  log "  (or rerun this script as root)"
fi

# Native addons (better-sqlite3) that build from source need Node's headers; use the installed ones when the
# Node installation ships them, so node-gyp does not download them.
node_prefix=$(dirname "$(dirname "$(command -v node)")")
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$node_prefix/include/node/node.h" ]; then
  export npm_config_nodedir=$node_prefix
fi

# better-sqlite3 would otherwise download a prebuilt binary from outside the npm registry; build it here.
export npm_config_build_from_source="${npm_config_build_from_source:-better-sqlite3}"

# npm ci starts from an empty node_modules (a minute here, building better-sqlite3); skip it when the last
# one installed this very lock with this Node, as recorded in a stamp inside node_modules.
stamp=node_modules/.specloop-setup
want=$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  log "node_modules already installed from this package-lock.json (rm $stamp to force npm ci)"
else
  log "npm ci"
  npm ci --no-audit --no-fund
  printf '%s\n' "$want" >"$stamp"
fi
log "npm run build"
npm run build
log "done"
