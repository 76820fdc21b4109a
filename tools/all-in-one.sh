#!/bin/bash
# Set up a fresh Debian 12 machine and start the all-in-one service: API and
# compute in one process, SQLite, in-process messaging, the local file
# backend, QEMU for live images. Run it as root or as a user with sudo (used
# only for apt-get). Extra arguments go to gridcentric-all-in-one (e.g.
# --config-file F); it prints its endpoint once it serves.
#   GC_SKIP_APT=1 tools/all-in-one.sh     # the Debian packages are there already
set -euo pipefail
cd "$(dirname "$0")/.."
GC_PROG=tools/all-in-one.sh
. tools/apt-lib.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "${GC_SKIP_APT:-0}" != 1 ]; then
    # python3-venv/pip: the virtualenv; qemu-utils: qcow2 volumes of the file
    # backend; qemu-system-x86 (+ qemu-block-extra for rbd/iscsi disks): the
    # QEMU virt driver's VMs and live images.
    gc_apt_install python3-venv python3-pip qemu-utils qemu-system-x86 qemu-block-extra
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
exec .venv/bin/gridcentric-all-in-one "$@"
