"""What only the RBD driver does, against the real single-node Ceph of
``tools/ceph.sh``: image features, ``ceph df`` stats, the clone graph (protected
snapshots, ``.clone_snap``, hidden ``.deleted`` images, max_clone_depth and
flattening), the exact connection_info and keyring, and a cluster that goes away.
The scenarios every driver shares run in tests/conformance/volume.

The ``rbd`` CLI and qemu-img are the outside witnesses (their own librados
clients); data is written and read through os-brick's RBDConnector with the
driver's connection_info unchanged, the way a compute host reads a volume.

    GC_TEST_CEPH_CONF=$(tools/ceph.sh start) pytest tests/functional/test_rbd_driver.py
"""

import contextlib
import hashlib
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import rbd as rbd_driver
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.fixtures import ceph
from tests.fixtures.images import ADMIN, host_images
from tests.fixtures.services import wait_for

GiB, MiB = 1 << 30, 1 << 20


@pytest.fixture(scope='module')
def cli() -> ceph.CephCLI:
    return ceph.cli_or_skip()


@pytest.fixture
def make_driver(cli):
    drivers = []

    def make(**options) -> rbd_driver.RBDDriver:
        opts = {'pool': 'rbd', 'ceph_conf': cli.conf, 'connect_timeout': 10,
                'keyring_in_connection_info': True, **options}
        driver = rbd_driver.RBDDriver('backend-1', 'ceph', opts)
        drivers.append(driver)
        driver.do_setup(None)
        driver.check_for_setup_error()
        return driver
    yield make
    for driver in drivers:
        driver.close()


@pytest.fixture
def driver(make_driver):
    return make_driver()


def new_volume(size: int = 1) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size, 'name': 'data'})


def new_snapshot(volume: VolumeRef) -> SnapshotRef:
    return SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                        'volume_size': volume.size})


@contextlib.contextmanager
def attached(driver, volume: VolumeRef) -> Iterator:
    """The volume as os-brick's RBDVolumeIOWrapper, from unchanged connection_info."""
    from os_brick.initiator import connector
    from os_brick.initiator.linuxrbd import RBDVolumeIOWrapper

    conn = driver.initialize_connection(volume, {'host': 'test-host'})
    brick = connector.InitiatorConnector.factory('RBD', root_helper=None,
                                                 do_local_attach=False)
    device = brick.connect_volume(conn['data'])
    assert isinstance(device['path'], RBDVolumeIOWrapper)
    try:
        yield device['path']
    finally:
        brick.disconnect_volume(conn['data'], device)


def write(driver, volume: VolumeRef, data: bytes, offset: int = 0) -> None:
    with attached(driver, volume) as dev:
        dev.seek(offset)
        dev.write(data)
        dev.flush()


def read(driver, volume: VolumeRef, length: int, offset: int = 0) -> bytes:
    with attached(driver, volume) as dev:
        dev.seek(offset)
        return dev.read(length)


def make_image(path: str, fmt: str, size: int, writes: list[tuple[int, int, int]]) -> str:
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, path, str(size)], check=True)
    for byte, offset, length in writes:
        subprocess.run(['qemu-io', '-f', fmt, '-c', f'write -P {byte:#x} {offset} {length}',
                        path], check=True, capture_output=True)
    return path


# ---------------------------------------------------------------- volumes and stats
def test_images_are_format_2_with_layering_and_no_exclusive_lock(driver, cli):
    vol = new_volume(1)
    driver.create_volume(vol)
    try:
        info = cli.info(vol.name)
        assert info['size'] == GiB and info['format'] == 2
        assert {'layering', 'deep-flatten'} <= set(info['features'])
        assert 'exclusive-lock' not in info['features']  # multiattach
    finally:
        driver.delete_volume(vol)


def test_exclusive_lock_option(make_driver, cli):
    driver = make_driver(exclusive_lock=True)
    vol = new_volume()
    driver.create_volume(vol)
    try:
        assert {'exclusive-lock', 'object-map', 'fast-diff'} <= set(
            cli.info(vol.name)['features'])
        assert driver.get_volume_stats()['multiattach'] is False
    finally:
        driver.delete_volume(vol)


def test_stats_match_ceph_df(driver, cli):
    stats = driver.get_volume_stats(refresh=True)
    assert stats['storage_protocol'] == 'ceph'
    assert stats['thin_provisioning_support'] and stats['multiattach']
    assert stats['copy_on_write'] == 'rbd-layering'
    pool = next(p for p in cli.ceph('df')['pools'] if p['name'] == 'rbd')['stats']
    assert stats['free_capacity_gb'] == pytest.approx(pool['max_avail'] / GiB, abs=0.05)
    assert stats['total_capacity_gb'] == pytest.approx(
        (pool['stored'] + pool['max_avail']) / GiB, abs=0.05)
    assert 0 < stats['free_capacity_gb'] <= stats['total_capacity_gb'] <= 2.0
    vol = new_volume(2)
    driver.create_volume(vol)
    try:
        after = driver.get_volume_stats(refresh=True)
        assert after['provisioned_capacity_gb'] == pytest.approx(
            stats['provisioned_capacity_gb'] + 2)
        assert driver.get_volume_stats() == after  # cached without refresh
    finally:
        driver.delete_volume(vol)


# ---------------------------------------------------------------- attach
def test_connection_info_is_accepted_by_os_brick(make_driver, cli):
    driver = make_driver(keyring_in_connection_info=False,
                         secret_uuid='457eb676-33da-42ec-9a8c-9293d545c337')
    vol = new_volume()
    driver.create_volume(vol)
    try:
        conn = driver.initialize_connection(vol, {'host': 'test-host'})
        mons = cli.ceph('mon', 'dump')['mons']
        assert conn == {'driver_volume_type': 'rbd', 'data': {
            'name': f'rbd/{vol.name}', 'hosts': ['127.0.0.1'],
            'ports': [mons[0]['addr'].split(':')[1].split('/')[0]],
            'cluster_name': 'ceph', 'auth_enabled': True, 'auth_username': 'admin',
            'secret_type': 'ceph', 'secret_uuid': '457eb676-33da-42ec-9a8c-9293d545c337',
            'volume_id': vol.id, 'discard': True}}
        # without a key, os-brick needs /etc/ceph/ceph.client.admin.keyring
        if not os.path.exists('/etc/ceph/ceph.client.admin.keyring'):
            from os_brick import exception as brick_exception
            from os_brick.initiator import connector
            brick = connector.InitiatorConnector.factory('RBD', None, do_local_attach=False)
            # (its message is lost: BrickException(msg=...) -> 'An unknown exception')
            with pytest.raises(brick_exception.BrickException):
                brick.connect_volume(conn['data'])
        keyed = make_driver()  # keyring_in_connection_info: os-brick reads the key
        data = keyed.initialize_connection(vol, {})['data']
        assert data['keyring'].startswith('[client.admin]\n\tkey = ')
        assert 'mon.' not in data['keyring']  # only the user's own key
        with attached(keyed, vol) as dev:  # os-brick reads the key from the data
            dev.write(b'hello rbd')
            dev.flush()
        assert cli.read(vol.name, 0, 4096)[:9] == b'hello rbd'
    finally:
        driver.delete_volume(vol)


def test_extend_is_visible_through_an_open_connection(driver, cli):
    vol = new_volume(1)
    driver.create_volume(vol)
    try:
        with attached(driver, vol) as dev:
            assert dev.rbd_image.size() == GiB
            driver.extend_volume(vol, 2)
            wait_for(lambda: dev.rbd_image.size() == 2 * GiB, timeout=10)
            dev.seek(GiB + 4096)
            dev.write(b'\x7f' * 4096)
            dev.flush()
        assert cli.read(vol.name, GiB + 4096, 4096) == b'\x7f' * 4096
    finally:
        driver.delete_volume(vol)


# ---------------------------------------------------------------- snapshots and clones
def test_snapshot_clone_and_volume_from_snapshot(driver, cli):
    src = new_volume(1)
    driver.create_volume(src)
    write(driver, src, b'A' * MiB)
    snap = new_snapshot(src)
    driver.create_snapshot(snap)
    assert cli.snaps(src.name) == {snap.name: True}  # protected
    write(driver, src, b'B' * MiB)
    from_snap, clone = new_volume(2), new_volume(1)
    driver.create_volume_from_snapshot(from_snap, snap)
    driver.create_cloned_volume(clone, src)
    try:
        assert read(driver, from_snap, MiB) == b'A' * MiB
        assert read(driver, clone, MiB) == b'B' * MiB
        # copy-on-write: both are clones, nothing was copied
        assert cli.parent(from_snap.name) == f'rbd/{src.name}@{snap.name}'
        assert cli.parent(clone.name) == f'rbd/{src.name}@{clone.name}.clone_snap'
        assert cli.children(src.name, snap.name) == [from_snap.name]
        assert cli.snaps(src.name)[f'{clone.name}.clone_snap'] is True
        with pytest.raises(exception.DriverError, match='has snapshots'):
            driver.delete_volume(src)
        assert src.name in cli.images()
    finally:
        for vol in (from_snap, clone):
            driver.delete_volume(vol)
        driver.delete_snapshot(snap)
        driver.delete_volume(src)
    names = {src.name, from_snap.name, clone.name}
    assert not [i for i in cli.images() if i.split('.')[0] in names]


def test_clone_depth_is_flattened_at_max_clone_depth(make_driver, cli):
    driver = make_driver(max_clone_depth=2)
    chain = [new_volume() for _ in range(4)]
    driver.create_volume(chain[0])
    write(driver, chain[0], b'D' * 4096)
    try:
        for parent, child in zip(chain[:-1], chain[1:], strict=True):
            driver.create_cloned_volume(child, parent)
        assert cli.parent(chain[1].name).startswith(f'rbd/{chain[0].name}@')
        assert cli.parent(chain[2].name).startswith(f'rbd/{chain[1].name}@')
        assert cli.parent(chain[3].name) is None  # depth 3 > 2: flattened
        assert cli.snaps(chain[2].name) == {}  # its .clone_snap went with the flatten
        assert read(driver, chain[3], 4096) == b'D' * 4096
        snap = new_snapshot(chain[2])
        driver.create_snapshot(snap)
        from_snap = new_volume()
        driver.create_volume_from_snapshot(from_snap, snap)
        assert cli.parent(from_snap.name) is None and read(driver, from_snap, 4) == b'DDDD'
        assert cli.snaps(chain[2].name) == {snap.name: True}  # user snapshots stay
        driver.delete_volume(from_snap)
        driver.delete_snapshot(snap)
    finally:
        for vol in reversed(chain):
            driver.delete_volume(vol)
    assert not {v.name for v in chain} & {i.split('.')[0] for i in cli.images()}


def test_flatten_on_clone(make_driver, cli):
    driver = make_driver(flatten_on_clone=True)
    src, dst = new_volume(), new_volume()
    driver.create_volume(src)
    write(driver, src, b'F' * 4096)
    driver.create_cloned_volume(dst, src)
    try:
        assert cli.parent(dst.name) is None and cli.snaps(src.name) == {}
        assert read(driver, dst, 4096) == b'F' * 4096
    finally:
        driver.delete_volume(dst)
        driver.delete_volume(src)


def test_deleted_source_keeps_its_clones_readable(driver, cli):
    src, clone = new_volume(), new_volume()
    driver.create_volume(src)
    write(driver, src, b'S' * MiB)
    driver.create_cloned_volume(clone, src)
    driver.delete_volume(src)
    images = cli.images()
    assert src.name not in images and f'{src.name}.deleted' in images
    assert cli.parent(clone.name) == f'rbd/{src.name}.deleted@{clone.name}.clone_snap'
    assert read(driver, clone, MiB) == b'S' * MiB
    driver.delete_volume(src)  # idempotent: the hidden image stays for the clone
    assert f'{src.name}.deleted' in cli.images()
    driver.delete_volume(clone)  # the last clone: the hidden source is reaped
    assert not {src.name, clone.name} & {i.split('.')[0] for i in cli.images()}


def test_delete_snapshot_with_children(driver, cli):
    vol = new_volume()
    driver.create_volume(vol)
    write(driver, vol, b'P' * 4096)
    plain, used = new_snapshot(vol), new_snapshot(vol)
    driver.create_snapshot(plain)
    driver.create_snapshot(used)
    child = new_volume()
    driver.create_volume_from_snapshot(child, used)
    driver.delete_snapshot(plain)  # no children: gone at once
    assert cli.snaps(vol.name) == {used.name: True}
    driver.delete_snapshot(used)  # a child: hidden until the child goes
    assert cli.snaps(vol.name) == {f'{used.name}.deleted': True}
    assert cli.children(vol.name, f'{used.name}.deleted') == [child.name]
    driver.delete_snapshot(used)  # idempotent
    assert read(driver, child, 4096) == b'P' * 4096
    driver.delete_volume(vol)  # only a hidden snapshot with a child: hidden too
    assert f'{vol.name}.deleted' in cli.images()
    assert read(driver, child, 4096) == b'P' * 4096
    driver.delete_volume(child)
    assert not {vol.name, child.name} & {i.split('.')[0] for i in cli.images()}


# ---------------------------------------------------------------- images
@pytest.mark.parametrize('fmt', ['raw', 'qcow2'])
def test_copy_image_to_volume_stays_sparse(driver, cli, tmp_path, fmt):
    """qemu-img turns the image's zero areas into discards: no object is written there."""
    image = make_image(str(tmp_path / f'image.{fmt}'), fmt, 64 * MiB,
                       [(0x5a, 0, MiB), (0xa5, 40 * MiB, 3 * MiB)])
    vol = new_volume(1)
    driver.create_volume(vol)
    try:
        driver.copy_image_to_volume(ADMIN, vol, host_images(str(tmp_path)), image)
        assert cli.same_data(vol.name, image, fmt)  # and zeros past the image
        used = cli.rbd('du', f'rbd/{vol.name}')['images'][0]['used_size']
        assert used <= 8 * MiB  # 4 MiB objects, no object map: rounded up
    finally:
        driver.delete_volume(vol)


# ---------------------------------------------------------------- bad set-ups
def test_missing_or_wrong_options(cli, tmp_path):
    with pytest.raises(exception.InvalidDriverOptions, match="'pool' is a required"):
        rbd_driver.RBDDriver('b', 'ceph', {'ceph_conf': cli.conf})
    with pytest.raises(exception.InvalidDriverOptions):
        rbd_driver.RBDDriver('b', 'ceph', {'pool': 'rbd', 'max_clone_depth': -1})
    driver = rbd_driver.RBDDriver('b', 'ceph', {'pool': 'no-such-pool',
                                                'ceph_conf': cli.conf})
    driver.do_setup(None)  # the cluster is there...
    with pytest.raises(exception.DriverError,
                       match='pool no-such-pool does not exist in the Ceph cluster'):
        driver.check_for_setup_error()  # ...the pool is not
    driver.close()
    missing = rbd_driver.RBDDriver('b', 'ceph', {'pool': 'rbd',
                                                 'ceph_conf': str(tmp_path / 'nope')})
    with pytest.raises(exception.DriverError, match='nope does not exist'):
        missing.do_setup(None)
    stranger = rbd_driver.RBDDriver('b', 'ceph', {'pool': 'rbd', 'ceph_conf': cli.conf,
                                                  'user': 'nobody', 'connect_timeout': 3})
    # an unknown user gives up with an error (within connect_timeout), never hangs
    with pytest.raises(exception.DriverError, match='cannot connect .* as client.nobody'):
        stranger.do_setup(None)


# ---------------------------------------------------------------- the cluster goes away
def test_osd_going_away_mid_copy_gives_a_driver_error(make_driver, cli, tmp_path):
    """Runs last: stops the OSD while qemu-img writes, then brings it back."""
    driver = make_driver(connect_timeout=5)
    image = str(tmp_path / 'big.raw')
    block = os.urandom(MiB)
    with open(image, 'wb') as f:
        for _ in range(768):
            f.write(block)
    digest = hashlib.sha256(open(image, 'rb').read()).hexdigest()
    vol = new_volume(1)
    driver.create_volume(vol)

    def stop_osd() -> None:  # once qemu-img has written the first block
        wait_for(lambda: cli.read(vol.name, 0, 4096) == block[:4096], timeout=60,
                 interval=0.02, what='qemu-img to start writing')
        cli.tool('stop-osd')
    stopper = threading.Thread(target=stop_osd)
    stopper.start()
    other = new_volume()
    try:
        # the OSD takes a few seconds to stop (memstore saves itself), then the
        # first write waits rados_osd_op_timeout (5 s) and qemu-img gives up
        with pytest.raises(exception.DriverError) as failure:
            driver.copy_image_to_volume(ADMIN, vol, host_images(str(tmp_path)), image)
        assert 'error while writing at byte' in str(failure.value)  # mid-copy
        assert 'Connection timed out' in str(failure.value)
        stopper.join()
        with pytest.raises(exception.DriverError, match='did not answer within 5 s'):
            driver.create_volume(other)
        assert hashlib.sha256(open(image, 'rb').read()).hexdigest() == digest
    finally:
        stopper.join()
        cli.tool('start-osd')
    # the same driver works again once the OSD is back
    wait_for(lambda: driver.get_volume_stats(refresh=True)['free_capacity_gb'] > 0)
    try:
        driver.delete_volume(vol)
    except exception.DriverError as e:  # the dead qemu-img's watch: 30 s more
        assert 'in use' in str(e)
        cli.unwatch(vol.name)
        wait_for(lambda: not cli.rbd('status', f'rbd/{vol.name}')['watchers'])
        driver.delete_volume(vol)
    driver.delete_volume(other)  # in case the timed-out create happened after all
    assert not {vol.name, other.name} & set(cli.images())
