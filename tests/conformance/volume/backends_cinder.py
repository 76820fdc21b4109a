"""Cinder 29's own RBD driver as a backend (driver ``cinder``), on the test Ceph
(tools/ceph.sh), seen from outside through the RBD backend's own librbd client.

Cinder 29 needs newer oslo libraries than Debian 12 ships, so this runs in the
PyPI lane only; the Debian lane skips it with the reason.
"""

import importlib.metadata
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg

from tests.conformance.volume.backends import Backend, RBDBackend, load
from tests.fixtures import ceph

NO_CINDER = ("needs cinder (PyPI cinder 29; Debian 12's oslo stack is older than Cinder 29 "
             'needs)')
RBD_DRIVER = 'cinder.volume.drivers.rbd.RBDDriver'


def cinder_or_skip() -> None:
    try:
        version = importlib.metadata.version('cinder')
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(NO_CINDER)
    if int(version.split('.')[0]) < 29:
        pytest.skip(f'{NO_CINDER}; this Python has cinder {version}')


def keyring_of(conf: str) -> str:
    """The ``keyring =`` path the test cluster's ceph.conf names."""
    with open(conf) as f:
        for line in f:
            key, _, value = line.partition('=')
            if key.strip() == 'keyring':
                return value.strip()
    raise AssertionError(f'{conf} names no keyring')


def rbd_options(conf: str, pool: str = 'rbd') -> dict[str, Any]:
    return {'volume_driver': RBD_DRIVER,
            'driver_options': {
                'rbd_pool': pool, 'rbd_ceph_conf': conf, 'rbd_user': 'admin',
                # the connection info carries the keyring: os-brick on a host
                # without /etc/ceph (this one) needs it
                'rbd_keyring_conf': keyring_of(conf),
                # the pool is shared with the other tests: count only our images
                'rbd_exclusive_cinder_pool': False}}


class CinderRBDBackend(RBDBackend):
    name = 'cinder-rbd'

    def __init__(self, conf: str, pool: str = 'rbd') -> None:
        import rados
        import rbd

        self.rbd = rbd
        self.driver = load('cinder', rbd_options(conf, pool))
        self.cannot = {}
        self.cluster = rados.Rados(conffile=conf, conf={'client_mount_timeout': '30'})
        self.cluster.connect(timeout=30)
        self.ioctx = self.cluster.open_ioctx(pool)

    def close(self) -> None:
        self.driver.delete_backend()
        self.ioctx.close()
        self.cluster.shutdown()


def cinder_rbd_backend() -> Iterator[Backend]:
    cinder_or_skip()
    conf = ceph.ceph_conf()
    ceph.bindings_or_skip()
    gc = cfg.CONF
    # the shared gc_conf fixture enables the drivers it knows; this one too
    gc.set_override('enabled_drivers', [*gc.volume.enabled_drivers, 'cinder'], group='volume')
    backend = CinderRBDBackend(conf)
    try:
        yield backend
    finally:
        backend.close()
