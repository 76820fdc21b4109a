"""The LVM backends of the conformance suite: real lvm2 on a loop-device VG.

This machine has no device-mapper, and the VG of tools/lvm-loop.sh runs lvm2
with ``activation = 0``; the driver then runs with ``activation: false`` and
reaches an LV's bytes through a loop device over its extents (the documented
fallback, :meth:`LVMDriver.data_path`). What lvm2 refuses there (COW
snapshots, thin pools) is skipped with the reason; the driver's commands for
it are checked in tests/unit/volume/drivers/test_lvm.py.
"""

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.conformance.volume.backends import SNAPSHOTS, Backend, load
from tests.fixtures import lvm as lvm_fixture
from tests.fixtures import tgt as tgt_fixture

NO_DM = ("this machine has no device-mapper, and the loop-device VG of "
         "tools/lvm-loop.sh runs lvm2 with activation = 0")
NO_SNAPSHOTS = (f'{NO_DM}: lvm2 refuses COW snapshots there ("Can\'t create snapshot '
                'without using device-mapper kernel driver"), so snapshots, volumes from '
                'snapshots and revert cannot run on lvm-thick (their lvm2 commands: '
                'tests/unit/volume/drivers/test_lvm.py)')
NO_THIN = (f'{NO_DM}: lvm2 cannot create or use a thin pool there, so no lvm-thin '
           'scenario can run (the thin commands: tests/unit/volume/drivers/test_lvm.py)')


def _device_mapper() -> bool:
    return os.path.exists('/dev/mapper/control')


class LVMBackend(Backend):
    def __init__(self, loop_vg: lvm_fixture.LoopVG, targets_dir: str) -> None:
        self.name = 'lvm-thick'
        self.loop_vg = loop_vg
        self.driver = load('lvm', {'volume_group': loop_vg.vg,
                                   'lvm_system_dir': loop_vg.system_dir,
                                   'activation': False, 'targets_dir': targets_dir})
        self.lvm: Any = self.driver
        self.targets_dir = targets_dir
        self.cannot = {SNAPSHOTS: NO_SNAPSHOTS}

    def _pwrite(self, name: str, offset: int, data: bytes) -> None:
        with self.lvm.data_path(name, write=True) as path:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _pread(self, name: str, offset: int, length: int) -> bytes:
        with self.lvm.data_path(name, write=False) as path:
            fd = os.open(path, os.O_RDONLY)
            try:
                return os.pread(fd, length, offset)
            finally:
                os.close(fd)

    def write(self, volume: VolumeRef, offset: int, data: bytes) -> None:
        self._pwrite(volume.name, offset, data)

    def read(self, volume: VolumeRef, offset: int, length: int) -> bytes:
        return self._pread(volume.name, offset, length)

    def read_snapshot(self, snapshot: SnapshotRef, offset: int, length: int) -> bytes:
        return self._pread('_' + snapshot.name, offset, length)

    def _lvs(self) -> dict[str, dict[str, str]]:
        out = subprocess.run(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix',
                              '-o', 'lv_name,lv_size', self.loop_vg.vg],
                             env=self.loop_vg.env(), capture_output=True, text=True,
                             check=True, timeout=60).stdout
        return {r['lv_name']: r for r in json.loads(out)['report'][0]['lv']}

    def size(self, volume: VolumeRef) -> int:
        return int(self._lvs()[volume.name]['lv_size'])

    def objects(self) -> set[str]:
        """LVs, tgt target files, and loop devices left over the PV (data paths)."""
        out = subprocess.run(['losetup', '--list', '--json', '-O', 'NAME,BACK-FILE'],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        loops = {'loop:' + d['name'] for d in json.loads(out or '{}').get('loopdevices', [])
                 if d.get('back-file') == self.loop_vg.pv}
        targets = {'target:' + n for n in os.listdir(self.targets_dir)}
        return set(self._lvs()) | loops | targets


def lvm_backend(lvm_type: str, tmp_path: Any) -> Iterator[Backend]:
    if lvm_type == 'thin' and not _device_mapper():
        pytest.skip(NO_THIN)
    if _device_mapper():  # pragma: no cover - not on the test machines
        pytest.skip('device-mapper is present, but the loop-device VG of '
                    'tools/lvm-loop.sh has activation = 0: this suite has no LVM set-up '
                    'with activation yet')
    # the driver's setup check pings its target daemon, which no earlier test may have started
    tgt_fixture.tgtd_or_skip()
    for loop_vg in lvm_fixture.vg_or_skip(tmp_path, size_mib=6144):
        yield LVMBackend(loop_vg, str(tmp_path / 'targets'))
