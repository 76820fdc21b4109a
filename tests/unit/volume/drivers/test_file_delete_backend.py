"""What the file driver removes when its backend is deleted, and what it never does."""

import os

import pytest

from gridcentric_storage.common import exception, owned_dir
from gridcentric_storage.volume.drivers.file import FileDriver

VOLUME = 'volume-0b7c2a3e-1d52-4f7e-9a43-3c2f1d0e5a11'


def _driver(path) -> FileDriver:
    driver = FileDriver('b1', 'b1', {'path': str(path), 'cow_mode': 'qcow2'})
    driver.do_setup(None)
    return driver


def test_a_directory_set_up_created_is_removed(tmp_path):
    driver = _driver(tmp_path / 'made')
    assert owned_dir.created_here(str(tmp_path / 'made'))
    driver.delete_backend()
    assert not (tmp_path / 'made').exists()


def test_an_operators_directory_keeps_all_but_our_mode_record(tmp_path):
    (tmp_path / 'srv').mkdir()
    (tmp_path / 'srv' / 'notes.txt').write_text('mine')
    driver = _driver(tmp_path / 'srv')
    assert (tmp_path / 'srv' / '.cow_mode').exists()
    driver.delete_backend()
    assert os.listdir(tmp_path / 'srv') == ['notes.txt']


def test_a_directory_that_still_holds_a_volume_is_left_alone(tmp_path):
    """A wrong view of the DB (no backend row, yet volumes) must not cost data."""
    driver = _driver(tmp_path / 'made')
    (tmp_path / 'made' / VOLUME).write_bytes(b'data')
    with pytest.raises(exception.DriverError, match='still holds volume files'):
        driver.delete_backend()
    assert (tmp_path / 'made' / VOLUME).read_bytes() == b'data'
