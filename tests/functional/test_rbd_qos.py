"""RBD QoS against the real Ceph of ``tools/ceph.sh``: what librbd itself will enforce.

``rbd config image list`` (the ``rbd`` CLI, its own librados client) shows the
image-level values every librbd client that opens the image uses, QEMU's
included; the driver's ``set_qos`` writes them as ``conf_rbd_qos_*`` image
metadata, as Cinder's RBD driver does (a burst maps to the same kind's burst,
IOPS to IOPS: not Cinder's ``total_iops_sec_max`` -> ``rbd_qos_bps_burst``).

    GC_TEST_CEPH_CONF=$(tools/ceph.sh start) pytest tests/functional/test_rbd_qos.py
"""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.volume.drivers import rbd as rbd_driver
from gridcentric_storage.volume.objects import VolumeRef
from tests.fixtures import ceph

MiB = 1 << 20


@pytest.fixture(scope='module')
def cli() -> ceph.CephCLI:
    return ceph.cli_or_skip()


@pytest.fixture
def driver(cli: ceph.CephCLI) -> Iterator[rbd_driver.RBDDriver]:
    drv = rbd_driver.RBDDriver('backend-qos', 'ceph', {'pool': 'rbd', 'ceph_conf': cli.conf})
    drv.do_setup(None)
    yield drv
    drv.close()


@pytest.fixture
def volume(driver: rbd_driver.RBDDriver) -> Iterator[VolumeRef]:
    ref = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    driver.create_volume(ref)
    yield ref
    driver.delete_volume(ref)


def image_qos(cli: ceph.CephCLI, volume: VolumeRef) -> dict[str, Any]:
    """The QoS options set on the image itself (not inherited from pool or config)."""
    listed = cli.rbd('config', 'image', 'list', 'rbd/volume-%s' % volume.id)
    return {o['name']: int(o['value']) for o in listed
            if o['name'].startswith('rbd_qos_') and o['source'] == 'image'}


def test_limits_become_the_images_own_librbd_qos(cli: ceph.CephCLI,
                                                 driver: rbd_driver.RBDDriver,
                                                 volume: VolumeRef) -> None:
    assert image_qos(cli, volume) == {}
    driver.set_qos(volume, {'total_iops_sec': 600, 'total_iops_sec_max': 900,
                            'read_bytes_sec': 10 * MiB, 'write_bytes_sec': 4 * MiB,
                            'write_bytes_sec_max': 8 * MiB})
    assert image_qos(cli, volume) == {
        'rbd_qos_iops_limit': 600, 'rbd_qos_iops_burst': 900,
        'rbd_qos_read_bps_limit': 10 * MiB, 'rbd_qos_write_bps_limit': 4 * MiB,
        'rbd_qos_write_bps_burst': 8 * MiB}
    assert driver.get_volume_stats(refresh=True)['QoS_support'] is True


def test_new_limits_replace_the_old_ones_and_none_clears_them(cli: ceph.CephCLI,
                                                              driver: rbd_driver.RBDDriver,
                                                              volume: VolumeRef) -> None:
    driver.set_qos(volume, {'total_bytes_sec': 50 * MiB, 'read_iops_sec': 100})
    driver.set_qos(volume, {'write_iops_sec': 5})
    assert image_qos(cli, volume) == {'rbd_qos_write_iops_limit': 5}
    driver.set_qos(volume, {})
    assert image_qos(cli, volume) == {}
    # the image's other metadata is not the driver's to touch
    cli.run('rbd', 'image-meta', 'set', 'rbd/volume-%s' % volume.id, 'owner', 'ops')
    driver.set_qos(volume, {'total_iops_sec': 7})
    driver.set_qos(volume, {})
    assert cli.run('rbd', 'image-meta', 'get', 'rbd/volume-%s' % volume.id,
                   'owner').strip() == 'ops'
