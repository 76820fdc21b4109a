"""Reading a volume the way a compute host does: os-brick's connector for the
connection_info's ``driver_volume_type`` (as gridcentric_storage.compute.brick
maps it), given the driver's ``data`` unchanged.

* ``local``: LocalConnector; the file is read in the ``format`` the data names.
* ``rbd``: RBDConnector without a kernel module (a librbd file object).
* ``storpool``: StorPoolConnector against the API simulator; the device path it
  returns is the simulator's backing file (tests/fixtures/storpool.py).
* ``iscsi``: this machine has no kernel iSCSI initiator, so ISCSIConnector is
  taken up to the login (its targets and device path from the data), and the
  LUN it would log in to is read through QEMU's libiscsi with the data's CHAP
  account (needs tgtd and qemu-block-extra; skipped with the reason otherwise).
"""

from typing import Any

import pytest
from os_brick.initiator import connector as brick_connector

from tests.conformance.volume.backends import qemu_read, qemu_region
from tests.fixtures import tgt as tgt_fixture


def needs(driver_volume_type: str) -> None:
    """Skip when this machine lacks what reading this kind of volume needs."""
    if driver_volume_type == 'iscsi':
        tgt_fixture.tgtd_or_skip()
        reason = tgt_fixture.libiscsi_reason()
        if reason:
            pytest.skip(reason)


def read(protocol: str, data: dict[str, Any], offset: int, length: int) -> bytes:
    """Bytes [offset, offset + length) through os-brick's ``protocol`` connector."""
    conn = brick_connector.InitiatorConnector.factory(protocol, root_helper=None,
                                                      do_local_attach=False)
    if protocol == 'ISCSI':
        return _read_iscsi(conn, data, offset, length)
    device = conn.connect_volume(data)
    try:
        if protocol == 'LOCAL':
            assert device == {'type': 'local', 'path': data['device_path']}
            node = {'driver': 'file', 'filename': device['path']}
            return qemu_read(qemu_region(data['format'], node, offset, length))
        if protocol == 'STORPOOL':
            with open(device['path'], 'rb') as f:
                f.seek(offset)
                return f.read(length)
        device['path'].seek(offset)
        return bytes(device['path'].read(length))
    finally:
        conn.disconnect_volume(data, device)


def _read_iscsi(conn: Any, data: dict[str, Any], offset: int, length: int) -> bytes:
    [(portal, iqn, lun)] = conn._get_all_targets(data)
    assert list(conn._iterate_all_targets(data)) == [data]
    assert conn._get_device_path(data) == [
        f'/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-{lun}']
    node = {'driver': 'iscsi', 'transport': 'tcp', 'portal': portal, 'target': iqn,
            'lun': lun}
    if data.get('auth_method') == 'CHAP':
        node.update(user=data['auth_username'], password=data['auth_password'])
    return qemu_read(qemu_region('raw', node, offset, length))
