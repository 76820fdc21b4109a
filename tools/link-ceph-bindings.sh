#!/bin/bash
# Make Debian's Ceph Python bindings (python3-rados, python3-rbd: C extensions for
# the system's Python 3.11) importable from a virtualenv of the same Python version:
#   tools/link-ceph-bindings.sh <venv>
# PyPI has no usable rados/rbd wheels; the RBD driver and os-brick's RBD connector
# import them. Idempotent.
set -euo pipefail
VENV=${1:?usage: $0 <venv>}
SRC=/usr/lib/python3/dist-packages
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "$PY is not a Python interpreter" >&2; exit 1; }
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
for mod in rados rbd; do
    so="$SRC/$mod$SUFFIX"
    [ -f "$so" ] || { echo "$so is missing: apt-get install -y python3-$mod" \
        "(and the venv must use the same Python version as Debian's)" >&2; exit 1; }
    ln -sfn "$so" "$SITE/$mod$SUFFIX"
done
"$PY" -c 'import rados, rbd' || { echo "rados/rbd still do not import in $VENV" >&2; exit 1; }
