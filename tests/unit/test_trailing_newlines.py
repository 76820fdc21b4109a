"""Names that reach files, commands and configuration refuse a trailing newline.

``re.match`` with ``...$`` accepts ``"name\\n"``: ``$`` also matches before a
final newline. A newline in a tgt conf snippet or an lvm argument is a new
line of configuration, so each of these checks matches the whole string.
"""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt.qemu_process import check_id
from gridcentric_storage.volume.drivers import lvm_commands
from gridcentric_storage.volume.targets import base as targets

IQN = 'iqn.2010-10.org.openstack:volume-1'


def test_a_vm_id_with_a_trailing_newline_is_refused():
    assert check_id('instance', 'vm-1') == 'vm-1'
    with pytest.raises(exception.Invalid):
        check_id('instance', 'vm-1\n')


@pytest.mark.parametrize('iqn,path,chap', [
    (IQN + '\n', '/dev/vg/lv', None),
    (IQN, '/dev/vg/lv\n', None),
    (IQN, '/dev/vg/lv', ('user1234', 'secret12\n')),
])
def test_an_export_with_a_trailing_newline_is_refused(iqn, path, chap):
    targets.check_export(IQN, '/dev/vg/lv', ('user1234', 'secret12'))
    with pytest.raises(exception.GCException):
        targets.check_export(iqn, path, chap)


def test_a_target_name_with_a_trailing_newline_is_refused():
    targets.check_name('volume-1')
    with pytest.raises(exception.GCException):
        targets.check_name('volume-1\n')


def test_an_lvm_name_with_a_trailing_newline_is_refused():
    assert lvm_commands.check_name('volume-1') == 'volume-1'
    with pytest.raises(exception.GCException):
        lvm_commands.check_name('volume-1\n')
