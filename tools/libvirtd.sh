#!/bin/bash
# Start or stop a private libvirtd + virtlogd for tests, no systemd needed.
#   tools/libvirtd.sh start   -> starts virtlogd, then libvirtd; waits until
#                                `virsh -c qemu:///system version` answers
#   tools/libvirtd.sh stop    -> stops the daemons this script started (by pid file)
#   tools/libvirtd.sh status  -> exit 0 when qemu:///system answers
# Both commands are idempotent. A libvirtd this script did not start (no pid file
# of ours) is used as it is and never stopped. GC_LIBVIRT_DIR (default
# /tmp/gc-libvirt) holds the pid files and logs.
# Needs: apt-get install -y libvirt-daemon-system libvirt-clients
# (Debian's packages expect systemd socket activation; without it virtlogd must
# run before libvirtd, or QEMU domains fail to start: "Failed to connect socket
# to '/run/libvirt/virtlogd-sock'".)
set -euo pipefail
DIR=${GC_LIBVIRT_DIR:-/tmp/gc-libvirt}
URI=qemu:///system

answers() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }
# a live (not zombie) process named $2 with the pid in file $1
alive() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1
          [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] &&
          ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; }
stop_one() {  # pidfile name
    if alive "$1" "$2"; then
        local pid; pid=$(cat "$1")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do alive "$1" "$2" || break; sleep 0.1; done
        if alive "$1" "$2"; then kill -9 "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$1"
}

case "${1:-}" in
start)
    if answers; then exit 0; fi
    for tool in libvirtd virtlogd virsh; do
        command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y" \
            "libvirt-daemon-system libvirt-clients)" >&2; exit 1; }
    done
    [ "$(id -u)" = 0 ] || { echo "libvirtd (qemu:///system) needs root" >&2; exit 1; }
    mkdir -p "$DIR" /run/libvirt
    if ! alive "$DIR/virtlogd.pid" virtlogd; then
        virtlogd -d -p "$DIR/virtlogd.pid" >>"$DIR/virtlogd.log" 2>&1
    fi
    if ! alive "$DIR/libvirtd.pid" libvirtd; then
        # a stale daemon of ours (hung) or a leftover pid file
        stop_one "$DIR/libvirtd.pid" libvirtd
        libvirtd -d -p "$DIR/libvirtd.pid" >>"$DIR/libvirtd.log" 2>&1
    fi
    for _ in $(seq 1 150); do
        if answers; then exit 0; fi
        sleep 0.2
    done
    echo "libvirtd did not answer on $URI; log:" >&2
    tail -20 "$DIR/libvirtd.log" >&2 || true
    exit 1
    ;;
stop)
    stop_one "$DIR/libvirtd.pid" libvirtd
    stop_one "$DIR/virtlogd.pid" virtlogd
    ;;
status)
    answers
    ;;
*)
    echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
