#!/bin/bash
# Start or stop a throw-away tgtd (iSCSI target daemon) for tests, no systemd needed.
#   tools/tgt.sh start    -> prints the portal (127.0.0.1:3260) on stdout
#   tools/tgt.sh stop     -> stops the tgtd this script started (by its pid file)
#   tools/tgt.sh status   -> exit 0 when tgtd answers on the control port
# GC_TGT_DIR (default /tmp/gc-tgt), GC_TGT_PORTAL (default 127.0.0.1:3260) and
# GC_TGT_CONTROL_PORT (default 0, the port tgtadm/tgt-admin use with -C) pick the
# place. Both commands are idempotent. A tgtd this script did not start (no pid
# file of ours) is used as it is and never stopped.
# Needs: apt-get install -y tgt
set -euo pipefail
DIR=${GC_TGT_DIR:-/tmp/gc-tgt}
PORTAL=${GC_TGT_PORTAL:-127.0.0.1:3260}
CPORT=${GC_TGT_CONTROL_PORT:-0}
PIDFILE=$DIR/tgtd.pid

answers() { tgtadm -C "$CPORT" --op show --mode system >/dev/null 2>&1; }
# a live (not zombie) tgtd process with this pid
alive() { [ "$(cat "/proc/$1/comm" 2>/dev/null)" = tgtd ] &&
          ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
ours() { [ -f "$PIDFILE" ] && alive "$(cat "$PIDFILE")"; }

case "${1:-}" in
start)
    if answers; then echo "$PORTAL"; exit 0; fi
    command -v tgtd >/dev/null || { echo "tgtd is not installed (apt-get install -y tgt)" >&2; exit 1; }
    mkdir -p "$DIR"
    if ours; then kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true; sleep 0.2; fi  # hung
    setsid tgtd -f -C "$CPORT" --iscsi "portal=$PORTAL" >"$DIR/tgtd.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 150); do
        if answers; then echo "$PORTAL"; exit 0; fi
        if ! ours; then break; fi
        sleep 0.2
    done
    echo "tgtd did not start; log:" >&2; cat "$DIR/tgtd.log" >&2 || true
    exit 1
    ;;
stop)
    if ours; then
        PID=$(cat "$PIDFILE")
        # tgtd ignores SIGTERM; this is its own shutdown request
        tgtadm -C "$CPORT" --op delete --mode system >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do alive "$PID" || break; sleep 0.1; done
        if alive "$PID"; then kill -9 "$PID" 2>/dev/null || true; fi
    fi
    rm -f "$PIDFILE"
    ;;
status)
    answers
    ;;
*)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
