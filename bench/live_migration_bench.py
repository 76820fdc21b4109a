"""How fast does a live volume migration copy? The QEMU driver's mirror beside ``dd``.

One run on this host: a VM of the QEMU driver (no kernel: it sits in its
firmware, which is enough, the mirror runs in QEMU's block layer) with a raw
disk of ``--mib`` MiB of random data; the driver's ``migrate_volume`` moves it
onto a raw file, then onto a qcow2 one, first with the disk idle, then while
a writer keeps writing 64 KiB through the disk's block backend (HMP
``qemu-io``, the path a guest write takes) so the mirror also has to copy
what changes under it. ``dd`` (1 MiB blocks, ``conv=fsync``) copies the same
file on the same file system for the ratio.

No assertions: each line prints seconds, MiB/s and the ratio to ``dd``.

Run: ``.venv/bin/python bench/live_migration_bench.py [--mib 256]``
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gridcentric_storage.virt import base, qemu_mirror, qmp  # noqa: E402
from gridcentric_storage.virt.qemu import QemuDriver  # noqa: E402

MiB = 1 << 20
VM = 'hB-mirror-bench'
VOLUME = 'vol-bench'


def local(path: str, fmt: str) -> dict[str, object]:
    return {'driver_volume_type': 'local', 'data': {'device_path': path, 'format': fmt}}


def dd_seconds(source: str, dest: str) -> float:
    start = time.monotonic()
    subprocess.run(['dd', 'if=' + source, 'of=' + dest, 'bs=1M', 'conv=fsync',
                    'status=none'], check=True)
    seconds = time.monotonic() - start
    os.unlink(dest)
    return seconds


def writer(sock: str, stop: threading.Event, counts: list[int]) -> None:
    n = 0
    while not stop.is_set():
        with qemu_mirror.session(lambda: qmp.connect(sock)) as mon:
            mon.cmd('human-monitor-command', **{'command-line':
                    'qemu-io -d /machine/peripheral/disk0/virtio-backend '
                    '"write -P %d %d 64k"' % (n % 250 + 1, (n % 1024) * 65536)})
        n += 1
    counts.append(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mib', type=int, default=256)
    args = parser.parse_args()
    size = args.mib * MiB
    work = tempfile.mkdtemp(prefix='gc-hB-', dir='/tmp')
    qemu_mirror.default_progress = lambda volume_id: None     # no volume side here
    driver = QemuDriver(instances_path=os.path.join(work, 'i'),
                        live_images_path=os.path.join(work, 'l'), accel='tcg')
    driver.init_host('bench')
    source = os.path.join(work, 'source.raw')
    with open(source, 'wb') as f:
        for _ in range(args.mib):
            f.write(os.urandom(MiB))
    try:
        driver.spawn(base.InstanceSpec(id=VM, name=VM, memory_mb=64,
                                       disks=[base.Disk(VOLUME, local(source, 'raw'))]))
        sock = os.path.join(driver.instances_path, VM, 'qmp.sock')
        dd = dd_seconds(source, os.path.join(work, 'dd.raw'))
        print(f'live volume migration of {args.mib} MiB (QEMU mirror, TCG guest) vs dd')
        print(f'  {"dd bs=1M conv=fsync":<44} {dd:7.2f} s {args.mib / dd:8.1f} MiB/s')
        for n, (fmt, busy) in enumerate((('raw', False), ('qcow2', False),
                                         ('raw', True), ('qcow2', True))):
            dest = os.path.join(work, 'dest%d.%s' % (n, fmt))
            if fmt == 'qcow2':
                subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', dest, str(size)],
                               check=True)
            else:
                with open(dest, 'wb') as f:
                    f.truncate(size)
            stop, counts = threading.Event(), []
            thread = threading.Thread(target=writer, args=(sock, stop, counts))
            if busy:
                thread.start()
            start = time.monotonic()
            driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(dest, fmt)))
            seconds = time.monotonic() - start
            if busy:
                stop.set()
                thread.join()
            label = 'mirror -> %s%s' % (fmt, ', writer busy (%d writes)' % counts[0]
                                        if busy else ', idle')
            print(f'  {label:<44} {seconds:7.2f} s {args.mib / seconds:8.1f} MiB/s  '
                  f'ratio to dd {dd / seconds:5.2f}')
    finally:
        driver.destroy(VM)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
