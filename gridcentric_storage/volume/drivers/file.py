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

``qcow2`` (any other filesystem; needs ``qemu-img``): volumes are qcow2 overlays on
frozen snapshot and clone files, by the rules in :mod:`.file_qcow2`; a volume whose
QEMU image lock is held (attached) is not snapshotted, cloned, reverted or extended
in place, except a ``quiesced`` snapshot, which is a full copy.

No later volume can read deleted data: new files are sparse or empty qcow2.
New files appear atomically (written as ``<name>.part``, then linked).
"""

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any, ClassVar

from gridcentric_storage.common import concurrency, owned_dir, processutils
from gridcentric_storage.volume.drivers import base, file_reflink
from gridcentric_storage.volume.drivers.file_common import (
    DELETED,
    MODE_FILE,
    NAME_RE,
    PART,
    UUID_RE,
    GiB,
    error,
    unlink,
)
from gridcentric_storage.volume.drivers.file_qcow2 import Qcow2Chains, header
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

#: One set-up at a time per directory (see FileDriver.do_setup).
_SETUP_LOCKS = concurrency.KeyedLocks()

__all__ = ['FileDriver']

_NAME_RE = NAME_RE  # the names of the driver's own files (tests match them)


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
        self._qcow2 = Qcow2Chains(self.root, self._execute, self._qemu_img)

    @classmethod
    def default_options(cls, backend_id: str, state_path: str) -> dict[str, Any]:
        return {'path': os.path.join(state_path, 'volumes', backend_id)}

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        # The set-up an RPC asks for and the pool's periodic one may run at once
        # on two driver objects of the same directory: one at a time per directory.
        with _SETUP_LOCKS.get(self.root):
            self._setup()

    def _setup(self) -> None:
        try:
            owned_dir.make(self.root)  # recorded: delete_backend removes only ours
            for name in os.listdir(self.root):  # leftovers of interrupted creations
                if name.endswith(PART) and (NAME_RE.match(name[:-len(PART)])
                                            or name.startswith(MODE_FILE + '.')):
                    unlink(os.path.join(self.root, name))
            why_not = self._probe_reflink()
            mode_file = os.path.join(self.root, MODE_FILE)
            recorded = None
            if os.path.exists(mode_file):
                with open(mode_file) as f:
                    recorded = f.read().strip()
        except OSError as e:
            raise error(f'cannot use directory {self.root}: {e}') from e
        wanted = self.options.get('cow_mode', 'auto')
        if recorded and wanted not in ('auto', recorded):
            raise error(f'{self.root} already holds {recorded} volumes; '
                        f'cow_mode {wanted} cannot change that')
        mode = recorded or (wanted if wanted != 'auto' else
                            'qcow2' if why_not else 'reflink')
        if mode == 'reflink' and why_not:
            raise error('cow_mode reflink needs a filesystem with reflink (XFS made with '
                        f'reflink=1, btrfs); FICLONE in {self.root} failed: {why_not}')
        if mode not in ('reflink', 'qcow2'):
            raise error(f'unknown mode {mode!r} in {mode_file}')
        if not recorded:
            # a name of its own: another process may be setting the directory up
            fd, part = tempfile.mkstemp(prefix=MODE_FILE + '.', suffix=PART, dir=self.root)
            with os.fdopen(fd, 'w') as f:
                f.write(mode + '\n')
            os.chmod(part, 0o644)
            os.replace(part, mode_file)
        self.mode = mode

    def delete_backend(self) -> None:
        """The backend was deleted: remove its directory if set-up created it,
        else only our mode record. The DB refuses to delete a backend that
        holds volumes, so a volume file here means a wrong view of the DB:
        then nothing is removed."""
        if not os.path.isdir(self.root):
            return
        names = os.listdir(self.root)
        if any(NAME_RE.match(n) and n.startswith('volume-') for n in names):
            raise error(f'{self.root} still holds volume files; left as it is')
        if not owned_dir.remove(self.root) and not any(NAME_RE.match(n) for n in names):
            unlink(os.path.join(self.root, MODE_FILE))

    def _probe_reflink(self) -> str | None:
        """Return None when FICLONE works in the directory, else why not."""
        return file_reflink.probe(self.root)

    def check_for_setup_error(self) -> None:
        mode = self._mode()
        if not os.path.isdir(self.root) or not os.access(self.root, os.W_OK | os.X_OK):
            raise error(f'{self.root} is not a writable directory')
        if mode == 'qcow2' and not os.access(self._qemu_img, os.X_OK):
            raise error('cow_mode qcow2 needs qemu-img, which is not installed '
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
            if name.startswith('volume-') and NAME_RE.match(name):
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

    # ---- paths and sizes
    def _mode(self) -> str:
        if self.mode is None:
            raise error(f'do_setup has not run for {self.root}')
        return self.mode

    def _file(self, kind: str, res_id: Any) -> str:
        """Absolute path of ``<kind>-<id>``; ids must be UUIDs (no path traversal)."""
        # fullmatch: '$' would let a trailing newline through
        if not isinstance(res_id, str) or not UUID_RE.fullmatch(res_id):
            raise error(f'{kind} id {res_id!r} is not a UUID; refusing to build a '
                        'file name from it')
        path = os.path.join(self.root, f'{kind}-{res_id}')
        if os.path.dirname(os.path.abspath(path)) != self.root:
            raise error(f'{path} is outside {self.root}')
        return path

    def _existing(self, kind: str, res_id: Any) -> str:
        path = self._file(kind, res_id)
        if not os.path.exists(path) or os.path.exists(path + DELETED):
            raise error(f'{kind}-{res_id} does not exist in {self.root}')
        return path

    def _virtual_size(self, path: str) -> int:
        return os.stat(path).st_size if self.mode == 'reflink' else header(path)[0]

    # ---- volumes
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        """Blank volume; returns ``{'provider_location': '<path>/volume-<id>'}``."""
        path, size = self._file('volume', volume.id), int(volume.size) * GiB
        if os.path.exists(path):
            raise error(f'{path} already exists')
        if self._mode() == 'reflink':
            file_reflink.new_raw(path, size)
        else:
            self._qcow2.new(path, size)
        return {'provider_location': path}

    def delete_volume(self, volume: VolumeRef) -> None:
        path = self._file('volume', volume.id)
        if self._mode() == 'reflink' or not os.path.exists(path):
            unlink(path)
            return
        with self._qcow2.lock:
            if self._qcow2.children(os.path.basename(path)):
                raise error(f'other files back onto {path}')
            parent = self._qcow2.backing(path)
            unlink(path)
            self._qcow2.reap(parent)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        path, size = self._existing('volume', volume.id), int(new_size) * GiB
        if size < self._virtual_size(path):
            raise error(f'cannot shrink {volume.name} to {new_size} GiB')
        if self._mode() == 'reflink':
            os.truncate(path, size)
        else:
            self._qcow2.require_idle(path)
            self._execute([self._qemu_img, 'resize', '-q', '-f', 'qcow2', path, str(size)])

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        vol = self._existing('volume', snapshot.volume_id)
        path = self._file('snapshot', snapshot.id)
        if self._mode() == 'reflink':
            file_reflink.new_raw(path, 0, src=vol)
            os.chmod(path, 0o440)
        elif snapshot.get('quiesced') and self._qcow2.in_use(vol):
            self._qcow2.copy(vol, path)
            os.chmod(path, 0o440)
        else:
            with self._qcow2.lock:
                self._qcow2.freeze(vol, path)
        return {'provider_location': path}

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        path = self._file('snapshot', snapshot.id)
        if self._mode() == 'reflink':
            unlink(path)
            return
        with self._qcow2.lock:
            if not os.path.exists(path):
                unlink(path + DELETED)
            elif self._qcow2.children(os.path.basename(path)):
                open(path + DELETED, 'w').close()  # hidden until nothing uses it
            else:
                parent = self._qcow2.backing(path)
                unlink(path)
                unlink(path + DELETED)
                self._qcow2.reap(parent)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        snap = self._existing('snapshot', snapshot.id)
        path = self._file('volume', volume.id)
        size = max(int(volume.size) * GiB, self._virtual_size(snap))
        if self._mode() == 'reflink':
            file_reflink.new_raw(path, size, src=snap)
        else:
            with self._qcow2.lock:  # not while delete_snapshot looks for its children
                self._qcow2.new(path, size, self._existing('snapshot', snapshot.id))
        return {'provider_location': path}

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        src = self._existing('volume', src_vref.id)
        path = self._file('volume', volume.id)
        if os.path.exists(path):
            raise error(f'{path} already exists')
        size = max(int(volume.size) * GiB, self._virtual_size(src))
        if self._mode() == 'reflink':
            file_reflink.new_raw(path, size, src=src)
        else:
            with self._qcow2.lock:
                frozen = self._file('clone', volume.id)
                self._qcow2.freeze(src, frozen)
                self._qcow2.new(path, size, frozen)
        return {'provider_location': path}

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """Replace the volume's file by a copy (reflink) or a new overlay (qcow2) of the
        snapshot, keeping the volume's size; the volume must not be attached."""
        vol = self._existing('volume', volume.id)
        snap = self._existing('snapshot', snapshot.id)
        size = max(int(volume.size) * GiB, self._virtual_size(vol), self._virtual_size(snap))
        if self._mode() == 'reflink':
            file_reflink.new_raw(vol, size, src=snap, replace=True)
            return
        with self._qcow2.lock:
            self._qcow2.require_idle(vol)
            old_parent = self._qcow2.backing(vol)
            self._qcow2.new(vol, size, snap, replace=True)
            self._qcow2.reap(old_parent)

    # ---- images
    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        """Write a raw or qcow2 image into the existing volume file (qemu-img -n)."""
        info = image_service.info(context, image_id)
        dst = self._existing('volume', volume.id)
        if info['virtual_size'] > self._virtual_size(dst):
            raise error(f'image {image_id} does not fit in {volume.name}')
        out_format = 'raw' if self._mode() == 'reflink' else 'qcow2'
        if out_format == 'qcow2':
            self._qcow2.require_idle(dst)
        self._execute([self._qemu_img, 'convert', '-n', '-f', info['disk_format'],
                       '-O', out_format, image_service.path(context, image_id), dst])

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        """Write the whole volume to the new file image_meta['path'], atomically."""
        src = self._existing('volume', volume.id)
        target = image_meta['path']
        tmp = target + PART
        in_format = 'raw' if self._mode() == 'reflink' else 'qcow2'
        try:
            self._execute([self._qemu_img, 'convert', '-f', in_format,
                           '-O', image_meta['disk_format'], src, tmp])
            os.replace(tmp, target)
        finally:
            unlink(tmp)

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
