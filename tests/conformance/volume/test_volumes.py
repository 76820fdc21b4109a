"""Volumes through the driver contract, on every driver: create, delete, extend,
stats, ids, and failures that must leave the storage as it was."""

import os
import subprocess
import uuid
from collections.abc import Callable

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.conformance.volume.backends import Backend, GiB, MiB, new_snapshot, new_volume
from tests.fixtures.images import ADMIN


def test_create_and_delete(backend: Backend) -> None:
    driver, before = backend.driver, backend.objects()
    volume = new_volume(2)
    driver.create_volume(volume)
    assert backend.objects() > before
    assert backend.size(volume) == 2 * GiB
    assert backend.read(volume, 0, MiB) == bytes(MiB)  # a new volume reads zeros
    assert backend.read(volume, 2 * GiB - MiB, MiB) == bytes(MiB)
    backend.write(volume, 0, b'A' * MiB)
    with pytest.raises(exception.DriverError, match='already exists'):
        driver.create_volume(volume)
    assert backend.read(volume, 0, MiB) == b'A' * MiB  # not overwritten
    driver.delete_volume(volume)
    assert backend.objects() == before
    driver.delete_volume(volume)  # already gone: still fine
    driver.delete_snapshot(new_snapshot(volume))  # never made: fine too
    assert backend.objects() == before


def test_extend_keeps_data(backend: Backend) -> None:
    driver, before = backend.driver, backend.objects()
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 0, b'A' * MiB)
    backend.write(volume, GiB - MiB, b'B' * MiB)
    driver.extend_volume(volume, 2)
    assert backend.size(volume) == 2 * GiB
    assert backend.read(volume, 0, MiB) == b'A' * MiB
    assert backend.read(volume, GiB - MiB, 2 * MiB) == b'B' * MiB + bytes(MiB)
    backend.write(volume, 2 * GiB - MiB, b'C' * MiB)  # the new part can be written
    assert backend.read(volume, 2 * GiB - MiB, MiB) == b'C' * MiB
    with pytest.raises(exception.DriverError, match='cannot shrink'):
        driver.extend_volume(volume, 1)
    assert backend.size(volume) == 2 * GiB
    assert backend.read(volume, 0, MiB) == b'A' * MiB
    driver.delete_volume(volume)
    assert backend.objects() == before


def test_stats(backend: Backend) -> None:
    driver = backend.driver
    stats = driver.get_volume_stats(refresh=True)
    assert set(base.STATS_REQUIRED_KEYS) <= set(stats)
    assert stats['volume_backend_name'] == driver.backend_name
    assert stats['driver_version'] == type(driver).VERSION
    assert 0 <= stats['free_capacity_gb'] <= stats['total_capacity_gb']
    assert stats['reserved_percentage'] == 0
    for key in ('thin_provisioning_support', 'thick_provisioning_support', 'multiattach',
                'online_extend_support', 'QoS_support'):
        assert isinstance(stats[key], bool), key
    volume = new_volume(1)
    driver.create_volume(volume)
    try:
        after = driver.get_volume_stats(refresh=True)
        assert after['provisioned_capacity_gb'] == pytest.approx(
            stats['provisioned_capacity_gb'] + 1, abs=0.01)
        if not after['thin_provisioning_support']:  # thick: the space is taken now
            assert after['free_capacity_gb'] == pytest.approx(
                stats['free_capacity_gb'] - 1, abs=0.01)
    finally:
        driver.delete_volume(volume)


BAD_IDS = ['../../etc/passwd', '..', '', None, 42, str(uuid.uuid4()) + '/../../x',
           'a' * 36, '--force', str(uuid.uuid4()) + '\n']


def _calls_with(driver: base.VolumeDriver, good: VolumeRef, bad: object
                ) -> tuple[list[Callable[[], object]], list[Callable[[], object]]]:
    """(calls where the bad id is the only thing wrong, calls with a missing
    snapshot too) for one bad id."""
    volume = VolumeRef({'id': bad, 'size': 1})
    snapshot = SnapshotRef({'id': bad, 'volume_id': good.id, 'volume_size': 1})
    of_bad = SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': bad, 'volume_size': 1})
    only_bad: list[Callable[[], object]] = [
        lambda: driver.create_volume(volume),
        lambda: driver.delete_volume(volume),
        lambda: driver.extend_volume(volume, 2),
        lambda: driver.create_snapshot(snapshot),
        lambda: driver.create_snapshot(of_bad),
        lambda: driver.delete_snapshot(snapshot),
        lambda: driver.create_cloned_volume(volume, good),
        lambda: driver.create_cloned_volume(new_volume(), volume),
        lambda: driver.initialize_connection(volume, {}),
    ]
    also_missing: list[Callable[[], object]] = [
        lambda: driver.create_volume_from_snapshot(volume, new_snapshot(good)),
        lambda: driver.create_volume_from_snapshot(new_volume(), snapshot),
    ]
    return only_bad, also_missing


def test_ids_that_are_not_uuids_are_refused(backend: Backend) -> None:
    """No name, path or command is ever built from an id that is not a UUID."""
    driver, good = backend.driver, new_volume()
    driver.create_volume(good)
    before = backend.objects()
    for bad in BAD_IDS:
        only_bad, also_missing = _calls_with(driver, good, bad)
        for call in only_bad:
            with pytest.raises(exception.DriverError, match='not a UUID'):
                call()
        for call in also_missing:
            with pytest.raises(exception.DriverError):
                call()
    assert backend.objects() == before
    driver.delete_volume(good)


def test_failures_leave_nothing_behind(backend: Backend, images, tmp_path) -> None:
    """Each refused or failed call leaves the storage and the volume's data as they
    were: no half-made volume, snapshot or image file."""
    driver = backend.driver
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 0, b'K' * MiB)
    before = backend.objects()
    missing_volume, missing_snapshot = new_volume(), new_snapshot(new_volume())
    big = str(tmp_path / 'big.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', big, '2G'], check=True)
    export = str(tmp_path / 'export.raw')
    failing = {
        'create an existing volume': lambda: driver.create_volume(volume),
        'shrink': lambda: driver.extend_volume(volume, 0),
        'extend a missing volume': lambda: driver.extend_volume(missing_volume, 2),
        'clone a missing volume': lambda: driver.create_cloned_volume(new_volume(),
                                                                      missing_volume),
        'snapshot a missing volume': lambda: driver.create_snapshot(
            new_snapshot(missing_volume)),
        'volume from a missing snapshot': lambda: driver.create_volume_from_snapshot(
            new_volume(), missing_snapshot),
        'revert to a missing snapshot': lambda: driver.revert_to_snapshot(
            None, volume, SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                                       'volume_size': 1})),
        'image bigger than the volume': lambda: driver.copy_image_to_volume(
            ADMIN, volume, images, big),
        'export a missing volume': lambda: driver.copy_volume_to_image(
            ADMIN, missing_volume, images, {'path': export, 'disk_format': 'raw'}),
    }
    for what, call in failing.items():
        with pytest.raises(exception.DriverError):
            call()
        assert backend.objects() == before, what
        assert backend.read(volume, 0, MiB) == b'K' * MiB, what
    assert backend.size(volume) == GiB
    assert not [n for n in os.listdir(tmp_path) if n.startswith('export')]
    driver.delete_volume(volume)
