#!/bin/bash
# Set up a fresh Debian 12 machine and run every check: lint, types, the whole
# test suite on newest PyPI releases, and the unit tests on Debian's own
# OpenStack packages, and the Nova lane: gridcentric-storage inside a real Nova
# (tools/nova.sh). Starts (and always stops) PostgreSQL, RabbitMQ, Ceph and Nova.
# The suite needs root (loop devices, LVM, tgt, Ceph, PostgreSQL's own user):
# run as a user, it starts itself again through sudo.
#   tools/run-tests.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$(pwd)
GC_PROG=tools/run-tests.sh
. tools/apt-lib.sh
if [ "$(id -u)" != 0 ]; then
    gc_require_root "the test suite"
    exec sudo env GC_SKIP_APT="${GC_SKIP_APT:-0}" "$TOP/tools/run-tests.sh" "$@"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

if [ "${GC_SKIP_APT:-0}" != 1 ]; then
    step "Debian packages"
    # shellcheck disable=SC2046 # one package name per word
    gc_apt_install $(grep -v '^#' tools/debian-packages.txt)
fi

step "PyPI lane: virtualenv .venv"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -r requirements.txt -r test-requirements.txt
.venv/bin/pip install -q --no-deps -e .
# librados/librbd bindings are not on PyPI: use Debian's in the virtualenv.
tools/link-ceph-bindings.sh .venv
# Nova's venv (on a fresh machine minutes of pip) is built meanwhile, in the
# background; the Debian lane's pip waits for it (both write the checkout's egg-info).
nova_venv_log=$(mktemp)
tools/nova.sh venv >"$nova_venv_log" 2>&1 &
nova_venv=$!

step "Lint and types"
.venv/bin/ruff check gridcentric_storage tests bench
.venv/bin/mypy gridcentric_storage

step "Cinder 29's driver interface (cinder is in .venv for the cinder driver's tests)"
.venv/bin/python tools/cinder-signatures.py > .cinder-signatures.json 2>/dev/null
export GC_CINDER_SIGNATURES=$TOP/.cinder-signatures.json

step "Servers: PostgreSQL, RabbitMQ and a single-node Ceph"
cleanup() {
    tools/ceph.sh stop || true; tools/tgt.sh stop || true; tools/libvirtd.sh stop || true
    tools/rabbitmq.sh stop || true; tools/postgres.sh stop || true
}
trap cleanup EXIT
GC_TEST_PG_URL=$(tools/postgres.sh start)
GC_TEST_RABBIT_URL=$(tools/rabbitmq.sh start)
GC_TEST_CEPH_CONF=$(tools/ceph.sh start)
export GC_TEST_PG_URL GC_TEST_RABBIT_URL GC_TEST_CEPH_CONF GC_REQUIRE_SERVICES=1

run_pytest() {
    # pytest exits 5 when it collected nothing: that is a failure here.
    set +e; "$@"; rc=$?; set -e
    if [ $rc = 5 ]; then echo "pytest ran no tests"; return 1; fi
    return $rc
}

# The unit and conformance tests run two at a time (pytest-xdist): each has its own
# temporary directory, SQLite file and fake:// transport. Those that share a
# host-wide daemon's state (the test Ceph's pool, tgtd's targets, a fixed
# PostgreSQL database: tests/conftest.py marks them host_daemons) run after, alone.
PARALLEL=(-n 2 -m 'not host_daemons')
SERIAL=(-m host_daemons)

step "PyPI lane: unit and conformance tests"
run_pytest .venv/bin/python -m pytest -p no:cacheprovider -q --durations=15 "${PARALLEL[@]}" \
    tests/unit tests/conformance "$@"
run_pytest .venv/bin/python -m pytest -p no:cacheprovider -q --durations=5 "${SERIAL[@]}" \
    tests/unit tests/conformance "$@"

step "PyPI lane: functional, interface and packaging tests"
# Two at a time as well, a whole module to a worker (its module-scoped deployments
# and guests are made once), in file order (xdist would start the biggest modules
# first and leave the longest single test, the API fuzz, for the end). Each test
# has its own deployment, PostgreSQL database, RabbitMQ vhost (tests/conftest.py),
# ports and names; those that stop a shared daemon (the test Ceph's OSD), number
# tgtd's targets or own libvirtd's domains are host_daemons and run after, alone.
# tests/functional/nova need the Nova stack: the Nova lane below runs them.
FUNCTIONAL=(--ignore=tests/unit --ignore=tests/conformance --ignore=tests/functional/nova tests)
run_pytest .venv/bin/python -m pytest -p no:cacheprovider -q --durations=25 \
    "${PARALLEL[@]}" --dist loadscope --no-loadscope-reorder "${FUNCTIONAL[@]}" "$@"

step "Debian lane: virtualenv .venv-debian on Debian 12's python3 packages"
if ! wait "$nova_venv"; then cat "$nova_venv_log"; echo "tools/nova.sh venv failed"; exit 1; fi
cat "$nova_venv_log"
[ -x .venv-debian/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv-debian
.venv-debian/bin/pip install -q --no-deps --no-build-isolation -e .
# Debian does not package the maintained QMP library: only it comes from PyPI.
.venv-debian/bin/pip install -q --no-deps qemu.qmp

step "PyPI lane: functional host_daemons tests; beside them, the Debian lane's unit tests"
# The host_daemons functional tests run one at a time and mostly wait (guests, a
# stopped OSD): the Debian lane's unit and conformance tests that are not
# host_daemons (temporary directories, SQLite, fake:// only; no host-wide daemon)
# run meanwhile on one worker, their output kept for after.
debian_log=$(mktemp)
run_pytest .venv-debian/bin/python -m pytest -p no:cacheprovider -q --durations=10 \
    -m 'not host_daemons' tests/unit tests/conformance "$@" >"$debian_log" 2>&1 &
debian_unit=$!
functional_rc=0 debian_rc=0
run_pytest .venv/bin/python -m pytest -p no:cacheprovider -q --durations=10 \
    "${SERIAL[@]}" "${FUNCTIONAL[@]}" "$@" || functional_rc=$?
wait "$debian_unit" || debian_rc=$?
step "Debian lane: unit and conformance tests that are not host_daemons (ran beside the above)"
cat "$debian_log"
[ "$functional_rc" = 0 ] || { echo "PyPI lane: functional host_daemons tests failed"; exit 1; }
[ "$debian_rc" = 0 ] || { echo "Debian lane: unit tests failed"; exit 1; }

step "Debian lane: host_daemons unit and conformance tests; meanwhile tools/nova.sh start"
# The Nova stack uses this run's PostgreSQL (its own databases) and RabbitMQ; while it
# starts it runs no guest and writes nothing to the test Ceph, so it starts beside
# these tests. Stop it however the run ends (after its start has ended).
nova_exports=$(mktemp) nova_start_log=$(mktemp)
tools/nova.sh start >"$nova_exports" 2>"$nova_start_log" &
nova_start=$!
trap 'wait "$nova_start" 2>/dev/null || true; tools/nova.sh stop || true; cleanup' EXIT
# test_rbd_driver.py stops the test Ceph's OSD: host_daemons too
debian_rc=0 nova_rc=0
run_pytest .venv-debian/bin/python -m pytest -p no:cacheprovider -q "${SERIAL[@]}" \
    tests/unit tests/conformance tests/functional/test_rbd_driver.py "$@" || debian_rc=$?
wait "$nova_start" || nova_rc=$?
cat "$nova_start_log"
[ "$debian_rc" = 0 ] || { echo "Debian lane: host_daemons tests failed"; exit 1; }
[ "$nova_rc" = 0 ] || { echo "tools/nova.sh start failed"; exit 1; }

step "Nova lane: gridcentric-storage inside a real Nova 34 (tools/nova.sh)"
# its OS_* exports stay in this subshell: the Package lane needs none of them
(eval "$(cat "$nova_exports")"
 run_pytest .venv/bin/python -m pytest -p no:cacheprovider -q --durations=10 \
     tests/functional/nova "$@")
tools/nova.sh stop
trap cleanup EXIT

step "Package lane: build the .debs, install them, run the services as their units say, purge"
# uses this run's RabbitMQ (GC_TEST_RABBIT_URL) for gridcentric-api <-> -compute
tools/package-lane.sh

step "All checks passed"
