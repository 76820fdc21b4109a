"""One backend per volume driver for the conformance suite: the driver, set up on real
storage where this machine has it, and an outside view of that storage.

A :class:`Backend` reads and writes a volume's bytes, and lists what the
storage holds (files, RBD images and snapshots, LVs), through its own means,
not the driver's code under test where that can be avoided::

    backend.write(volume, 0, b'A' * MiB)
    assert backend.read(volume, 0, MiB) == b'A' * MiB
    assert backend.objects() == before      # nothing left behind

Some set-ups cannot run a feature here (LVM snapshots need device-mapper):
``backend.cannot`` maps the feature to the reason, and :meth:`Backend.require`
skips with it.
"""

import abc
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.volume import drivers
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.fixtures import ceph, loopfs

GiB, MiB = 1 << 30, 1 << 20
SNAPSHOTS = 'snapshots'   # a feature: snapshots, volumes from them, revert


def new_volume(size: int = 1) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size, 'name': 'data'})


def new_snapshot(volume: VolumeRef) -> SnapshotRef:
    return SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                        'volume_size': volume.size})


def load(driver_name: str, options: dict[str, Any], backend_id: str = 'conformance',
         **kwargs: Any) -> base.VolumeDriver:
    """The driver class from the registry, set up and checked as the pool does."""
    cls: Any = drivers.get_driver_class(driver_name)
    driver: base.VolumeDriver = cls(backend_id, f'conformance-{driver_name}', options,
                                    **kwargs)
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


class Backend(abc.ABC):
    name: str
    driver: base.VolumeDriver
    cannot: dict[str, str]

    def require(self, *features: str) -> None:
        for feature in features:
            if feature in self.cannot:
                pytest.skip(self.cannot[feature])

    @abc.abstractmethod
    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None: ...

    @abc.abstractmethod
    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def size(self, volume: VolumeRef) -> int:
        """The volume's size in bytes, as a reader of it sees it."""

    @abc.abstractmethod
    def objects(self) -> set[str]:
        """Everything the backend's storage holds now (names)."""

    def close(self) -> None:
        return None


# ---------------------------------------------------------------- fake
class FakeBackend(Backend):
    name = 'fake'

    def __init__(self) -> None:
        self.driver = load('fake', {})
        self.cannot = {}
        self.fake: Any = self.driver

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        self.fake.write(volume.id, offset, data)

    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes:
        return bytes(self.fake.read(volume.id, offset, length))

    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes:
        return bytes(self.fake.read_snapshot(snapshot.id, offset, length))

    def size(self, volume: VolumeRef) -> int:
        return int(self.fake.volume_size(volume.id))

    def objects(self) -> set[str]:
        return set(self.fake.objects())

    def close(self) -> None:
        self.driver.delete_backend()


# ---------------------------------------------------------------- file
def qemu_region(fmt: str, file_node: dict[str, Any], offset: int, length: int) -> str:
    """A QEMU image spec for bytes [offset, offset + length) of an image in ``fmt``."""
    node = file_node if fmt == 'raw' else {'driver': fmt, 'file': file_node}
    return 'json:' + json.dumps({'driver': 'raw', 'offset': offset, 'size': length,
                                 'file': node})


def qemu_read(spec: str) -> bytes:
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, 'out.raw')
        proc = subprocess.run(['qemu-img', 'convert', '-O', 'raw', spec, out],
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        with open(out, 'rb') as f:
            return f.read()


def qemu_write(spec: str, data: bytes) -> None:
    with tempfile.NamedTemporaryFile() as source:
        source.write(data)
        source.flush()
        proc = subprocess.run(['qemu-io', '-c', f'write -q -s {source.name} 0 {len(data)}',
                               spec], capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


class FileBackend(Backend):
    """``qcow2`` on the test's directory, ``reflink`` on a loop-mounted XFS."""

    def __init__(self, mode: str, root: str) -> None:
        self.name = f'file-{mode}'
        self.driver = load('file', {'path': root, 'cow_mode': mode})
        self.root = os.path.realpath(root)
        self.fmt = 'raw' if mode == 'reflink' else 'qcow2'
        self.cannot = {}

    def _spec(self, name: str, offset: int, length: int) -> str:
        path = os.path.join(self.root, name)
        return qemu_region(self.fmt, {'driver': 'file', 'filename': path}, offset, length)

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        qemu_write(self._spec(volume.name, offset, len(data)), data)

    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes:
        return qemu_read(self._spec(volume.name, offset, length))

    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes:
        return qemu_read(self._spec(snapshot.name, offset, length))

    def size(self, volume: VolumeRef) -> int:
        out = subprocess.run(['qemu-img', 'info', '-U', '-f', self.fmt, '--output=json',
                              os.path.join(self.root, volume.name)], check=True,
                             capture_output=True, text=True, timeout=60).stdout
        return int(json.loads(out)['virtual-size'])

    def objects(self) -> set[str]:
        return set(os.listdir(self.root))


def file_backend(mode: str, tmp_path: Any) -> Iterator[Backend]:
    if mode == 'qcow2':
        yield FileBackend('qcow2', str(tmp_path / 'volumes'))
        return
    for mountpoint in loopfs.mounted_or_skip('xfs', tmp_path):
        yield FileBackend('reflink', os.path.join(mountpoint, 'volumes'))


# ---------------------------------------------------------------- rbd
class RBDBackend(Backend):
    """The test Ceph (tools/ceph.sh), seen through a librbd client of its own."""

    name = 'rbd'

    def __init__(self, conf: str, pool: str = 'rbd') -> None:
        import rados
        import rbd

        self.rbd = rbd
        self.driver = load('rbd', {'pool': pool, 'ceph_conf': conf, 'connect_timeout': 10,
                                   'keyring_in_connection_info': True})
        self.cannot = {}
        self.cluster = rados.Rados(conffile=conf, conf={'client_mount_timeout': '30'})
        self.cluster.connect(timeout=30)
        self.ioctx = self.cluster.open_ioctx(pool)

    def _image(self, name: str, snapshot: str | None = None) -> Any:
        return self.rbd.Image(self.ioctx, name, snapshot=snapshot,
                              read_only=snapshot is not None)

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        with self._image(volume.name) as image:
            image.write(data, offset)
            image.flush()

    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes:
        with self._image(volume.name) as image:
            return bytes(image.read(offset, length))

    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes:
        with self._image('volume-' + snapshot.volume_id, snapshot.name) as image:
            return bytes(image.read(offset, length))

    def size(self, volume: VolumeRef) -> int:
        with self._image(volume.name) as image:
            return int(image.size())

    def objects(self) -> set[str]:
        found = set()
        for name in self.rbd.RBD().list(self.ioctx):
            found.add(name)
            try:
                with self._image(name) as image:
                    found |= {f"{name}@{s['name']}" for s in image.list_snaps()}
            except self.rbd.ImageNotFound:
                continue
        return found

    def close(self) -> None:
        self.driver.close()  # type: ignore[attr-defined]
        self.ioctx.close()
        self.cluster.shutdown()


def rbd_backend() -> Iterator[Backend]:
    conf = ceph.ceph_conf()
    ceph.bindings_or_skip()
    backend = RBDBackend(conf)
    try:
        yield backend
    finally:
        backend.close()
