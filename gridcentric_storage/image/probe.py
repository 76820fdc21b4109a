"""What an image file is, decided without ever letting it name another file.

A qcow2 header may name a backing file or an external data file, and QEMU
opens whatever it names (as root here). So before any ``qemu-img`` runs, the
header is read in Python and such an image refused; then ``qemu-img info``
(no ``--backing-chain``, so it never opens a chain) gives the format and size,
and everything but a self-contained raw or qcow2 image is refused::

    probe('/var/lib/gridcentric-storage/images/public/debian.qcow2', 'debian.qcow2')
    == {'disk_format': 'qcow2', 'virtual_size': 2147483648}

Every later tool gets that format explicitly (``-f``): nothing probes again.
Messages name the image by the reference the user gave, never by host path.
"""

import json
import struct
from typing import Any

from gridcentric_storage.common import exception, processutils

__all__ = ['FORMATS', 'QEMU_IMG', 'probe']

QEMU_IMG = 'qemu-img'
FORMATS = ('raw', 'qcow2')
QCOW2_MAGIC = b'QFI\xfb'
#: Seconds ``qemu-img info`` may take: it reads headers only.
PROBE_TIMEOUT = 60.0
# qcow2 header: magic, version, backing_file_offset, backing_file_size, ... and
# (version 3) incompatible_features at byte 72, whose bit 2 is "external data file".
_QCOW2_HEAD = struct.Struct('>4sIQI')
_INCOMPATIBLE_OFFSET = 72
_EXTERNAL_DATA_FILE = 1 << 2


def _refuse(ref: str, why: str) -> exception.Invalid:
    return exception.Invalid(reason='image %s %s' % (ref, why))


def check_header(path: str, ref: str) -> None:
    """Refuse a qcow2 file whose header names another file, before QEMU reads it."""
    with open(path, 'rb') as f:
        head = f.read(_INCOMPATIBLE_OFFSET + 8)
    if not head.startswith(QCOW2_MAGIC) or len(head) < _QCOW2_HEAD.size:
        return
    _, version, backing_offset, _ = _QCOW2_HEAD.unpack_from(head)
    if backing_offset:
        raise _refuse(ref, 'has a backing file; flatten it first (qemu-img convert)')
    if version >= 3 and len(head) >= _INCOMPATIBLE_OFFSET + 8:
        (incompatible,) = struct.unpack_from('>Q', head, _INCOMPATIBLE_OFFSET)
        if incompatible & _EXTERNAL_DATA_FILE:
            raise _refuse(ref, 'keeps its data in an external data file; only '
                               'self-contained images are accepted')


def probe(path: str, ref: str, disk_format: str | None = None,
          execute: processutils.Executor = processutils.execute) -> dict[str, Any]:
    """Format and virtual size of a self-contained raw or qcow2 image.

    ``disk_format`` is given only when the service knows it (then qemu-img
    does not guess); an image from the store is probed.
    """
    check_header(path, ref)
    argv = [QEMU_IMG, 'info', '--output=json']
    if disk_format:
        argv += ['-f', disk_format]
    try:
        details = json.loads(execute([*argv, path], timeout=PROBE_TIMEOUT))
    except (exception.DriverError, ValueError) as e:
        # qemu-img's own message names the host path: keep it in the log only.
        raise _refuse(ref, 'cannot be read as a disk image') from e
    found = details.get('format')
    if found not in FORMATS:
        raise _refuse(ref, 'is %s; only %s are supported' % (found, ' and '.join(FORMATS)))
    if details.get('backing-filename') or details.get('full-backing-filename'):
        raise _refuse(ref, 'has a backing file; flatten it first (qemu-img convert)')
    data = (details.get('format-specific') or {}).get('data') or {}
    if data.get('data-file') or data.get('data-file-raw'):
        raise _refuse(ref, 'keeps its data in an external data file; only '
                           'self-contained images are accepted')
    return {'disk_format': found, 'virtual_size': int(details['virtual-size'])}
