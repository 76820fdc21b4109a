#!/bin/bash
# Start or stop a real OpenStack Nova 34 stack for tests (no systemd needed, runs as root).
#   tools/nova.sh start   -> prints `export ...` lines on stdout (OS_* for the admin,
#                            NOVA_URL, GC_NOVA_MEMBER_* for a member of a second
#                            project, GC_NOVA_CONFIG_DIR); everything else goes to
#                            stderr and to $GC_NOVA_DIR/log/*.log
#   tools/nova.sh stop    -> stops every process it started (pid files), deletes the
#                            ci-* libvirt domains, drops its databases, removes the state dir
#   tools/nova.sh restart gridcentric-compute|gridcentric-api
#                         -> starts that service again the way `start` does (after a
#                            test killed it) and waits until it serves
#   tools/nova.sh venv    -> only builds (or checks) the venv and installs this checkout
#                            in it, as `start` would, without touching any server or
#                            $GC_NOVA_DIR (log: $GC_NOVA_DIR.venv.log): tools/run-tests.sh
#                            runs it in the background while the other lanes' tests run
# Both start and stop are idempotent: `start` on a running stack only prints the
# exports again.
#
# What runs (all real, from one venv pinned by tools/nova-constraints.txt):
#   Keystone, Placement, Glance (file store), nova-api (WSGI) under gunicorn;
#   nova-conductor, nova-scheduler, nova-compute (libvirt, virt_type=qemu, file-backed
#   guest RAM) against the libvirtd of tools/libvirtd.sh; the only fake is
#   tools/neutron_standin.py, registered as the 'network' service (servers are
#   booted with networks='none'). Databases keystone, placement, glance, nova_api,
#   nova_cell0, nova live on the PostgreSQL of $GC_TEST_PG_URL and the RPC bus is
#   $GC_TEST_RABBIT_URL; when unset, tools/postgres.sh / tools/rabbitmq.sh are
#   started here (and stopped by `stop`).
# It is a gridcentric-storage deployment: the checkout this script is in is installed
# into the venv (`pip install --no-deps -e`, its .pth makes `compute_driver =
# gridcentric.LibvirtDriver` importable), nova.conf names that driver, its
# [gridcentric] live_images_path and the LiveImageHostFilter, nova-api's paste
# pipeline carries the gridcentric filter, and gridcentric-api (Cobalt's RPC
# endpoint, [nova] enabled) and gridcentric-compute (libvirt, host = nova-compute's
# host) run from the checkout's own venv ($GC_VENV, default .venv) with the config
# $GC_NOVA_GC_CONFIG, database `gridcentric` on the same PostgreSQL. Their [nova]
# service credentials are the `gridcentric` service user (admin role in project
# service, like Nova's own service users): a test stack's choice, not advice.
# Test content: image $GC_NOVA_IMAGE (the test guest of tools/build-test-guest.sh,
# booted the AMI way: kernel_id/ramdisk_id properties + a 1 MiB raw root disk) and
# flavor $GC_NOVA_FLAVOR (128 MiB, 1 vCPU, 1 GB disk).
#
# The operator's edit to nova-api (what a deployment of gridcentric-storage does):
# in nova's api-paste.ini, add
#     [filter:gridcentric]
#     paste.filter_factory = <module>:<factory>
# and put `gridcentric` right after `keystonecontext` in each pipeline of
# [composite:openstack_compute_api_v21] (there the filter sees environ['nova.context']).
# GC_NOVA_PASTE_FILTER=<module>:<factory> (default
# gridcentric_storage.nova.api_filter:filter_factory, with the local option
# config_file = $GC_NOVA_GC_CONFIG) is the filter `start` inserts that way in
# $GC_NOVA_DIR/etc/nova/api-paste.ini; set to the empty string, the pipeline is
# nova's stock one.
#
# Settings: GC_NOVA_DIR (state, default /tmp/gc-nova), GC_NOVA_VENV (default
# /opt/gc-nova-venv; built on first use, reused after), GC_NOVA_PORT_BASE (default
# 18700: keystone, placement, glance, nova-api, neutron stand-in, gridcentric-api on
# base+0..5),
# GC_NOVA_PASSWORD (every user's password, default gc-nova-secret).
# Needs: python3-venv, libvirt-dev, pkg-config, gcc, libc6-dev (libvirt-python
# builds), curl, qemu,
# libvirt-daemon-system, postgresql, rabbitmq-server, linux-image-amd64 and
# busybox-static (test guest).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
D=${GC_NOVA_DIR:-/tmp/gc-nova}
V=${GC_NOVA_VENV:-/opt/gc-nova-venv}
BASE=${GC_NOVA_PORT_BASE:-18700}
PASSWORD=${GC_NOVA_PASSWORD:-gc-nova-secret}
export GC_NOVA_DIR=$D GC_NOVA_PASSWORD=$PASSWORD
export GC_NOVA_KEYSTONE_URL=http://127.0.0.1:$BASE
export GC_NOVA_PLACEMENT_URL=http://127.0.0.1:$((BASE + 1))
export GC_NOVA_GLANCE_URL=http://127.0.0.1:$((BASE + 2))
export GC_NOVA_API_URL=http://127.0.0.1:$((BASE + 3))
export GC_NOVA_NEUTRON_URL=http://127.0.0.1:$((BASE + 4))
export GC_NOVA_MEMBER_USER=gc-member GC_NOVA_MEMBER_PROJECT=gc-other
export GC_NOVA_IMAGE=gc-test-guest GC_NOVA_FLAVOR=gc-tiny
export GC_NOVA_GUEST_DIR=${GC_GUEST_DIR:-/var/cache/gridcentric-storage/test-guest}
TOP=$(cd "$HERE/.." && pwd)
VENV_LOG=$D/log/venv.log
GCV=${GC_VENV:-$TOP/.venv}
export GC_API_URL=http://127.0.0.1:$((BASE + 5))
export GC_NOVA_GC_CONFIG=$D/etc/gridcentric-storage/gridcentric-storage.conf
PASTE_FILTER=${GC_NOVA_PASTE_FILTER-gridcentric_storage.nova.api_filter:filter_factory}
# nova-compute's [DEFAULT] host and gridcentric-compute's: bless RPC goes to the
# gridcentric-compute named like the Nova instance's host
HOST=$(hostname)
GUNICORN_APPS="keystone placement glance neutron nova-api"
DAEMONS="nova-conductor nova-scheduler nova-compute"
GC_DAEMONS="gridcentric-api gridcentric-compute"
DBS="keystone placement glance nova_api nova_cell0 nova gridcentric"
LIBVIRT_URI=qemu:///system

log() { echo "nova.sh: $*" >&2; }
die() { log "$*"; exit 1; }
# a live (not zombie) process with the pid in file $1
alive() { local pid; pid=$(cat "$1" 2>/dev/null) || return 1
          [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
          ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$pid/stat" 2>/dev/null; }
since() { echo "$(( $(date +%s) - $1 )) s"; }

# --- the venv -------------------------------------------------------------------------
ensure_venv() {
    local stamp="$V/.gc-nova-constraints" want
    want=$(sha256sum "$HERE/nova-constraints.txt" | cut -d' ' -f1)
    if [ -x "$V/bin/nova-compute" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        return 0
    fi
    local t0; t0=$(date +%s)
    log "building the venv $V (a few minutes; log $VENV_LOG)"
    [ -x "$V/bin/python" ] || /usr/bin/python3 -m venv "$V"
    # Debian's venv comes with pip 23 and setuptools 66, which have no bdist_wheel:
    # the --no-build-isolation editable install of ensure_gc_in_venv needs wheel
    if ! "$V/bin/pip" install -U pip setuptools wheel >>"$VENV_LOG" 2>&1 ||
       ! "$V/bin/pip" install -c "$HERE/nova-constraints.txt" nova openstack-placement glance \
            keystone python-openstackclient python-novaclient gunicorn psycopg2-binary \
            libvirt-python >>"$VENV_LOG" 2>&1; then
        tail -20 "$VENV_LOG" >&2; die "pip install failed"
    fi
    echo "$want" > "$stamp"
    log "venv ready in $(since "$t0")"
}

# What gridcentric-storage's nova-side modules import that Nova's venv lacks (pinned
# in nova-constraints.txt with the rest).
GC_VENV_EXTRAS="qemu.qmp"

ensure_gc_in_venv() {  # this checkout, editable, in Nova's venv (nova-api, nova-compute,
    # nova-scheduler import our filters and driver from it)
    local stamp="$V/.gc-storage-install" want
    want="$TOP $(cat "$TOP/setup.cfg" "$TOP/setup.py" "$TOP/pyproject.toml" "$TOP"/*.pth \
                 "$HERE/nova-constraints.txt" 2>/dev/null | sha256sum | cut -d' ' -f1)"
    [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
    # pbr and setuptools are in the venv already: no isolated build env to download
    if ! "$V/bin/pip" install -c "$HERE/nova-constraints.txt" --no-build-isolation --no-deps \
            -e "$TOP" $GC_VENV_EXTRAS >>"$VENV_LOG" 2>&1; then
        tail -20 "$VENV_LOG" >&2; die "pip install -e $TOP into $V failed"
    fi
    echo "$want" > "$stamp"
}

# --- PostgreSQL / RabbitMQ / libvirtd ---------------------------------------------------
ensure_backends() {
    # stop ends only what this start brought up, not a server someone else runs
    if [ -z "${GC_TEST_PG_URL:-}" ]; then
        [ -f "${GC_PG_DIR:-/tmp/gc-pg}/data/postmaster.pid" ] || touch "$D/started-postgres"
        GC_TEST_PG_URL=$(bash "$HERE/postgres.sh" start)
    fi
    if [ -z "${GC_TEST_RABBIT_URL:-}" ]; then
        [ -f "${GC_RABBIT_DIR:-/tmp/gc-rabbit}/rabbit.pid" ] || touch "$D/started-rabbitmq"
        GC_TEST_RABBIT_URL=$(bash "$HERE/rabbitmq.sh" start)
    fi
    if ! bash "$HERE/libvirtd.sh" status; then
        bash "$HERE/libvirtd.sh" start; touch "$D/started-libvirtd"
    fi
    # Nova's file_backed_memory puts guest RAM in qemu.conf's memory_backing_dir
    # (libvirt's default /var/lib/libvirt/qemu/ram unless configured).
    local mbd
    mbd=$(sed -n 's/^[[:space:]]*memory_backing_dir[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' \
          /etc/libvirt/qemu.conf 2>/dev/null | tail -n 1)
    mkdir -p "${mbd:-/var/lib/libvirt/qemu/ram}"
    # The shared test Ceph (tools/ceph.sh, never stopped here) is the live image
    # store: bless publishes there, a clone without the local files reads it back.
    if [ -z "${GC_TEST_CEPH_CONF:-}" ] && command -v ceph-mon >/dev/null &&
            command -v rbd-fuse >/dev/null; then
        GC_TEST_CEPH_CONF=$(bash "$HERE/ceph.sh" start) || GC_TEST_CEPH_CONF=
    fi
    echo "$GC_TEST_PG_URL" > "$D/pg_url"
    # oslo.db URL of the test database -> the same server, another database
    PG_BASE=${GC_TEST_PG_URL%/*}
}

psql_admin() {  # SQL... on the server of $GC_TEST_PG_URL as its user, database postgres
    "$V/bin/python" - "$(cat "$D/pg_url")" "$@" <<'EOF'
import sys
import sqlalchemy as sa
url = sa.engine.make_url(sys.argv[1]).set(database='postgres')
eng = sa.create_engine(url, isolation_level='AUTOCOMMIT')
with eng.connect() as c:
    for sql in sys.argv[2:]:
        c.execute(sa.text(sql))
EOF
}

create_dbs() {
    local sql=()
    for db in $DBS; do
        sql+=("DROP DATABASE IF EXISTS $db WITH (FORCE)" "CREATE DATABASE $db")
    done
    psql_admin "${sql[@]}"
}

# --- configuration ----------------------------------------------------------------------
authtoken() {  # [keystone_authtoken]-style section body for service user $1
    cat <<EOF
www_authenticate_uri = $GC_NOVA_KEYSTONE_URL
auth_url = $GC_NOVA_KEYSTONE_URL
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PASSWORD
region_name = RegionOne
EOF
}

write_configs() {
    local E=$D/etc
    mkdir -p "$E/keystone" "$E/placement" "$E/glance" "$E/nova" "$D/data/keystone" \
        "$D/data/glance/images" "$D/data/glance/staging" "$D/data/glance/tasks" \
        "$D/data/nova/instances" "$D/data/nova/locks"
    cat > "$E/keystone/keystone.conf" <<EOF
[database]
connection = $PG_BASE/keystone
[token]
provider = fernet
[fernet_tokens]
key_repository = $D/data/keystone/fernet-keys
[fernet_receipts]
key_repository = $D/data/keystone/fernet-keys
[credential]
key_repository = $D/data/keystone/credential-keys
EOF
    cat > "$E/placement/placement.conf" <<EOF
[placement_database]
connection = $PG_BASE/placement
[api]
auth_strategy = keystone
[keystone_authtoken]
$(authtoken placement)
EOF
    cat > "$E/glance/glance-api.conf" <<EOF
[DEFAULT]
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $D/data/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $D/data/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $D/data/glance/tasks
[database]
connection = $PG_BASE/glance
[paste_deploy]
flavor = keystone
[keystone_authtoken]
$(authtoken glance)
EOF
    cp "$(glance_paste)" "$E/glance/glance-api-paste.ini"
    # shared by gridcentric-api (seals the hosts of a clone's hint) and nova-scheduler
    HINT_KEY=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    cat > "$E/nova/nova.conf" <<EOF
[DEFAULT]
transport_url = $GC_TEST_RABBIT_URL
host = $HOST
compute_driver = gridcentric.LibvirtDriver
state_path = $D/data/nova
instances_path = $D/data/nova/instances
instance_name_template = ci-%(uuid)s
ram_allocation_ratio = 1.0
reserved_host_memory_mb = 0
graceful_shutdown_timeout = 10
manager_shutdown_timeout = 5
my_ip = 127.0.0.1
[api_database]
connection = $PG_BASE/nova_api
[database]
connection = $PG_BASE/nova
[keystone_authtoken]
$(authtoken nova)
[placement]
$(authtoken placement)
[neutron]
$(authtoken neutron)
[glance]
region_name = RegionOne
[service_user]
send_service_user_token = false
[libvirt]
virt_type = qemu
connection_uri = $LIBVIRT_URI
file_backed_memory = 4096
[oslo_concurrency]
lock_path = $D/data/nova/locks
$(privsep_sections)
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
[filter_scheduler]
available_filters = nova.scheduler.filters.all_filters
available_filters = gridcentric_storage.nova.scheduler_filter.LiveImageHostFilter
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,LiveImageHostFilter
[gridcentric]
live_images_path = $D/data/live-images
scheduler_hint_key = $HINT_KEY
$(if [ -n "${GC_TEST_CEPH_CONF:-}" ]; then echo 'published_live_images = true'; fi)
EOF
    cp "$(nova_paste)" "$E/nova/api-paste.ini"
    if [ -n "$PASTE_FILTER" ]; then
        paste_hook "$E/nova/api-paste.ini" "$PASTE_FILTER" "$GC_NOVA_GC_CONFIG"
    fi
    write_gc_config
}

write_gc_config() {  # gridcentric-api and gridcentric-compute of this stack
    local G=$D/data/gridcentric
    mkdir -p "${GC_NOVA_GC_CONFIG%/*}" "$G" "$D/data/live-images"
    cat > "$GC_NOVA_GC_CONFIG" <<EOF
[DEFAULT]
host = $HOST
state_path = $G
transport_url = $GC_TEST_RABBIT_URL
[database]
connection = $PG_BASE/gridcentric
[api]
listen = 127.0.0.1
port = $((BASE + 5))
auth_strategy = keystone
api_paste_config = $TOP/etc/gridcentric-storage/api-paste.ini
[keystone_authtoken]
$(authtoken gridcentric)
[compute]
virt_driver = libvirt
hooks_dir = $G/hooks.d
[libvirt]
uri = $LIBVIRT_URI
instances_path = $G/instances
# the same directory as nova.conf's [gridcentric] live_images_path: bless writes
# there, nova-compute's driver resumes clones from there
live_images_path = $D/data/live-images
[nova]
enabled = true
scheduler_hint_key = $HINT_KEY
$(authtoken gridcentric | grep -v '^www_authenticate_uri')
EOF
    if [ -n "${GC_TEST_CEPH_CONF:-}" ]; then
        cat >> "$GC_NOVA_GC_CONFIG" <<EOF
[live_image_store]
enabled = true
ceph_conf = $GC_TEST_CEPH_CONF
pool = rbd
mount_root = $G/live-image-store
EOF
    fi
}

privsep_sections() {  # we already are root: no sudo/rootwrap in front of privsep-helper
    local section
    for section in nova_sys_admin privsep_osbrick vif_plug_ovs_privileged \
            vif_plug_linux_bridge_privileged; do
        printf '[%s]\nhelper_command = %s --config-file %s\n' "$section" \
            "$V/bin/privsep-helper" "$D/etc/nova/nova.conf"
    done
}

nova_paste() { echo "$V/etc/nova/api-paste.ini"; }
glance_paste() { echo "$V/etc/glance/glance-api-paste.ini"; }

paste_hook() {  # api-paste.ini factory config: the operator's edit described in the header
    printf '\n[filter:gridcentric]\npaste.filter_factory = %s\nconfig_file = %s\n' \
        "$2" "$3" >> "$1"
    awk '/^\[/ { v21 = ($0 == "[composite:openstack_compute_api_v21]") }
         v21 && /keystonecontext/ { sub(/keystonecontext/, "keystonecontext gridcentric") }
         { print }' "$1" > "$1.new"
    mv "$1.new" "$1"
    grep -q 'keystonecontext gridcentric' "$1" || die "could not insert the paste filter"
}

# --- processes --------------------------------------------------------------------------
launch() {  # name command... (in its own session: stop ends the whole group)
    local name=$1; shift
    setsid nohup "$@" >>"$D/log/$name.log" 2>&1 </dev/null &
    echo $! > "$D/run/$name.pid"
}

gunicorn_app() {  # name port module-with-application [VAR=value...]
    local name=$1 port=$2 module=$3; shift 3
    launch "$name" env "$@" PYTHONPATH="$HERE:$HERE/nova" "$V/bin/gunicorn" \
        --no-control-socket -k gthread --threads 4 -w 1 -b "127.0.0.1:$port" \
        --timeout 120 --graceful-timeout 10 "wsgi_apps:app('$module')"
}

wait_url() {  # name url [seconds]
    local t=${3:-120} end
    end=$(( $(date +%s) + t ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if curl -s -o /dev/null -m 5 "$2"; then return 0; fi
        alive "$D/run/$1.pid" || { tail -30 "$D/log/$1.log" >&2; die "$1 exited"; }
        sleep 0.2
    done
    tail -30 "$D/log/$1.log" >&2; die "$1 did not answer on $2 within $t s"
}

run_step() {  # name command...: a setup command, its output in log/setup-<name>.log
    local name=$1; shift
    if ! "$@" >>"$D/log/setup-$name.log" 2>&1; then
        tail -30 "$D/log/setup-$name.log" >&2; die "setup step $name failed: $*"
    fi
}

keystone_setup() {
    local C=(--config-file "$D/etc/keystone/keystone.conf")
    run_step keystone "$V/bin/keystone-manage" "${C[@]}" db_sync
    run_step keystone "$V/bin/keystone-manage" "${C[@]}" fernet_setup \
        --keystone-user root --keystone-group root
    run_step keystone "$V/bin/keystone-manage" "${C[@]}" credential_setup \
        --keystone-user root --keystone-group root
    run_step keystone "$V/bin/keystone-manage" "${C[@]}" bootstrap \
        --bootstrap-password "$PASSWORD" --bootstrap-username admin \
        --bootstrap-project-name admin --bootstrap-role-name admin \
        --bootstrap-service-name keystone --bootstrap-region-id RegionOne \
        --bootstrap-admin-url "$GC_NOVA_KEYSTONE_URL" \
        --bootstrap-public-url "$GC_NOVA_KEYSTONE_URL" \
        --bootstrap-internal-url "$GC_NOVA_KEYSTONE_URL"
}

nova_db_setup() {
    local M=("$V/bin/nova-manage" --config-file "$D/etc/nova/nova.conf")
    run_step nova "${M[@]}" api_db sync
    run_step nova "${M[@]}" cell_v2 map_cell0 --database_connection "$PG_BASE/nova_cell0"
    run_step nova "${M[@]}" cell_v2 create_cell --name cell1
    run_step nova "${M[@]}" db sync
}

exports() {
    cat <<EOF
export OS_AUTH_URL=$GC_NOVA_KEYSTONE_URL/v3
export OS_USERNAME=admin
export OS_PASSWORD=$PASSWORD
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_IDENTITY_API_VERSION=3
export NOVA_URL=$GC_NOVA_API_URL/v2.1
export GC_NOVA_MEMBER_USERNAME=$GC_NOVA_MEMBER_USER
export GC_NOVA_MEMBER_PASSWORD=$PASSWORD
export GC_NOVA_MEMBER_PROJECT_NAME=$GC_NOVA_MEMBER_PROJECT
export GC_NOVA_CONFIG_DIR=$D/etc/nova
export GC_NOVA_IMAGE=$GC_NOVA_IMAGE
export GC_NOVA_FLAVOR=$GC_NOVA_FLAVOR
export GC_NOVA_VENV=$V
export GC_NOVA_STORE_CEPH_CONF=${GC_TEST_CEPH_CONF:-}
export GC_NOVA_DIR=$D
export GC_NOVA_GC_CONFIG=$GC_NOVA_GC_CONFIG
export GC_API_URL=$GC_API_URL
EOF
}

all_alive() {
    local name
    for name in $GUNICORN_APPS $DAEMONS $GC_DAEMONS; do
        alive "$D/run/$name.pid" || return 1
    done
}

gc_launch() {  # name: a gridcentric-storage service from the checkout's venv
    launch "$1" "$GCV/bin/$1" --config-file "$GC_NOVA_GC_CONFIG"
}

gc_compute_up_since() {  # epoch: gridcentric-compute heartbeat after it (its RPC
    # server consumes before the first heartbeat)
    "$V/bin/python" - "$PG_BASE/gridcentric" "$HOST" "$1" <<'EOF'
import sys
import sqlalchemy as sa
with sa.create_engine(sys.argv[1]).connect() as c:
    seen = c.execute(sa.text(
        "SELECT extract(epoch FROM last_seen_at) FROM services"
        " WHERE host = :host AND topic = 'gridcentric'"), {'host': sys.argv[2]}).scalar()
sys.exit(0 if seen is not None and float(seen) >= float(sys.argv[3]) else 1)
EOF
}

wait_gc_compute() {  # epoch
    local end=$(( $(date +%s) + 120 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        gc_compute_up_since "$1" && return 0
        alive "$D/run/gridcentric-compute.pid" ||
            { tail -30 "$D/log/gridcentric-compute.log" >&2; die "gridcentric-compute exited"; }
        sleep 0.2
    done
    tail -30 "$D/log/gridcentric-compute.log" >&2
    die "gridcentric-compute did not report within 120 s"
}

compute_registered() {  # the compute node is in cell1 and its inventory in placement
    # (the scheduler finds no host before both, so a test booting right after start races)
    "$V/bin/python" - "$PG_BASE/nova" "$PG_BASE/placement" <<'EOF'
import sys
import sqlalchemy as sa
with sa.create_engine(sys.argv[1]).connect() as c:
    nodes = c.execute(sa.text('SELECT count(*) FROM compute_nodes WHERE deleted = 0')).scalar()
with sa.create_engine(sys.argv[2]).connect() as c:
    inventory = c.execute(sa.text('SELECT count(*) FROM inventories')).scalar()
sys.exit(0 if nodes and inventory else 1)
EOF
}

start() {
    if [ -f "$D/exports" ] && all_alive; then cat "$D/exports"; return 0; fi
    if [ -d "$D" ]; then log "cleaning up a partial stack in $D"; stop; fi
    local t0 t1; t0=$(date +%s)
    mkdir -p "$D/run" "$D/log"; chmod 755 "$D"
    [ -x "$GCV/bin/gridcentric-api" ] ||
        die "$GCV has no gridcentric-api: build the checkout's venv first (tools/run-tests.sh does)"
    ensure_venv
    ensure_gc_in_venv
    ensure_backends
    [ -r "$GC_NOVA_GUEST_DIR/vmlinuz" ] || run_step guest bash "$HERE/build-test-guest.sh" "$GC_NOVA_GUEST_DIR"
    t1=$(date +%s)
    create_dbs
    write_configs
    # each *-manage pays its imports; run the four services' schemas side by side
    keystone_setup & local kpid=$!
    run_step placement "$V/bin/placement-manage" --config-file "$D/etc/placement/placement.conf" db sync & local ppid=$!
    run_step glance "$V/bin/glance-manage" --config-file "$D/etc/glance/glance-api.conf" db_sync & local gpid=$!
    nova_db_setup & local npid=$!
    run_step gridcentric "$GCV/bin/gridcentric-manage" --config-file "$GC_NOVA_GC_CONFIG" \
        db sync & local gcpid=$!
    wait $kpid; wait $ppid; wait $gpid
    log "keystone, placement, glance schemas ready after $(since "$t1")"
    gunicorn_app keystone "$BASE" keystone.wsgi.api \
        OS_KEYSTONE_CONFIG_DIR="$D/etc/keystone"
    gunicorn_app placement $((BASE + 1)) placement.wsgi.api \
        OS_PLACEMENT_CONFIG_DIR="$D/etc/placement"
    gunicorn_app glance $((BASE + 2)) glance.wsgi.api \
        OS_GLANCE_CONFIG_DIR="$D/etc/glance"
    gunicorn_app neutron $((BASE + 4)) neutron_standin
    wait_url keystone "$GC_NOVA_KEYSTONE_URL/v3"
    run_step cloud "$V/bin/python" "$HERE/nova/cloud_setup.py" identity
    wait $npid
    log "nova cells ready after $(since "$t1")"
    for name in $DAEMONS; do
        launch "$name" env PATH="$V/bin:$PATH" "$V/bin/$name" --config-file "$D/etc/nova/nova.conf"
    done
    gunicorn_app nova-api $((BASE + 3)) nova.wsgi.osapi_compute \
        OS_NOVA_CONFIG_DIR="$D/etc/nova"
    wait $gcpid
    local t_gc; t_gc=$(date +%s)
    for name in $GC_DAEMONS; do gc_launch "$name"; done
    wait_url glance "$GC_NOVA_GLANCE_URL/versions"
    run_step cloud "$V/bin/python" "$HERE/nova/cloud_setup.py" image
    wait_url placement "$GC_NOVA_PLACEMENT_URL/"
    wait_url neutron "$GC_NOVA_NEUTRON_URL/"
    wait_url nova-api "$GC_NOVA_API_URL/"
    wait_url gridcentric-api "$GC_API_URL/"
    run_step cloud "$V/bin/python" "$HERE/nova/cloud_setup.py" flavor
    local end=$(( $(date +%s) + 180 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        compute_registered && break
        alive "$D/run/nova-compute.pid" || { tail -30 "$D/log/nova-compute.log" >&2; die "nova-compute exited"; }
        sleep 0.2
    done
    compute_registered || die "nova-compute did not register (cell1 + placement) within 180 s"
    wait_gc_compute "$t_gc"
    run_step nova "$V/bin/nova-manage" --config-file "$D/etc/nova/nova.conf" cell_v2 discover_hosts --verbose
    all_alive || die "a service exited during start; see $D/log"
    exports > "$D/exports"
    log "stack ready in $(since "$t0") ($(since "$t1") after the venv and backends)"
    cat "$D/exports"
}

stop_pidfile() {  # pidfile: TERM the process group, KILL what is left after 30 s
    local pid; pid=$(cat "$1" 2>/dev/null) || return 0
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    fi
}

stop() {
    local name pid
    for name in $GC_DAEMONS $GUNICORN_APPS $DAEMONS; do stop_pidfile "$D/run/$name.pid"; done
    for _ in $(seq 1 150); do
        local left=0
        for name in $GC_DAEMONS $GUNICORN_APPS $DAEMONS; do
            pid=$(cat "$D/run/$name.pid" 2>/dev/null) || continue
            if kill -0 -- "-$pid" 2>/dev/null; then left=1; fi
        done
        [ $left = 0 ] && break
        sleep 0.2
    done
    for name in $GC_DAEMONS $GUNICORN_APPS $DAEMONS; do
        pid=$(cat "$D/run/$name.pid" 2>/dev/null) || continue
        if kill -0 -- "-$pid" 2>/dev/null; then
            log "$name did not stop in 30 s: killing it"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done
    if bash "$HERE/libvirtd.sh" status; then
        for dom in $(virsh -c "$LIBVIRT_URI" list --all --name | grep '^ci-' || true); do
            virsh -c "$LIBVIRT_URI" destroy "$dom" >/dev/null 2>&1 || true
            virsh -c "$LIBVIRT_URI" undefine --nvram "$dom" >/dev/null 2>&1 ||
                virsh -c "$LIBVIRT_URI" undefine "$dom" >/dev/null 2>&1 || true
        done
    fi
    # rbd-fuse mounts of published live images a stopped gridcentric-compute left
    # (clones mapped them): detach before rm -rf walks into them
    local mnt
    for mnt in $(awk -v d="$D/" 'index($2, d) == 1 && $3 ~ /fuse/ { print $2 }' /proc/mounts); do
        fusermount -u -z "$mnt" 2>/dev/null || true
    done
    if [ -f "$D/started-libvirtd" ]; then bash "$HERE/libvirtd.sh" stop; fi
    if [ -f "$D/started-rabbitmq" ]; then bash "$HERE/rabbitmq.sh" stop; fi
    if [ -f "$D/started-postgres" ]; then bash "$HERE/postgres.sh" stop
    elif [ -f "$D/pg_url" ] && [ -x "$V/bin/python" ]; then
        local sql=(); for db in $DBS; do sql+=("DROP DATABASE IF EXISTS $db WITH (FORCE)"); done
        psql_admin "${sql[@]}" 2>/dev/null || log "could not drop the databases (server gone?)"
    fi
    rm -rf "$D"
}

restart() {  # a gridcentric service of a running stack, e.g. after a test killed it
    local name=${1:-}
    case " $GC_DAEMONS " in *" $name "*) ;; *) die "restart: one of $GC_DAEMONS" ;; esac
    [ -f "$D/exports" ] || die "no stack in $D"
    PG_BASE=$(cat "$D/pg_url"); PG_BASE=${PG_BASE%/*}
    local pid t0
    pid=$(cat "$D/run/$name.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        stop_pidfile "$D/run/$name.pid"
        for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    fi
    t0=$(date +%s)
    gc_launch "$name"
    if [ "$name" = gridcentric-api ]; then wait_url "$name" "$GC_API_URL/"
    else wait_gc_compute "$t0"; fi
    log "$name restarted in $(since "$t0")"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
restart) restart "${2:-}" ;;
venv) VENV_LOG=$D.venv.log; : > "$VENV_LOG"; ensure_venv; ensure_gc_in_venv ;;
*) echo "usage: $0 start|stop|venv|restart gridcentric-compute|gridcentric-api" >&2; exit 2 ;;
esac
