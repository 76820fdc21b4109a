"""Warm pool slots restored ahead, and the identity port, with real QEMU (TCG here).

One template VM with a NIC and no disk boots once (every VM the driver spawns
has the identity port) and is blessed. A driver with
``warm_pool_restore_ahead`` keeps a slot whose machine is built and whose
state is loaded; a clone launched from it must still be its own VM: the
guest reads the clone's id, parameters and user data from the identity port
(the slot's fw_cfg files hold nobody's) and resumes the blessed memory. A
clone started cold reads the same files from the port too, and a clone of a
live image blessed with a disk is not restored ahead (its disks are its
own), yet is warm.
"""

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import base, qemu_pool
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest
from tests.fixtures.guest import local_disk
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import (
    BOOT_TIMEOUT,
    MEMORY_MB,
    console,
    disk_file,
    snapshot,
    work_dir,
)

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

USER_DATA = b'#cloud-config\nhostname: ahead-0\n'


def make(root: str, pool: int) -> QemuDriver:
    driver = QemuDriver(instances_path=os.path.join(root, 'i'),
                        live_images_path=os.path.join(root, 'l'), accel='auto',
                        warm_pool_size=pool, warm_pool_restore_ahead=True)
    driver.init_host('test-host')
    return driver


def bless(driver: QemuDriver, vm_id: str, live_image_id: str,
          disks: list[base.Disk] | None = None,
          snapshots: list[base.Disk] | None = None) -> dict[str, Any]:
    boot = guest.build_or_skip()
    driver.spawn(base.InstanceSpec(
        id=vm_id, name=vm_id, memory_mb=MEMORY_MB, kernel=boot.kernel, initrd=boot.initrd,
        cmdline=guest.CMDLINE, mac='52:54:00:12:34:56', disks=disks or []))
    wait_for(lambda: len(guest.counters(console(driver, vm_id))) >= 3, BOOT_TIMEOUT,
             what='%s to boot and count' % vm_id)
    artifacts = driver.bless(vm_id, live_image_id, snapshots or [])
    token = guest.boot_token(console(driver, vm_id))
    driver.destroy(vm_id)
    return {'artifacts': artifacts, 'token': token}


def identity_shown(driver: QemuDriver, clone_id: str, token: str | None) -> str:
    """The clone's console once the guest printed what it read; it resumed."""
    text = wait_for(lambda: 'INSTANCE-ID' in console(driver, clone_id)
                    and len(guest.counters(console(driver, clone_id))) >= 2
                    and console(driver, clone_id), 60,
                    what='%s to print its identity' % clone_id)
    assert 'BOOT-TOKEN' not in text                      # resumed, never booted
    assert guest.tokens(text) <= {token}
    return text


@pytest.fixture(scope='module')
def env() -> Iterator[dict[str, Any]]:
    with work_dir() as root:
        guest.build_or_skip()
        driver = make(root, 1)
        try:
            yield {'root': root, 'driver': driver,
                   'diskless': bless(driver, 'src', 'li-ahead')}
        finally:
            driver.cleanup_host()
            for instance_id in driver.list_instances():
                driver.destroy(instance_id)


def test_a_clone_from_a_slot_restored_ahead_reads_its_identity_from_the_port(
        env: dict[str, Any]) -> None:
    driver, blessed = env['driver'], env['diskless']
    wait_for(lambda: driver.warm_processes('li-ahead') == 1, 120, what='the pool to fill')
    info = driver.launch(blessed['artifacts'], base.CloneSpec(
        id='ahead-0', name='ahead-0', guest={'role': 'web'}, user_data=USER_DATA))
    assert info.extra['warm'] is True and info.extra['restored_ahead'] is True
    text = identity_shown(driver, 'ahead-0', blessed['token'])
    assert 'IDENTITY-VIA port' in text
    assert 'INSTANCE-ID ahead-0' in text
    assert 'GUEST-PARAM role=web' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
    driver.destroy('ahead-0')


def test_the_pool_restores_another_slot_and_the_next_clone_is_its_own(
        env: dict[str, Any]) -> None:
    driver, blessed = env['driver'], env['diskless']
    wait_for(lambda: driver.warm_processes('li-ahead') == 1, 120, what='the pool to refill')
    info = driver.launch(blessed['artifacts'], base.CloneSpec(id='ahead-1', name='ahead-1'))
    assert info.extra['restored_ahead'] is True
    text = identity_shown(driver, 'ahead-1', blessed['token'])
    assert 'INSTANCE-ID ahead-1' in text and 'role=web' not in text
    assert 'USER-DATA' not in text
    driver.destroy('ahead-1')


def test_a_cold_clone_of_a_vm_with_the_port_reads_it_there_too(env: dict[str, Any]) -> None:
    driver, blessed = env['driver'], env['diskless']
    info = driver.launch(blessed['artifacts'], base.CloneSpec(
        id='cold-0', name='cold-0', vmgenid='0b8f4b7e-7a51-4c36-9f1e-3d2c1b0a9f8e',
        guest={'role': 'db'}))
    assert info.extra['warm'] is False
    text = identity_shown(driver, 'cold-0', blessed['token'])
    assert 'IDENTITY-VIA port' in text and 'GUEST-PARAM role=db' in text
    assert 'INSTANCE-ID cold-0' in text
    driver.destroy('cold-0')


def test_a_live_image_with_a_disk_is_not_restored_ahead(env: dict[str, Any]) -> None:
    driver, root = env['driver'], env['root']
    boot = guest.build_or_skip()
    disk = disk_file(driver, os.path.join(root, 'src.qcow2'))
    driver.spawn(base.InstanceSpec(
        id='src-disk', name='src-disk', memory_mb=MEMORY_MB, kernel=boot.kernel,
        initrd=boot.initrd, cmdline=guest.CMDLINE, disks=[local_disk('vol-src', disk)]))
    wait_for(lambda: len(guest.counters(console(driver, 'src-disk'))) >= 3, BOOT_TIMEOUT,
             what='the VM with a disk to boot and count')
    driver.pause('src-disk')
    snap = snapshot(disk, os.path.join(root, 'snap.qcow2'))
    artifacts = driver.bless('src-disk', 'li-disk', [local_disk('vol-snap', snap)])
    token = guest.boot_token(console(driver, 'src-disk')) or ''
    driver.destroy('src-disk')
    wait_for(lambda: driver.warm_processes('li-disk') == 1, 120, what='the pool to fill')
    overlay = guest.qcow2(os.path.join(root, 'disk-0.qcow2'), '64M', snap)
    info = driver.launch(artifacts, base.CloneSpec(
        id='disk-0', name='disk-0', disks=[local_disk('vol-disk-0', overlay)]))
    assert info.extra['warm'] is True and info.extra['restored_ahead'] is False
    text = identity_shown(driver, 'disk-0', token)
    assert 'IDENTITY-VIA port' in text and 'INSTANCE-ID disk-0' in text
    driver.destroy('disk-0')
    driver.discard(artifacts)
    assert driver.warm_processes('li-disk') == 0
    assert not qemu_pool.unclaimed(driver.instances_path) or \
        driver.warm_processes('li-ahead') == 1
