"""Live migration of a running server, QEMU to QEMU, beside a cold boot of the guest.

One run on this machine with the test guest (``--mib`` MiB of RAM; TCG or KVM
as the driver probes): two QEMU drivers stand for two hosts (their own
instance and live-image directories), the loopback for the network. Measured:

* a VM: ``describe_outgoing`` + ``prepare_incoming`` (the destination's QEMU
  starts, waiting) + ``migrate_out`` + ``finish_incoming``, with QEMU's own
  figures (total time, downtime, MiB sent against the guest's RAM);
* a clone of a live image of it: the same, the destination mapping the live
  image's RAM file (as a host that mounted the published copy does);
* for the ratio, a boot of the same guest until its console counts.

No assertions: each line prints seconds and ratios.

Run: ``.venv/bin/python bench/server_migration_bench.py [--mib 256]``
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gridcentric_storage.virt import base  # noqa: E402
from gridcentric_storage.virt.qemu import QemuDriver  # noqa: E402
from tests.fixtures import guest  # noqa: E402


def _wait_counting(driver: QemuDriver, instance_id: str, past: int) -> int:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        numbers = [n for n, _ in guest.counters(driver.get_console_output(instance_id))]
        if numbers and numbers[-1] > past:
            return numbers[-1]
        time.sleep(0.05)
    raise SystemExit('%s did not count past %d' % (instance_id, past))


def _move(a: QemuDriver, b: QemuDriver, instance_id: str, mib: int,
          memory_path: str | None = None) -> float:
    before = _wait_counting(a, instance_id, 0)
    start = time.monotonic()
    described = a.describe_outgoing(instance_id)
    uri = b.prepare_incoming(base.IncomingSpec(id=instance_id, description=described,
                                               memory_path=memory_path))
    prepared = time.monotonic()
    figures = a.migrate_out(instance_id, uri, 600)
    sent = time.monotonic()
    b.finish_incoming(instance_id)
    done = time.monotonic()
    a.destroy(instance_id)
    _wait_counting(b, instance_id, before)
    print('%-6s total %.2f s (destination ready %.2f s, transfer %.2f s, resume %.3f s); '
          'QEMU: downtime %s ms, %.1f MiB sent = %.2f x RAM'
          % (instance_id, done - start, prepared - start, sent - prepared, done - sent,
             figures['downtime_ms'], figures['transferred_mb'],
             figures['transferred_mb'] / mib))
    return done - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--mib', type=int, default=256)
    args = parser.parse_args()
    if guest.missing():
        raise SystemExit(guest.missing())
    paths = guest.build()
    root = tempfile.mkdtemp(prefix='gc-mb-', dir='/tmp')
    a, b = (QemuDriver(instances_path=os.path.join(root, n, 'i'),
                       live_images_path=os.path.join(root, n, 'l')) for n in 'ab')
    try:
        for driver in (a, b):
            driver.init_host('bench')
        print('accel %s, guest %d MiB' % (a.accel, args.mib))
        start = time.monotonic()
        a.spawn(base.InstanceSpec(id='vm', name='vm', memory_mb=args.mib,
                                  kernel=paths.kernel, initrd=paths.initrd,
                                  cmdline=guest.CMDLINE, vmgenid=str(uuid.uuid4())))
        _wait_counting(a, 'vm', 0)
        boot = time.monotonic() - start
        print('boot   %.2f s until the console counts' % boot)
        vm = _move(a, b, 'vm', args.mib)
        artifacts = b.bless('vm', 'li', [])
        b.launch(artifacts, base.CloneSpec(id='clone', name='clone'))
        clone = _move(b, a, 'clone', args.mib, memory_path=artifacts.memory_path)
        print('ratio  VM move / boot %.2f; clone move / boot %.2f' % (vm / boot, clone / boot))
    finally:
        for driver in (a, b):
            for instance_id in driver.list_instances():
                driver.destroy(instance_id)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
