"""The StorPool backend of the conformance suite: the driver against the StorPool API
simulator (no StorPool cluster can run here; tests/fixtures/storpool_sim.py).

The outside view reads and writes the simulator's backing files, found by the
names Cinder and os-brick give StorPool objects; ``objects()`` lists every
volume and snapshot the cluster holds, deleted snapshots kept for their
children included, so a leak of any of them fails the scenario.
"""

import os
from collections.abc import Iterator
from typing import Any

from oslo_config import cfg

from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.conformance.volume.backends import Backend, load
from tests.fixtures import storpool


class StorPoolBackend(Backend):
    name = 'storpool'

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.cluster = sim.cluster
        self.driver = load('storpool', {})
        self.cannot = {}

    def _path(self, name: str) -> str:
        return str(self.cluster.path(name))

    def _volume(self, volume: VolumeRef) -> str:
        return self._path(f'os--volume-{volume.id}')

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        with open(self._volume(volume), 'r+b') as f:
            f.seek(offset)
            f.write(data)

    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes:
        with open(self._volume(volume), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes:
        with open(self._path(f'os--snap--none--snapshot-{snapshot.id}'), 'rb') as f:
            f.seek(offset)
            return f.read(length)

    def size(self, volume: VolumeRef) -> int:
        return os.path.getsize(self._volume(volume))

    def objects(self) -> set[str]:
        return set(self.cluster.names())


def storpool_backend(tmp_path: Any) -> Iterator[Backend]:
    storpool.client_or_skip()
    conf = cfg.CONF
    # the shared gc_conf fixture enables the drivers it knows; this one too
    conf.set_override('enabled_drivers', [*conf.volume.enabled_drivers, 'storpool'],
                      group='volume')
    # the connecting host of test_connection.py is a StorPool client too
    with storpool.cluster(tmp_path, hosts={'conformance-host': 3}) as sim:
        yield StorPoolBackend(sim)
