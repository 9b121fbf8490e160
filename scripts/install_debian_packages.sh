#!/usr/bin/env bash
# Debian packages trivas needs on a fresh machine (called by `make`). Idempotent: installs only
# what is missing. Today: Graphviz (the app draws its lineage graph on the server with `dot`;
# without it the browser lays the graph out, slower) and the PostgreSQL server for the CDC
# playground (private cluster started by lakehouse.ingest.cdc; the package's own "main" cluster
# is not wanted and not created).
set -euo pipefail

if command -v dot >/dev/null 2>&1; then
    echo "graphviz: already installed"
elif command -v apt-get >/dev/null 2>&1 && { [[ "$(id -u)" == "0" ]] || command -v sudo >/dev/null 2>&1; }; then
    GV_SUDO=$([[ "$(id -u)" == "0" ]] && echo "" || echo "sudo")
    DEBIAN_FRONTEND=noninteractive $GV_SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $GV_SUDO apt-get install -y -qq --no-install-recommends graphviz >/dev/null
    echo "graphviz: installed"
else
    echo "graphviz is missing (optional): the app's lineage graph is laid out in the browser; install the Debian package 'graphviz'" >&2
fi

have_postgres() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        [[ -x "$bin/initdb" && -x "$bin/pg_ctl" && -x "$bin/postgres" ]] && return 0
    done
    return 1
}

if have_postgres; then
    echo "postgresql: already installed ($(ls -d /usr/lib/postgresql/*/bin | tail -n 1))"
    exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "postgresql is missing and this is not root: install the Debian package 'postgresql'" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "postgresql is missing and apt-get is not available: install PostgreSQL >= 13 so that" \
         "initdb and pg_ctl are under /usr/lib/postgresql/<version>/bin or on PATH" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql-common first, told not to create (and start) a default cluster on port 5432.
$SUDO apt-get install -y -qq --no-install-recommends postgresql-common >/dev/null
if [[ -f /etc/postgresql-common/createcluster.conf ]]; then
    $SUDO sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
fi
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
have_postgres || { echo "postgresql installed, but initdb/pg_ctl not found" >&2; exit 1; }
echo "postgresql: installed ($(ls -d /usr/lib/postgresql/*/bin | tail -n 1))"
