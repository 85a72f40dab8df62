#!/usr/bin/env bash
# Installs the Debian packages Flotilla needs, only when some are missing, and checks the
# .NET SDK. Silent when everything is already there. Does not start Debian's postgresql
# service or create its "main" cluster: Flotilla runs its own (src/Cli/Hosting/EmbeddedPostgres.cs).
# docker-registry (distribution 2.8.2) is the reference registry the tests compare against; policy-rc.d below
# keeps its service from starting (it would take port 5000).
set -euo pipefail

PACKAGES=(postgresql runc crun conmon iproute2 nftables busybox-static uidmap tmux util-linux podman skopeo docker-registry xz-utils zstd golang-github-containers-common openssl tini
  python3-docker docker-compose)
DOTNET_MAJOR=10

# One dpkg-query for all packages (unknown ones print nothing on stdout).
installed=" $(dpkg-query -W -f='${Package}:${db:Status-Status} ' "${PACKAGES[@]}" 2>/dev/null || true) "
missing=()
for pkg in "${PACKAGES[@]}"; do
  [[ "$installed" == *" $pkg:installed "* ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
  if [[ $EUID -ne 0 ]]; then
    echo "install-deps: missing packages: ${missing[*]} (run as root: $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2

  # Keep the postgresql package from creating and starting its own "main" cluster.
  if [[ " ${missing[*]} " == *" postgresql "* ]]; then
    mkdir -p /etc/postgresql-common
    if ! grep -qs '^[[:space:]]*create_main_cluster' /etc/postgresql-common/createcluster.conf; then
      echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
    fi
  fi
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
  fi
  trap 'if ((own_policy)); then rm -f "$policy"; fi' EXIT

  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "install-deps: apt-get failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# The client conformance suite's dockerode (tests/clients/README.md): Node and npm (any source), then the locked
# packages. Debian's nodejs/npm only when no node is installed (NodeSource's nodejs carries its own npm).
if ! command -v npm >/dev/null 2>&1; then
  if [[ $EUID -ne 0 ]]; then
    echo "install-deps: npm is missing (run as root: $0)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
clients="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../tests/clients/dockerode"
if [[ ! -f "$clients/node_modules/.package-lock.json" || "$clients/package-lock.json" -nt "$clients/node_modules/.package-lock.json" ]]; then
  (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "install-deps: npm ci in $clients failed" >&2; exit 1; }
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "install-deps: the .NET SDK is not installed (need ${DOTNET_MAJOR}.x; see https://learn.microsoft.com/dotnet/core/install/linux-debian)" >&2
  exit 1
fi
if ! dotnet --list-sdks 2>/dev/null | grep -q "^${DOTNET_MAJOR}\."; then
  echo "install-deps: a .NET ${DOTNET_MAJOR} SDK is required; found: $(dotnet --list-sdks 2>/dev/null | tr '\n' ' ')" >&2
  exit 1
fi
