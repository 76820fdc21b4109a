"""Part 1 of bench/volume_bench.py: the volume drivers directly, per backend.

Sets up each backend (file on ext4 or a loop-mounted XFS, lvm thick on a loop
VG, rbd on the throw-away Ceph of tools/ceph.sh), times a full copy, snapshots
and clones of a volume with real data, and prints the part-1 table.
"""

import contextlib
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from volume_common import (
    ROOT,
    GiB,
    MiB,
    allocated,
    free_port,
    fsync_file,
    gib,
    make_payload,
    run,
    secs,
    timed,
)

from gridcentric_storage.common import context, exception
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

CEPH_SH = os.path.join(ROOT, 'tools', 'ceph.sh')
ADMIN = context.get_admin_context()  # only administrators name image files by path
REPEAT = 3     # snapshots and clones timed per copy-on-write volume (median)


@dataclasses.dataclass
class Backend:
    name: str
    driver: Any
    sizes: tuple[tuple[int, int], ...]
    allocated: Callable[[VolumeRef], int]
    full_copy: Callable[[VolumeRef], None] | None  # None: the clone is the full copy
    note: str = ''
    cow: bool = True
    #: how the payload gets in, when not by the driver's copy_image_to_volume
    write: Callable[[VolumeRef, str], None] | None = None


@dataclasses.dataclass
class Row:
    backend: str
    size_gib: int
    data: int
    allocated: int
    write: float
    copy: float | None
    snapshot: float | None
    clone: float
    snapshot_note: str = ''


def _images(payload: str) -> ImageStore:
    """The image store a driver gets, allowing ADMIN the payload's directory."""
    directory = os.path.dirname(payload)
    return ImageStore(root=os.path.join(directory, '.store'), allowed_paths=[directory])


def new_volume(size_gib: int) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size_gib, 'name': 'bench'})


def measure(backend: Backend, scratch: str, pool: bytes) -> list[Row]:
    rows = []
    for size_gib, data_mib in backend.sizes:
        payload = os.path.join(scratch, 'payload-%d-%d.raw' % (size_gib, data_mib))
        if not os.path.exists(payload):
            make_payload(payload, size_gib * GiB, data_mib * MiB, pool)
        rows.append(measure_one(backend, size_gib, data_mib, payload))
    return rows


def measure_one(backend: Backend, size_gib: int, data_mib: int, payload: str) -> Row:
    """Write the payload into a new volume, then time a full copy, snapshots and
    clones of it (median of REPEAT for copy-on-write backends, one for lvm thick);
    everything made is deleted again."""
    driver = backend.driver
    repeat = REPEAT if backend.cow else 1
    src = new_volume(size_gib)
    made: list[Callable[[], None]] = []
    snapshots: list[float] = []
    clones: list[float] = []
    snap_note = ''
    try:
        driver.create_volume(src)
        made.append(lambda: driver.delete_volume(src))
        write = timed(lambda: backend.write(src, payload) if backend.write else
                      driver.copy_image_to_volume(ADMIN, src, _images(payload), payload))
        used = backend.allocated(src)
        full_copy = backend.full_copy
        copy = timed(lambda: full_copy(src)) if full_copy else None
        for _ in range(repeat):
            snap = SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': src.id,
                                'volume_size': size_gib, 'name': 'bench'})
            try:
                snapshots.append(timed(functools.partial(driver.create_snapshot, snap)))
            except exception.DriverError as e:
                snap_note = str(e.kwargs.get('reason', e))
                break
            made.append(functools.partial(driver.delete_snapshot, snap))
        for _ in range(repeat):
            clone = new_volume(size_gib)
            clones.append(timed(functools.partial(driver.create_cloned_volume, clone, src)))
            made.append(functools.partial(driver.delete_volume, clone))
    finally:
        for undo in reversed(made):
            undo()
    clone_s = statistics.median(clones)
    return Row(backend.name, size_gib, data_mib * MiB, used, write,
               clone_s if copy is None else copy,
               statistics.median(snapshots) if snapshots else None, clone_s, snap_note)


def file_backend(path: str, mode: str, sizes: tuple[tuple[int, int], ...]) -> Backend:
    from gridcentric_storage.volume.drivers.file import FileDriver
    driver = FileDriver(str(uuid.uuid4()), 'file-' + mode, {'path': path, 'cow_mode': mode})
    driver.do_setup(None)
    driver.check_for_setup_error()
    fmt = 'raw' if mode == 'reflink' else 'qcow2'

    def vol_path(v: VolumeRef) -> str:
        return os.path.join(driver.root, v.name)

    def full_copy(v: VolumeRef) -> None:
        dst = os.path.join(driver.root, 'bench-copy')
        try:
            run(['qemu-img', 'convert', '-f', fmt, '-O', fmt, vol_path(v), dst])
            fsync_file(dst)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(dst)

    backend = Backend('file ' + mode, driver, sizes, lambda v: allocated(vol_path(v)),
                      full_copy)
    if mode == 'reflink':
        # FileDriver.copy_image_to_volume runs its qcow2 lock probe (qemu-img info -f
        # qcow2) on the raw file and refuses; write with its own command instead
        backend.write = lambda v, payload: run(
            ['qemu-img', 'convert', '-n', '-f', 'raw', '-O', 'raw', payload, vol_path(v)])
        backend.note = ('payload written with the qemu-img command of copy_image_to_volume, '
                        'which itself refuses raw volumes (its qcow2 lock probe fails)')
    return backend


@contextlib.contextmanager
def lvm_backend(scratch: str, sizes: tuple[tuple[int, int], ...]) -> Iterator[Backend]:
    from gridcentric_storage.volume.drivers.lvm import LVMDriver
    from tests.fixtures import lvm as lvm_fixture
    # source + clone of the biggest size, the smaller ones, and slack for metadata
    vg_mib = (2 * sum(s for s, _ in sizes) + 2) * 1024
    with lvm_fixture.loop_vg(scratch, size_mib=vg_mib) as vg:
        driver = LVMDriver(str(uuid.uuid4()), 'lvm-thick', {
            'volume_group': vg.vg, 'lvm_system_dir': vg.system_dir, 'activation': False,
            'lvm_type': 'thick', 'volume_clear': 'none',
            'targets_dir': os.path.join(scratch, 'targets')})
        driver.do_setup(None)
        pv_image = os.path.join(vg.workdir, 'pv.img')

        def used(v: VolumeRef) -> int:  # the LV is thick; what its PV file really holds
            return allocated(pv_image)

        yield Backend('lvm thick', driver, sizes, used, None, cow=False,
                      note='no device-mapper here: activation off, data paths are loop '
                      'devices over the LV extents; clone = new LV + qemu-img convert '
                      '(O_DIRECT) of every byte, so it IS the full copy; volume_clear '
                      'none; big size %d GiB, not 32: see below' % sizes[-1][0])


@contextlib.contextmanager
def rbd_backend(sizes: tuple[tuple[int, int], ...], others: tuple[tuple[int, int], ...]
                ) -> Iterator[Backend | str]:
    """Yields the backend or, when Ceph cannot run here, the reason as a string."""
    if not os.path.exists(CEPH_SH) or not os.path.exists(
            os.path.join(ROOT, 'gridcentric_storage', 'volume', 'drivers', 'rbd.py')):
        yield 'tools/ceph.sh or the rbd driver is not there yet'
        return
    ceph_dir = tempfile.mkdtemp(prefix='gc-bench-ceph-')
    os.rmdir(ceph_dir)  # ceph.sh makes it
    env = dict(os.environ, GC_CEPH_DIR=ceph_dir, GC_CEPH_MON_PORT=str(free_port()),
               GC_CEPH_MON_V2_PORT=str(free_port()))
    driver = None
    try:
        try:
            conf = run(['bash', CEPH_SH, 'start'], env=env, timeout=300).strip()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            yield 'tools/ceph.sh start failed: %s' % e
            return
        from gridcentric_storage.volume.drivers.rbd import RBDDriver
        driver = RBDDriver(str(uuid.uuid4()), 'ceph', {'pool': 'rbd', 'ceph_conf': conf,
                                                       'connect_timeout': 60})
        try:
            driver.do_setup(None)
            driver.check_for_setup_error()
        except exception.DriverError as e:
            yield 'the rbd driver cannot use the cluster: %s' % e
            return

        def rbd_cli(*argv: str) -> str:
            return run(['rbd', *argv, '--conf', conf], timeout=600)

        def used(v: VolumeRef) -> int:
            du = json.loads(rbd_cli('du', 'rbd/' + v.name, '--format', 'json'))
            return int(du['images'][0]['used_size'])

        def full_copy(v: VolumeRef) -> None:
            try:
                rbd_cli('cp', '--no-progress', 'rbd/' + v.name, 'rbd/bench-copy')
            finally:
                with contextlib.suppress(RuntimeError):
                    rbd_cli('rm', '--no-progress', 'rbd/bench-copy')

        yield Backend('rbd', driver, sizes, used, full_copy,
                      note='memstore Ceph (1 OSD, size 1, RAM-backed, ~2 GiB): data scaled '
                      'down (%s MiB, the others %s MiB); full copy = rbd cp; clone = '
                      'protected snapshot + layered clone' % (
                          ' and '.join(str(d) for _, d in sizes),
                          ' and '.join(str(d) for _, d in others)))
    finally:
        if driver is not None:
            driver.close()
        subprocess.run(['bash', CEPH_SH, 'stop'], env=env, capture_output=True, timeout=300,
                       check=False)


def print_part1(rows: list[Row], backends: list[Backend], skipped: dict[str, str]) -> None:
    print('1. snapshot and clone vs a full copy (driver objects; seconds; sync before each)')
    print('%-13s %6s %9s %10s %9s %9s %9s %9s %10s' % (
        'backend', 'size', 'data', 'allocated', 'write', 'snapshot', 'clone', 'full copy',
        'clone/copy'))
    for r in rows:
        print('%-13s %3d GiB %9s %10s %s %s %s %s %10s' % (
            r.backend, r.size_gib, gib(r.data), gib(r.allocated), secs(r.write),
            secs(r.snapshot), secs(r.clone), secs(r.copy),
            '%.4f' % (r.clone / r.copy) if r.copy else 'n/a'))
    print('  write: copy_image_to_volume of a sparse raw payload (the driver\'s data path);\n'
          '  allocated: what the volume really holds after the write (file: st_blocks of\n'
          '  the volume file; lvm: of the loop VG\'s PV file, all LVs; rbd: rbd du);\n'
          '  full copy: qemu-img convert to the same format in the same directory + fsync\n'
          '  (reads the whole volume, writes only the data: the cheapest honest copy;\n'
          '  `cp --sparse=never` would write every zero too), rbd cp for rbd, the clone\n'
          '  itself for lvm thick')
    for b in backends:
        if b.note:
            print('  %s: %s' % (b.name, b.note))
    noted = set()
    for r in rows:
        if r.snapshot_note and r.backend not in noted:
            noted.add(r.backend)
            print('  %s: no snapshot possible here: %s' % (
                r.backend, r.snapshot_note.strip().splitlines()[-1].strip()))
    lvm = [r for r in rows if r.backend == 'lvm thick']
    if lvm and lvm[-1].size_gib < 32:
        print('  lvm thick: its copy reads every byte (%.0f MiB/s here), so a 32 GiB clone '
              'would take ~%.0f s: measured at %d GiB to keep the run short'
              % (lvm[-1].size_gib * 1024 / lvm[-1].clone,
                 lvm[-1].clone * 32 / lvm[-1].size_gib, lvm[-1].size_gib))
    for name, why in skipped.items():
        print('  %s: SKIPPED: %s' % (name, why))
    print('\n  growth with size: time at the big size / time at 1 GiB')
    print('  %-13s %8s %10s %10s %10s %10s' % ('backend', 'sizes', 'data ratio', 'snapshot',
                                              'clone', 'full copy'))
    for b in backends:
        small, big = [r for r in rows if r.backend == b.name][:2]

        def ratio(a: float | None, z: float | None) -> str:
            return '%.1fx' % (z / a) if a and z else 'n/a'
        print('  %-13s %8s %9.0fx %10s %10s %10s' % (
            b.name, '%d/%d G' % (big.size_gib, small.size_gib), big.data / small.data,
            ratio(small.snapshot, big.snapshot), ratio(small.clone, big.clone),
            ratio(small.copy, big.copy)))

