#!/bin/bash
# A throw-away single-node Ceph for tests: one monitor, one memstore OSD, one mgr,
# cephx on, pool `rbd` initialised for RBD, clone format v2 allowed (mimic clients).
#   tools/ceph.sh start       -> prints the path of its ceph.conf on stdout (the
#                                client.admin keyring is named in it: `keyring =`)
#   tools/ceph.sh stop        -> ends the daemons (by their pid files), removes the dir
#   tools/ceph.sh stop-osd    -> the OSD goes away (a backend failing mid-copy)
#   tools/ceph.sh start-osd   -> it comes back, with its data (memstore saves on stop)
# GC_CEPH_DIR (default /tmp/gc-ceph) holds everything; GC_CEPH_MON_PORT (6789) and
# GC_CEPH_MON_V2_PORT (3300) pick the monitor's ports. No systemd, no kernel rbd.
# Debian: ceph-mon ceph-osd ceph-mgr ceph-common (and uuid-runtime for uuidgen).
set -euo pipefail
DIR=${GC_CEPH_DIR:-/tmp/gc-ceph}
V1=${GC_CEPH_MON_PORT:-6789}
V2=${GC_CEPH_MON_V2_PORT:-3300}
CONF=$DIR/ceph.conf
MON_ADDR="[v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]"
export CEPH_CONF=$CONF CONF DIR

log() { echo "ceph.sh: $*" >&2; }
die() { log "$*"; [ -d "$DIR/log" ] && tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null; exit 1; }
# Every CLI call is bounded: a cluster without quorum must not hang the caller.
cli() { timeout 60 "$@" --conf "$CONF"; }
ceph_() { cli ceph --connect-timeout 30 "$@"; }

pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }
# Alive and not a zombie (PID 1 of a container may never reap daemons' children).
running() {
    local pid; pid=$(pid_of "$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && ! awk '{exit $3!="Z"}' "/proc/$pid/stat"
}
wait_gone() {  # $1 daemon name; TERM then, after 30 s, KILL
    local pid; pid=$(pid_of "$1")
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    if ! timeout 30 bash -c "while [ -r /proc/$pid/stat ] && awk '{exit \$3==\"Z\"}' /proc/$pid/stat; do sleep 0.1; done"; then
        log "$1 (pid $pid) ignored TERM for 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        timeout 10 bash -c "while [ -r /proc/$pid/stat ] && awk '{exit \$3==\"Z\"}' /proc/$pid/stat; do sleep 0.1; done" || true
    fi
    rm -f "$DIR/run/$1.pid"
}
up_osds() { ceph_ osd stat -f json 2>/dev/null | sed -n 's/.*"num_up_osds":\([0-9]*\).*/\1/p'; }
all_pgs_active() { ceph_ pg stat 2>/dev/null | grep -Eq '^([0-9]+) pgs: \1 active'; }
export -f cli ceph_ up_osds all_pgs_active
wait_osd_up() {
    timeout 120 bash -c 'until [ "$(up_osds)" = 1 ]; do sleep 0.2; done' \
        || die "the OSD did not come up within 120 s"
    # ...and every placement group active, so client I/O does not wait
    timeout 120 bash -c 'until all_pgs_active; do sleep 0.2; done' \
        || die "placement groups did not become active within 120 s"
}
start_osd() {
    ceph-osd -i 0 --conf "$CONF" --keyring "$DIR/osd.0/keyring" 2>>"$DIR/log/stderr.log" \
        || die "ceph-osd did not start"
}

write_conf() {
    cat > "$CONF" <<EOF
[global]
fsid = $1
mon host = $MON_ADDR
public addr = 127.0.0.1
public network = 127.0.0.0/8
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
auth allow insecure global id reclaim = false
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = $DIR/\$name
[osd]
osd data = $DIR/\$name
osd objectstore = memstore
memstore device bytes = 2147483648
# a full shutdown on TERM: memstore saves its objects, so stop-osd/start-osd keep data
osd fast shutdown = false
[mgr]
mgr data = $DIR/\$name
mgr disabled modules = alerts influx insights iostat localpool mirroring nfs osd_perf_query osd_support prometheus restful selftest snap_schedule stats telegraf test_orchestrator zabbix diskprediction_local
EOF
}

stop_all() {
    for d in mgr.x osd.0 mon.a; do wait_gone "$d"; done
    rm -rf "$DIR"
}

start() {
    if running mon.a && running osd.0 && running mgr.x && ceph_ -s >/dev/null 2>&1; then
        echo "$CONF"; return 0
    fi
    [ -d "$DIR" ] && { log "removing the remains of an earlier cluster in $DIR"; stop_all; }
    for tool in ceph-mon ceph-osd ceph-mgr ceph ceph-authtool monmaptool rbd uuidgen; do
        command -v "$tool" >/dev/null || die "$tool is missing (apt-get install -y ceph-mon ceph-osd ceph-mgr ceph-common uuid-runtime)"
    done
    mkdir -p "$DIR"/{mon.a,osd.0,mgr.x,run,log}
    local fsid osd_uuid id
    fsid=$(uuidgen)
    write_conf "$fsid"
    {
        ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *'
        ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' \
            --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *'
        chmod 600 "$DIR/keyring"
        monmaptool --create --fsid "$fsid" --addv a "$MON_ADDR" "$DIR/monmap"
        ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
    } >/dev/null 2>>"$DIR/log/stderr.log" || die "could not make the monitor"
    ceph-mon -i a 2>>"$DIR/log/stderr.log" || die "ceph-mon did not start"
    timeout 60 bash -c 'until ceph_ -s >/dev/null 2>&1; do sleep 0.2; done' \
        || die "the monitor did not answer within 60 s"
    osd_uuid=$(uuidgen)
    id=$(ceph_ osd new "$osd_uuid")
    [ "$id" = 0 ] || die "ceph osd new gave id $id, expected 0"
    {
        ceph-authtool --create-keyring "$DIR/osd.0/keyring" --gen-key -n osd.0
        ceph_ auth add osd.0 osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' \
            -i "$DIR/osd.0/keyring"
        # --osd-uuid must be the one given to `ceph osd new`, or the OSD never comes up
        ceph-osd -i 0 --conf "$CONF" --mkfs --osd-uuid "$osd_uuid" --keyring "$DIR/osd.0/keyring"
    } >/dev/null 2>>"$DIR/log/stderr.log" || die "could not make the OSD"
    start_osd
    ceph_ auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        > "$DIR/mgr.x/keyring" 2>>"$DIR/log/stderr.log" || die "could not make the mgr key"
    # without a mgr, `ceph df` and librados report zero capacity
    ceph-mgr -i x --conf "$CONF" --keyring "$DIR/mgr.x/keyring" 2>>"$DIR/log/stderr.log" \
        || die "ceph-mgr did not start"
    timeout 120 bash -c 'until [ "$(up_osds)" = 1 ]; do sleep 0.2; done' \
        || die "the OSD did not come up within 120 s"
    {
        ceph_ osd pool create rbd 8 8
        ceph_ osd pool application enable rbd rbd
        cli rbd pool init rbd
        ceph_ osd set-require-min-compat-client mimic  # clone format v2
    } >/dev/null 2>>"$DIR/log/stderr.log" || die "could not create pool rbd"
    wait_osd_up
    echo "$CONF"
}

case "${1:-}" in
start) start ;;
stop) stop_all ;;
stop-osd)
    [ -f "$CONF" ] || die "no cluster in $DIR"
    wait_gone osd.0  # TERM: the OSD tells the monitor it is going, memstore saves its data
    timeout 60 bash -c 'until [ "$(up_osds)" = 0 ]; do sleep 0.2; done' \
        || die "the monitor still counts the OSD as up after 60 s"
    ;;
start-osd)
    [ -f "$CONF" ] || die "no cluster in $DIR"
    running osd.0 || start_osd
    wait_osd_up
    ;;
*)
    echo "usage: $0 start|stop|stop-osd|start-osd" >&2; exit 2 ;;
esac
