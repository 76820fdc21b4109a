"""The file driver on real files: qcow2 mode on the test's own directory (ext4
here), reflink mode on loop-mounted XFS (reflink=1) and btrfs.

Data is checked the way a user would: qcow2 volumes are written with
``qemu-io`` and read back through ``qemu-img convert -O raw``; raw volumes are
plain files. Sharing of blocks is checked with ``filefrag -v`` and statvfs.
"""

import hashlib
import json
import os
import stat
import subprocess
import time
import uuid

import pytest
from os_brick.initiator.connectors.local import LocalConnector

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.drivers import file as file_driver
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.fixtures import loopfs

GiB, MiB = 1 << 30, 1 << 20
OUR_FILE = file_driver._NAME_RE


def new_volume(size: int = 1) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size, 'name': 'data'})


def new_snapshot(volume: VolumeRef, **extra) -> SnapshotRef:
    return SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                        'volume_size': volume.size, **extra})


def make_driver(path, **options) -> file_driver.FileDriver:
    driver = file_driver.FileDriver('backend-1', 'default', {'path': str(path), **options})
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


def reflink_works(path) -> bool:
    probe = file_driver.FileDriver('probe', 'probe', {'path': str(path / 'probe')})
    os.makedirs(probe.root)
    return probe._probe_reflink() is None


def our_files(driver) -> list[str]:
    return sorted(n for n in os.listdir(driver.root) if OUR_FILE.match(n.split('.')[0]))


def write(driver, path: str, byte: int, offset: int = 0, length: int = MiB) -> None:
    if driver.mode == 'qcow2':
        processutils.execute(['qemu-io', '-f', 'qcow2', '-c',
                              f'write -P {byte:#x} {offset} {length}', path])
    else:
        with open(path, 'r+b') as f:
            f.seek(offset)
            f.write(bytes([byte]) * length)


def read(driver, path: str, offset: int = 0, length: int = MiB, scratch=None) -> bytes:
    if driver.mode == 'qcow2':
        raw = os.path.join(scratch or os.path.dirname(driver.root), 'read.raw')
        processutils.execute(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', path, raw])
        path = raw
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def virtual_size(driver, path: str) -> int:
    if driver.mode == 'reflink':
        return os.stat(path).st_size
    out = processutils.execute(['qemu-img', 'info', '-f', 'qcow2', '--output=json', path])
    return json.loads(out)['virtual-size']


# ---------------------------------------------------------------- qcow2 mode
@pytest.fixture
def qdriver(tmp_path):
    return make_driver(tmp_path / 'volumes', cow_mode='qcow2')


def test_auto_mode_is_qcow2_without_reflink(tmp_path):
    if reflink_works(tmp_path):
        pytest.skip('the test directory is on a filesystem with reflink')
    driver = make_driver(tmp_path / 'volumes')
    stats = driver.get_volume_stats()
    assert stats['copy_on_write'] == 'qcow2'
    assert stats['online_extend_support'] is False
    assert stat.S_IMODE(os.stat(driver.root).st_mode) == 0o750
    with open(os.path.join(driver.root, '.cow_mode')) as f:
        assert f.read() == 'qcow2\n'  # kept: the mode of this directory never changes


def test_reflink_mode_refused_without_reflink(tmp_path):
    if reflink_works(tmp_path):
        pytest.skip('the test directory is on a filesystem with reflink')
    driver = file_driver.FileDriver('b', 'b', {'path': str(tmp_path), 'cow_mode': 'reflink'})
    with pytest.raises(exception.DriverError) as e:
        driver.do_setup(None)
    assert 'cow_mode reflink needs a filesystem with reflink' in str(e.value)
    assert 'FICLONE' in str(e.value)
    with pytest.raises(exception.DriverError, match='do_setup has not run'):
        driver.check_for_setup_error()


def test_default_options_put_volumes_under_state_path(tmp_path):
    options = file_driver.FileDriver.default_options('b1', str(tmp_path))
    assert options == {'path': str(tmp_path / 'volumes' / 'b1')}
    make_driver(options['path'])
    assert os.path.isdir(tmp_path / 'volumes' / 'b1')


@pytest.mark.parametrize('options', [
    {}, {'path': 'relative/dir'}, {'path': '/srv', 'cow_mode': 'zfs'},
    {'path': '/srv', 'size': 10}])
def test_bad_options_refused(options):
    with pytest.raises(exception.InvalidDriverOptions):
        file_driver.FileDriver('b', 'b', options)


def test_stats_match_statvfs(qdriver):
    qdriver.create_volume(new_volume(3))
    stats = qdriver.get_volume_stats()
    st = os.statvfs(qdriver.root)
    assert stats['total_capacity_gb'] == round(st.f_blocks * st.f_frsize / GiB, 2)
    assert abs(stats['free_capacity_gb'] - st.f_bavail * st.f_frsize / GiB) < 0.1
    assert stats['provisioned_capacity_gb'] == 3.0
    assert stats['volume_backend_name'] == 'default'
    assert stats['storage_protocol'] == 'local'
    assert stats['thin_provisioning_support'] is True
    assert stats['thick_provisioning_support'] is False
    assert stats['multiattach'] is False and stats['QoS_support'] is False
    assert stats['max_over_subscription_ratio'] == 20.0


def test_create_and_delete_volume(qdriver):
    volume = new_volume(2)
    update = qdriver.create_volume(volume)
    path = os.path.join(qdriver.root, volume.name)
    assert update == {'provider_location': path}
    assert virtual_size(qdriver, path) == 2 * GiB
    assert read(qdriver, path) == b'\0' * MiB
    with pytest.raises(exception.DriverError, match='already exists'):
        qdriver.create_volume(volume)
    qdriver.delete_volume(volume)
    assert not os.path.exists(path)
    qdriver.delete_volume(volume)  # already gone: still fine
    qdriver.delete_snapshot(new_snapshot(volume))
    assert our_files(qdriver) == []


def test_snapshot_keeps_old_data(qdriver):
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    write(qdriver, path, 0xab)
    write(qdriver, path, 0x11, offset=MiB)
    snapshot = new_snapshot(volume)
    snap_path = qdriver.create_snapshot(snapshot)['provider_location']
    write(qdriver, path, 0xcd)
    assert read(qdriver, path) == b'\xcd' * MiB
    assert read(qdriver, snap_path) == b'\xab' * MiB
    # The volume still needs the snapshot's data (offset 1 MiB) after it is deleted.
    qdriver.delete_snapshot(snapshot)
    assert read(qdriver, path, 0, 2 * MiB) == b'\xcd' * MiB + b'\x11' * MiB
    with pytest.raises(exception.DriverError, match='does not exist'):
        qdriver.create_volume_from_snapshot(new_volume(), snapshot)
    qdriver.delete_snapshot(snapshot)
    qdriver.delete_volume(volume)
    assert our_files(qdriver) == []  # the hidden snapshot went with its last user


def test_clone_has_source_data_and_is_independent(qdriver):
    source = new_volume()
    src_path = qdriver.create_volume(source)['provider_location']
    write(qdriver, src_path, 0xab)
    clone = new_volume(2)
    clone_path = qdriver.create_cloned_volume(clone, source)['provider_location']
    assert virtual_size(qdriver, clone_path) == 2 * GiB
    assert virtual_size(qdriver, src_path) == 1 * GiB
    assert read(qdriver, clone_path) == b'\xab' * MiB
    assert read(qdriver, clone_path, GiB + MiB) == b'\0' * MiB  # grown area is zeros
    write(qdriver, clone_path, 0xcd)
    write(qdriver, src_path, 0xef, offset=MiB)
    assert read(qdriver, src_path, 0, 2 * MiB) == b'\xab' * MiB + b'\xef' * MiB
    assert read(qdriver, clone_path, 0, 2 * MiB) == b'\xcd' * MiB + b'\0' * MiB
    qdriver.delete_volume(source)
    assert read(qdriver, clone_path) == b'\xcd' * MiB
    qdriver.delete_volume(clone)
    assert our_files(qdriver) == []


def test_volume_from_snapshot(qdriver):
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    write(qdriver, path, 0xab)
    snapshot = new_snapshot(volume)
    qdriver.create_snapshot(snapshot)
    write(qdriver, path, 0xcd)
    child = new_volume(3)
    child_path = qdriver.create_volume_from_snapshot(child, snapshot)['provider_location']
    assert virtual_size(qdriver, child_path) == 3 * GiB
    assert read(qdriver, child_path) == b'\xab' * MiB
    # The snapshot backs two volumes: deleting it hides it, its data stays in use.
    qdriver.delete_snapshot(snapshot)
    qdriver.delete_volume(volume)
    assert read(qdriver, child_path) == b'\xab' * MiB
    qdriver.delete_volume(child)
    assert our_files(qdriver) == []


def test_extend_grows_virtual_size(qdriver):
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    write(qdriver, path, 0xab)
    qdriver.extend_volume(volume, 4)
    assert virtual_size(qdriver, path) == 4 * GiB
    assert read(qdriver, path) == b'\xab' * MiB
    with pytest.raises(exception.DriverError, match='cannot shrink'):
        qdriver.extend_volume(volume, 2)


def test_revert_brings_back_snapshot_data(qdriver):
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    write(qdriver, path, 0xab)
    snapshot = new_snapshot(volume)
    qdriver.create_snapshot(snapshot)
    write(qdriver, path, 0xcd)
    qdriver.extend_volume(volume, 2)
    write(qdriver, path, 0xef, offset=GiB)
    grown = VolumeRef({'id': volume.id, 'size': 2})
    qdriver.revert_to_snapshot(None, grown, snapshot)
    assert read(qdriver, path) == b'\xab' * MiB
    assert read(qdriver, path, GiB) == b'\0' * MiB
    assert virtual_size(qdriver, path) == 2 * GiB  # the volume keeps its size
    qdriver.delete_snapshot(snapshot)
    qdriver.delete_volume(grown)
    assert our_files(qdriver) == []


def _qemu_locked(path: str) -> bool:
    """QEMU locks image files with OFD byte-range locks, listed in /proc/locks."""
    st = os.stat(path)
    inode = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open('/proc/locks') as locks:
        return any('OFDLCK' in line and inode in line for line in locks)


def test_attached_volume_is_not_frozen(qdriver):
    """A running QEMU holds the image lock: snapshot and clone must refuse, except a
    snapshot of a paused attacher (a bless), which is a full copy."""
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    write(qdriver, path, 0x5a, offset=MiB)
    guest = subprocess.Popen(['qemu-io', '-f', 'qcow2', path], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait until QEMU's lock shows in /proc/locks. Probing with qemu-img
        # instead would race: its own brief lock can make qemu-io fail to open.
        deadline = time.monotonic() + 60
        while not _qemu_locked(path):
            assert guest.poll() is None, 'qemu-io exited before locking the image'
            assert time.monotonic() < deadline, 'qemu-io never locked the image'
            time.sleep(0.05)
        with pytest.raises(exception.DriverError, match='in use'):
            qdriver.create_snapshot(new_snapshot(volume))
        with pytest.raises(exception.DriverError, match='in use'):
            qdriver.create_cloned_volume(new_volume(), volume)
        assert our_files(qdriver) == [volume.name]
        quiesced = new_snapshot(volume, quiesced=True)
        copy = qdriver.create_snapshot(quiesced)['provider_location']
    finally:
        guest.communicate(b'quit\n', timeout=30)
    assert our_files(qdriver) == sorted([volume.name, quiesced.name])
    assert read(qdriver, copy, MiB) == b'\x5a' * MiB
    assert json.loads(processutils.execute(      # standalone: the volume is not frozen
        ['qemu-img', 'info', '--output=json', copy])).get('backing-filename') is None
    assert json.loads(processutils.execute(
        ['qemu-img', 'info', '--output=json', path])).get('backing-filename') is None
    assert virtual_size(qdriver, path) == GiB
    qdriver.delete_snapshot(quiesced)
    assert our_files(qdriver) == [volume.name]


@pytest.mark.parametrize('bad', ['../../etc/passwd', '..', '', None, 42,
                                 str(uuid.uuid4()) + '/../../x', 'a' * 36])
def test_ids_that_are_not_uuids_are_refused(qdriver, bad):
    good = new_volume()
    qdriver.create_volume(good)
    calls = [
        lambda: qdriver.create_volume(VolumeRef({'id': bad, 'size': 1})),
        lambda: qdriver.delete_volume(VolumeRef({'id': bad, 'size': 1})),
        lambda: qdriver.create_snapshot(SnapshotRef({'id': bad, 'volume_id': good.id})),
        lambda: qdriver.create_snapshot(SnapshotRef({'id': str(uuid.uuid4()),
                                                     'volume_id': bad})),
        lambda: qdriver.delete_snapshot(SnapshotRef({'id': bad, 'volume_id': good.id})),
        lambda: qdriver.initialize_connection(VolumeRef({'id': bad, 'size': 1}), {}),
    ]
    for call in calls:
        with pytest.raises(exception.DriverError, match='not a UUID'):
            call()
    assert our_files(qdriver) == [good.name]


def test_commands_are_argv_lists_inside_the_directory(tmp_path):
    seen: list[list[str]] = []

    def recording_execute(argv, **kwargs):
        seen.append(list(argv))
        return processutils.execute(argv, **kwargs)

    driver = file_driver.FileDriver('b', 'b', {'path': str(tmp_path), 'cow_mode': 'qcow2'},
                                    execute=recording_execute)
    driver.do_setup(None)
    volume = new_volume()
    driver.create_volume(volume)
    driver.create_snapshot(new_snapshot(volume))
    driver.create_cloned_volume(new_volume(), volume)
    driver.extend_volume(volume, 2)
    assert seen
    for argv in seen:
        assert os.path.isabs(argv[0]) and argv[0].endswith('qemu-img')
        for arg in argv[1:]:
            if arg.startswith('/'):
                assert os.path.dirname(arg) == driver.root


def test_setup_error_when_directory_is_gone(qdriver):
    os.rename(qdriver.root, qdriver.root + '-moved')
    with pytest.raises(exception.DriverError, match='not a writable directory'):
        qdriver.check_for_setup_error()


# ---------------------------------------------------------------- reflink mode
@pytest.fixture(params=['xfs', 'btrfs'])
def rdriver(request, tmp_path):
    for mountpoint in loopfs.mounted_or_skip(request.param, tmp_path):
        yield make_driver(os.path.join(mountpoint, 'volumes'))


def used_bytes(path: str) -> int:
    os.sync()
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def shared(path: str) -> bool:
    out = processutils.execute(['filefrag', '-v', path])
    return 'shared' in out


def sha(path: str, length: int = 65 * MiB) -> str:
    """Digest of the written 64 MiB and the start of the never-written rest."""
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read(length)).hexdigest()


def test_reflink_mode_detected(rdriver):
    stats = rdriver.get_volume_stats()
    assert stats['copy_on_write'] == 'reflink'
    assert stats['online_extend_support'] is True
    volume = new_volume()
    rdriver.create_volume(volume)
    assert rdriver.initialize_connection(volume, {})['data']['format'] == 'raw'
    # The directory is now a reflink backend for good.
    with pytest.raises(exception.DriverError, match='already holds reflink volumes'):
        make_driver(rdriver.root, cow_mode='qcow2')


def test_reflink_clone_shares_extents(rdriver):
    source = new_volume()
    src_path = rdriver.create_volume(source)['provider_location']
    with open(src_path, 'r+b') as f:
        f.write(os.urandom(64 * MiB))
    before = used_bytes(rdriver.root)
    clone = new_volume(2)
    clone_path = rdriver.create_cloned_volume(clone, source)['provider_location']
    assert used_bytes(rdriver.root) - before < 4 * MiB  # 64 MiB of data, ~0 new blocks
    assert shared(src_path) and shared(clone_path)
    assert os.stat(clone_path).st_size == 2 * GiB
    assert read(rdriver, clone_path, 0, 64 * MiB) == read(rdriver, src_path, 0, 64 * MiB)
    src_sum = sha(src_path)
    write(rdriver, clone_path, 0xcd)
    assert sha(src_path) == src_sum
    assert read(rdriver, clone_path) == b'\xcd' * MiB


def test_reflink_snapshot_revert_and_volume_from_snapshot(rdriver):
    volume = new_volume()
    path = rdriver.create_volume(volume)['provider_location']
    with open(path, 'r+b') as f:
        f.write(os.urandom(64 * MiB))
    original = sha(path)
    before = used_bytes(rdriver.root)
    snapshot = new_snapshot(volume)
    snap_path = rdriver.create_snapshot(snapshot)['provider_location']
    assert used_bytes(rdriver.root) - before < 4 * MiB
    assert shared(snap_path)
    write(rdriver, path, 0xcd)
    assert sha(snap_path) == original
    child = new_volume(3)
    child_path = rdriver.create_volume_from_snapshot(child, snapshot)['provider_location']
    assert os.stat(child_path).st_size == 3 * GiB
    assert read(rdriver, child_path, 0, 64 * MiB) == read(rdriver, snap_path, 0, 64 * MiB)
    rdriver.extend_volume(volume, 2)
    rdriver.revert_to_snapshot(None, VolumeRef({'id': volume.id, 'size': 2}), snapshot)
    assert os.stat(path).st_size == 2 * GiB
    assert read(rdriver, path, 0, 64 * MiB) == read(rdriver, snap_path, 0, 64 * MiB)
    for fn, ref in ((rdriver.delete_snapshot, snapshot), (rdriver.delete_volume, volume),
                    (rdriver.delete_volume, child)):
        fn(ref)
        fn(ref)  # twice: idempotent
    assert our_files(rdriver) == []


def test_reflink_extend(rdriver):
    volume = new_volume()
    path = rdriver.create_volume(volume)['provider_location']
    write(rdriver, path, 0xab)
    rdriver.extend_volume(volume, 5)
    assert os.stat(path).st_size == 5 * GiB
    assert read(rdriver, path) == b'\xab' * MiB
    assert os.stat(path).st_blocks * 512 < 8 * MiB  # still sparse


# ---------------------------------------------------------------- os-brick
@pytest.fixture(params=['qcow2', 'reflink'])
def any_driver(request, tmp_path):
    if request.param == 'qcow2':
        yield make_driver(tmp_path / 'volumes', cow_mode='qcow2')
        return
    for mountpoint in loopfs.mounted_or_skip('xfs', tmp_path):
        yield make_driver(os.path.join(mountpoint, 'volumes'))


def test_os_brick_local_connector_accepts_connection(any_driver):
    volume = new_volume()
    path = any_driver.create_volume(volume)['provider_location']
    connection = any_driver.initialize_connection(volume, {'host': 'node1'})
    assert connection == {
        'driver_volume_type': 'local',
        'data': {'device_path': path, 'volume_id': volume.id,
                 'format': 'qcow2' if any_driver.mode == 'qcow2' else 'raw'}}
    device = LocalConnector(root_helper=None).connect_volume(connection['data'])
    assert device == {'type': 'local', 'path': path}
    with open(device['path'], 'rb') as f:
        head = f.read(4)
    assert head == (b'QFI\xfb' if any_driver.mode == 'qcow2' else b'\0\0\0\0')
    assert any_driver.terminate_connection(volume, None) is None
