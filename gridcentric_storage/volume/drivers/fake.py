"""A fake volume driver for tests and demos: volumes are bytes in this process's memory.

It is not a storage backend: nothing survives the process and no host can
attach its volumes (``DRIVER_VOLUME_TYPE`` ``fake`` has no os-brick connector,
so streams and attachments refuse them with a 409). It keeps the whole driver
contract, data included, so the API, the manager and the driver conformance
suite (tests/conformance/volume) can run without storage:

* a volume is a sparse map of 64 KiB blocks (never-written blocks read as
  zeros); snapshots, clones and volumes from snapshots share the blocks of
  their source (copy-on-write, as blocks are immutable ``bytes``) and stay
  independent of it;
* the volumes live per backend id, beyond one driver object, the way real
  storage outlives a driver reload (a backend's options were updated);
  ``delete_backend`` forgets them;
* images go through ``qemu-img`` (qcow2 in, qcow2 out), on files only;
* :meth:`read`, :meth:`write`, :meth:`read_snapshot`, :meth:`volume_size`,
  :meth:`qos` (what ``set_qos`` enforces) and :meth:`objects` give tests the
  storage's view of the volumes.

Options: ``capacity_gb`` (default 1000) and ``fail_on`` (a list of method
names that raise DriverError, to exercise error paths end to end).
"""

import dataclasses
import os
import re
import shutil
import tempfile
import threading
from typing import Any, ClassVar

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

__all__ = ['FakeDriver']

GiB = 1 << 30
BLOCK = 64 << 10
_UUID_RE = re.compile('[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
                      re.IGNORECASE)


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def _uuid(kind: str, res_id: Any) -> str:
    if not isinstance(res_id, str) or not _UUID_RE.fullmatch(res_id):
        raise _error(f'{kind} id {res_id!r} is not a UUID')
    return res_id


@dataclasses.dataclass
class _Disk:
    """``size`` bytes; blocks absent from ``blocks`` are zeros."""

    size: int
    blocks: dict[int, bytes] = dataclasses.field(default_factory=dict)

    def copy(self, size: int | None = None) -> '_Disk':
        return _Disk(max(self.size, size or 0), dict(self.blocks))

    def _check(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise _error(f'bytes {offset}-{offset + length} are outside the volume '
                         f'({self.size} bytes)')

    def read(self, offset: int, length: int) -> bytes:
        self._check(offset, length)
        out = bytearray()
        while length:
            index, start = divmod(offset, BLOCK)
            take = min(length, BLOCK - start)
            block = self.blocks.get(index)
            out += block[start:start + take] if block else bytes(take)
            offset, length = offset + take, length - take
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        self._check(offset, len(data))
        view = memoryview(data)
        while view:
            index, start = divmod(offset, BLOCK)
            take = min(len(view), BLOCK - start)
            block = bytearray(self.blocks.get(index) or bytes(BLOCK))
            block[start:start + take] = view[:take]
            if any(block):
                self.blocks[index] = bytes(block)
            else:  # all zeros again: sparse
                self.blocks.pop(index, None)
            offset, view = offset + take, view[take:]


@dataclasses.dataclass
class _Store:
    volumes: dict[str, _Disk] = dataclasses.field(default_factory=dict)
    snapshots: dict[str, tuple[str, _Disk]] = dataclasses.field(default_factory=dict)
    qos: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


class FakeDriver(base.VolumeDriver):
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object',
        'properties': {
            'capacity_gb': {'type': 'number', 'minimum': 0},
            'fail_on': {'type': 'array', 'items': {'type': 'string'}},
            'password': {'type': 'string'},
        },
        'additionalProperties': False,
    }
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset({'password'})
    #: No host can open these: streams and attachments refuse them (409).
    DRIVER_VOLUME_TYPE: ClassVar[str] = 'fake'

    _stores: ClassVar[dict[str, _Store]] = {}  # backend id -> its volumes
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        with self._lock:
            self._store = self._stores.setdefault(self.backend_id, _Store())
        self._qemu_img = shutil.which('qemu-img') or '/usr/bin/qemu-img'

    def _maybe_fail(self, method: str) -> None:
        if method in self.options.get('fail_on', []):
            raise _error('%s failed (fail_on)' % method)

    def _volume(self, volume_id: Any) -> _Disk:
        disk = self._store.volumes.get(_uuid('volume', volume_id))
        if disk is None:
            raise _error(f'volume-{volume_id} does not exist')
        return disk

    def _snapshot(self, snapshot_id: Any) -> _Disk:
        found = self._store.snapshots.get(_uuid('snapshot', snapshot_id))
        if found is None:
            raise _error(f'snapshot-{snapshot_id} does not exist')
        return found[1]

    def _add(self, volume: VolumeRef, disk: _Disk) -> dict[str, Any]:
        """Give ``disk`` the volume's id (under the lock)."""
        if _uuid('volume', volume.id) in self._store.volumes:
            raise _error(f'volume-{volume.id} already exists')
        self._store.volumes[volume.id] = disk
        return {'provider_location': 'fake://%s' % volume.name}

    # ---- for tests
    def read(self, volume_id: str, offset: int, length: int) -> bytes:
        with self._lock:
            return self._volume(volume_id).read(offset, length)

    def write(self, volume_id: str, offset: int, data: bytes) -> None:
        with self._lock:
            self._volume(volume_id).write(offset, data)

    def volume_size(self, volume_id: str) -> int:
        with self._lock:
            return self._volume(volume_id).size

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        with self._lock:
            return self._snapshot(snapshot_id).read(offset, length)

    def qos(self, volume_id: str) -> dict[str, int] | None:
        """The limits the backend enforces on the volume (None: never set)."""
        with self._lock:
            return self._store.qos.get(volume_id)

    def objects(self) -> set[str]:
        """What the backend holds: ``volume-<id>`` and ``snapshot-<id>`` names."""
        with self._lock:
            return ({'volume-' + v for v in self._store.volumes} |
                    {'snapshot-' + s for s in self._store.snapshots})

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        self._maybe_fail('do_setup')

    def check_for_setup_error(self) -> None:
        self._maybe_fail('check_for_setup_error')

    def delete_backend(self) -> None:
        with self._lock:
            self._stores.pop(self.backend_id, None)

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        total = float(self.options.get('capacity_gb', 1000))
        with self._lock:
            used = sum(d.size for d in self._store.volumes.values()) / GiB
        return {'volume_backend_name': self.backend_name, 'vendor_name': 'Open Source',
                'driver_version': self.VERSION, 'storage_protocol': 'fake',
                'total_capacity_gb': total, 'free_capacity_gb': max(total - used, 0.0),
                'provisioned_capacity_gb': round(used, 2),
                'reserved_percentage': 0, 'thin_provisioning_support': False,
                'thick_provisioning_support': True, 'multiattach': True,
                'QoS_support': True, 'online_extend_support': True}

    # ---- volumes
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        self._maybe_fail('create_volume')
        with self._lock:
            return self._add(volume, _Disk(int(volume.size) * GiB))

    def delete_volume(self, volume: VolumeRef) -> None:
        self._maybe_fail('delete_volume')
        with self._lock:
            self._store.volumes.pop(_uuid('volume', volume.id), None)
            self._store.qos.pop(volume.id, None)

    def migrate_volume(self, context: Any, volume: VolumeRef,
                       host: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """To another fake backend: the blocks move between the two stores."""
        self._maybe_fail('migrate_volume')
        if host.get('driver') != 'fake':
            return False, None
        with self._lock:
            disk = self._volume(volume.id)
            dest = self._stores.setdefault(host['backend_id'], _Store())
            if volume.id in dest.volumes:
                raise _error(f'volume-{volume.id} already exists on backend '
                             f'{host.get("backend_name")}')
            dest.volumes[volume.id] = self._store.volumes.pop(volume.id)
            qos = self._store.qos.pop(volume.id, None)
            if qos is not None:
                dest.qos[volume.id] = qos
        assert disk is not None
        return True, {'provider_location': 'fake://%s' % volume.name}

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        self._maybe_fail('extend_volume')
        with self._lock:
            disk = self._volume(volume.id)
            if int(new_size) * GiB < disk.size:
                raise _error(f'cannot shrink {volume.name} to {new_size} GiB')
            disk.size = int(new_size) * GiB

    def set_qos(self, volume: VolumeRef, limits: Any) -> None:
        self._maybe_fail('set_qos')
        with self._lock:
            self._volume(volume.id)
            self._store.qos[volume.id] = dict(limits)

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        self._maybe_fail('create_snapshot')
        with self._lock:
            snapshot_id = _uuid('snapshot', snapshot.id)
            disk = self._volume(snapshot.volume_id)
            if snapshot_id in self._store.snapshots:
                raise _error(f'snapshot-{snapshot_id} already exists')
            self._store.snapshots[snapshot_id] = (snapshot.volume_id, disk.copy())
        return None

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        self._maybe_fail('delete_snapshot')
        with self._lock:
            self._store.snapshots.pop(_uuid('snapshot', snapshot.id), None)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        self._maybe_fail('create_volume_from_snapshot')
        with self._lock:
            source = self._snapshot(snapshot.id)
            return self._add(volume, source.copy(int(volume.size) * GiB))

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        self._maybe_fail('create_cloned_volume')
        with self._lock:
            source = self._volume(src_vref.id)
            return self._add(volume, source.copy(int(volume.size) * GiB))

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """The volume gets the snapshot's data and keeps its size."""
        self._maybe_fail('revert_to_snapshot')
        with self._lock:
            disk, source = self._volume(volume.id), self._snapshot(snapshot.id)
            size = max(disk.size, int(volume.size) * GiB)
            self._store.volumes[volume.id] = source.copy(size)

    # ---- images: files through qemu-img, never the volume's own format
    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        self._maybe_fail('copy_image_to_volume')
        with self._lock:
            size = self._volume(volume.id).size
        info = image_service.info(context, image_id)
        if int(info['virtual_size']) > size:
            raise _error(f"image {image_id} ({info['virtual_size']} bytes) does not fit "
                         f'in {volume.name} ({size} bytes)')
        with tempfile.TemporaryDirectory(prefix='fake-image-') as scratch:
            raw = os.path.join(scratch, 'image.raw')
            self._execute_qemu_img(['convert', '-f', info['disk_format'], '-O', 'raw',
                                    image_service.path(context, image_id), raw])
            staged = _Disk(size)
            with open(raw, 'rb') as f:
                offset = 0
                while chunk := f.read(BLOCK):
                    staged.write(offset, chunk)
                    offset += len(chunk)
        with self._lock:
            disk = self._volume(volume.id)
            for index in range(-(-offset // BLOCK)):  # the image's part is replaced
                disk.blocks.pop(index, None)
                if index in staged.blocks:
                    disk.blocks[index] = staged.blocks[index]

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        """Write the volume to the new file ``image_meta['path']``, atomically."""
        self._maybe_fail('copy_volume_to_image')
        fmt, target = image_meta.get('disk_format', 'raw'), image_meta['path']
        if fmt not in ('raw', 'qcow2'):
            raise _error(f'cannot write a {fmt} image; raw and qcow2 are supported')
        with self._lock:
            disk = self._volume(volume.id).copy()
        # next to the target (os.replace cannot cross filesystems), hidden like
        # every unfinished file of the image store
        with tempfile.TemporaryDirectory(prefix='.fake-image-',
                                         dir=os.path.dirname(target) or None) as scratch:
            raw = os.path.join(scratch, 'volume.raw')
            with open(raw, 'wb') as f:
                for index, block in sorted(disk.blocks.items()):
                    f.seek(index * BLOCK)
                    f.write(block)
                f.truncate(disk.size)
            out = raw
            if fmt == 'qcow2':
                out = os.path.join(scratch, 'volume.qcow2')
                self._execute_qemu_img(['convert', '-f', 'raw', '-O', 'qcow2', raw, out])
            os.replace(out, target)

    def _execute_qemu_img(self, argv: list[str]) -> None:
        processutils.execute([self._qemu_img, *argv])

    # ---- attach: nothing can, by design
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        with self._lock:
            self._volume(volume.id)
        return {'driver_volume_type': 'fake', 'data': {'volume_id': volume.id}}

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        return None
