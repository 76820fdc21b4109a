"""The export target contract: what a volume driver needs from the helper that
exports its volumes' block devices over iSCSI (Cinder's ``cinder.volume.targets``).

This module only defines the interface; ``tgt.py`` implements it over a local
``tgtd`` and ``fake.py`` in memory for tests.

An export is named after its volume (``volume-<id>``) and is one target ``iqn``
with one LUN (:data:`LUN`) on one backing store (a block device or a file),
guarded by a per-volume CHAP account. The helper saves each export's
description (iqn, backing store, CHAP) under :attr:`Target.conf_dir` where it
survives a restart of the daemon or the host, so a driver's ``ensure_export``
brings the export back with the same secret::

    target.create('volume-5b2c...', 'iqn.2010-10.org.openstack:volume-5b2c...',
                  '/dev/vg0/volume-5b2c...', ('Xq3bZ0c9LwP2mV7kA1sD', '8hT2nR5yQ0eW3uK6'))
    target.read_conf('volume-5b2c...')
    == {'iqn': 'iqn.2010-10.org.openstack:volume-5b2c...', 'path': '/dev/vg0/volume-5b2c...',
        'user': 'Xq3bZ0c9LwP2mV7kA1sD', 'password': '8hT2nR5yQ0eW3uK6'}
    target.connection_properties('volume-5b2c...', '127.0.0.1:3260')
    == {'target_discovered': False, 'target_iqn': 'iqn.2010-10.org.openstack:volume-5b2c...',
        'target_portal': '127.0.0.1:3260', 'target_lun': 1, 'auth_method': 'CHAP',
        'auth_username': 'Xq3bZ0c9LwP2mV7kA1sD', 'auth_password': '8hT2nR5yQ0eW3uK6'}

Every value ends up in a daemon's configuration, so each implementation refuses
the same odd ones (:func:`check_name`, :func:`check_export`) before anything
is written. Failures are :class:`~gridcentric_storage.common.exception.DriverError`.
"""

import abc
import dataclasses
import re
from typing import Any

from gridcentric_storage.common import exception

__all__ = ['LUN', 'Export', 'Target', 'check_export', 'check_name']

#: The one data LUN of every export (LUN 0 is the target's controller).
LUN = 1

_IQN_RE = re.compile(r'^(iqn\.\d{4}-\d{2}\.[A-Za-z0-9.-]+(:[A-Za-z0-9.:_-]+)?'
                     r'|eui\.[0-9A-Fa-f]{16})$')
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
_CHAP_RE = re.compile(r'^[A-Za-z0-9]{8,64}$')
_PATH_RE = re.compile(r'^/[^\s<>#]+$')


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def check_name(name: str) -> None:
    """An export name becomes a file name under ``conf_dir``: no separators, no dot first."""
    if not _NAME_RE.fullmatch(name or ''):
        raise _error(f'{name!r} cannot name a target conf file')


def check_export(iqn: str, path: str, chap: tuple[str, str] | None) -> None:
    if not _IQN_RE.fullmatch(iqn):
        raise _error(f'{iqn!r} is not an iSCSI qualified name')
    if not _PATH_RE.fullmatch(path):
        raise _error(f'{path!r} cannot be a backing store')
    if chap is not None and not all(isinstance(v, str) and _CHAP_RE.fullmatch(v) for v in chap):
        raise _error('CHAP user and password must be 8-64 letters or digits')


@dataclasses.dataclass
class Export:
    """One running export, as the daemon reports it."""
    tid: int
    iqn: str
    backing_stores: list[str]
    accounts: list[str]
    acls: list[str]


class Target(abc.ABC):
    #: Where the saved export descriptions live (mode 0700: they hold CHAP secrets).
    conf_dir: str

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DriverError, saying why, when the daemon does not answer."""

    @abc.abstractmethod
    def create(self, name: str, iqn: str, path: str, chap: tuple[str, str] | None) -> Export:
        """Save the export and make the running one match it: create it, leave an
        identical one as it is, rebuild one whose backing store or account differ.
        Also what ``ensure_export`` runs after a restart, with the saved values."""

    @abc.abstractmethod
    def remove(self, name: str, iqn: str) -> list[str]:
        """Delete the running export, its CHAP account and its saved description;
        return the backing stores it had (the caller may own them, e.g. a loop
        device). Removing what is not exported succeeds, without asking the daemon
        when nothing was saved."""

    @abc.abstractmethod
    def read_conf(self, name: str) -> dict[str, str] | None:
        """The saved export: ``{'iqn', 'path'[, 'user', 'password']}``, None if none."""

    @abc.abstractmethod
    def show(self) -> dict[str, Export]:
        """The running exports by iqn."""

    @abc.abstractmethod
    def accounts(self) -> list[str]:
        """The CHAP user names the daemon knows."""

    @abc.abstractmethod
    def recreate_lun(self, name: str, iqn: str, path: str) -> None:
        """Give the LUN of a running export a new backing store, or let it see its
        backing store's new size (a daemon reads the size only when the LUN is made);
        the CHAP account is kept. DriverError when ``iqn`` is not exported."""

    def connection_properties(self, name: str, portal: str) -> dict[str, Any]:
        """The ``data`` of an ``iscsi`` connection_info, as os-brick's ISCSIConnector
        takes it, for the saved export ``name`` reached at ``portal`` (``host:port``)."""
        saved = self.read_conf(name)
        if saved is None:
            raise _error(f'{name} is not exported')
        data: dict[str, Any] = {'target_discovered': False, 'target_iqn': saved['iqn'],
                                'target_portal': portal, 'target_lun': LUN}
        if saved.get('user'):
            data.update(auth_method='CHAP', auth_username=saved['user'],
                        auth_password=saved['password'])
        return data
