"""Live migration between two QEMU drivers (two "hosts": two instance and live-image
directories on this machine), QEMU to QEMU over TCP on the loopback.

The test guest counts on its console every ~0.2 s and re-prints its boot token:
a guest that moved counts on from where it was with the same token. The
compute workflow around these calls is tested with the fake driver
(tests/unit/compute/test_server_migration.py) and across processes
(tests/functional/test_server_migration.py).
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import process_runs, work_dir

MEMORY_MB = 128
VMGENID = '0b8a3c55-5e0c-4d1f-9d7e-2f1a6c3b9e01'


@pytest.fixture
def hosts() -> Iterator[tuple[QemuDriver, QemuDriver]]:
    if guest.missing():
        pytest.skip(guest.missing() or '')
    with work_dir() as root:
        pair = tuple(QemuDriver(instances_path=os.path.join(root, name, 'i'),
                                live_images_path=os.path.join(root, name, 'l'), accel='auto')
                     for name in ('a', 'b'))
        for driver in pair:
            driver.init_host('host')
        try:
            yield pair  # type: ignore[misc]
        finally:
            for driver in pair:
                for instance_id in driver.list_instances():
                    driver.destroy(instance_id)


def _counting(driver: QemuDriver, instance_id: str, past: int) -> int:
    wait_for(lambda: any(n > past for n, _ in guest.counters(
        driver.get_console_output(instance_id))), timeout=180, interval=0.3)
    return guest.counters(driver.get_console_output(instance_id))[-1][0]


def _move(source: QemuDriver, dest: QemuDriver, instance_id: str,
          disks: list[base.Disk], memory_path: str | None = None) -> dict[str, Any]:
    described = source.describe_outgoing(instance_id)
    uri = dest.prepare_incoming(base.IncomingSpec(id=instance_id, description=described,
                                                  disks=disks, memory_path=memory_path))
    figures = source.migrate_out(instance_id, uri, 120)
    print('migration of %s: %s' % (instance_id, figures))    # reported, not asserted
    info = dest.finish_incoming(instance_id)
    assert info.state == 'running'
    source.destroy(instance_id)
    return figures


def test_a_vm_with_a_disk_moves_and_counts_on(hosts, tmp_path):
    a, b = hosts
    boot = guest.build_or_skip()
    disk = guest.local_disk('v1', guest.qcow2(str(tmp_path / 'v1.qcow2')))
    info = a.spawn(base.InstanceSpec(id='vm', name='vm', memory_mb=MEMORY_MB,
                                     kernel=boot.kernel, initrd=boot.initrd,
                                     cmdline=guest.CMDLINE, disks=[disk], vmgenid=VMGENID))
    before = _counting(a, 'vm', 2)
    token = guest.boot_token(a.get_console_output('vm'))

    # Nobody listens: the guest runs on where it is.
    with pytest.raises(exception.DriverError, match='failed'):
        a.migrate_out('vm', 'tcp:127.0.0.1:1', 30)
    assert a.get_info('vm').state == 'running'
    before = _counting(a, 'vm', before)

    figures = _move(a, b, 'vm', [disk])
    assert figures['transferred_mb'] > 0
    _counting(b, 'vm', before + 3)
    text = b.get_console_output('vm')
    numbers = [n for n, _ in guest.counters(text)]
    # Increasing throughout: no reboot (a line may be torn by a kernel message).
    assert numbers == sorted(set(numbers)) and numbers[-1] > before
    assert guest.tokens(text) == {token} and text.count('BOOT-TOKEN') == 1
    assert 'VMGENID-CHANGED' not in text          # the same generation: not a clone
    assert a.list_instances() == [] and b.list_instances() == ['vm']
    assert info.pid is not None and not process_runs(info.pid, a.instances_path)


def test_a_clone_maps_the_live_image_ram_on_the_destination(hosts):
    a, b = hosts
    boot = guest.build_or_skip()
    a.spawn(base.InstanceSpec(id='tmpl', name='tmpl', memory_mb=MEMORY_MB,
                              kernel=boot.kernel, initrd=boot.initrd,
                              cmdline=guest.CMDLINE, vmgenid=VMGENID))
    _counting(a, 'tmpl', 2)
    artifacts = a.bless('tmpl', 'li', [])
    a.destroy('tmpl')
    a.launch(artifacts, base.CloneSpec(id='clone', name='clone', guest={'role': 'web'}))
    before = _counting(a, 'clone', 12)         # past a TOKEN line: the parent's
    token = guest.tokens(a.get_console_output('clone'))
    assert len(token) == 1

    # "b" maps the same live image file (as a host that mounted the published copy).
    _move(a, b, 'clone', [], memory_path=artifacts.memory_path)
    _counting(b, 'clone', before + 12)
    text = b.get_console_output('clone')
    assert guest.tokens(text) == token
    assert text.count('VMGENID-CHANGED') == 1     # at its launch only: not on arrival
    assert 'role=web' in text
    assert b.get_info('clone').extra.get('live_image_id') == 'li'
    a.discard(artifacts)
