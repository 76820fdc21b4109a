#!/bin/bash
# Package lane: what an operator does with the Debian packages, end to end.
#  1. build every package offline with dpkg-buildpackage -us -uc -b, in a copy
#     of this checkout: gridcentric-storage's seven and python3-qemu.qmp
#     (Debian 12 lacks it) from its PyPI sdist, downloaded once into
#     $GC_PACKAGE_CACHE (default /var/cache/gridcentric-storage/package-lane);
#  2. lintian them, and systemd-analyze verify the installed units;
#  3. apt-get install ./*.deb (a policy-rc.d that exits 101 keeps services
#     from starting), configure as README.Debian says, db sync;
#  4. start gridcentric-compute and gridcentric-api exactly as their units'
#     ExecStart says, as the units' User (runuser; no systemd here);
#  5. through the installed /usr/bin/gc-api: a file backend, a volume, a
#     snapshot, a clone of it, a test guest, its bless and a launched clone
#     that resumes the guest's memory (its boot token); then delete it all;
#  6. stop the services, purge every package and check nothing is left
#     (/etc, /var/lib and /var/log/gridcentric-storage, the user and group).
# Needs root. RabbitMQ: $GC_TEST_RABBIT_URL when set (tools/run-tests.sh), else
# a throw-away one (tools/rabbitmq.sh on its own directory and port) that is
# stopped again. Refuses to run where /var/lib/gridcentric-storage holds state
# that no package of ours made (a root all-in-one's): purging would delete it.
#   tools/package-lane.sh
#   tools/package-lane.sh --build-only DIR    steps 1 and 2 only (no root needed):
#                                             the .debs are left in DIR
set -euo pipefail
OUT=""
if [ "${1:-}" = --build-only ]; then
    [ -n "${2:-}" ] || { echo "usage: $0 [--build-only DIR]" >&2; exit 2; }
    mkdir -p "$2"
    OUT=$(cd "$2" && pwd)
fi
cd "$(dirname "$0")/.."
GC_PROG=tools/package-lane.sh
. tools/apt-lib.sh
if [ -z "$OUT" ] && [ "$(id -u)" != 0 ]; then
    echo "$GC_PROG: needs root (apt-get, runuser, purge); --build-only DIR does not" >&2
    exit 1
fi

QMP_VERSION=$(dpkg-parsechangelog -l tools/debian-qemu-qmp/debian/changelog -SVersion)
QMP_UPSTREAM=${QMP_VERSION%-*}
if [ "$(id -u)" = 0 ]; then CACHE=/var/cache/gridcentric-storage/package-lane
else CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/gridcentric-storage/package-lane; fi
CACHE=${GC_PACKAGE_CACHE:-$CACHE}
SDIST=$CACHE/qemu_qmp-$QMP_UPSTREAM.tar.gz
PORT=${GC_PACKAGE_LANE_PORT:-18779}
CONF=/etc/gridcentric-storage/gridcentric-storage.conf
SVC_USER=gridcentric
# what the build makes, so what install and purge handle
PACKAGES=$(sed -n 's/^Package: //p' debian/control | tr '\n' ' ')python3-qemu.qmp
# a clean PATH: the machine's pyenv shims would make pybuild pip-install pbr
BUILD_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent LANG=C.UTF-8)

START=$SECONDS
lap() { printf '[package lane %3ds] %s\n' $((SECONDS - START)) "$*"; }
die() { echo "$GC_PROG: $*" >&2; exit 1; }

installed_packages() {
    local p
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'installed$' && echo "$p"
    done
    return 0
}

if [ -z "$OUT" ] && [ -z "$(installed_packages)" ] && [ -e /var/lib/gridcentric-storage ]; then
    die "/var/lib/gridcentric-storage exists but none of the packages is installed: it is \
someone's state (a root all-in-one?), and purging the packages would delete it. Move it away first."
fi

WORK=$(mktemp -d /tmp/gc-package-lane.XXXXXX)
SERVICE_PIDS=()
OWN_RABBIT=""
POLICY_BACKUP=""
POLICY_OURS=""

stop_services() {
    local pid child
    for pid in "${SERVICE_PIDS[@]}"; do
        # runuser forwards a SIGTERM but kills its child two seconds later:
        # signal the service itself, which stops its guests before it exits
        for child in $(pgrep -P "$pid" || true); do kill -TERM "$child" 2>/dev/null || true; done
    done
    for pid in "${SERVICE_PIDS[@]}"; do
        for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { echo "service $pid did not stop: killing it" >&2
                                        kill -KILL "$pid" 2>/dev/null || true; }
    done
    SERVICE_PIDS=()
}

cleanup() {
    local rc=$?
    set +e
    if [ -n "$OUT" ]; then rm -rf "$WORK"; exit $rc; fi
    if [ $rc != 0 ] && [ -d /var/log/gridcentric-storage ]; then
        for log in /var/log/gridcentric-storage/*.log; do
            [ -e "$log" ] || continue
            echo "--- last lines of $log"; tail -n 40 "$log"
        done
    fi
    stop_services
    # the service user is this lane's: whatever still runs as it, the lane started
    for pid in $(pgrep -u "$SVC_USER" 2>/dev/null); do kill -KILL "$pid"; done
    local left
    left=$(installed_packages)
    # shellcheck disable=SC2086 # one package per word
    [ -n "$left" ] && gc_apt_get purge -y $left >/dev/null
    if [ -n "$POLICY_BACKUP" ]; then
        mv -f "$POLICY_BACKUP" /usr/sbin/policy-rc.d
    elif [ -n "$POLICY_OURS" ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    [ -n "$OWN_RABBIT" ] && GC_RABBIT_DIR=$WORK/rabbit GC_RABBIT_PORT=$OWN_RABBIT \
        tools/rabbitmq.sh stop
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

lap "leftovers of an earlier run"
left=$([ -n "$OUT" ] || installed_packages)
if [ -n "$left" ]; then
    # shellcheck disable=SC2086 # one package per word
    gc_apt_get purge -y $left >/dev/null
fi

lap "qemu.qmp $QMP_UPSTREAM sdist"
if [ ! -s "$SDIST" ]; then
    mkdir -p "$CACHE"
    # the only network access of the build; later runs work offline
    /usr/bin/python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        -d "$CACHE" "qemu.qmp==$QMP_UPSTREAM"
fi
[ -s "$SDIST" ] || die "no $SDIST after pip download"

lap "build (dpkg-buildpackage -us -uc -b, both sources at once)"
mkdir -p "$WORK/gc/gridcentric-storage" "$WORK/qmp"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - \
    | tar -C "$WORK/gc/gridcentric-storage" -xf -
tar -C "$WORK/qmp" -xzf "$SDIST"
cp "$SDIST" "$WORK/qmp/python-qemu.qmp_$QMP_UPSTREAM.orig.tar.gz"
cp -r tools/debian-qemu-qmp/debian "$WORK/qmp/qemu_qmp-$QMP_UPSTREAM/"
(cd "$WORK/qmp/qemu_qmp-$QMP_UPSTREAM" \
    && "${BUILD_ENV[@]}" dpkg-buildpackage -us -uc -b >../build.log 2>&1) &
qmp_build=$!
(cd "$WORK/gc/gridcentric-storage" \
    && "${BUILD_ENV[@]}" dpkg-buildpackage -us -uc -b >../build.log 2>&1) \
    || { tail -n 40 "$WORK/gc/build.log"; die "gridcentric-storage did not build"; }
wait $qmp_build || { tail -n 40 "$WORK/qmp/build.log"; die "qemu.qmp did not build"; }
mkdir -p "$WORK/debs"
cp "$WORK"/gc/*.deb "$WORK"/qmp/*.deb "$WORK/debs/"
for deb in "$WORK"/debs/*.deb; do
    printf '  %-48s %6d bytes\n' "${deb##*/}" "$(stat -c %s "$deb")"
done

lap "lintian"
# errors fail the lane; warnings are listed (no man pages, not uploaded to Debian)
lintian --tag-display-limit 0 "$WORK"/gc/*.changes "$WORK"/qmp/*.changes \
    >"$WORK/lintian.txt" 2>&1 || true
grep -E '^[EW]: ' "$WORK/lintian.txt" || true
echo "  lintian: $(grep -c '^E: ' "$WORK/lintian.txt") errors," \
    "$(grep -c '^W: ' "$WORK/lintian.txt") warnings"
if grep -q '^E: ' "$WORK/lintian.txt"; then die "lintian found errors"; fi
if [ -n "$OUT" ]; then
    cp "$WORK"/debs/*.deb "$OUT/"
    lap "built into $OUT"
    exit 0
fi

lap "install with apt-get, all but the Nova plugin (policy-rc.d exits 101: nothing starts)"
if [ -e /usr/sbin/policy-rc.d ]; then
    POLICY_BACKUP=$WORK/policy-rc.d.orig
    cp -p /usr/sbin/policy-rc.d "$POLICY_BACKUP"
fi
POLICY_OURS=1
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
# the services must not need the plugin: it goes on Nova's hosts, later
(cd "$WORK/debs" && gc_apt_get install -y --no-install-recommends \
    $(ls ./*.deb | grep -v '/python3-gridcentric-storage-nova_') >/dev/null)
for unit in gridcentric-api gridcentric-compute; do
    out=$(systemd-analyze verify --man=no "/lib/systemd/system/$unit.service" 2>&1) \
        || die "systemd-analyze verify $unit.service: $out"
    [ -z "$out" ] || die "systemd-analyze verify $unit.service: $out"
done
[ -L /etc/systemd/system/multi-user.target.wants/gridcentric-compute.service ] \
    || die "gridcentric-compute.service is not enabled"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:$SVC_USER 640" ] || die "$CONF: $(stat -c '%U:%G %a' "$CONF")"

# sudo starts os-brick's privsep daemon for the service user, and nothing else
helper=(/usr/bin/privsep-helper --config-file "$CONF" --privsep_context
        os_brick.privileged.default --privsep_sock_path /tmp/tmpa1b2/privsep.sock)
runuser -u "$SVC_USER" -- sudo -n -l "${helper[@]}" >/dev/null \
    || die "sudo does not let $SVC_USER start os-brick's privsep daemon"
if runuser -u "$SVC_USER" -- sudo -n -l "${helper[@]/os_brick/nova}" >/dev/null 2>&1; then
    die "sudo lets $SVC_USER start privsep-helper with another context"
fi

lap "configure (README.Debian) and db sync"
rabbit=${GC_TEST_RABBIT_URL:-}
if [ -z "$rabbit" ]; then
    OWN_RABBIT=$((5700 + RANDOM % 200))
    rabbit=$(GC_RABBIT_DIR=$WORK/rabbit GC_RABBIT_PORT=$OWN_RABBIT tools/rabbitmq.sh start) \
        || die "no RabbitMQ: tools/rabbitmq.sh could not start one (another one running as \
rabbit@localhost?); export GC_TEST_RABBIT_URL with the URL of a running one"
fi
cat >>"$CONF" <<EOF

# package lane: one host, SQLite, noauth on loopback, its own exchange
[DEFAULT]
transport_url = $rabbit
control_exchange = gc-package-lane
host = gc-hf-package-lane

[api]
listen = 127.0.0.1
port = $PORT
auth_strategy = noauth
EOF
runuser -u "$SVC_USER" -- gridcentric-manage --config-file "$CONF" db sync

# the test guest the functional tests use (rebuilt only when its inputs change)
GUEST=${GC_GUEST_DIR:-/var/cache/gridcentric-storage/test-guest}
bash tools/build-test-guest.sh "$GUEST" >/dev/null
install -d -o "$SVC_USER" -g "$SVC_USER" /var/lib/gridcentric-storage/images/public
install -o "$SVC_USER" -g "$SVC_USER" -m 0644 "$GUEST/vmlinuz" "$GUEST/initrd.img" \
    /var/lib/gridcentric-storage/images/public/

lap "start gridcentric-compute and gridcentric-api as their units say"
# a service already on the port would answer for ours
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "port $PORT is in use; set GC_PACKAGE_LANE_PORT"
fi
start_unit() {
    local unit=/lib/systemd/system/$1.service exec user dir runtime
    exec=$(sed -n 's/^ExecStart=//p' "$unit")
    user=$(sed -n 's/^User=//p' "$unit")
    dir=$(sed -n 's/^WorkingDirectory=//p' "$unit")
    runtime=$(sed -n 's/^RuntimeDirectory=//p' "$unit")
    case "$exec" in *[\"\'\$\;]*) die "$unit: ExecStart needs a unit parser: $exec" ;; esac
    # what systemd does for RuntimeDirectory= before it starts the service
    install -d -o "$user" -g "$user" -m 0755 "/run/$runtime"
    # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does
    (cd "$dir" && exec runuser -u "$user" -- $exec) &
    SERVICE_PIDS+=($!)
}
start_unit gridcentric-compute
start_unit gridcentric-api

export OS_AUTH_TYPE=none OS_ENDPOINT=http://127.0.0.1:$PORT
gc() { /usr/bin/gc-api "$@"; }
json() { /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
wait_until() {  # wait_until SECONDS WHAT COMMAND...: poll every 0.5 s
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
        for pid in "${SERVICE_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "a service exited while waiting for $what"
        done
        sleep 0.5
    done
}
compute_up() {
    runuser -u "$SVC_USER" -- gridcentric-manage --config-file "$CONF" service list \
        | grep -q '^gc-hf-package-lane .* up '
}
wait_until 60 "gridcentric-api on port $PORT" gc backend-list
wait_until 60 "gridcentric-compute to report" compute_up

lap "smoke through /usr/bin/gc-api: backend, volume, snapshot, clone"
gc backend-create gc-hf-file --driver file \
    --option path=/var/lib/gridcentric-storage/backends/gc-hf-file >/dev/null
volume=$(gc --json volume-create --size 1 --name gc-hf-vol --wait | json status)
[ "$volume" = available ] || die "volume: $volume"
snap=$(gc --json snapshot-create gc-hf-vol --name gc-hf-snap --wait | json status)
[ "$snap" = available ] || die "snapshot: $snap"
clone=$(gc --json volume-create --snapshot gc-hf-snap --name gc-hf-clone --wait | json status)
[ "$clone" = available ] || die "clone: $clone"

lap "smoke: boot the test guest, bless it, launch a clone"
gc --json server-create gc-hf-tmpl --memory-mb 256 --kernel vmlinuz --initrd initrd.img \
    --wait | json status | grep -qx ACTIVE || die "the test guest did not boot"
token_of() { gc server-console "$1" | sed -n 's/.*BOOT-TOKEN \([0-9a-f]*\).*/\1/p' | head -n 1; }
has_token() { [ -n "$(token_of gc-hf-tmpl)" ]; }
wait_until 120 "the test guest's boot token" has_token
token=$(token_of gc-hf-tmpl)
gc --json bless gc-hf-tmpl gc-hf-gold --wait | json status | grep -qx blessed \
    || die "bless did not finish"
launched=$(gc --json launch --live-image gc-hf-gold gc-hf-web --wait)
clone_id=$(/usr/bin/python3 -c 'import json, sys; [c] = json.load(sys.stdin); print(c["id"])' \
    <<<"$launched")
# the clone resumed the blessed memory: it repeats the template's token and
# never booted itself
resumed() { gc server-console "$clone_id" | grep -qE "(^|[^-])TOKEN $token"; }
wait_until 120 "the clone to print the template's boot token" resumed
if gc server-console "$clone_id" | grep -q BOOT-TOKEN; then die "the clone booted afresh"; fi

lap "smoke: delete it all"
gc server-delete "$clone_id" --wait >/dev/null
gc discard gc-hf-gold --wait >/dev/null
gc server-delete gc-hf-tmpl --wait >/dev/null
gc volume-delete gc-hf-clone --wait >/dev/null
gc snapshot-delete gc-hf-snap --wait >/dev/null
gc volume-delete gc-hf-vol --wait >/dev/null
gc backend-delete gc-hf-file >/dev/null
[ "$(gc --json volume-list)" = "[]" ] || die "volumes left: $(gc volume-list)"

lap "stop the services"
stop_services
if pgrep -u "$SVC_USER" >/dev/null; then
    die "processes of $SVC_USER outlived the services: $(pgrep -a -u "$SVC_USER")"
fi

lap "the Nova plugin"
(cd "$WORK/debs" && gc_apt_get install -y --no-install-recommends \
    ./python3-gridcentric-storage-nova_*.deb >/dev/null)
# its .pth runs at start-up of Debian's python3: the alias Nova loads the
# driver by is registered (Debian's own nova is too old to import the driver)
/usr/bin/python3 -c 'import sys
sys.exit(not any(type(f).__name__ == "AliasFinder" for f in sys.meta_path))' \
    || die "the Nova plugin's .pth did not register nova.virt.gridcentric"
/usr/bin/python3 -c 'import gridcentric_storage.nova.api_filter' \
    || die "the nova-api filter does not import"

lap "purge"
# shellcheck disable=SC2086
gc_apt_get purge -y $PACKAGES >/dev/null
leftovers=()
for path in /etc/gridcentric-storage /var/lib/gridcentric-storage /var/log/gridcentric-storage \
        /run/gridcentric-storage /etc/sudoers.d/gridcentric-storage-common \
        /etc/systemd/system/multi-user.target.wants/gridcentric-api.service \
        /etc/systemd/system/multi-user.target.wants/gridcentric-compute.service \
        /etc/systemd/system/nova-gridcentric.service \
        /usr/lib/python3/dist-packages/gridcentric_storage_nova.pth \
        /usr/lib/python3/dist-packages/gridcentric_storage /usr/lib/python3/dist-packages/qemu/qmp \
        /usr/bin/gc-api /usr/bin/nova-gc; do
    [ -e "$path" ] || [ -L "$path" ] && leftovers+=("$path")
done
getent passwd "$SVC_USER" >/dev/null && leftovers+=("user $SVC_USER")
getent group "$SVC_USER" >/dev/null && leftovers+=("group $SVC_USER")
[ -z "$(installed_packages)" ] || leftovers+=("packages: $(installed_packages)")
[ ${#leftovers[@]} = 0 ] || die "left after purge: ${leftovers[*]}"
lap "passed: built, installed, served, purged; nothing left"
