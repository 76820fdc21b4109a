"""What does blessing a clone cost beside blessing a fresh VM?

One run on this host (KVM if the driver's probe says it works, else TCG), with
the test guest of tools/build-test-guest.sh (256 MiB), the QEMU driver, live
images on the file system of ``--dir`` (default /tmp), then again on a
loop-mounted XFS (reflink: a fresh VM's RAM is frozen without a copy) when
this host can mount one (root; ``--no-xfs`` skips it):

* bless of the running template VM (device state + freeze copy of its RAM
  file) against bless of a running clone of it (flatten: the clone's RAM,
  parent pages and its own, streamed live into a file, QEMU pausing it for
  the last pages only, then loaded by a helper QEMU into the new live image's
  RAM file; virt/qemu_flatten.py), ``--repeat`` times each, medians: the
  pause the guest sees, the whole bless call, and the space used (a reflinked
  RAM file's blocks are shared, not written);
* a clone launched from each live image (the grandchild resumes the
  flattened one): launch() returned with the guest running.

Each row shows both figures and the ratio clone / fresh VM.

Run: ``PYTHONPATH=. python bench/clone_of_clone_bench.py``
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from gridcentric_storage.virt import base
from gridcentric_storage.virt.qemu import QemuDriver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_MB = 256


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError('timed out waiting for %s' % what)
        time.sleep(0.05)


def counters(driver: QemuDriver, instance_id: str) -> int:
    return driver.get_console_output(instance_id).count('COUNTER ')


def bless_timed(driver: QemuDriver, instance_id: str, live_image_id: str
                ) -> tuple[base.LiveImageArtifacts, dict[str, float]]:
    start = time.monotonic()
    art = driver.bless(instance_id, live_image_id, [])
    call = time.monotonic() - start
    ram = os.stat(art.memory_path)
    return art, {'pause': art.extra['paused_seconds'], 'call': call,
                 'written': art.extra.get('stream_size', 0) + ram.st_blocks * 512
                 + art.extra['state_size']}


def launch_timed(driver: QemuDriver, art: base.LiveImageArtifacts, clone_id: str) -> float:
    start = time.monotonic()
    driver.launch(art, base.CloneSpec(id=clone_id, name=clone_id))
    return time.monotonic() - start


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=3, help='blesses of each kind')
    parser.add_argument('--dir', default='/tmp', help='where instances and live images go')
    parser.add_argument('--no-xfs', action='store_true', help='do not loop-mount XFS')
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from tests.fixtures import guest, loopfs  # same guest (and cache) as the tests
    paths = guest.build()
    with tempfile.TemporaryDirectory(prefix='gc-', dir=args.dir) as work:
        measure(work, 'files on %s' % args.dir, paths.kernel, paths.initrd, args.repeat)
    if args.no_xfs:
        return 0
    reason = loopfs.unavailable_reason('xfs')
    if reason:
        print('\nno XFS run: %s' % reason)
        return 0
    with tempfile.TemporaryDirectory(prefix='gc-', dir=args.dir) as scratch:
        with loopfs.loop_mounted('xfs', scratch, 2048) as mountpoint:
            measure(mountpoint, 'files on a loop-mounted XFS (reflink)', paths.kernel,
                    paths.initrd, args.repeat)
    return 0


def measure(work: str, where: str, kernel: str, initrd: str, repeat: int) -> None:
    driver = QemuDriver(instances_path=os.path.join(work, 'i'),
                        live_images_path=os.path.join(work, 'l'), accel='auto')
    driver.init_host('bench')
    print('%s; accel: %s; guest RAM %d MiB; %d CPUs; load %.2f'
          % (where, driver.accel, MEMORY_MB, os.cpu_count() or 0, os.getloadavg()[0]))
    try:
        run(driver, kernel, initrd, repeat)
    finally:
        for instance_id in driver.list_instances():
            driver.destroy(instance_id)


def run(driver: QemuDriver, kernel: str, initrd: str, repeat: int) -> None:
    driver.spawn(base.InstanceSpec(id='template', name='template', memory_mb=MEMORY_MB,
                                   kernel=kernel, initrd=initrd,
                                   cmdline='console=ttyS0 quiet panic=-1'))
    wait_for(lambda: counters(driver, 'template') >= 5, 300, 'the template to count')
    fresh: list[dict[str, float]] = []
    for i in range(repeat):
        art, row = bless_timed(driver, 'template', 'fresh-%d' % i)
        fresh.append(row)
        if i < repeat - 1:
            driver.discard(art)
    parent = art
    fresh_launch = launch_timed(driver, parent, 'child')
    driver.destroy('template')
    wait_for(lambda: counters(driver, 'child') >= 5, 60, 'the clone to count')

    clone: list[dict[str, float]] = []
    for i in range(repeat):
        art, row = bless_timed(driver, 'child', 'flat-%d' % i)
        clone.append(row)
        if i < repeat - 1:
            driver.discard(art)
    method = art.extra['ram_copy']
    grandchild_launch = launch_timed(driver, art, 'grandchild')

    rows: list[tuple[str, Any, Any, str]] = [
        ('bless pause the guest sees', median(fresh, 'pause'), median(clone, 'pause'), 'ms'),
        ('bless call', median(fresh, 'call'), median(clone, 'call'), 'ms'),
        ('RAM file blocks + state + stream', median(fresh, 'written'),
         median(clone, 'written'), 'MiB'),
        ('clone launch() to running', fresh_launch, grandchild_launch, 'ms')]
    print('%-42s %12s %12s %8s' % ('median of %d' % repeat, 'fresh VM', 'clone', 'ratio'))
    for label, a, b, unit in rows:
        scale, fmt = (1000.0, '%9.0f ms') if unit == 'ms' else (1 / float(1 << 20),
                                                                  '%8.1f MiB')
        print('%-42s %12s %12s %7.1fx' % (label, fmt % (a * scale), fmt % (b * scale),
                                           b / a if a else float('nan')))
    print('fresh VM RAM frozen by %s; clone RAM by %s (stream %.1f MiB)\n'
          % (parent.extra['ram_copy'], method, art.extra['stream_size'] / (1 << 20)))


if __name__ == '__main__':
    sys.exit(main())
