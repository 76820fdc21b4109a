"""What only the file driver (file.py) does: choosing and recording its mode, its
options, statvfs stats, set-up errors, and what deleting its backend removes.

The scenarios every driver shares (create, extend, snapshots, clones, revert,
images, connection info, ids, failures) run on both modes in
tests/conformance/volume; the modes' own behaviour is in test_file_qcow2.py
and test_file_reflink.py.
"""

import os
import stat

import pytest

from gridcentric_storage.common import exception, owned_dir
from gridcentric_storage.volume.drivers import file as file_driver
from tests.unit.volume.drivers.file_helpers import GiB, make_driver, new_volume

VOLUME = 'volume-0b7c2a3e-1d52-4f7e-9a43-3c2f1d0e5a11'


def reflink_works(path) -> bool:
    probe = file_driver.FileDriver('probe', 'probe', {'path': str(path / 'probe')})
    os.makedirs(probe.root)
    return probe._probe_reflink() is None


@pytest.fixture
def qdriver(tmp_path):
    return make_driver(tmp_path / 'volumes', cow_mode='qcow2')


# ---------------------------------------------------------------- mode and options
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


def test_two_set_ups_of_one_new_directory_at_once_both_succeed(tmp_path):
    """The set-up an RPC asks for and the pool's periodic one can meet on a
    directory whose mode is not recorded yet."""
    import concurrent.futures
    for attempt in range(20):
        root = str(tmp_path / ('volumes-%d' % attempt))
        drivers = [file_driver.FileDriver('b', 'b', {'path': root, 'cow_mode': 'qcow2'})
                   for _ in range(2)]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda d: d.do_setup(None), drivers))   # raises if one failed
        assert [d.mode for d in drivers] == ['qcow2', 'qcow2']
        with open(os.path.join(root, '.cow_mode')) as f:
            assert f.read() == 'qcow2\n'
        assert not [n for n in os.listdir(root) if n.endswith('.part')]


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
    assert stats['storage_protocol'] == 'local'
    assert stats['thin_provisioning_support'] is True
    assert stats['thick_provisioning_support'] is False
    assert stats['multiattach'] is False
    assert stats['max_over_subscription_ratio'] == 20.0


def test_setup_error_when_directory_is_gone(qdriver):
    os.rename(qdriver.root, qdriver.root + '-moved')
    with pytest.raises(exception.DriverError, match='not a writable directory'):
        qdriver.check_for_setup_error()


# ---------------------------------------------------------------- delete_backend
def test_a_directory_set_up_created_is_removed(tmp_path):
    driver = make_driver(tmp_path / 'made', cow_mode='qcow2')
    assert owned_dir.created_here(str(tmp_path / 'made'))
    driver.delete_backend()
    assert not (tmp_path / 'made').exists()


def test_an_operators_directory_keeps_all_but_our_mode_record(tmp_path):
    (tmp_path / 'srv').mkdir()
    (tmp_path / 'srv' / 'notes.txt').write_text('mine')
    driver = make_driver(tmp_path / 'srv', cow_mode='qcow2')
    assert (tmp_path / 'srv' / '.cow_mode').exists()
    driver.delete_backend()
    assert os.listdir(tmp_path / 'srv') == ['notes.txt']


def test_a_directory_that_still_holds_a_volume_is_left_alone(tmp_path):
    """A wrong view of the DB (no backend row, yet volumes) must not cost data."""
    driver = make_driver(tmp_path / 'made', cow_mode='qcow2')
    (tmp_path / 'made' / VOLUME).write_bytes(b'data')
    with pytest.raises(exception.DriverError, match='still holds volume files'):
        driver.delete_backend()
    assert (tmp_path / 'made' / VOLUME).read_bytes() == b'data'
