#!/usr/bin/env bash
# A cluster of `ivr serve` nodes on this machine's loopback, for trying it out and for tests
# (docs/cluster.md):
#
#   scripts/cluster.sh up N [FOLDER]   # PostgreSQL, Kamailio, N nodes serving FOLDER
#   scripts/cluster.sh down            # stops everything `up` started
#
# `up` prints one line per part, the proxy first:
#   proxy sip:127.0.0.1:5060
#   node a sip:127.0.0.1:5071 http://127.0.0.1:8081 pid 12345
#
# FOLDER is the deployment every node serves (its ivr.toml), by default this repository. The
# nodes are named a, b, c ...; node i listens for SIP on the proxy's port + i and for HTTP on
# IVR_CLUSTER_HTTP_PORT + i. Environment:
#   IVR_CLUSTER_DIR        the run folder: pid files, logs, Kamailio's files, PostgreSQL's data
#                          (default: ${TMPDIR:-/tmp}/ivr-cluster)
#   IVR_CLUSTER_SIP_PORT   the proxy's port (default 5060)
#   IVR_CLUSTER_HTTP_PORT  the nodes' HTTP ports start above it (default 8080)
#   IVR_CLUSTER_DATABASE   a PostgreSQL of your own (postgres://...) instead of a throwaway one
#   IVR_BIN                the ivr binary (default: target/debug/ivr, built when missing)
#   IVR_CLUSTER_ARGS       more arguments for every `ivr serve` (e.g. "--rtp-timeout 5s")
#   IVR_CLUSTER_KAMAILIO_SHM  Kamailio's shared memory in MB (default 64; its transactions live
#                          there: a few hundred calls/s need more, see docs/performance.md)
# Installs Debian's kamailio and postgresql when missing (as root, with apt-get).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
RUN="${IVR_CLUSTER_DIR:-${TMPDIR:-/tmp}/ivr-cluster}"
SIP_PORT="${IVR_CLUSTER_SIP_PORT:-5060}"
HTTP_PORT="${IVR_CLUSTER_HTTP_PORT:-8080}"
HOST=127.0.0.1
MAX_NODES=26

say() { echo "cluster.sh: $*" >&2; }
STARTED=""
die() {
    say "$*"
    # Once `up` has started something, a failure stops it all again.
    if [ -n "$STARTED" ]; then
        STARTED=""
        say "stopping what was started (the logs stay in $RUN)"
        KEEP_LOGS=1 down >/dev/null 2>&1 || true
    fi
    exit 1
}

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $2"
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    fi
    command -v "$1" >/dev/null 2>&1 || die "$1 (Debian package $2) is missing"
}

port_busy() { # port_busy PORT: something listens on it (UDP or TCP) on loopback
    ss -Hlnu "sport = :$1" 2>/dev/null | grep -q . && return 0
    ss -Hlnt "sport = :$1" 2>/dev/null | grep -q . && return 0
    return 1
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The PostgreSQL server: its own data folder below the run folder, loopback only, trust.
start_pg() {
    # shellcheck source=scripts/postgres.sh
    source "$REPO/scripts/postgres.sh"
    pg_find_bin
    if [ -z "$PG_BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing postgresql"
        if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq; APT_UPDATED=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        pg_find_bin
    fi
    [ -n "$PG_BIN" ] || die "PostgreSQL (Debian package postgresql) is missing"
    local port
    port="$(pg_free_port)" || die "no free port for PostgreSQL"
    mkdir -p "$RUN/pg"
    if [ "$(id -u)" = 0 ]; then chown postgres "$RUN/pg"; fi
    pg_as_owner "$PG_BIN/initdb" -D "$RUN/pg/data" -U postgres --auth=trust -E UTF8 \
        --locale=C >/dev/null
    pg_as_owner "$PG_BIN/pg_ctl" -D "$RUN/pg/data" -l "$RUN/pg/server.log" -w -t 60 \
        -o "-c listen_addresses=$HOST -p $port -k $RUN/pg -c fsync=off -c max_connections=200" \
        start >/dev/null
    echo "$PG_BIN" >"$RUN/pg/bin"
    DATABASE="postgres://postgres@$HOST:$port/postgres"
}

stop_pg() {
    if [ -f "$RUN/pg/bin" ] && [ -d "$RUN/pg/data" ]; then
        source "$REPO/scripts/postgres.sh"
        local bin
        bin="$(cat "$RUN/pg/bin")"
        pg_as_owner "$bin/pg_ctl" -D "$RUN/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
}

up() {
    local n="${1:-}" folder="${2:-$REPO}"
    case "$n" in '' | *[!0-9]*) die "usage: cluster.sh up N [FOLDER] (N nodes, 1 to $MAX_NODES)" ;; esac
    [ "$n" -ge 1 ] && [ "$n" -le "$MAX_NODES" ] || die "N is 1 to $MAX_NODES"
    folder="$(cd "$folder" && pwd)" || die "no folder $2"
    [ -f "$folder/ivr.toml" ] || die "$folder has no ivr.toml"
    if [ -d "$RUN" ] && ls "$RUN"/*.pid >/dev/null 2>&1; then
        for p in "$RUN"/*.pid; do
            alive "$p" && die "a cluster is already up in $RUN (scripts/cluster.sh down first)"
        done
    fi
    need kamailio kamailio
    need ss iproute2
    local bin="${IVR_BIN:-$REPO/target/debug/ivr}"
    if [ ! -x "$bin" ]; then
        say "building ivr"
        (cd "$REPO" && cargo build -q --bin ivr) >&2
    fi
    local i p
    for ((i = 0; i <= n; i++)); do
        p=$((SIP_PORT + i))
        port_busy "$p" && die "port $p is taken (set IVR_CLUSTER_SIP_PORT)"
        if [ "$i" -gt 0 ]; then
            p=$((HTTP_PORT + i))
            port_busy "$p" && die "port $p is taken (set IVR_CLUSTER_HTTP_PORT)"
        fi
    done
    rm -rf "$RUN"
    mkdir -p "$RUN"
    # Whatever fails from here on stops what was started.
    STARTED=1
    trap 'die "failed at line $LINENO"' ERR
    if [ -n "${IVR_CLUSTER_DATABASE:-}" ]; then
        DATABASE="$IVR_CLUSTER_DATABASE"
    else
        start_pg
    fi
    echo "$DATABASE" >"$RUN/database"
    local names=(a b c d e f g h i j k l m n o p q r s t u v w x y z)
    : >"$RUN/dispatcher.list"
    for ((i = 1; i <= n; i++)); do
        echo "1 sip:$HOST:$((SIP_PORT + i)) 0 0 name=${names[i - 1]}" >>"$RUN/dispatcher.list"
    done
    local lines=("proxy sip:$HOST:$SIP_PORT")
    local name sip http log
    for ((i = 1; i <= n; i++)); do
        name="${names[i - 1]}"
        sip="$HOST:$((SIP_PORT + i))"
        http="$HOST:$((HTTP_PORT + i))"
        log="$RUN/node-$name.log"
        # shellcheck disable=SC2086
        (cd "$folder" && exec "$bin" --config "$folder/ivr.toml" serve --sip "$sip" \
            --http "$http" --node "$name" --cluster-database "$DATABASE" \
            --sip-via "sip:$HOST:$SIP_PORT" --drain 2s ${IVR_CLUSTER_ARGS:-} \
            </dev/null >"$log" 2>&1) &
        echo $! >"$RUN/node-$name.pid"
        lines+=("node $name sip:$sip http://$http pid $!")
    done
    for ((i = 1; i <= n; i++)); do
        name="${names[i - 1]}"
        log="$RUN/node-$name.log"
        local t=0
        until grep -q "^ivr serve: SIP on" "$log" 2>/dev/null; do
            alive "$RUN/node-$name.pid" || {
                tail -5 "$log" >&2
                die "node $name did not start (its log: $log)"
            }
            t=$((t + 1))
            [ "$t" -le 600 ] || die "node $name did not start within 60 s (its log: $log)"
            sleep 0.1
        done
    done
    kamailio -f "$REPO/deploy/kamailio/kamailio.cfg" -P "$RUN/kamailio.pid" -Y "$RUN" -w "$RUN" \
        -m "${IVR_CLUSTER_KAMAILIO_SHM:-64}" -M 8 -A "LISTEN=udp:$HOST:$SIP_PORT" \
        -A "DISPATCHER_LIST=\"$RUN/dispatcher.list\"" \
        -A "CTL_SOCKET=\"unix:$RUN/kamailio.ctl\"" \
        -E >"$RUN/kamailio.log" 2>&1 ||
        {
            tail -5 "$RUN/kamailio.log" >&2
            die "Kamailio did not start (its log: $RUN/kamailio.log)"
        }
    local t=0
    until [ -s "$RUN/kamailio.pid" ] && port_busy "$SIP_PORT"; do
        t=$((t + 1))
        [ "$t" -le 100 ] || die "Kamailio does not listen on $SIP_PORT (its log: $RUN/kamailio.log)"
        sleep 0.1
    done
    trap - ERR
    STARTED=""
    printf '%s\n' "${lines[@]}"
}

down() {
    [ -d "$RUN" ] || {
        say "nothing is up in $RUN"
        return 0
    }
    local p pid t
    for p in "$RUN"/node-*.pid "$RUN"/kamailio.pid; do
        [ -f "$p" ] || continue
        pid="$(cat "$p")"
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    # Nodes drain for 2 s; whatever still runs after 10 s is killed.
    for p in "$RUN"/node-*.pid "$RUN"/kamailio.pid; do
        [ -f "$p" ] || continue
        pid="$(cat "$p")"
        t=0
        while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
            t=$((t + 1))
            if [ "$t" -gt 100 ]; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
        rm -f "$p"
    done
    # Kamailio's children leave with their parent; any left over are its process group's.
    stop_pg
    if [ -n "${KEEP_LOGS:-}" ]; then
        rm -rf "$RUN/pg" "$RUN"/*.ctl
    else
        rm -rf "$RUN"
    fi
}

case "${1:-}" in
up)
    shift
    up "$@"
    ;;
down) down ;;
*)
    echo "usage: scripts/cluster.sh up N [FOLDER] | down" >&2
    exit 2
    ;;
esac
