"""What only the fake can show: its "daemon" stopping, as tgtd does on a restart
(the shared tgtd of the contract tests is never stopped)."""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.targets import base
from gridcentric_storage.volume.targets.fake import FakeTarget

IQN = 'iqn.2010-10.org.openstack:volume-1'
CHAP = ('Xq3bZ0c9LwP2mV7kA1sD', '8hT2nR5yQ0eW3uK6')


def test_a_stopped_daemon_loses_exports_and_the_saved_values_bring_them_back(tmp_path):
    disk = tmp_path / 'disk.img'
    disk.write_bytes(b'\0' * 4096)
    target = FakeTarget(str(tmp_path / 'targets'))
    target.create('volume-1', IQN, str(disk), CHAP)
    target.stop()
    for call in (target.ping, target.show, target.accounts):
        with pytest.raises(exception.DriverError, match='not running'):
            call()
    with pytest.raises(exception.DriverError):
        target.remove('volume-1', IQN)  # saved, so the daemon is needed
    assert target.remove('volume-2', IQN) == []  # never saved: no daemon needed

    target.start()
    assert target.show() == {}
    saved = target.read_conf('volume-1')
    assert saved is not None
    target.create('volume-1', saved['iqn'], saved['path'], (saved['user'], saved['password']))
    assert target.open_lun(IQN, base.LUN, *CHAP) == 4096
    with pytest.raises(exception.DriverError, match='has no LUN 0'):
        target.open_lun(IQN, 0, *CHAP)
