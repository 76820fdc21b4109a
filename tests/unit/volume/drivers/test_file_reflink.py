"""What only the file driver's reflink mode (file_reflink.py) does, on loop-mounted XFS
(reflink=1) and btrfs: copies share their blocks (``filefrag -v`` says
``shared``, statvfs sees no new space used) and files stay sparse."""

import os

import pytest

from gridcentric_storage.common import exception, processutils
from tests.fixtures import loopfs
from tests.unit.volume.drivers.file_helpers import GiB, MiB, make_driver, new_snapshot, new_volume


@pytest.fixture(params=['xfs', 'btrfs'])
def rdriver(request, tmp_path):
    for mountpoint in loopfs.mounted_or_skip(request.param, tmp_path):
        yield make_driver(os.path.join(mountpoint, 'volumes'))


def used_bytes(path: str) -> int:
    os.sync()
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def shared(path: str) -> bool:
    return 'shared' in processutils.execute(['filefrag', '-v', path])


def fill(path: str, length: int = 64 * MiB) -> bytes:
    data = os.urandom(length)
    with open(path, 'r+b') as f:
        f.write(data)
    return data


def head(path: str, length: int = 64 * MiB) -> bytes:
    with open(path, 'rb') as f:
        return f.read(length)


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


def test_clone_shares_extents(rdriver):
    source = new_volume()
    src_path = rdriver.create_volume(source)['provider_location']
    data = fill(src_path)
    before = used_bytes(rdriver.root)
    clone_path = rdriver.create_cloned_volume(new_volume(2), source)['provider_location']
    assert used_bytes(rdriver.root) - before < 4 * MiB  # 64 MiB of data, ~0 new blocks
    assert shared(src_path) and shared(clone_path)
    assert head(clone_path) == data


def test_snapshot_and_volume_from_it_share_extents(rdriver):
    volume = new_volume()
    path = rdriver.create_volume(volume)['provider_location']
    data = fill(path)
    before = used_bytes(rdriver.root)
    snapshot = new_snapshot(volume)
    snap_path = rdriver.create_snapshot(snapshot)['provider_location']
    child_path = rdriver.create_volume_from_snapshot(new_volume(3), snapshot)[
        'provider_location']
    assert used_bytes(rdriver.root) - before < 4 * MiB
    assert shared(snap_path) and shared(child_path)
    assert head(child_path) == data


def test_extend_keeps_the_file_sparse(rdriver):
    volume = new_volume()
    path = rdriver.create_volume(volume)['provider_location']
    fill(path, MiB)
    rdriver.extend_volume(volume, 5)
    assert os.stat(path).st_size == 5 * GiB
    assert os.stat(path).st_blocks * 512 < 8 * MiB
