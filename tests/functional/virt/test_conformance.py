"""The virt driver contract (gridcentric_storage/virt/base.py), once for every driver.

Each scenario runs on the QEMU driver, the libvirt driver (a real libvirtd)
and, unless it needs a real VM (marked ``hypervisor``), the fake driver. Per
driver, one template VM boots once (tens of seconds under TCG), is blessed
once, and two clones are launched from that live image; the tests then check
one property each on those VMs, in file order: the console of the test
guest (tools/build-test-guest.sh) makes memory continuity, RNG divergence
and guest parameters visible. Every VM and file made here is removed by the
fixtures' finalizers.
"""

import concurrent.futures
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_live
from tests.fixtures import guest
from tests.fixtures.guest import local_disk
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import (
    BOOT_TIMEOUT,
    KINDS,
    MEMORY_MB,
    console,
    counter_past,
    destroy_all,
    disk_file,
    disk_paths,
    kind_of,
    make_driver,
    native_command_line,
    nic_mac,
    process_runs,
    protocol_nodes,
    restarted,
    snapshot,
    work_dir,
)

USER_DATA = b'#cloud-config\nhostname: clone-0\n'
SOURCE_MAC = '52:54:00:12:34:56'
CLONE_MAC = '52:54:00:65:43:21'
CLONES = 2


@pytest.fixture(scope='module', params=KINDS)
def driver(request: pytest.FixtureRequest) -> Iterator[base.VirtDriver]:
    with work_dir() as root:
        drv = make_driver(request.param, root, request)
        yield drv
        destroy_all(drv)
        assert drv.list_instances() == []


@pytest.fixture(scope='module')
def work(driver: base.VirtDriver) -> Iterator[str]:
    """The disks' files: one directory per driver."""
    with work_dir() as path:
        yield path


def runs_guest(driver: base.VirtDriver) -> bool:
    return kind_of(driver) != 'fake'


@pytest.fixture(scope='module')
def source(driver: base.VirtDriver, work: str) -> dict[str, Any]:
    boot = guest.build_or_skip() if runs_guest(driver) else None
    disk = disk_file(driver, os.path.join(work, 'src.qcow2'))
    info = driver.spawn(base.InstanceSpec(
        id='src', name='template', memory_mb=MEMORY_MB, kernel=boot and boot.kernel,
        initrd=boot and boot.initrd, cmdline=guest.CMDLINE + ' gc.role=template',
        disks=[local_disk('vol-src', disk)], mac=SOURCE_MAC))
    if boot:
        wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
                 what='the template VM to boot and count')
    return {'info': info, 'disk': disk, 'token': guest.boot_token(console(driver, 'src'))}


@pytest.fixture(scope='module')
def blessed(driver: base.VirtDriver, source: dict[str, Any], work: str) -> dict[str, Any]:
    """The caller's sequence for disks consistent with memory: pause, snapshot, bless."""
    driver.pause('src')
    counted = guest.counters(console(driver, 'src'))
    snap = snapshot(source['disk'], os.path.join(work, 'snap.qcow2'))
    artifacts = driver.bless('src', 'li-1', [local_disk('vol-snap', snap)])
    paused_after = driver.get_info('src').state
    driver.unpause('src')
    ram_mtime = os.stat(artifacts.memory_path).st_mtime if runs_guest(driver) else None
    return {'artifacts': artifacts, 'before': counted[-1][0] if counted else None,
            'snap': snap, 'paused_after': paused_after, 'ram_mtime': ram_mtime}


@pytest.fixture(scope='module')
def clones(driver: base.VirtDriver, blessed: dict[str, Any],
           work: str) -> list[base.InstanceInfo]:
    specs = []
    for i in range(CLONES):
        overlay = disk_file(driver, os.path.join(work, 'clone-%d.qcow2' % i),
                            backing=blessed['snap'])
        specs.append(base.CloneSpec(
            id='clone-%d' % i, name='clone-%d' % i, disks=[local_disk('vol-c%d' % i, overlay)],
            guest={'role': 'web', 'index': '0'} if i == 0 else {},
            mac=CLONE_MAC if i == 0 else None, user_data=USER_DATA if i == 0 else None))
    with concurrent.futures.ThreadPoolExecutor(CLONES) as pool:
        infos = list(pool.map(lambda s: driver.launch(blessed['artifacts'], s), specs))

    def resumed(instance_id: str) -> Callable[[], bool]:
        def check() -> bool:
            text = console(driver, instance_id)
            return bool(guest.tokens(text)) and len(guest.counters(text)) >= 4
        return check

    for info in infos if runs_guest(driver) else []:
        wait_for(resumed(info.id), 60, what='%s to print its token and count' % info.id)
    return infos


def keeps_counting(driver: base.VirtDriver, instance_id: str, by: int = 1) -> None:
    """The guest's counter goes on past where it is now."""
    last = guest.counters(console(driver, instance_id))[-1][0]
    wait_for(counter_past(driver, instance_id, last + by - 1), 30,
             what='%s to keep counting' % instance_id)


# ---- instances

@pytest.mark.hypervisor
def test_spawn_boots_and_counts(driver: base.VirtDriver, source: dict[str, Any]) -> None:
    text = console(driver, 'src')
    assert source['token'] and 'GUEST-PARAM gc.role=template' in text
    keeps_counting(driver, 'src', by=3)
    numbers = [n for n, _ in guest.counters(console(driver, 'src'))]
    assert numbers == sorted(numbers) and numbers[0] == 0
    info = driver.get_info('src')
    assert (info.state, info.pid) == ('running', source['info'].pid)
    assert info.pid and process_runs(info.pid, 'qemu-system')
    assert info.extra['accel'] == driver.accel
    assert len(driver.get_console_output('src', length=2).splitlines()) == 2


def test_spawned_vm_is_listed_and_running(driver: base.VirtDriver,
                                          source: dict[str, Any]) -> None:
    assert source['info'].state == 'running'
    assert driver.get_info('src').state == 'running'
    assert 'src' in driver.list_instances()
    assert driver.get_console_output('src', length=1).count('\n') == 1
    assert driver.get_console_output('src', length=0) == ''


def test_a_second_vm_of_the_same_id_or_a_bad_id_is_refused(driver: base.VirtDriver,
                                                           source: dict[str, Any]) -> None:
    with pytest.raises(exception.Conflict, match='src already exists'):
        driver.spawn(base.InstanceSpec(id='src', name='again', memory_mb=64))
    with pytest.raises(exception.Invalid, match='must match'):
        driver.spawn(base.InstanceSpec(id='../src', name='escape', memory_mb=64))
    assert driver.get_info('src').state == 'running'


def test_an_unknown_vm_is_stopped_and_has_no_console(driver: base.VirtDriver) -> None:
    assert driver.get_info('never-spawned').state == 'stopped'
    assert 'never-spawned' not in driver.list_instances()
    with pytest.raises(exception.NotFound):
        driver.get_console_output('never-spawned')


@pytest.mark.hypervisor
def test_vm_is_found_again_after_a_service_restart(driver: base.VirtDriver,
                                                   source: dict[str, Any]) -> None:
    again = restarted(driver)
    info = again.get_info('src')
    assert (info.state, info.pid) == ('running', source['info'].pid)
    assert again.list_instances() == driver.list_instances()


# ---- bless

def test_bless_leaves_the_source_as_the_caller_had_it(driver: base.VirtDriver,
                                                      blessed: dict[str, Any]) -> None:
    artifacts = blessed['artifacts']
    assert blessed['paused_after'] == 'paused'
    assert (artifacts.live_image_id, artifacts.memory_mb, artifacts.vcpus) == (
        'li-1', MEMORY_MB, 1)
    assert [d.volume_id for d in artifacts.disks] == ['vol-snap']


@pytest.mark.hypervisor
def test_bless_freezes_the_ram_in_a_read_only_file(driver: base.VirtDriver,
                                                   blessed: dict[str, Any]) -> None:
    artifacts = blessed['artifacts']
    # Neither its owner nor others may write it (libvirt leaves QEMU's group a
    # write bit: QEMU 7.2 opens it O_RDWR even with share=off).
    assert not stat.S_IMODE(os.stat(artifacts.memory_path).st_mode) & 0o202
    assert artifacts.extra['ram_size'] == os.path.getsize(artifacts.memory_path) == (
        MEMORY_MB << 20)
    assert qemu_live.sha256(artifacts.memory_path) == artifacts.extra['ram_sha256']
    assert os.path.getsize(artifacts.state_path) < 4 << 20     # x-ignore-shared: no RAM


def test_source_keeps_running_after_bless(driver: base.VirtDriver,
                                          blessed: dict[str, Any]) -> None:
    if runs_guest(driver):
        wait_for(counter_past(driver, 'src', blessed['before'] + 3), 30,
                 what='the blessed VM to keep counting')
    assert driver.get_info('src').state == 'running'


def test_bless_of_a_running_vm_resumes_it_and_ids_conflict(
        driver: base.VirtDriver, blessed: dict[str, Any], work: str) -> None:
    snap = snapshot(blessed['snap'], os.path.join(work, 'snap-2.qcow2'))
    artifacts = driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    assert artifacts.extra['resumed'] is True
    assert driver.get_info('src').state == 'running'
    if runs_guest(driver):
        assert artifacts.extra['ram_copy'] in ('reflink', 'sparse-copy')
        keeps_counting(driver, 'src', by=2)
    with pytest.raises(exception.Conflict, match='li-2 already exists'):
        driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    driver.discard(artifacts)
    driver.discard(artifacts)
    if runs_guest(driver):
        assert not os.path.exists(artifacts.directory)
    assert driver.get_info('src').state == 'running'


def test_bless_needs_a_snapshot_of_every_disk(driver: base.VirtDriver,
                                              blessed: dict[str, Any]) -> None:
    with pytest.raises(exception.DriverError, match='1 disk.*0 snapshot'):
        driver.bless('src', 'li-no-disks', [])
    assert driver.get_info('src').state == 'running'


# ---- clones

def test_clones_resume_the_blessed_memory(driver: base.VirtDriver, source: dict[str, Any],
                                          blessed: dict[str, Any],
                                          clones: list[base.InstanceInfo]) -> None:
    for info in clones:
        assert info.state == 'running' and info.extra['live_image_id'] == 'li-1'
        assert driver.get_info(info.id).state == 'running'
        assert info.id in driver.list_instances()
        if runs_guest(driver):
            text = console(driver, info.id)
            assert guest.tokens(text) == {source['token']}, text
            assert 'BOOT-TOKEN' not in text                   # resumed, never booted
            first = guest.counters(text)[0][0]
            assert blessed['before'] <= first <= blessed['before'] + 3, (first,
                                                                         blessed['before'])


@pytest.mark.hypervisor
def test_clones_diverge_after_resume(driver: base.VirtDriver,
                                     clones: list[base.InstanceInfo]) -> None:
    series, genids = {}, set()
    for vm in [c.id for c in clones] + ['src']:
        text = console(driver, vm)
        if vm != 'src':
            genids.update(re.findall(r'VMGENID-CHANGED (\S+)', text))
        series[vm] = dict(guest.counters(text))
    assert len(genids) == len(clones)                    # each clone its own generation id
    start = max(min(series[c.id]) for c in clones) + 1   # skip the line in flight at resume
    common = {n for n in set.intersection(*(set(s) for s in series.values())) if n >= start}
    assert common, series
    for n in common:
        values = [s[n] for s in series.values()]
        assert len(set(values)) == len(values), (n, values)


@pytest.mark.hypervisor
def test_clone_gets_guest_parameters_and_user_data(driver: base.VirtDriver,
                                                   clones: list[base.InstanceInfo]) -> None:
    text = wait_for(lambda: 'USER-DATA' in console(driver, 'clone-0')
                    and console(driver, 'clone-0'), 30, what='the guest to print its parameters')
    assert 'GUEST-PARAM role=web' in text and 'GUEST-PARAM index=0' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
    assert 'role=web' not in console(driver, 'clone-1')


@pytest.mark.hypervisor
def test_clones_get_new_mac_addresses(driver: base.VirtDriver,
                                      clones: list[base.InstanceInfo]) -> None:
    macs = [nic_mac(driver, info.id) for info in clones]
    for info, mac in zip(clones, macs, strict=True):
        with open(os.path.join(info.instance_dir or '', 'fw-instance')) as f:
            assert 'mac=%s\n' % mac in f.read()           # what a guest agent applies
    assert macs[0] == CLONE_MAC
    assert nic_mac(driver, 'src') == SOURCE_MAC
    assert len(set(macs + [SOURCE_MAC])) == len(clones) + 1


def test_clone_writes_to_its_own_overlay(driver: base.VirtDriver, work: str,
                                         source: dict[str, Any],
                                         clones: list[base.InstanceInfo]) -> None:
    assert disk_paths(driver, 'clone-1') == [os.path.join(work, 'clone-1.qcow2')]
    assert disk_paths(driver, 'src') == [source['disk']]


def test_attach_and_detach_a_volume(driver: base.VirtDriver, work: str,
                                    clones: list[base.InstanceInfo]) -> None:
    vm, path = 'clone-1', disk_file(driver, os.path.join(work, 'extra.qcow2'), '16M')
    seen = len(console(driver, vm))
    driver.attach_volume(vm, local_disk('vol-extra', path))
    driver.attach_volume(vm, local_disk('vol-extra', path))       # idempotent
    if runs_guest(driver):
        wait_for(lambda: re.search(r'virtio_blk \S+: \[vdb\]', console(driver, vm)[seen:]),
                 60, what='the guest kernel to log the new disk')
    assert disk_paths(driver, vm) == [os.path.join(work, 'clone-1.qcow2'), path]
    driver.detach_volume(vm, 'vol-extra')
    driver.detach_volume(vm, 'vol-extra')                         # idempotent
    assert disk_paths(driver, vm) == [os.path.join(work, 'clone-1.qcow2')]


@pytest.mark.hypervisor
def test_extend_of_an_attached_volume_reaches_the_guest(driver: base.VirtDriver, work: str,
                                                        clones: list[base.InstanceInfo]
                                                        ) -> None:
    guest.check_extend_reaches_guest(driver, 'clone-1', os.path.join(work, 'grows.raw'))


def test_extend_of_a_volume_that_is_not_attached_fails(driver: base.VirtDriver,
                                                       clones: list[base.InstanceInfo]) -> None:
    with pytest.raises(exception.DriverError, match='vol-never-attached is not attached'):
        driver.extend_volume('clone-1', 'vol-never-attached', 48 << 20)


def test_a_clone_is_blessed_by_flattening_its_memory_or_refused(
        driver: base.VirtDriver, work: str, blessed: dict[str, Any],
        clones: list[base.InstanceInfo]) -> None:
    """A clone's RAM is a private copy-on-write mapping of its live image's: a
    driver that can, flattens it into the new live image; the others refuse."""
    if not getattr(driver, 'flattens_clones', False):
        with pytest.raises(exception.DriverError, match='clone of live image li-1'):
            driver.bless('clone-1', 'li-of-clone', [local_disk('x', '/nonexistent')])
        return
    driver.pause('clone-1')
    [disk] = disk_paths(driver, 'clone-1')
    snap = snapshot(disk, os.path.join(work, 'clone-1-snap.qcow2'))
    artifacts = driver.bless('clone-1', 'li-of-clone', [local_disk('vol-c1-snap', snap)])
    driver.unpause('clone-1')
    try:
        assert artifacts.extra['ram_copy'] == 'flatten'
        assert os.path.getsize(artifacts.memory_path) == \
            os.path.getsize(blessed['artifacts'].memory_path)
        assert driver.get_info('clone-1').state == 'running'
        keeps_counting(driver, 'clone-1')
    finally:
        driver.discard(artifacts)
    assert not os.path.exists(artifacts.directory)


def test_a_second_clone_of_the_same_id_conflicts(driver: base.VirtDriver, work: str,
                                                 blessed: dict[str, Any],
                                                 clones: list[base.InstanceInfo]) -> None:
    overlay = disk_file(driver, os.path.join(work, 'again.qcow2'), backing=blessed['snap'])
    with pytest.raises(exception.Conflict, match='clone-0 already exists'):
        driver.launch(blessed['artifacts'], base.CloneSpec(
            id='clone-0', name='again', disks=[local_disk('vol-again', overlay)]))
    assert driver.get_info('clone-0').state == 'running'


@pytest.mark.hypervisor
def test_live_image_ram_never_changed(driver: base.VirtDriver, blessed: dict[str, Any],
                                      clones: list[base.InstanceInfo]) -> None:
    artifacts = blessed['artifacts']
    for info in clones:                                   # clones have run and written RAM
        keeps_counting(driver, info.id)
    assert qemu_live.sha256(artifacts.memory_path) == artifacts.extra['ram_sha256']
    assert os.stat(artifacts.memory_path).st_mtime == blessed['ram_mtime']


def test_destroy_is_idempotent(driver: base.VirtDriver,
                               clones: list[base.InstanceInfo]) -> None:
    info = driver.get_info('clone-1')
    assert info.pid
    driver.destroy('clone-1')
    driver.destroy('clone-1')
    assert driver.get_info('clone-1').state == 'stopped'
    assert 'clone-1' not in driver.list_instances()
    with pytest.raises(exception.NotFound):
        driver.get_console_output('clone-1')
    if runs_guest(driver):
        assert not process_runs(info.pid, 'clone-1')
        assert not os.path.exists(info.instance_dir or '')


def test_discard_then_launch_fails_clearly(driver: base.VirtDriver, blessed: dict[str, Any],
                                           clones: list[base.InstanceInfo], work: str) -> None:
    artifacts = blessed['artifacts']
    driver.discard(artifacts)
    driver.discard(artifacts)
    if runs_guest(driver):
        assert not os.path.exists(artifacts.directory)
        keeps_counting(driver, 'clone-0')       # running clones keep their RAM mapping
    overlay = disk_file(driver, os.path.join(work, 'late.qcow2'), backing=blessed['snap'])
    with pytest.raises(exception.LiveImageFilesMissing, match='li-1.*discarded') as err:
        driver.launch(artifacts, base.CloneSpec(id='late', name='late',
                                                disks=[local_disk('vol-late', overlay)]))
    assert isinstance(err.value, exception.DriverError)
    assert 'late' not in driver.list_instances()
    assert driver.get_info('late').state == 'stopped'


# ---- volumes of other backends

@pytest.mark.hypervisor
def test_remote_volumes_become_drives_the_hypervisor_accepts(driver: base.VirtDriver,
                                                            work: str) -> None:
    """No Ceph or iSCSI target here: the drives of the command line the hypervisor
    side turns the disks into (QEMU's own parse of them: test_qemu.py)."""
    rbd = base.Disk('v1', {'driver_volume_type': 'rbd', 'data': {
        'name': 'volumes/volume-1', 'hosts': ['127.0.0.1'], 'ports': ['6789']}})
    iscsi = base.Disk('v2', {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:3260', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
        'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
        'auth_password': 's3cr:et,pw'}})
    command_line = native_command_line(driver, [rbd, iscsi], work)
    assert 's3cr' not in command_line                  # in a secret, not in ps output
    nodes = protocol_nodes(command_line)
    assert {'driver': 'rbd', 'pool': 'volumes', 'image': 'volume-1',
            'server': [{'host': '127.0.0.1', 'port': '6789'}]}.items() <= nodes['rbd'].items()
    assert {'driver': 'iscsi', 'portal': '127.0.0.1:3260', 'lun': 1, 'user': 'user',
            'target': 'iqn.2010-10.org.openstack:volume-2'}.items() <= nodes['iscsi'].items()
    assert 'password-secret' in nodes['iscsi']
