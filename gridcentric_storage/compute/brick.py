"""os-brick on this host: connector properties, connect, disconnect.

Root work in os-brick goes through its oslo.privsep context
(``[privsep_osbrick]``). A service running as root needs no sudo, so the
helper is started directly from this installation; otherwise os-brick's
usual ``sudo privsep-helper`` default stays.

``connect`` returns os-brick's device info, e.g. ``{'type': 'local', 'path':
'/var/lib/.../volume-<id>'}``, or for ``rbd`` without a kernel module
``{'path': <RBDVolumeIOWrapper>}`` (a librbd file-like object).
"""

import os
import shutil
import sys
import threading
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import exception

CONF = cfg.CONF
_setup_lock = threading.Lock()
_setup_done = False

#: driver_volume_type -> os-brick protocol name
PROTOCOLS = {'local': 'LOCAL', 'rbd': 'RBD', 'iscsi': 'ISCSI', 'storpool': 'STORPOOL'}


def setup() -> None:
    global _setup_done
    with _setup_lock:
        if _setup_done:
            return
        import os_brick.privileged  # noqa: F401  (registers [privsep_osbrick])

        if os.geteuid() == 0:
            local = os.path.join(os.path.dirname(sys.executable), 'privsep-helper')
            helper = local if os.path.exists(local) else shutil.which('privsep-helper')
            if helper:
                CONF.set_default('helper_command', helper, group='privsep_osbrick')
        _setup_done = True


def connector_properties(host: str, my_ip: str = '127.0.0.1') -> dict[str, Any]:
    setup()
    from os_brick.initiator import connector

    props: dict[str, Any] = connector.get_connector_properties(
        None, my_ip, False, False, host=host)
    return props


def check_connectable(driver_volume_type: str) -> None:
    if driver_volume_type not in PROTOCOLS:
        raise exception.NotConnectable(volume_type=driver_volume_type)


def _connector(connection_info: dict[str, Any]) -> Any:
    setup()
    from os_brick.initiator import connector

    protocol = PROTOCOLS.get(connection_info['driver_volume_type'])
    if protocol is None:
        raise ValueError('no os-brick connector for %s' % connection_info['driver_volume_type'])
    return connector.InitiatorConnector.factory(protocol, None, do_local_attach=False)


def connect(connection_info: dict[str, Any]) -> dict[str, Any]:
    device: dict[str, Any] = _connector(connection_info).connect_volume(
        connection_info['data'])
    return device


def disconnect(connection_info: dict[str, Any], device_info: dict[str, Any] | None) -> None:
    connector = _connector(connection_info)
    connector.disconnect_volume(connection_info['data'], device_info or {})


def device_path(device_info: dict[str, Any]) -> str | None:
    """A path to record for the attachment; None for file-like devices (librbd)."""
    path = device_info.get('path')
    return path if isinstance(path, str) else None
