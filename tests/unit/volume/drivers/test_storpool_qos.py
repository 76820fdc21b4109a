"""StorPool QoS against the API simulator: the volume's ``iops`` and ``bw`` as the cluster
keeps them (what ``storpool volume <name> list`` would show an operator)."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import storpool
from gridcentric_storage.volume.objects import VolumeRef
from tests.fixtures import storpool as sp_fixture

MiB = 1 << 20


@pytest.fixture
def sim(tmp_path: Any) -> Iterator[Any]:
    with sp_fixture.cluster(tmp_path, templates=[{'name': 'ssd', 'replication': 2}]) as s:
        yield s


def make(options: dict[str, Any]) -> storpool.StorPoolDriver:
    driver = storpool.StorPoolDriver('b1', 'sp', options)
    driver.do_setup(None)
    return driver


def limits(sim: Any, volume: VolumeRef) -> tuple[Any, Any]:
    with sim.cluster.lock:
        found = sim.cluster.volume(f'os--volume-{volume.id}')
        return found.get('iops'), found.get('bw')


def test_total_limits_become_the_volumes_iops_and_bw(sim: Any) -> None:
    driver = make({'template': 'ssd'})
    volume = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    driver.create_volume(volume)
    driver.set_qos(volume, {'total_iops_sec': 2500, 'total_bytes_sec': 100 * MiB + 1})
    assert limits(sim, volume) == (2500, 100 * 1024 + 1)     # KB/s, rounded up
    driver.set_qos(volume, {'total_iops_sec': 800})
    assert limits(sim, volume) == (800, '-')                 # no bandwidth limit now
    driver.set_qos(volume, {})
    assert limits(sim, volume) == ('-', '-')


def test_the_backends_own_limits_come_back_and_the_rest_is_refused(sim: Any) -> None:
    driver = make({'template': 'ssd', 'iops': 300})
    volume = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    driver.create_volume(volume)
    driver.set_qos(volume, {'total_iops_sec': 5000})
    driver.set_qos(volume, {})
    assert limits(sim, volume) == (300, '-')
    with pytest.raises(exception.QosNotSupported, match='not read_iops_sec, total_iops_sec_max'):
        driver.set_qos(volume, {'total_bytes_sec': MiB, 'read_iops_sec': 5,
                                'total_iops_sec_max': 9})
    assert limits(sim, volume) == (300, 1024)    # what it can enforce, it does
