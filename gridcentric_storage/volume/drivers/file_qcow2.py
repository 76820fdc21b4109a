"""qcow2 mode of the ``file`` driver: backing-file chains in one directory.

Used on filesystems without reflink; needs ``qemu-img``. The rules:

* ``volume-<id>`` is a qcow2 file and the only writable one; ``snapshot-<id>`` and
  ``clone-<id>`` files are frozen, used as backing files by relative name (the
  directory may move). Nothing backs onto a ``volume-*`` file, so deleting a
  volume never breaks another volume or snapshot.
* Snapshot: ``volume-<v>`` is hard-linked as ``snapshot-<s>`` (frozen from then on)
  and atomically replaced by an empty overlay on it (``qemu-img create -f qcow2
  -F qcow2 -b snapshot-<s>``). A clone freezes its source the same way, into a
  hidden ``clone-<new id>`` that both volumes overlay. A volume from a snapshot
  overlays the snapshot; revert replaces ``volume-<v>`` by a new overlay on the
  snapshot. A bigger target is a bigger overlay (past the backing file: zeros).
* delete_snapshot of a snapshot that still backs files only marks it
  ``snapshot-<s>.deleted``; hidden files (marked snapshots, ``clone-*``) are
  removed, walking up the chain, once nothing backs onto them. Chains grow by
  one file per snapshot or clone taken of a volume.
* A running QEMU would keep writing to a frozen file, so snapshot, clone, revert
  and extend refuse a volume whose QEMU image lock is held (attached); like
  Cinder's NFS driver, online snapshots need the hypervisor's help. One
  exception: a snapshot taken while the attacher is paused and flushed
  (``quiesced``, as a bless does) is a full qcow2 copy of the volume read with
  QEMU's shared lock; the volume's own chain is left as it is. Freezing the
  file in place would need QEMU to switch to a new overlay, and QEMU reopens
  the frozen image by its name, which by then names the overlay.

Headers are read in Python (:func:`header`): the format of a file is known from
the mode, never probed, and the backing file named in a header is only followed
when it is one of the driver's own names in the directory.
"""

import os
import struct
import threading

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.drivers.file_common import (
    DELETED,
    NAME_RE,
    PART,
    error,
    publish,
    unlink,
)

__all__ = ['Qcow2Chains', 'header']


def header(path: str) -> tuple[int, str | None]:
    """(virtual size, backing file name or None) from a qcow2 header."""
    with open(path, 'rb') as f:
        magic, _v, bf_off, bf_len, _cb, size = struct.unpack('>4sIQIIQ', f.read(32))
        if magic != b'QFI\xfb':
            raise error(f'{path} is not a qcow2 file')
        if not bf_off:
            return size, None
        f.seek(bf_off)
        return size, f.read(bf_len).decode('utf-8', 'replace')


class Qcow2Chains:
    """The qcow2 files of directory ``root`` and the rules of the module doc."""

    def __init__(self, root: str, execute: processutils.Executor, qemu_img: str) -> None:
        self.root = root
        self.qemu_img = qemu_img
        self._execute = execute
        #: Held across chain changes (freeze, delete, reap) and the lookups of
        #: children they depend on.
        self.lock = threading.Lock()

    # ---- reading chains
    def backing(self, path: str) -> str | None:
        """Name of the backing file, when it is one of ours in this directory."""
        backing = header(path)[1]
        if backing and os.path.dirname(os.path.join(self.root, backing)) == self.root:
            name = os.path.basename(backing)
            return name if NAME_RE.match(name) else None
        return None

    def children(self, name: str) -> list[str]:
        return [e.name for e in os.scandir(self.root)
                if NAME_RE.match(e.name) and self.backing(e.path) == name]

    def reap(self, name: str | None) -> None:
        """Remove hidden frozen files that nothing backs onto, walking up the chain."""
        while name and (name.startswith('clone-') or
                        os.path.exists(os.path.join(self.root, name + DELETED))):
            path = os.path.join(self.root, name)
            if self.children(name):
                return
            parent = self.backing(path) if os.path.exists(path) else None
            unlink(path)
            unlink(path + DELETED)
            name = parent

    # ---- building files
    def _make(self, path: str, size: int, backing: str | None) -> None:
        unlink(path)
        argv = [self.qemu_img, 'create', '-q', '-f', 'qcow2']
        if backing:  # -u: the backing file may get its name only in the next step
            argv += ['-u', '-F', 'qcow2', '-b', os.path.basename(backing)]
        self._execute([*argv, path, str(size)])
        os.chmod(path, 0o640)

    def new(self, dst: str, size: int, backing: str | None = None,
            replace: bool = False) -> None:
        self._make(dst + PART, size, backing)
        publish(dst + PART, dst, replace)

    def copy(self, src: str, dst: str) -> None:
        """A standalone qcow2 copy of ``src``'s whole chain, read under a shared lock
        (``-U``): only consistent while its user is paused."""
        tmp = dst + PART
        try:
            self._execute([self.qemu_img, 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
                           src, tmp])
        except exception.DriverError:
            unlink(tmp)
            raise
        publish(tmp, dst, False)

    # ---- files in use
    def require_idle(self, path: str) -> None:
        """Refuse a qcow2 file whose QEMU image lock is held (a running guest uses it)."""
        try:
            self._execute([self.qemu_img, 'info', '-f', 'qcow2', '--output=json', path])
        except exception.DriverError as e:
            raise error(f'{os.path.basename(path)} is in use (attached to a running '
                        f"guest?); detach it first: {e.kwargs.get('reason', e)}") from e

    def in_use(self, path: str) -> bool:
        try:
            self.require_idle(path)
        except exception.DriverError:
            return True
        return False

    def freeze(self, vol: str, frozen: str) -> int:
        """Give the volume's data the frozen name and put an empty overlay on it in the
        volume's place; return the virtual size."""
        self.require_idle(vol)
        size = header(vol)[0]
        self._make(vol + PART, size, frozen)
        try:
            os.link(vol, frozen)  # the data now has both names...
        except OSError as e:
            unlink(vol + PART)
            raise error(f'cannot create {frozen}: {e}') from e
        os.replace(vol + PART, vol)  # ...and the volume's name is the empty overlay
        os.chmod(frozen, 0o440)
        return size
