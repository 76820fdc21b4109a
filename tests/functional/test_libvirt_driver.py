"""The libvirt driver against a real libvirtd (tools/libvirtd.sh) and TCG guests.

One template domain boots once per module, is blessed, and two clones are
launched from it; each test checks one property on those VMs through the
console of the test guest (tools/build-test-guest.sh). Skips with the reason
when libvirtd or its Python bindings are not installed (fails instead under
``GC_REQUIRE_SERVICES=1``). Every domain, QEMU and file made here is removed
by the fixtures' finalizers; a libvirtd the fixture started is stopped again.
"""

import concurrent.futures
import contextlib
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_live
from tests.fixtures import guest
from tests.fixtures.guest import local_disk, qcow2
from tests.fixtures.services import wait_for

SCRIPT = os.path.join(os.path.dirname(__file__), '..', '..', 'tools', 'libvirtd.sh')
BOOT_TIMEOUT = 180.0
MEMORY_MB = 256
USER_DATA = b'#cloud-config\nhostname: clone-0\n'


def _skip_or_fail(reason: str) -> None:
    if os.environ.get('GC_REQUIRE_SERVICES') == '1':
        pytest.fail(reason)
    pytest.skip(reason)




def console(driver: Any, instance_id: str) -> str:
    return str(driver.get_console_output(instance_id))


def counter_past(driver: Any, instance_id: str, value: int) -> Callable[[], bool]:
    return lambda: any(n > value for n, _ in guest.counters(console(driver, instance_id)))


def qemu_pids(name: str) -> list[int]:
    """QEMU processes of domain ``name`` (by their -name guest=...)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        with contextlib.suppress(OSError):
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if b'guest=%s,' % name.encode() in f.read():
                    pids.append(int(pid))
    return pids


@pytest.fixture(scope='module')
def libvirtd() -> Iterator[None]:
    if shutil.which('libvirtd') is None or shutil.which('virtlogd') is None:
        _skip_or_fail('libvirtd is not installed (apt-get install -y libvirt-daemon-system '
                      'libvirt-clients python3-libvirt)')
    try:
        import libvirt  # noqa: F401
    except ImportError:
        _skip_or_fail('the libvirt Python bindings are missing (python3-libvirt, or pip '
                      'install libvirt-python)')
    if guest.missing():
        _skip_or_fail(guest.missing() or '')
    if os.geteuid() != 0:
        _skip_or_fail('libvirtd (qemu:///system) needs root')
    was_running = subprocess.run(['bash', SCRIPT, 'status'], check=False,
                                 timeout=30).returncode == 0
    proc = subprocess.run(['bash', SCRIPT, 'start'], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode:
        _skip_or_fail('tools/libvirtd.sh start failed: %s' % proc.stderr.strip())
    yield
    if not was_running:
        subprocess.run(['bash', SCRIPT, 'stop'], check=False, timeout=60)


@pytest.fixture(scope='module')
def work(libvirtd: None) -> Iterator[str]:
    path = tempfile.mkdtemp(prefix='gc-', dir='/tmp')    # short: QEMU's unix sockets
    os.chmod(path, 0o711)                                 # QEMU runs as libvirt-qemu
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope='module')
def driver(work: str) -> Iterator[Any]:
    from gridcentric_storage.virt.libvirt import LibvirtDriver

    drv = LibvirtDriver(instances_path=os.path.join(work, 'i'),
                        live_images_path=os.path.join(work, 'l'), accel='auto')
    drv.init_host('test-host')
    yield drv
    for instance_id in drv.list_instances():
        drv.destroy(instance_id)
    assert drv.list_instances() == []


@pytest.fixture(scope='module')
def source(driver: Any, work: str) -> dict[str, Any]:
    paths = guest.build_or_skip()
    disk = qcow2(os.path.join(work, 'src.qcow2'))
    info = driver.spawn(base.InstanceSpec(
        id='src', name='template', memory_mb=MEMORY_MB, kernel=paths.kernel,
        initrd=paths.initrd, cmdline=guest.CMDLINE + ' gc.role=template',
        disks=[local_disk('vol-src', disk)], mac='52:54:00:12:34:56'))
    wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
             what='the template VM to boot and count')
    return {'info': info, 'disk': disk, 'token': guest.boot_token(console(driver, 'src'))}


@pytest.fixture(scope='module')
def blessed(driver: Any, source: dict[str, Any], work: str) -> dict[str, Any]:
    """Pause, snapshot the disk, bless (the source is running again afterwards)."""
    driver.pause('src')
    before = guest.counters(console(driver, 'src'))[-1][0]
    snap = os.path.join(work, 'snap.qcow2')
    subprocess.run(['cp', '--sparse=always', source['disk'], snap], check=True)
    artifacts = driver.bless('src', 'li-1', [local_disk('vol-snap', snap)])
    paused_after = driver.get_info('src').state
    driver.unpause('src')
    return {'artifacts': artifacts, 'before': before, 'snap': snap,
            'paused_after': paused_after,
            'ram_mtime': os.stat(artifacts.memory_path).st_mtime}


@pytest.fixture(scope='module')
def clones(driver: Any, blessed: dict[str, Any], work: str) -> list[base.InstanceInfo]:
    specs = []
    for i in range(2):
        overlay = qcow2(os.path.join(work, 'clone-%d.qcow2' % i), backing=blessed['snap'])
        specs.append(base.CloneSpec(
            id='clone-%d' % i, name='clone-%d' % i, disks=[local_disk('vol-c%d' % i, overlay)],
            guest={'role': 'web', 'index': '0'} if i == 0 else {},
            user_data=USER_DATA if i == 0 else None))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        infos = list(pool.map(lambda s: driver.launch(blessed['artifacts'], s), specs))

    def resumed(instance_id: str) -> Callable[[], bool]:
        def check() -> bool:
            text = console(driver, instance_id)
            return bool(guest.tokens(text)) and len(guest.counters(text)) >= 4
        return check

    for info in infos:
        wait_for(resumed(info.id), 60, what='%s to print its token and count' % info.id)
    return infos


def test_spawn_boots_and_counts(driver: Any, source: dict[str, Any]) -> None:
    text = console(driver, 'src')
    assert source['token'] and 'GUEST-PARAM gc.role=template' in text
    last = guest.counters(text)[-1][0]
    wait_for(counter_past(driver, 'src', last + 2), 30, what='the counter to advance')
    info = driver.get_info('src')
    assert (info.state, info.extra['domain']) == ('running', 'gc-src')
    assert info.pid and qemu_pids('gc-src') == [info.pid]
    assert 'src' in driver.list_instances()
    assert len(driver.get_console_output('src', length=2).splitlines()) == 2
    dom = driver._domain('src')
    root = ET.fromstring(dom.XMLDesc(0))
    assert root.get('type') == ('kvm' if driver.accel == 'kvm' else 'qemu')
    assert re.fullmatch(r'[0-9a-f-]{36}', root.findtext('genid') or '')
    assert root.find("devices/serial[@type='file']/source").get('path') == info.console_path
    with open('/proc/%d/cmdline' % info.pid, 'rb') as f:
        argv = f.read().split(b'\0')
    ram = os.path.join(info.instance_dir, 'ram')
    assert ('memory-backend-file,id=mem,size=256M,mem-path=%s,share=on' % ram).encode() in argv
    assert os.path.getsize(ram) == MEMORY_MB << 20


def test_bless_freezes_the_ram_and_the_source_keeps_running(
        driver: Any, blessed: dict[str, Any]) -> None:
    artifacts = blessed['artifacts']
    assert blessed['paused_after'] == 'paused'            # left as the caller had it
    # 0444 unless QEMU runs unprivileged: QEMU 7.2 opens it O_RDWR even with share=off
    mode = stat.S_IMODE(os.stat(artifacts.memory_path).st_mode)
    assert mode == int(artifacts.extra['ram_mode'], 8) and mode in (0o444, 0o464)
    assert artifacts.extra['ram_size'] == MEMORY_MB << 20
    assert os.path.getsize(artifacts.state_path) < 4 << 20   # x-ignore-shared
    assert artifacts.extra['paused_seconds'] < 2.0, artifacts.extra
    wait_for(counter_past(driver, 'src', blessed['before'] + 3), 30,
             what='the blessed VM to keep counting')
    assert driver.get_info('src').state == 'running'


def test_bless_twice_and_conflicts(driver: Any, blessed: dict[str, Any], work: str) -> None:
    snap = os.path.join(work, 'snap-2.qcow2')
    shutil.copy(blessed['snap'], snap)
    artifacts = driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    assert artifacts.extra['resumed'] and driver.get_info('src').state == 'running'
    with pytest.raises(exception.Conflict):
        driver.bless('src', 'li-2', [local_disk('vol-snap-2', snap)])
    driver.discard(artifacts)
    driver.discard(artifacts)
    assert not os.path.exists(artifacts.directory)
    last = guest.counters(console(driver, 'src'))[-1][0]
    wait_for(counter_past(driver, 'src', last + 1), 30, what='the VM to keep counting')


def test_clones_resume_the_blessed_memory(driver: Any, source: dict[str, Any],
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
        assert info.extra['restore_seconds'] < 2.0, info.extra


def test_clones_diverge_after_resume(driver: Any, clones: list[base.InstanceInfo]) -> None:
    series = {}
    for vm in [c.id for c in clones] + ['src']:
        text = console(driver, vm)
        if vm != 'src':
            assert 'VMGENID-CHANGED' in text
        series[vm] = dict(guest.counters(text))
    start = max(min(series[c.id]) for c in clones) + 1
    common = {n for n in set.intersection(*(set(s) for s in series.values())) if n >= start}
    assert common, series
    for n in common:
        values = [s[n] for s in series.values()]
        assert len(set(values)) == len(values), (n, values)
    genids = {ET.fromstring(driver._domain(vm).XMLDesc(0)).findtext('genid')
              for vm in ['src'] + [c.id for c in clones]}
    assert len(genids) == 3


def test_clone_gets_guest_parameters_and_user_data(driver: Any,
                                                   clones: list[base.InstanceInfo]) -> None:
    text = wait_for(lambda: 'USER-DATA' in console(driver, 'clone-0')
                    and console(driver, 'clone-0'), 30, what='the guest to print its parameters')
    assert 'GUEST-PARAM role=web' in text and 'GUEST-PARAM index=0' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
    assert 'role=web' not in console(driver, 'clone-1')


def test_attach_and_detach_a_qcow2(driver: Any, work: str,
                                   clones: list[base.InstanceInfo]) -> None:
    vm = 'clone-1'
    path = qcow2(os.path.join(work, 'extra.qcow2'), '16M')
    driver.attach_volume(vm, local_disk('vol-extra', path))
    driver.attach_volume(vm, local_disk('vol-extra', path))       # idempotent
    wait_for(lambda: re.search(r'virtio_blk \S+: \[vdb\]', console(driver, vm)), 60,
             what='the guest kernel to log the new disk')
    sources = [s.get('file') for s in ET.fromstring(driver._domain(vm).XMLDesc(0)).iterfind(
        'devices/disk/source')]
    assert path in sources
    driver.detach_volume(vm, 'vol-extra')
    driver.detach_volume(vm, 'vol-extra')                         # idempotent
    sources = [s.get('file') for s in ET.fromstring(driver._domain(vm).XMLDesc(0)).iterfind(
        'devices/disk/source')]
    assert sources == [os.path.join(work, 'clone-1.qcow2')]


def test_extend_of_an_attached_volume_reaches_the_guest(driver: Any, work: str,
                                                        clones: list[base.InstanceInfo]
                                                        ) -> None:
    guest.check_extend_reaches_guest(driver, 'clone-1', os.path.join(work, 'grows.raw'))


def test_a_clone_cannot_be_blessed(driver: Any, clones: list[base.InstanceInfo]) -> None:
    with pytest.raises(exception.DriverError, match='clone of live image li-1'):
        driver.bless('clone-1', 'li-of-clone', [local_disk('x', '/nonexistent')])


def test_live_image_ram_never_changed(driver: Any, blessed: dict[str, Any],
                                      clones: list[base.InstanceInfo]) -> None:
    artifacts = blessed['artifacts']
    for info in clones:
        last = guest.counters(console(driver, info.id))[-1][0]
        wait_for(counter_past(driver, info.id, last), 30, what='%s to keep counting' % info.id)
    assert qemu_live.sha256(artifacts.memory_path) == artifacts.extra['ram_sha256']
    assert os.stat(artifacts.memory_path).st_mtime == blessed['ram_mtime']


def test_destroy_is_idempotent(driver: Any, clones: list[base.InstanceInfo]) -> None:
    info = driver.get_info('clone-1')
    assert info.pid
    driver.destroy('clone-1')
    driver.destroy('clone-1')
    assert driver.get_info('clone-1').state == 'stopped'
    assert 'clone-1' not in driver.list_instances()
    assert driver._lookup('clone-1') is None
    assert qemu_pids('gc-clone-1') == []
    assert not os.path.exists(info.instance_dir)
    with pytest.raises(exception.NotFound):
        driver.get_console_output('clone-1')


def test_discard_then_launch_fails_clearly(driver: Any, blessed: dict[str, Any],
                                           clones: list[base.InstanceInfo], work: str) -> None:

    artifacts = blessed['artifacts']
    driver.discard(artifacts)
    driver.discard(artifacts)
    assert not os.path.exists(artifacts.directory)
    last = guest.counters(console(driver, 'clone-0'))[-1][0]
    wait_for(counter_past(driver, 'clone-0', last), 30, what='clone-0 to keep counting')
    overlay = qcow2(os.path.join(work, 'late.qcow2'), backing=blessed['snap'])
    with pytest.raises(exception.LiveImageFilesMissing, match='li-1.*discarded'):
        driver.launch(artifacts, base.CloneSpec(id='late', name='late',
                                                disks=[local_disk('vol-late', overlay)]))
    assert 'late' not in driver.list_instances()


def test_remote_volumes_become_network_disks_libvirt_accepts(driver: Any) -> None:
    """No Ceph/iSCSI target here: check the XML, and that libvirt turns it into argv."""
    from gridcentric_storage.virt.libvirt import disk_xml

    rbd = {'driver_volume_type': 'rbd', 'data': {
        'name': 'volumes/volume-1', 'auth_username': 'cinder', 'hosts': ['10.0.0.1'],
        'ports': ['6789'], 'conf': '/etc/ceph/ceph.conf', 'secret_type': 'ceph',
        'secret_uuid': '2a5b08e4-3dca-4ff9-9a1d-40389758d081'}}
    el = disk_xml(rbd, 'vdb')
    assert el.get('type') == 'network'
    assert el.find('source').attrib == {'protocol': 'rbd', 'name': 'volumes/volume-1'}
    assert el.find('source/host').attrib == {'name': '10.0.0.1', 'port': '6789'}
    assert el.find('auth').get('username') == 'cinder'
    assert el.find('auth/secret').attrib == {'type': 'ceph',
                                             'uuid': rbd['data']['secret_uuid']}
    iscsi = {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:3260', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
        'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
        'auth_password': 's3cr:et,pw'}}
    spec = base.InstanceSpec(id='net', name='net', memory_mb=64, disks=[
        base.Disk('v1', {'driver_volume_type': 'rbd', 'data': dict(rbd['data'],
                                                                     auth_username=None)}),
        base.Disk('v2', iscsi)])
    try:
        root = driver.spawn_xml(spec, '/tmp/gc-net', 'qemu')
        xml = ET.tostring(root, encoding='unicode')
        assert 's3cr' not in xml                          # in an ephemeral libvirt secret
        argv = driver._connection().domainXMLToNative('qemu-argv', xml, 0)
    finally:
        driver._drop_secrets('net')
    assert '"driver":"rbd","pool":"volumes","image":"volume-1"' in argv
    assert '"driver":"iscsi","portal":"127.0.0.1:3260","target":"iqn.2010-10.org.' \
           'openstack:volume-2","lun":1' in argv and '"user":"user"' in argv
    assert not [s for s in driver._connection().listAllSecrets(0)
                if (s.usageID() or '').startswith('gc-net-')]


def test_from_config_reads_the_libvirt_group(libvirtd: None) -> None:
    from gridcentric_storage.virt.libvirt import LibvirtDriver

    class Group:
        uri, accel, instances_path, live_images_path = 'qemu:///system', 'tcg', None, None

    class Conf:
        state_path = '/tmp/gc-state'
        libvirt = Group()

    drv = LibvirtDriver.from_config(Conf())
    assert (drv.uri, drv.accel, drv.instances_path) == ('qemu:///system', 'tcg',
                                                        '/tmp/gc-state/instances')
