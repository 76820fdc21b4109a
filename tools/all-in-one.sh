#!/bin/bash
# Set up a fresh Debian 12 machine and start the all-in-one service: API and
# compute in one process, SQLite, in-process messaging, the local file
# backend. Extra arguments go to gridcentric-all-in-one (e.g. --config-file F).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "${GC_SKIP_APT:-0}" != 1 ]; then
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-venv python3-pip qemu-utils
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt
.venv/bin/pip install -q --no-deps -e .
echo "gc-api: $(pwd)/.venv/bin/gc-api --os-auth-type none --os-endpoint http://127.0.0.1:8779 backend-list"
exec .venv/bin/gridcentric-all-in-one "$@"
