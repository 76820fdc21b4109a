"""What only the QEMU driver does (the shared contract: test_conformance.py).

Its KVM-or-TCG probe, QEMU's own parse of the drives of remote volumes, and
how bless freezes a RAM file (reflink where the file system shares extents,
a sparse copy elsewhere). No guest boots here.
"""

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import qemu_cmdline, qemu_live
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest, loopfs

needs_qemu = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')


@needs_qemu
def test_accel_is_probed_and_says_why(tmp_path: Any) -> None:
    driver = QemuDriver(instances_path=str(tmp_path / 'i'),
                        live_images_path=str(tmp_path / 'l'), accel='auto')
    driver.init_host('test-host')
    assert driver.accel in ('kvm', 'tcg')
    assert driver.accel_reason
    assert os.path.isdir(driver.instances_path) and os.path.isdir(driver.live_images_path)


@needs_qemu
def test_qemu_parses_remote_drives_and_fails_only_when_connecting(tmp_path: Any) -> None:
    """No Ceph or iSCSI target here: QEMU must take every option and then fail
    to connect, never on an option."""
    rbd = qemu_cmdline.DiskSlot('v1', 0, 4, {'driver_volume_type': 'rbd', 'data': {
        'name': 'volumes/volume-1', 'auth_username': 'cinder', 'hosts': ['127.0.0.1'],
        'ports': ['1'], 'conf': str(tmp_path / 'missing-ceph.conf')}})
    iscsi = qemu_cmdline.DiskSlot('v2', 1, 5, {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:1', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
        'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
        'auth_password': 's3cr:et,pw'}})
    secret = tmp_path / 'sec-drive1.secret'
    secret.write_text('s3cr:et,pw')
    for disk, failure in ((rbd, 'conf file'), (iscsi, 'iSCSI: Failed to connect')):
        layout = qemu_cmdline.Layout(id='remote', name='remote', memory_mb=64, vcpus=1,
                                     accel='tcg', disks=[disk])
        proc = subprocess.run(qemu_cmdline.build_argv(
            'qemu-system-x86_64', layout, ram_path=str(tmp_path / 'ram'), share=True,
            qmp_path=str(tmp_path / 'qmp.sock'), console_path=str(tmp_path / 'console.log'),
            secret_files={'sec-drive1': str(secret)}) + ['-S'],
            capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 1
        assert 'unexpected' not in proc.stderr and 'Invalid parameter' not in proc.stderr
        assert failure in proc.stderr


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
