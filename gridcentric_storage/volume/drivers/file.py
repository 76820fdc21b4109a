"""Volumes as files in one local directory: the embedded default backend (``file``).

Options, e.g. ``{"path": "/var/lib/gridcentric-storage/volumes/<backend id>",
"cow_mode": "auto"}``; ``path`` defaults to ``$state_path/volumes/<backend id>``.

The copy-on-write mode (``copy_on_write`` in the stats) is chosen by the first
``do_setup`` and recorded in ``<path>/.cow_mode``; it never changes after that,
because a file's format is never guessed from its content (a guest can write a
qcow2 header, naming any backing file, into a raw volume).

``reflink`` (``auto`` on XFS made with reflink=1, btrfs, ...): volumes and snapshots
are sparse raw files ``volume-<id>`` / ``snapshot-<id>``; snapshot, clone, volume
from snapshot and revert are FICLONE copies: instant, blocks shared until written,
and no file ever depends on another.

``qcow2`` (any other filesystem; needs ``qemu-img``), by these rules:

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

No later volume can read deleted data: new files are sparse or empty qcow2.
New files appear atomically (written as ``<name>.part``, then linked).
"""

import errno
import fcntl
import os
import re
import shutil
import struct
import tempfile
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

from gridcentric_storage.common import exception, owned_dir, processutils
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

__all__ = ['FileDriver']

GiB = 1 << 30
FICLONE = 0x40049409  # _IOW(0x94, 9, int) in <linux/fs.h>
_UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
_UUID_RE = re.compile(f'^{_UUID}$', re.IGNORECASE)
_NAME_RE = re.compile(f'^(volume|snapshot|clone)-{_UUID}$', re.IGNORECASE)
_MODE_FILE, _DELETED, _PART = '.cow_mode', '.deleted', '.part'


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


class FileDriver(base.VolumeDriver):
    LOCATION_OPTIONS: ClassVar[frozenset[str]] = frozenset({'path', 'cow_mode'})
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object',
        'properties': {
            'path': {'type': 'string', 'pattern': '^/', 'minLength': 2},
            'cow_mode': {'enum': ['auto', 'reflink', 'qcow2'], 'default': 'auto'},
        },
        'required': ['path'],
        'additionalProperties': False,
    }

    def __init__(self, backend_id: str, backend_name: str, options: Mapping[str, Any],
                 execute: processutils.Executor | None = None) -> None:
        super().__init__(backend_id, backend_name, options)
        self.root = os.path.realpath(self.options['path'])
        self.mode: str | None = None
        self._execute = execute or processutils.execute
        self._qemu_img = shutil.which('qemu-img') or '/usr/bin/qemu-img'
        self._lock = threading.Lock()  # qcow2 chain changes: freeze, delete, reap

    @classmethod
    def default_options(cls, backend_id: str, state_path: str) -> dict[str, Any]:
        return {'path': os.path.join(state_path, 'volumes', backend_id)}

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        try:
            owned_dir.make(self.root)  # recorded: delete_backend removes only ours
            for name in os.listdir(self.root):  # leftovers of interrupted creations
                if name.endswith(_PART) and _NAME_RE.match(name[:-len(_PART)]):
                    _unlink(os.path.join(self.root, name))
            why_not = self._probe_reflink()
            mode_file = os.path.join(self.root, _MODE_FILE)
            recorded = None
            if os.path.exists(mode_file):
                with open(mode_file) as f:
                    recorded = f.read().strip()
        except OSError as e:
            raise _error(f'cannot use directory {self.root}: {e}') from e
        wanted = self.options.get('cow_mode', 'auto')
        if recorded and wanted not in ('auto', recorded):
            raise _error(f'{self.root} already holds {recorded} volumes; '
                         f'cow_mode {wanted} cannot change that')
        mode = recorded or (wanted if wanted != 'auto' else
                            'qcow2' if why_not else 'reflink')
        if mode == 'reflink' and why_not:
            raise _error('cow_mode reflink needs a filesystem with reflink (XFS made with '
                         f'reflink=1, btrfs); FICLONE in {self.root} failed: {why_not}')
        if mode not in ('reflink', 'qcow2'):
            raise _error(f'unknown mode {mode!r} in {mode_file}')
        if not recorded:
            with open(mode_file + _PART, 'w') as f:
                f.write(mode + '\n')
            os.replace(mode_file + _PART, mode_file)
        self.mode = mode

    def delete_backend(self) -> None:
        """The backend was deleted: remove its directory if set-up created it,
        else only our mode record. The DB refuses to delete a backend that
        holds volumes, so a volume file here means a wrong view of the DB:
        then nothing is removed."""
        if not os.path.isdir(self.root):
            return
        names = os.listdir(self.root)
        if any(_NAME_RE.match(n) and n.startswith('volume-') for n in names):
            raise _error(f'{self.root} still holds volume files; left as it is')
        if not owned_dir.remove(self.root) and not any(_NAME_RE.match(n) for n in names):
            _unlink(os.path.join(self.root, _MODE_FILE))

    def _probe_reflink(self) -> str | None:
        """Return None when FICLONE works in the directory, else why not."""
        src_fd, src = tempfile.mkstemp(prefix='.probe-', dir=self.root)
        dst_fd, dst = tempfile.mkstemp(prefix='.probe-', dir=self.root)
        try:
            os.write(src_fd, b'\xab' * 65536)
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
            return None
        except OSError as e:
            return os.strerror(e.errno) if e.errno else str(e)
        finally:
            for fd, path in ((src_fd, src), (dst_fd, dst)):
                os.close(fd)
                _unlink(path)

    def check_for_setup_error(self) -> None:
        mode = self._mode()
        if not os.path.isdir(self.root) or not os.access(self.root, os.W_OK | os.X_OK):
            raise _error(f'{self.root} is not a writable directory')
        if mode == 'qcow2' and not os.access(self._qemu_img, os.X_OK):
            raise _error('cow_mode qcow2 needs qemu-img, which is not installed '
                         '(Debian: apt install qemu-utils)')

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Cinder's stats from statvfs of the directory, e.g. ``{'volume_backend_name':
        'default', 'vendor_name': 'Open Source', 'driver_version': '1.0',
        'storage_protocol': 'local', 'total_capacity_gb': 251.97, 'free_capacity_gb':
        79.32, 'provisioned_capacity_gb': 12.0, 'reserved_percentage': 0,
        'thin_provisioning_support': True, 'thick_provisioning_support': False,
        'max_over_subscription_ratio': 20.0, 'multiattach': False, 'QoS_support':
        False, 'online_extend_support': False, 'copy_on_write': 'qcow2'}``.

        Online extend only in reflink mode: QEMU locks an open qcow2 file, and
        only the hypervisor can grow it then (``block_resize``).
        """
        mode = self._mode()
        st = os.statvfs(self.root)
        provisioned = 0
        for name in os.listdir(self.root):
            if name.startswith('volume-') and _NAME_RE.match(name):
                try:
                    provisioned += self._virtual_size(os.path.join(self.root, name))
                except FileNotFoundError:  # deleted meanwhile
                    pass
        return {'volume_backend_name': self.backend_name, 'vendor_name': 'Open Source',
                'driver_version': self.VERSION, 'storage_protocol': 'local',
                'total_capacity_gb': round(st.f_blocks * st.f_frsize / GiB, 2),
                'free_capacity_gb': round(st.f_bavail * st.f_frsize / GiB, 2),
                'provisioned_capacity_gb': round(provisioned / GiB, 2),
                'reserved_percentage': 0, 'thin_provisioning_support': True,
                'thick_provisioning_support': False, 'max_over_subscription_ratio': 20.0,
                'multiattach': False, 'QoS_support': False,
                'online_extend_support': mode == 'reflink', 'copy_on_write': mode}

    # ---- paths and qcow2 headers
    def _mode(self) -> str:
        if self.mode is None:
            raise _error(f'do_setup has not run for {self.root}')
        return self.mode

    def _file(self, kind: str, res_id: Any) -> str:
        """Absolute path of ``<kind>-<id>``; ids must be UUIDs (no path traversal)."""
        if not isinstance(res_id, str) or not _UUID_RE.match(res_id):
            raise _error(f'{kind} id {res_id!r} is not a UUID; refusing to build a '
                         'file name from it')
        path = os.path.join(self.root, f'{kind}-{res_id}')
        if os.path.dirname(os.path.abspath(path)) != self.root:
            raise _error(f'{path} is outside {self.root}')
        return path

    def _existing(self, kind: str, res_id: Any) -> str:
        path = self._file(kind, res_id)
        if not os.path.exists(path) or os.path.exists(path + _DELETED):
            raise _error(f'{kind}-{res_id} does not exist in {self.root}')
        return path

    @staticmethod
    def _header(path: str) -> tuple[int, str | None]:
        """(virtual size, backing file name or None) from a qcow2 header."""
        with open(path, 'rb') as f:
            magic, _v, bf_off, bf_len, _cb, size = struct.unpack('>4sIQIIQ', f.read(32))
            if magic != b'QFI\xfb':
                raise _error(f'{path} is not a qcow2 file')
            if not bf_off:
                return size, None
            f.seek(bf_off)
            return size, f.read(bf_len).decode('utf-8', 'replace')

    def _virtual_size(self, path: str) -> int:
        return os.stat(path).st_size if self.mode == 'reflink' else self._header(path)[0]

    def _backing(self, path: str) -> str | None:
        """Name of the backing file, when it is one of ours in this directory."""
        backing = self._header(path)[1]
        if backing and os.path.dirname(os.path.join(self.root, backing)) == self.root:
            name = os.path.basename(backing)
            return name if _NAME_RE.match(name) else None
        return None

    def _children(self, name: str) -> list[str]:
        return [e.name for e in os.scandir(self.root)
                if _NAME_RE.match(e.name) and self._backing(e.path) == name]

    def _reap(self, name: str | None) -> None:
        """Remove hidden frozen files that nothing backs onto, walking up the chain."""
        while name and (name.startswith('clone-') or
                        os.path.exists(os.path.join(self.root, name + _DELETED))):
            path = os.path.join(self.root, name)
            if self._children(name):
                return
            parent = self._backing(path) if os.path.exists(path) else None
            _unlink(path)
            _unlink(path + _DELETED)
            name = parent

    # ---- building files
    def _publish(self, tmp: str, dst: str, replace: bool = False) -> None:
        """Give a finished ``.part`` file its name; never overwrite unless replace."""
        try:
            if replace:
                os.replace(tmp, dst)
                return
            os.link(tmp, dst)
        except OSError as e:
            _unlink(tmp)
            reason = 'already exists' if e.errno == errno.EEXIST else e.strerror
            raise _error(f'cannot create {dst}: {reason}') from e
        _unlink(tmp)

    def _make_qcow2(self, path: str, size: int, backing: str | None) -> None:
        _unlink(path)
        argv = [self._qemu_img, 'create', '-q', '-f', 'qcow2']
        if backing:  # -u: the backing file may get its name only in the next step
            argv += ['-u', '-F', 'qcow2', '-b', os.path.basename(backing)]
        self._execute([*argv, path, str(size)])
        os.chmod(path, 0o640)

    def _new_qcow2(self, dst: str, size: int, backing: str | None = None,
                   replace: bool = False) -> None:
        self._make_qcow2(dst + _PART, size, backing)
        self._publish(dst + _PART, dst, replace)

    def _new_raw(self, dst: str, size: int, src: str | None = None,
                 replace: bool = False) -> None:
        """Sparse raw file of at least ``size`` bytes, FICLONE'd from ``src`` if given."""
        tmp = dst + _PART
        _unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            if src:
                with open(src, 'rb') as s:
                    fcntl.ioctl(fd, FICLONE, s.fileno())
            if size > os.fstat(fd).st_size:
                os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as e:
            _unlink(tmp)
            raise _error(f'cannot create {dst}: {e}') from e
        finally:
            os.close(fd)
        self._publish(tmp, dst, replace)

    def _in_use(self, path: str) -> bool:
        try:
            self._require_idle(path)
        except exception.DriverError:
            return True
        return False

    def _copy_qcow2(self, src: str, dst: str) -> None:
        """A standalone qcow2 copy of ``src``'s whole chain, read under a shared lock
        (``-U``): only consistent while its user is paused."""
        tmp = dst + _PART
        try:
            self._execute([self._qemu_img, 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
                           src, tmp])
        except exception.DriverError:
            _unlink(tmp)
            raise
        self._publish(tmp, dst, False)

    def _require_idle(self, path: str) -> None:
        """Refuse a qcow2 file whose QEMU image lock is held (a running guest uses it)."""
        try:
            self._execute([self._qemu_img, 'info', '-f', 'qcow2', '--output=json', path])
        except exception.DriverError as e:
            raise _error(f'{os.path.basename(path)} is in use (attached to a running '
                         f"guest?); detach it first: {e.kwargs.get('reason', e)}") from e

    def _freeze(self, vol: str, frozen: str) -> int:
        """Give the volume's data the frozen name and put an empty overlay on it in the
        volume's place; return the virtual size."""
        self._require_idle(vol)
        size = self._header(vol)[0]
        self._make_qcow2(vol + _PART, size, frozen)
        try:
            os.link(vol, frozen)  # the data now has both names...
        except OSError as e:
            _unlink(vol + _PART)
            raise _error(f'cannot create {frozen}: {e}') from e
        os.replace(vol + _PART, vol)  # ...and the volume's name is the empty overlay
        os.chmod(frozen, 0o440)
        return size

    # ---- volumes
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        """Blank volume; returns ``{'provider_location': '<path>/volume-<id>'}``."""
        path, size = self._file('volume', volume.id), int(volume.size) * GiB
        if os.path.exists(path):
            raise _error(f'{path} already exists')
        if self._mode() == 'reflink':
            self._new_raw(path, size)
        else:
            self._new_qcow2(path, size)
        return {'provider_location': path}

    def delete_volume(self, volume: VolumeRef) -> None:
        path = self._file('volume', volume.id)
        if self._mode() == 'reflink' or not os.path.exists(path):
            _unlink(path)
            return
        with self._lock:
            if self._children(os.path.basename(path)):
                raise _error(f'other files back onto {path}')
            parent = self._backing(path)
            _unlink(path)
            self._reap(parent)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        path, size = self._existing('volume', volume.id), int(new_size) * GiB
        if size < self._virtual_size(path):
            raise _error(f'cannot shrink {volume.name} to {new_size} GiB')
        if self._mode() == 'reflink':
            os.truncate(path, size)
        else:
            self._require_idle(path)
            self._execute([self._qemu_img, 'resize', '-q', '-f', 'qcow2', path, str(size)])

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        vol = self._existing('volume', snapshot.volume_id)
        path = self._file('snapshot', snapshot.id)
        if self._mode() == 'reflink':
            self._new_raw(path, 0, src=vol)
            os.chmod(path, 0o440)
        elif snapshot.get('quiesced') and self._in_use(vol):
            self._copy_qcow2(vol, path)
            os.chmod(path, 0o440)
        else:
            with self._lock:
                self._freeze(vol, path)
        return {'provider_location': path}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        path = self._file('snapshot', snapshot.id)
        if self._mode() == 'reflink':
            _unlink(path)
            return
        with self._lock:
            if not os.path.exists(path):
                _unlink(path + _DELETED)
            elif self._children(os.path.basename(path)):
                open(path + _DELETED, 'w').close()  # hidden until nothing uses it
            else:
                parent = self._backing(path)
                _unlink(path)
                _unlink(path + _DELETED)
                self._reap(parent)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        snap = self._existing('snapshot', snapshot.id)
        path = self._file('volume', volume.id)
        size = max(int(volume.size) * GiB, self._virtual_size(snap))
        if self._mode() == 'reflink':
            self._new_raw(path, size, src=snap)
        else:
            with self._lock:  # not while delete_snapshot looks for its children
                self._new_qcow2(path, size, self._existing('snapshot', snapshot.id))
        return {'provider_location': path}

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        src = self._existing('volume', src_vref.id)
        path = self._file('volume', volume.id)
        if os.path.exists(path):
            raise _error(f'{path} already exists')
        size = max(int(volume.size) * GiB, self._virtual_size(src))
        if self._mode() == 'reflink':
            self._new_raw(path, size, src=src)
        else:
            with self._lock:
                frozen = self._file('clone', volume.id)
                self._freeze(src, frozen)
                self._new_qcow2(path, size, frozen)
        return {'provider_location': path}

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """Replace the volume's file by a copy (reflink) or a new overlay (qcow2) of the
        snapshot, keeping the volume's size; the volume must not be attached."""
        vol = self._existing('volume', volume.id)
        snap = self._existing('snapshot', snapshot.id)
        size = max(int(volume.size) * GiB, self._virtual_size(vol), self._virtual_size(snap))
        if self._mode() == 'reflink':
            self._new_raw(vol, size, src=snap, replace=True)
            return
        with self._lock:
            self._require_idle(vol)
            old_parent = self._backing(vol)
            self._new_qcow2(vol, size, snap, replace=True)
            self._reap(old_parent)

    # ---- images
    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        """Write a raw or qcow2 image into the existing volume file (qemu-img -n)."""
        info = image_service.info(context, image_id)
        dst = self._existing('volume', volume.id)
        if info['virtual_size'] > self._virtual_size(dst):
            raise _error(f'image {image_id} does not fit in {volume.name}')
        out_format = 'raw' if self._mode() == 'reflink' else 'qcow2'
        if out_format == 'qcow2':
            self._require_idle(dst)
        self._execute([self._qemu_img, 'convert', '-n', '-f', info['disk_format'],
                       '-O', out_format, image_service.path(context, image_id), dst])

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        """Write the whole volume to the new file image_meta['path'], atomically."""
        src = self._existing('volume', volume.id)
        target = image_meta['path']
        tmp = target + _PART
        in_format = 'raw' if self._mode() == 'reflink' else 'qcow2'
        try:
            self._execute([self._qemu_img, 'convert', '-f', in_format,
                           '-O', image_meta['disk_format'], src, tmp])
            os.replace(tmp, target)
        finally:
            _unlink(tmp)

    # ---- attach
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        """What os-brick's LocalConnector takes unchanged, for example::

            {'driver_volume_type': 'local',
             'data': {'device_path': '/var/lib/gridcentric-storage/volumes/<backend>/'
                                     'volume-5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e',
                      'format': 'qcow2',
                      'volume_id': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e'}}

        ``format`` tells the consumer how to open the file: never probe it.
        """
        path = self._existing('volume', volume.id)
        return {'driver_volume_type': 'local',
                'data': {'device_path': path,
                         'format': 'raw' if self._mode() == 'reflink' else 'qcow2',
                         'volume_id': volume.id}}

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        """Nothing to tear down: the file was only named, never exported."""
