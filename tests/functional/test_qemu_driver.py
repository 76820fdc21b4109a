"""The QEMU driver against real QEMU VMs (TCG here; KVM where the probe says it works).

One template VM boots once per module (tens of seconds under TCG); it is
blessed and three clones are launched from it; each test then checks one
property on those VMs: the console of the test guest (tools/build-test-guest.sh)
makes memory continuity, RNG divergence and guest parameters visible. Every
QEMU started here is destroyed by the fixtures' finalizers.
"""

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_cmdline, qemu_live, qmp
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest, loopfs
from tests.fixtures.guest import local_disk, qcow2
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

BOOT_TIMEOUT = 180.0
MEMORY_MB = 256
USER_DATA = b'#cloud-config\nhostname: clone-0\n'
SOURCE_MAC = '52:54:00:12:34:56'
CLONE_MAC = '52:54:00:65:43:21'




def console(driver: QemuDriver, instance_id: str) -> str:
    return driver.get_console_output(instance_id)


def counter_past(driver: QemuDriver, instance_id: str, value: int) -> Callable[[], bool]:
    return lambda: any(n > value for n, _ in guest.counters(console(driver, instance_id)))


@pytest.fixture(scope='module')
def work(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp('qemu'))


@pytest.fixture(scope='module')
def driver(work: str) -> Iterator[QemuDriver]:
    drv = QemuDriver(instances_path=os.path.join(work, 'instances'),
                     live_images_path=os.path.join(work, 'live-images'), accel='auto')
    drv.init_host('test-host')
    yield drv
    for instance_id in drv.list_instances():
        drv.destroy(instance_id)
    shutil.rmtree(drv.live_images_path, ignore_errors=True)   # 256 MiB RAM files


@pytest.fixture(scope='module')
def source(driver: QemuDriver, work: str) -> dict[str, Any]:
    paths = guest.build_or_skip()
    base_disk = qcow2(os.path.join(work, 'base.qcow2'))
    disk = qcow2(os.path.join(work, 'src.qcow2'), backing=base_disk)
    info = driver.spawn(base.InstanceSpec(
        id='src', name='template', memory_mb=MEMORY_MB, kernel=paths.kernel,
        initrd=paths.initrd, cmdline=guest.CMDLINE + ' gc.role=template',
        disks=[local_disk('vol-src', disk)], mac=SOURCE_MAC))
    wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
             what='the template VM to boot and count')
    return {'info': info, 'disk': disk,
            'token': guest.boot_token(console(driver, 'src'))}


@pytest.fixture(scope='module')
def blessed(driver: QemuDriver, source: dict[str, Any], work: str) -> dict[str, Any]:
    """The caller's sequence for disks consistent with memory: pause, snapshot, bless."""
    driver.pause('src')
    before = guest.counters(console(driver, 'src'))[-1][0]
    snap = os.path.join(work, 'snap.qcow2')
    subprocess.run(['cp', '--sparse=always', source['disk'], snap], check=True)
    start = time.monotonic()
    artifacts = driver.bless('src', 'li-1', [local_disk('vol-snap', snap)])
    elapsed = time.monotonic() - start
    paused_after = driver.get_info('src').state
    driver.unpause('src')
    return {'artifacts': artifacts, 'before': before, 'seconds': elapsed, 'snap': snap,
            'paused_after': paused_after, 'ram_mtime': os.stat(artifacts.memory_path).st_mtime}


@pytest.fixture(scope='module')
def clones(driver: QemuDriver, blessed: dict[str, Any], work: str) -> list[base.InstanceInfo]:
    specs = []
    for i in range(3):
        overlay = qcow2(os.path.join(work, 'clone-%d.qcow2' % i), backing=blessed['snap'])
        specs.append(base.CloneSpec(
            id='clone-%d' % i, name='clone-%d' % i, disks=[local_disk('vol-c%d' % i, overlay)],
            guest={'role': 'web', 'index': '0'} if i == 0 else {},
            mac=CLONE_MAC if i == 0 else None,
            user_data=USER_DATA if i == 0 else None))
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        infos = list(pool.map(lambda s: driver.launch(blessed['artifacts'], s), specs))
    def resumed(instance_id: str) -> Callable[[], bool]:
        def check() -> bool:
            text = console(driver, instance_id)
            return bool(guest.tokens(text)) and len(guest.counters(text)) >= 4
        return check

    for info in infos:
        wait_for(resumed(info.id), 60, what='%s to print its token and count' % info.id)
    return infos


def test_accel_is_probed(driver: QemuDriver) -> None:
    assert driver.accel in ('kvm', 'tcg')
    assert driver.accel_reason


def test_spawn_boots_and_counts(driver: QemuDriver, source: dict[str, Any]) -> None:
    text = console(driver, 'src')
    assert source['token']
    assert 'GUEST-PARAM gc.role=template' in text
    last = guest.counters(text)[-1][0]
    wait_for(counter_past(driver, 'src', last + 2), 30, what='the counter to advance')
    numbers = [n for n, _ in guest.counters(console(driver, 'src'))]
    assert numbers == sorted(numbers) and numbers[0] == 0
    info = driver.get_info('src')
    assert (info.state, info.pid, info.extra['accel']) == ('running', source['info'].pid,
                                                            driver.accel)
    assert 'src' in driver.list_instances()
    assert len(driver.get_console_output('src', length=2).splitlines()) == 2


def test_vm_is_found_again_after_a_service_restart(driver: QemuDriver,
                                                    source: dict[str, Any]) -> None:
    restarted = QemuDriver(instances_path=driver.instances_path,
                           live_images_path=driver.live_images_path, accel=driver.accel)
    info = restarted.get_info('src')
    assert (info.state, info.pid) == ('running', source['info'].pid)
    assert restarted.list_instances() == driver.list_instances()


def test_bless_is_fast_and_the_ram_file_is_frozen(driver: QemuDriver,
                                                   blessed: dict[str, Any]) -> None:
    artifacts = blessed['artifacts']
    assert blessed['seconds'] < 1.5, artifacts.extra
    assert blessed['paused_after'] == 'paused'            # left as the caller had it
    assert stat.S_IMODE(os.stat(artifacts.memory_path).st_mode) == 0o444
    assert artifacts.extra['ram_size'] == MEMORY_MB << 20
    assert len(artifacts.extra['ram_sha256']) == 64
    # x-ignore-shared: device state only, not 256 MiB of RAM
    assert os.path.getsize(artifacts.state_path) < 4 << 20
    assert (artifacts.memory_mb, artifacts.vcpus) == (MEMORY_MB, 1)


def test_source_keeps_running_after_bless(driver: QemuDriver, blessed: dict[str, Any]) -> None:
    wait_for(counter_past(driver, 'src', blessed['before'] + 3), 30,
             what='the blessed VM to keep counting')
    assert driver.get_info('src').state == 'running'


def test_bless_of_a_running_vm_pauses_only_briefly(driver: QemuDriver, blessed: dict[str, Any],
                                                    work: str) -> None:
    snap = os.path.join(work, 'snap-2.qcow2')
    subprocess.run(['cp', '--sparse=always', blessed['snap'], snap], check=True)
    start = time.monotonic()
    artifacts = driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    assert time.monotonic() - start < 1.5
    assert artifacts.extra['paused_seconds'] < 1.0
    assert artifacts.extra['ram_copy'] in ('reflink', 'sparse-copy')
    assert driver.get_info('src').state == 'running'
    last = guest.counters(console(driver, 'src'))[-1][0]
    wait_for(counter_past(driver, 'src', last + 2), 30, what='the VM to keep counting')
    with pytest.raises(exception.Conflict):
        driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    driver.discard(artifacts)
    driver.discard(artifacts)
    assert not os.path.exists(artifacts.directory)


def test_clones_resume_the_blessed_memory(driver: QemuDriver, source: dict[str, Any],
                                          blessed: dict[str, Any],
                                          clones: list[base.InstanceInfo]) -> None:
    for info in clones:
        text = console(driver, info.id)
        assert info.state == 'running' and info.extra['live_image_id'] == 'li-1'
        assert guest.tokens(text) == {source['token']}, text
        assert 'BOOT-TOKEN' not in text                   # resumed, never booted
        first = guest.counters(text)[0][0]
        assert blessed['before'] <= first <= blessed['before'] + 3, (first, blessed['before'])
        assert driver.get_info(info.id).state == 'running'


def test_clones_diverge_after_resume(driver: QemuDriver, clones: list[base.InstanceInfo]) -> None:
    series = {}
    for vm in [c.id for c in clones] + ['src']:
        text = console(driver, vm)
        if vm != 'src':
            assert 'VMGENID-CHANGED' in text
        series[vm] = dict(guest.counters(text))
    start = max(min(series[c.id]) for c in clones) + 1   # skip the line in flight at resume
    common = set.intersection(*(set(s) for s in series.values()))
    common = {n for n in common if n >= start}
    assert common, series
    for n in common:
        values = [s[n] for s in series.values()]
        assert len(set(values)) == len(values), (n, values)


def test_clone_gets_guest_parameters_and_user_data(driver: QemuDriver,
                                                   clones: list[base.InstanceInfo]) -> None:
    text = wait_for(lambda: 'USER-DATA' in console(driver, 'clone-0')
                    and console(driver, 'clone-0'), 30, what='the guest to print its parameters')
    assert 'GUEST-PARAM role=web' in text and 'GUEST-PARAM index=0' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
    assert 'role=web' not in console(driver, 'clone-1')


def test_clones_get_new_mac_addresses(driver: QemuDriver,
                                      clones: list[base.InstanceInfo]) -> None:
    macs = []
    for info in clones:
        with open(os.path.join(info.instance_dir or '', 'vm.json')) as f:
            macs.append(json.load(f)['mac'])
        with open(os.path.join(info.instance_dir or '', 'fw-instance')) as f:
            assert 'mac=%s\n' % macs[-1] in f.read()       # what a guest agent applies
    assert macs[0] == CLONE_MAC
    assert len(set(macs + [SOURCE_MAC])) == 4


def test_clone_writes_to_its_own_overlay(driver: QemuDriver, work: str,
                                         clones: list[base.InstanceInfo]) -> None:
    with qmp.connect(os.path.join(clones[1].instance_dir or '', 'qmp.sock')) as mon:
        blocks = {b['qdev']: b['inserted'] for b in mon.cmd('query-block') if 'inserted' in b}
    inserted = blocks['/machine/peripheral/disk0/virtio-backend']
    assert inserted['file'] == os.path.join(work, 'clone-1.qcow2')
    assert inserted['backing_file'] == os.path.join(work, 'snap.qcow2')


def test_attach_and_detach_a_volume(driver: QemuDriver, work: str,
                                    clones: list[base.InstanceInfo]) -> None:
    vm = 'clone-2'
    volume = local_disk('vol-extra', qcow2(os.path.join(work, 'extra.qcow2'), '16M'))
    driver.attach_volume(vm, volume)
    driver.attach_volume(vm, volume)                      # idempotent
    wait_for(lambda: re.search(r'virtio_blk \S+: \[vdb\]', console(driver, vm)), 60,
             what='the guest kernel to log the new disk')
    with qmp.connect(os.path.join(clones[2].instance_dir or '', 'qmp.sock')) as mon:
        files = [b['inserted']['file'] for b in mon.cmd('query-block') if 'inserted' in b]
    assert os.path.join(work, 'extra.qcow2') in files
    driver.detach_volume(vm, 'vol-extra')
    driver.detach_volume(vm, 'vol-extra')                 # idempotent
    with qmp.connect(os.path.join(clones[2].instance_dir or '', 'qmp.sock')) as mon:
        assert 'disk1' not in {c['name'] for c in mon.cmd('qom-list',
                                                            path='/machine/peripheral')}
        files = [b['inserted']['file'] for b in mon.cmd('query-block') if 'inserted' in b]
    assert os.path.join(work, 'extra.qcow2') not in files
    with open(os.path.join(clones[2].instance_dir or '', 'vm.json')) as f:
        assert [d['volume_id'] for d in json.load(f)['disks']] == ['vol-c2']


def test_extend_of_an_attached_volume_reaches_the_guest(driver: QemuDriver, work: str,
                                                        clones: list[base.InstanceInfo]
                                                        ) -> None:
    guest.check_extend_reaches_guest(driver, 'clone-2', os.path.join(work, 'grows.raw'))


def test_a_clone_cannot_be_blessed(driver: QemuDriver, clones: list[base.InstanceInfo]) -> None:
    with pytest.raises(exception.DriverError, match='clone of live image li-1'):
        driver.bless('clone-1', 'li-of-clone', [local_disk('x', '/nonexistent')])


def test_live_image_ram_never_changed(driver: QemuDriver, blessed: dict[str, Any],
                                      clones: list[base.InstanceInfo]) -> None:
    artifacts = blessed['artifacts']
    for info in clones:                                   # clones have run and written RAM
        last = guest.counters(console(driver, info.id))[-1][0]
        wait_for(counter_past(driver, info.id, last), 30, what='%s to keep counting' % info.id)
    with open(artifacts.memory_path, 'rb') as f:
        assert hashlib.file_digest(f, 'sha256').hexdigest() == artifacts.extra['ram_sha256']
    assert os.stat(artifacts.memory_path).st_mtime == blessed['ram_mtime']
    assert stat.S_IMODE(os.stat(artifacts.memory_path).st_mode) == 0o444


def test_destroy_is_idempotent(driver: QemuDriver, clones: list[base.InstanceInfo]) -> None:
    pid = driver.get_info('clone-1').pid
    assert pid
    driver.destroy('clone-1')
    driver.destroy('clone-1')
    assert driver.get_info('clone-1').state == 'stopped'
    assert 'clone-1' not in driver.list_instances()
    assert not os.path.exists('/proc/%d' % pid) or b'clone-1' not in open(
        '/proc/%d/cmdline' % pid, 'rb').read()
    with pytest.raises(exception.NotFound):
        driver.get_console_output('clone-1')


def test_discard_then_launch_fails_clearly(driver: QemuDriver, blessed: dict[str, Any],
                                           clones: list[base.InstanceInfo], work: str) -> None:
    artifacts = blessed['artifacts']
    driver.discard(artifacts)
    driver.discard(artifacts)
    assert not os.path.exists(artifacts.directory)
    # clones already running keep their (now unlinked) RAM mapping
    last = guest.counters(console(driver, 'clone-0'))[-1][0]
    wait_for(counter_past(driver, 'clone-0', last), 30, what='clone-0 to keep counting')
    overlay = qcow2(os.path.join(work, 'late.qcow2'), backing=blessed['snap'])
    with pytest.raises(exception.LiveImageFilesMissing, match='li-1.*discarded') as err:
        driver.launch(artifacts, base.CloneSpec(id='late', name='late',
                                                disks=[local_disk('vol-late', overlay)]))
    assert isinstance(err.value, exception.DriverError)
    assert 'late' not in driver.list_instances()


def test_remote_volumes_become_blockdevs_qemu_accepts(tmp_path: Any) -> None:
    """rbd and iscsi are not available here: check the argv, and that QEMU parses
    it (it fails only when connecting, never on an option)."""
    rbd = qemu_cmdline.DiskSlot('v1', 0, 4, {'driver_volume_type': 'rbd', 'data': {
        'name': 'volumes/volume-1', 'auth_username': 'cinder', 'hosts': ['127.0.0.1'],
        'ports': ['1'], 'conf': str(tmp_path / 'missing-ceph.conf')}})
    iscsi = qemu_cmdline.DiskSlot('v2', 1, 5, {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:1', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
        'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
        'auth_password': 's3cr:et,pw'}})
    layout = qemu_cmdline.Layout(id='remote', name='remote', memory_mb=64, vcpus=1,
                                 accel='tcg', disks=[rbd, iscsi])
    secret = tmp_path / 'sec-drive1.secret'
    secret.write_text('s3cr:et,pw')
    argv = qemu_cmdline.build_argv(
        'qemu-system-x86_64', layout, ram_path=str(tmp_path / 'ram'), share=True,
        qmp_path=str(tmp_path / 'qmp.sock'), console_path=str(tmp_path / 'console.log'),
        secret_files={'sec-drive1': str(secret)})
    assert not any('s3cr' in a for a in argv)
    blockdevs = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == '-blockdev']
    assert blockdevs[0]['file'] == {'driver': 'rbd', 'pool': 'volumes', 'image': 'volume-1',
                                    'user': 'cinder', 'conf': str(tmp_path / 'missing-ceph.conf'),
                                    'server': [{'host': '127.0.0.1', 'port': '1'}]}
    assert blockdevs[1]['file'] == {'driver': 'iscsi', 'transport': 'tcp',
                                    'portal': '127.0.0.1:1', 'lun': 1, 'user': 'user',
                                    'target': 'iqn.2010-10.org.openstack:volume-2',
                                    'password-secret': 'sec-drive1'}
    assert 'secret,id=sec-drive1,file=%s,format=raw' % secret in argv
    for keep in (rbd, iscsi):
        layout.disks = [keep]
        proc = subprocess.run(qemu_cmdline.build_argv(
            'qemu-system-x86_64', layout, ram_path=str(tmp_path / 'ram'), share=True,
            qmp_path=str(tmp_path / 'qmp.sock'), console_path=str(tmp_path / 'console.log'),
            secret_files={'sec-drive1': str(secret)}) + ['-S'],
            capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1
        assert 'unexpected' not in proc.stderr and 'Invalid parameter' not in proc.stderr
        assert ('conf file' if keep is rbd else 'iSCSI: Failed to connect') in proc.stderr


@pytest.fixture(params=['xfs', 'plain'])
def ram_dir(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == 'plain':
        yield str(tmp_path)
    else:
        yield from loopfs.mounted_or_skip('xfs', tmp_path)


def test_freeze_copy_reflinks_where_it_can_and_keeps_holes(ram_dir: str) -> None:
    src, dst = os.path.join(ram_dir, 'ram'), os.path.join(ram_dir, 'frozen')
    with open(src, 'wb') as f:
        f.truncate(64 << 20)
        for offset in (0, 5 << 20, (64 << 20) - 4096):
            f.seek(offset)
            f.write(os.urandom(4096))
    method = qemu_live.freeze_copy(src, dst)
    assert method == 'reflink' if 'loop-xfs' in ram_dir else method in ('reflink', 'sparse-copy')
    assert qemu_live.sha256(src) == qemu_live.sha256(dst)
    assert os.stat(dst).st_size == 64 << 20
    assert os.stat(dst).st_blocks * 512 < 8 << 20             # holes stayed holes
    with pytest.raises(FileExistsError):
        qemu_live.freeze_copy(src, dst)
