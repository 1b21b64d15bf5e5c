#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1 for the data-layer tests and benchmarks.
#
#   source scripts/postgres.sh; start_postgres     # exports IVR_TEST_POSTGRES_URL, stops at exit
#   bash scripts/postgres.sh COMMAND [ARGS...]     # runs one command with a server, then stops it
#
# Installs Debian's postgresql when no server binaries are found (as root, with apt-get). The
# cluster lives in a temporary folder (trust authentication, loopback only, fsync off) on a free
# port and is removed when the shell exits. Does nothing when IVR_TEST_POSTGRES_URL is already
# set (a server of your own).

pg_find_bin() {
    PG_BIN=""
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then PG_BIN="$d"; fi
    done
}

pg_as_owner() { # runs a server command as the cluster's owner (postgres when we are root)
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_free_port() {
    local p
    for p in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

start_postgres() {
    if [ -n "${IVR_TEST_POSTGRES_URL:-}" ]; then
        echo "== PostgreSQL: using IVR_TEST_POSTGRES_URL"
        return 0
    fi
    pg_find_bin
    if [ -z "$PG_BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing postgresql"
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        pg_find_bin
    fi
    if [ -z "$PG_BIN" ]; then
        echo "warning: PostgreSQL is missing and cannot be installed here; its tests are skipped" >&2
        return 0
    fi
    PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/ivr-pg.XXXXXX")"
    local port
    port="$(pg_free_port)" || { echo "warning: no free port for PostgreSQL" >&2; return 0; }
    if [ "$(id -u)" = 0 ]; then chown postgres "$PG_DIR"; fi
    pg_as_owner "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=300" \
        start >/dev/null
    trap stop_postgres EXIT
    export IVR_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "== PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (stopped at exit)"
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
        pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    start_postgres
    "$@"
fi
