"""What only the file driver's qcow2 mode (file_qcow2.py) does: it never freezes a
file a running QEMU writes to, except for a full copy of a paused one, and it
runs qemu-img with argv lists on files of its own directory."""

import json
import os
import subprocess

import pytest

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.drivers import file as file_driver
from tests.fixtures.services import wait_for
from tests.unit.volume.drivers.file_helpers import (
    GiB,
    MiB,
    make_driver,
    new_snapshot,
    new_volume,
    our_files,
)


@pytest.fixture
def qdriver(tmp_path):
    return make_driver(tmp_path / 'volumes', cow_mode='qcow2')


def qemu_info(path: str) -> dict:
    return json.loads(processutils.execute(
        ['qemu-img', 'info', '-U', '-f', 'qcow2', '--output=json', path]))


def read(path: str, offset: int, length: int, scratch) -> bytes:
    raw = os.path.join(scratch, 'read.raw')
    processutils.execute(['qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', path, raw])
    with open(raw, 'rb') as f:
        f.seek(offset)
        return f.read(length)


def _qemu_locked(path: str) -> bool:
    """QEMU locks image files with OFD byte-range locks, listed in /proc/locks."""
    st = os.stat(path)
    inode = '%02x:%02x:%d' % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open('/proc/locks') as locks:
        return any('OFDLCK' in line and inode in line for line in locks)


def test_attached_volume_is_not_frozen(qdriver, tmp_path):
    """A running QEMU holds the image lock: snapshot and clone must refuse, except a
    snapshot of a paused attacher (a bless), which is a full copy."""
    volume = new_volume()
    path = qdriver.create_volume(volume)['provider_location']
    processutils.execute(['qemu-io', '-f', 'qcow2', '-c', f'write -P 0x5a {MiB} {MiB}', path])
    guest = subprocess.Popen(['qemu-io', '-f', 'qcow2', path], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Wait until QEMU's lock shows in /proc/locks. Probing with qemu-img
        # instead would race: its own brief lock can make qemu-io fail to open.
        def locked() -> bool:
            assert guest.poll() is None, 'qemu-io exited before locking the image'
            return _qemu_locked(path)
        wait_for(locked, timeout=60, what='qemu-io to lock the image')
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
    assert read(copy, MiB, MiB, tmp_path) == b'\x5a' * MiB
    # standalone: the volume was not frozen under the running guest
    assert qemu_info(copy).get('backing-filename') is None
    assert qemu_info(path).get('backing-filename') is None
    assert qemu_info(path)['virtual-size'] == GiB
    qdriver.delete_snapshot(quiesced)
    assert our_files(qdriver) == [volume.name]


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
