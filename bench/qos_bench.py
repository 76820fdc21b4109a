"""Do the QoS limits hold? Measured I/O rates with and without a bytes/s limit.

One run, side by side, on this host:

1. Front-end (QEMU): a VM of the QEMU driver with a raw disk; the disk's
   block backend (what the guest's virtio-blk reads and writes through) is
   driven with QEMU's own ``qemu-io`` (HMP, ``-d disk0/virtio-backend``) in
   1 MiB requests (4 KiB ones for IOPS), first unthrottled, then after the
   driver's ``set_volume_qos`` with ``total_bytes_sec`` (then
   ``read_bytes_sec`` alone, which must leave writes alone, and
   ``total_iops_sec``), the way a live change reaches a running guest. The
   unthrottled rates include a monitor round trip per request.
2. Back-end (RBD, when ``GC_TEST_CEPH_CONF`` names the Ceph of tools/ceph.sh):
   an image of the rbd driver written through librbd (a new client, as QEMU
   would open it) before and after the driver's ``set_qos`` with
   ``total_bytes_sec``: librbd's own throttle, from the image's metadata.

No assertions: each line prints the rate, the limit and their ratio (a ratio
near 1.0 means the limit holds; unthrottled rates show what it holds back).

Run: ``.venv/bin/python bench/qos_bench.py [--mib 64]``
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gridcentric_storage.virt import base, qmp  # noqa: E402
from gridcentric_storage.virt.qemu import QemuDriver  # noqa: E402

MiB = 1 << 20
VM = 'hI-qos-bench'


def _rate(label: str, nbytes: int, seconds: float, limit: float | None, unit: str) -> None:
    rate = nbytes / seconds
    shown = rate / MiB if unit == 'MiB/s' else rate
    if limit is None:
        print(f'  {label:<34} {shown:10.1f} {unit:<7} (no limit)')
    else:
        print(f'  {label:<34} {shown:10.1f} {unit:<7} limit {limit:8.1f}  '
              f'ratio {shown / limit:5.2f}')


def qemu_part(mib: int) -> None:
    print('QEMU front-end: qemu-io through the guest disk\'s block backend')
    work = tempfile.mkdtemp(prefix='gc-hI-', dir='/tmp')
    driver = QemuDriver(instances_path=os.path.join(work, 'i'),
                        live_images_path=os.path.join(work, 'l'), accel='tcg')
    driver.init_host('bench')
    disk = os.path.join(work, 'disk.raw')
    with open(disk, 'wb') as f:
        f.truncate(4 * mib * MiB)
    info = driver.spawn(base.InstanceSpec(id=VM, name=VM, memory_mb=64, disks=[base.Disk(
        'vol-bench', {'driver_volume_type': 'local',
                      'data': {'device_path': disk, 'format': 'raw'}})]))
    sock = os.path.join(info.instance_dir or '', 'qmp.sock')

    def io(command: str) -> float:
        with qmp.connect(sock) as mon:
            started = time.monotonic()
            out = mon.cmd('human-monitor-command', **{
                'command-line': 'qemu-io -d disk0/virtio-backend "%s"' % command})
            elapsed = time.monotonic() - started
        if 'error' in str(out).lower() or 'conflict' in str(out).lower():
            raise RuntimeError('qemu-io %s: %s' % (command, out))
        return elapsed

    try:
        size = mib * MiB

        def stream(op: str, base_offset: int) -> float:
            # 1 MiB requests, as a guest streams: QEMU lets a request start whenever
            # the bucket is not over, so one huge request would pass at once and only
            # delay the next one
            started = time.monotonic()
            for n in range(mib):
                io('%s %d %d' % (op, base_offset + n * MiB, MiB))
            return time.monotonic() - started
        _rate('write, unthrottled', size, stream('write', 0), None, 'MiB/s')
        _rate('read, unthrottled', size, stream('read', 0), None, 'MiB/s')
        limit = max(mib // 4, 1)
        driver.set_volume_qos(VM, 'vol-bench', {'total_bytes_sec': limit * MiB})
        _rate('write, total_bytes_sec %d MiB' % limit, size, stream('write', size),
              limit, 'MiB/s')
        _rate('read, total_bytes_sec %d MiB' % limit, size, stream('read', size),
              limit, 'MiB/s')
        driver.set_volume_qos(VM, 'vol-bench', {'read_bytes_sec': limit * MiB})
        _rate('write, read_bytes_sec %d MiB only' % limit, size, stream('write', 2 * size),
              None, 'MiB/s')
        # IOPS: one 4 KiB request per qemu-io call (the monitor round trip counts too)
        def requests(count: int) -> float:
            started = time.monotonic()
            for n in range(count):
                io('write %d 4096' % (n * 4096))
            return time.monotonic() - started
        driver.set_volume_qos(VM, 'vol-bench', {})
        _rate('4 KiB writes, unthrottled', 100, requests(100), None, 'IOPS')
        driver.set_volume_qos(VM, 'vol-bench', {'total_iops_sec': 20})
        _rate('4 KiB writes, total_iops_sec 20', 60, requests(60), 20, 'IOPS')
    finally:
        driver.destroy(VM)
        shutil.rmtree(work, ignore_errors=True)


def rbd_part(mib: int) -> None:
    conf = os.environ.get('GC_TEST_CEPH_CONF')
    if not conf or not os.path.isfile(conf):
        print('RBD back-end: skipped (GC_TEST_CEPH_CONF=$(tools/ceph.sh start) runs it)')
        return
    import rados
    import rbd

    from gridcentric_storage.volume.drivers.rbd import RBDDriver
    from gridcentric_storage.volume.objects import VolumeRef

    print('RBD back-end: librbd writes to an image of the rbd driver')
    driver = RBDDriver('bench-qos', 'ceph', {'pool': 'rbd', 'ceph_conf': conf})
    driver.do_setup(None)
    volume = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    driver.create_volume(volume)
    chunk = os.urandom(MiB)

    def timed_write(label: str, limit: float | None) -> None:
        # a new client each time: librbd reads the image's QoS when it opens it
        with rados.Rados(conffile=conf) as cluster, cluster.open_ioctx('rbd') as ioctx, \
                rbd.Image(ioctx, 'volume-%s' % volume.id) as image:
            started = time.monotonic()
            for n in range(mib):
                image.write(chunk, n * MiB)
            image.flush()
            _rate(label, mib * MiB, time.monotonic() - started, limit, 'MiB/s')

    try:
        timed_write('write, unthrottled', None)
        limit = max(mib // 8, 1)
        driver.set_qos(volume, {'total_bytes_sec': limit * MiB})
        timed_write('write, total_bytes_sec %d MiB' % limit, limit)
    finally:
        driver.delete_volume(volume)
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mib', type=int, default=64, help='MiB moved per measurement')
    args = parser.parse_args()
    qemu_part(args.mib)
    rbd_part(args.mib)


if __name__ == '__main__':
    main()
