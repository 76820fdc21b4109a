"""The QEMU driver's warm pool with real QEMU (TCG here) and the test guest.

One template VM (a disk, a NIC) boots once and is blessed; the driver keeps
two QEMU processes started for that live image. The tests, in file order:
a clone launched from the pool resumes the blessed memory and is its own VM
(MAC, vmgenid, guest files, disk), the pool refills, a restarted driver finds
the clone and removes the previous run's pooled processes, a pooled process
that died makes the launch start QEMU as without a pool, and discarding the
live image leaves no pooled process behind.
"""

import hashlib
import json
import os
import re
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import base, qemu_pool, qmp
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest
from tests.fixtures.guest import local_disk
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import (
    BOOT_TIMEOUT,
    MEMORY_MB,
    console,
    disk_file,
    nic_mac,
    process_runs,
    snapshot,
    work_dir,
)

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

POOL = 2
LIVE_IMAGE = 'li-warm'
SOURCE_MAC = '52:54:00:12:34:56'
CLONE_MAC = '52:54:00:65:43:21'
VMGENID = '0b8f4b7e-7a51-4c36-9f1e-3d2c1b0a9f8e'
USER_DATA = b'#cloud-config\nhostname: warm-0\n'


def make(root: str) -> QemuDriver:
    driver = QemuDriver(instances_path=os.path.join(root, 'i'),
                        live_images_path=os.path.join(root, 'l'), accel='auto',
                        warm_pool_size=POOL)
    driver.init_host('test-host')
    return driver


def slots(driver: QemuDriver) -> dict[str, int]:
    """Unclaimed pool slots on disk: slot id -> the pid its QEMU was started with."""
    pids = {}
    for slot_id in qemu_pool.unclaimed(driver.instances_path):
        with open(os.path.join(driver.instances_path, slot_id, 'pid')) as f:
            pids[slot_id] = int(f.read())
    return pids


def pool_full(driver: QemuDriver) -> None:
    wait_for(lambda: driver.warm_processes(LIVE_IMAGE) == POOL, 120,
             what='the pool to hold %d processes' % POOL)


@pytest.fixture(scope='module')
def env() -> Iterator[dict[str, Any]]:
    with work_dir() as root:
        guest.build_or_skip()
        state: dict[str, Any] = {'root': root, 'driver': make(root)}
        try:
            yield state
        finally:
            driver = state['driver']
            driver.cleanup_host()
            for instance_id in driver.list_instances():
                driver.destroy(instance_id)
            for pid in state.get('pool_pids', []):
                assert not process_runs(pid, 'qemu')


@pytest.fixture(scope='module')
def blessed(env: dict[str, Any]) -> dict[str, Any]:
    driver, root = env['driver'], env['root']
    boot = guest.build_or_skip()
    disk = disk_file(driver, os.path.join(root, 'src.qcow2'))
    driver.spawn(base.InstanceSpec(
        id='src', name='template', memory_mb=MEMORY_MB, kernel=boot.kernel,
        initrd=boot.initrd, cmdline=guest.CMDLINE, disks=[local_disk('vol-src', disk)],
        mac=SOURCE_MAC))
    wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
             what='the template VM to boot and count')
    driver.pause('src')
    before = guest.counters(console(driver, 'src'))[-1][0]
    snap = snapshot(disk, os.path.join(root, 'snap.qcow2'))
    artifacts = driver.bless('src', LIVE_IMAGE, [local_disk('vol-snap', snap)])
    driver.unpause('src')
    token = guest.boot_token(console(driver, 'src'))
    driver.destroy('src')                    # the clones need only the live image
    return {'artifacts': artifacts, 'before': before, 'snap': snap, 'token': token}


def clone_spec(root: str, blessed: dict[str, Any], clone_id: str, **kwargs: Any
               ) -> base.CloneSpec:
    overlay = guest.qcow2(os.path.join(root, clone_id + '.qcow2'), '64M', blessed['snap'])
    return base.CloneSpec(id=clone_id, name=clone_id,
                          disks=[local_disk('vol-' + clone_id, overlay)], **kwargs)


def resumed(driver: QemuDriver, clone_id: str, blessed: dict[str, Any]) -> str:
    """The clone's console once it printed a few counters; checks it resumed."""
    text = wait_for(lambda: len(guest.counters(console(driver, clone_id))) >= 4
                    and guest.tokens(console(driver, clone_id)) and console(driver, clone_id),
                    60, what='%s to count' % clone_id)
    assert 'BOOT-TOKEN' not in text                          # resumed, never booted
    assert guest.tokens(text) == {blessed['token']}          # the blessed memory
    first = guest.counters(text)[0][0]
    assert blessed['before'] <= first <= blessed['before'] + 3, (first, blessed['before'])
    return text


def block_files(driver: QemuDriver, instance_id: str) -> list[str]:
    with qmp.connect(os.path.join(driver.instances_path, instance_id, 'qmp.sock')) as mon:
        return [b['inserted']['file'] for b in mon.cmd('query-block') if 'inserted' in b]


def test_the_pool_fills_for_a_blessed_live_image(env: dict[str, Any],
                                                 blessed: dict[str, Any]) -> None:
    driver = env['driver']
    pool_full(driver)
    pids = slots(driver)
    assert len(pids) == POOL
    assert all(process_runs(pid, blessed['artifacts'].memory_path) for pid in pids.values())
    assert driver.list_instances() == []                     # slots are not instances


def test_a_warm_clone_resumes_the_memory_and_is_its_own_vm(env: dict[str, Any],
                                                           blessed: dict[str, Any]) -> None:
    driver, root = env['driver'], env['root']
    pooled = slots(driver)
    spec = clone_spec(root, blessed, 'warm-0', mac=CLONE_MAC, guest={'role': 'web'},
                      user_data=USER_DATA)
    info = driver.launch(blessed['artifacts'], spec)
    assert info.extra['warm'] is True
    assert info.pid in pooled.values()                       # a pooled process, not a new one
    assert info.instance_dir == os.path.join(driver.instances_path, 'warm-0')
    assert driver.list_instances() == ['warm-0']
    assert driver.get_info('warm-0').state == 'running'

    text = resumed(driver, 'warm-0', blessed)
    text = wait_for(lambda: 'USER-DATA' in console(driver, 'warm-0')
                    and console(driver, 'warm-0'), 30, what='the guest to print its files')
    assert 'GUEST-PARAM role=web' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
    assert nic_mac(driver, 'warm-0') == CLONE_MAC
    with qmp.connect(os.path.join(info.instance_dir or '', 'qmp.sock')) as mon:
        guid = mon.cmd('qom-get', path='/machine/peripheral/vmgenid0', property='guid')
    assert guid.lower() == info.extra['vmgenid']             # what the caller records
    # the guest reads the generation id as the vmgenid device stores it (bytes_le)
    seen = uuid.UUID(info.extra['vmgenid']).bytes_le.hex()
    assert 'VMGENID-CHANGED %s' % seen in text
    with open(os.path.join(info.instance_dir or '', 'fw-instance')) as f:
        assert f.read() == 'id=warm-0\nname=warm-0\nmac=%s\n' % CLONE_MAC
    with open(os.path.join(info.instance_dir or '', 'vm.json')) as f:
        layout = json.load(f)
    assert layout['id'] == 'warm-0' and layout['mac'] == CLONE_MAC
    assert layout['live_image_id'] == LIVE_IMAGE
    assert block_files(driver, 'warm-0') == [os.path.join(root, 'warm-0.qcow2')]


def test_a_clone_that_asks_for_its_own_vmgenid_starts_cold_and_gets_it(
        env: dict[str, Any], blessed: dict[str, Any]) -> None:
    driver, root = env['driver'], env['root']
    pool_full(driver)
    info = driver.launch(blessed['artifacts'],
                         clone_spec(root, blessed, 'cold-genid', vmgenid=VMGENID))
    assert info.extra['warm'] is False and info.extra['vmgenid'] == VMGENID
    assert driver.warm_processes(LIVE_IMAGE) == POOL
    resumed(driver, 'cold-genid', blessed)
    driver.destroy('cold-genid')


def test_the_pool_refills_and_a_second_warm_clone_has_only_its_own_files(
        env: dict[str, Any], blessed: dict[str, Any]) -> None:
    driver, root = env['driver'], env['root']
    pool_full(driver)
    info = driver.launch(blessed['artifacts'], clone_spec(root, blessed, 'warm-1'))
    assert info.extra['warm'] is True
    text = resumed(driver, 'warm-1', blessed)
    wait_for(lambda: 'VMGENID-CHANGED' in console(driver, 'warm-1'), 30,
             what='warm-1 to see its generation id')
    text = console(driver, 'warm-1')
    assert 'role=web' not in text
    assert nic_mac(driver, 'warm-1') not in (CLONE_MAC, SOURCE_MAC)
    genids = re.findall(r'VMGENID-CHANGED (\S+)', text + console(driver, 'warm-0'))
    assert len(set(genids)) == 2


def test_a_restarted_driver_finds_warm_clones_and_removes_old_pool_processes(
        env: dict[str, Any], blessed: dict[str, Any]) -> None:
    old = env['driver']
    pool_full(old)
    old._slots.stop(kill=False)         # the service died: its pooled processes stay
    previous = slots(old)
    assert len(previous) == POOL
    warm_pid = old.get_info('warm-0').pid

    driver = make(env['root'])          # restart: init_host cleans the old slots
    env['driver'] = driver
    env.setdefault('pool_pids', []).extend(previous.values())
    assert not any(process_runs(pid, 'qemu') for pid in previous.values())
    assert not set(previous) & set(os.listdir(driver.instances_path))
    assert driver.list_instances() == ['warm-0', 'warm-1']
    info = driver.get_info('warm-0')
    assert info.state == 'running' and info.pid == warm_pid
    counted = guest.counters(console(driver, 'warm-0'))[-1][0]
    wait_for(lambda: guest.counters(console(driver, 'warm-0'))[-1][0] > counted, 30,
             what='warm-0 to keep counting')
    directory = info.instance_dir or ''
    driver.destroy('warm-0')
    assert not process_runs(warm_pid or 0, 'qemu') and not os.path.exists(directory)
    assert driver.list_instances() == ['warm-1']


def test_a_dead_pooled_process_makes_the_launch_cold(env: dict[str, Any],
                                                     blessed: dict[str, Any]) -> None:
    driver, root = env['driver'], env['root']
    pool_full(driver)
    driver._pool.stop(kill=False)       # no refill in between: every ready slot is dead
    dead = slots(driver)
    for pid in dead.values():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(process_runs(p, 'qemu') for p in dead.values()), 30,
             what='the pooled processes to die')
    info = driver.launch(blessed['artifacts'], clone_spec(root, blessed, 'cold-0'))
    assert info.extra['warm'] is False and info.pid not in dead.values()
    resumed(driver, 'cold-0', blessed)
    assert not set(dead) & set(os.listdir(driver.instances_path))   # dropped, removed
    driver.destroy('cold-0')
    driver.destroy('warm-1')
    assert driver.list_instances() == []


def test_discarding_the_live_image_kills_its_pool(env: dict[str, Any],
                                                  blessed: dict[str, Any]) -> None:
    driver = make(env['root'])
    env['driver'] = driver
    pool_full(driver)
    pids = list(slots(driver).values())
    env.setdefault('pool_pids', []).extend(pids)
    driver.discard(blessed['artifacts'])
    assert not any(process_runs(pid, 'qemu') for pid in pids)
    assert slots(driver) == {} and os.listdir(driver.instances_path) == []
    assert not os.path.exists(blessed['artifacts'].directory)
    assert driver.warm_processes(LIVE_IMAGE) == 0
