"""Front-end QoS in the hypervisor: the limits QEMU itself reports for a running guest's disks.

QEMU's ``query-block`` (``inserted.iops``, ``bps_rd``, ``bps_wr_max``, ...) is
where a throttled disk shows its limits, whichever driver set them (the QEMU
driver's ``block_set_io_throttle``, or libvirt's ``<iotune>`` and
``setBlockIoTune``); under libvirt it is read through libvirt's QEMU monitor
passthrough. A disk's limits come in its connection info (``qos_specs``, as
Cinder hands them to Nova) at boot, at hot-plug and at a clone's launch, and
change on the running guest.
"""

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import base, qmp
from gridcentric_storage.volume import qos
from tests.fixtures import guest
from tests.fixtures.guest import local_disk
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import (
    BOOT_TIMEOUT,
    MEMORY_MB,
    console,
    destroy_all,
    disk_file,
    kind_of,
    make_driver,
    snapshot,
    work_dir,
)

MiB = 1 << 20
VM = 'hI-qos-vm'      # libvirt: domain gc-hI-qos-vm
CLONE = 'hI-qos-clone'
#: QEMU's name of each volume.qos key in query-block
QUERY_KEYS = {'total_iops_sec': 'iops', 'read_iops_sec': 'iops_rd', 'write_iops_sec': 'iops_wr',
              'total_bytes_sec': 'bps', 'read_bytes_sec': 'bps_rd', 'write_bytes_sec': 'bps_wr'}


@pytest.fixture(scope='module', params=['qemu', 'libvirt'])
def driver(request: pytest.FixtureRequest) -> Iterator[base.VirtDriver]:
    with work_dir() as root:
        drv = make_driver(request.param, root, request)
        yield drv
        destroy_all(drv)


@pytest.fixture(scope='module')
def work(driver: base.VirtDriver) -> Iterator[str]:
    with work_dir() as path:
        yield path


def throttled(path: str, limits: dict[str, int], volume_id: str) -> base.Disk:
    disk = local_disk(volume_id, path)
    disk.connection_info = qos.connection_with(disk.connection_info, limits)
    return disk


def query_block(driver: Any, instance_id: str) -> list[dict[str, Any]]:
    if kind_of(driver) == 'qemu':
        sock = os.path.join(driver.get_info(instance_id).instance_dir, 'qmp.sock')
        with qmp.connect(sock) as mon:
            return list(mon.cmd('query-block'))
    from gridcentric_storage.virt.libvirt import libvirt_qemu
    answer = libvirt_qemu.qemuMonitorCommand(driver._domain(instance_id),
                                             json.dumps({'execute': 'query-block'}), 0)
    return list(json.loads(answer)['return'])


def limits_of(driver: Any, instance_id: str, path: str) -> dict[str, int]:
    """What QEMU enforces on the disk backed by ``path``, in volume.qos keys (0s left out)."""
    for block in query_block(driver, instance_id):
        inserted = block.get('inserted') or {}
        if inserted.get('file') == path:
            found = {}
            for key, name in QUERY_KEYS.items():
                if inserted.get(name):
                    found[key] = inserted[name]
                if inserted.get(name + '_max'):
                    found[key + '_max'] = inserted[name + '_max']
            return found
    raise AssertionError('no disk of %s is backed by %s' % (instance_id, path))


@pytest.fixture(scope='module')
def vm(driver: base.VirtDriver, work: str) -> dict[str, Any]:
    boot = guest.build_or_skip()
    root = disk_file(driver, os.path.join(work, 'root.qcow2'))
    driver.spawn(base.InstanceSpec(
        id=VM, name=VM, memory_mb=MEMORY_MB, kernel=boot.kernel, initrd=boot.initrd,
        cmdline=guest.CMDLINE, disks=[throttled(root, {
            'total_iops_sec': 300, 'read_bytes_sec': 4 * MiB, 'read_bytes_sec_max': 8 * MiB,
            'write_bytes_sec': 2 * MiB}, 'vol-root')]))
    # booted: a hot-plugged disk is then seen (and given back on detach) by the guest
    wait_for(lambda: len(guest.counters(console(driver, VM))) >= 3, BOOT_TIMEOUT,
             what='the VM to boot and count')
    return {'root': root}


def test_a_disk_is_throttled_from_boot(driver: base.VirtDriver, vm: dict[str, Any]) -> None:
    assert limits_of(driver, VM, vm['root']) == {
        'total_iops_sec': 300, 'read_bytes_sec': 4 * MiB, 'read_bytes_sec_max': 8 * MiB,
        'write_bytes_sec': 2 * MiB}


def test_limits_change_on_the_running_guest(driver: base.VirtDriver,
                                            vm: dict[str, Any]) -> None:
    driver.set_volume_qos(VM, 'vol-root', {'total_bytes_sec': 1 * MiB,
                                           'write_iops_sec': 40})
    assert limits_of(driver, VM, vm['root']) == {'total_bytes_sec': 1 * MiB,
                                                 'write_iops_sec': 40}
    driver.set_volume_qos(VM, 'vol-root', {})
    assert limits_of(driver, VM, vm['root']) == {}
    with pytest.raises(Exception, match='vol-nowhere is not attached'):
        driver.set_volume_qos(VM, 'vol-nowhere', {'total_iops_sec': 1})


def test_a_hot_plugged_disk_is_throttled(driver: base.VirtDriver, vm: dict[str, Any],
                                         work: str) -> None:
    extra = disk_file(driver, os.path.join(work, 'extra.qcow2'), '16M')
    seen = len(console(driver, VM))
    driver.attach_volume(VM, throttled(extra, {'total_iops_sec': 75}, 'vol-extra'))
    try:
        assert limits_of(driver, VM, extra) == {'total_iops_sec': 75}
        driver.set_volume_qos(VM, 'vol-extra', {'read_iops_sec': 10, 'write_iops_sec': 20})
        assert limits_of(driver, VM, extra) == {'read_iops_sec': 10, 'write_iops_sec': 20}
    finally:
        wait_for(lambda: re.search(r'virtio_blk \S+: \[vdb\]', console(driver, VM)[seen:]),
                 60, what='the guest kernel to log the new disk')
        driver.detach_volume(VM, 'vol-extra')


def test_a_clone_resumes_with_its_own_disks_limits(driver: base.VirtDriver,
                                                   vm: dict[str, Any], work: str) -> None:
    driver.pause(VM)
    snap = snapshot(vm['root'], os.path.join(work, 'snap.qcow2'))
    artifacts = driver.bless(VM, 'hI-qos-li', [local_disk('vol-snap', snap)])
    driver.unpause(VM)
    overlay = disk_file(driver, os.path.join(work, 'clone.qcow2'), backing=snap)
    try:
        driver.launch(artifacts, base.CloneSpec(id=CLONE, name=CLONE, disks=[
            throttled(overlay, {'total_bytes_sec': 3 * MiB}, 'vol-clone')]))
        assert limits_of(driver, CLONE, overlay) == {'total_bytes_sec': 3 * MiB}
        assert driver.get_info(CLONE).state == 'running'
    finally:
        driver.destroy(CLONE)
        driver.discard(artifacts)
