#!/bin/bash
# Start or stop a throw-away PostgreSQL for tests (no systemd needed).
#   tools/postgres.sh start   -> prints the oslo.db URL on stdout
#   tools/postgres.sh stop
# GC_PG_DIR (default /tmp/gc-pg) and GC_PG_PORT (default 5439) pick the place.
set -euo pipefail
DIR=${GC_PG_DIR:-/tmp/gc-pg}
PORT=${GC_PG_PORT:-5439}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
URL="postgresql+psycopg2://gc:gc@127.0.0.1:$PORT/gc"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

case "${1:-}" in
start)
    if [ -f "$DIR/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
        echo "$URL"; exit 0
    fi
    rm -rf "$DIR"
    if [ "$(id -u)" = 0 ]; then install -d -o postgres -g postgres -m 700 "$DIR" "$DIR/sock"
    else install -d -m 700 "$DIR" "$DIR/sock"; fi
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR/sock -c fsync=off" start >/dev/null
    psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE USER gc PASSWORD 'gc' CREATEDB" >/dev/null
    psql -q -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE gc OWNER gc" >/dev/null
    echo "$URL"
    ;;
stop)
    if [ -d "$DIR/data" ]; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$DIR"
    ;;
*)
    echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
