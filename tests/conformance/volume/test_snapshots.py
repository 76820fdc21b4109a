"""Snapshots, clones, volumes from snapshots and revert through the driver contract,
on every driver, checked by the data a user would read back."""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.objects import VolumeRef
from tests.conformance.volume.backends import SNAPSHOTS, Backend, GiB, MiB, new_snapshot, new_volume


def test_snapshot_keeps_old_data(backend: Backend) -> None:
    backend.require(SNAPSHOTS)
    driver, before = backend.driver, backend.objects()
    volume = new_volume()
    driver.create_volume(volume)
    backend.write(volume, 0, b'A' * MiB)
    backend.write(volume, MiB, b'B' * MiB)
    snapshot = new_snapshot(volume)
    driver.create_snapshot(snapshot)
    backend.write(volume, 0, b'C' * MiB)
    assert backend.read(volume, 0, 2 * MiB) == b'C' * MiB + b'B' * MiB
    assert backend.read_snapshot(snapshot, 0, 2 * MiB) == b'A' * MiB + b'B' * MiB
    # the volume keeps all of its data when the snapshot goes, the part it
    # shared with the snapshot (B) included
    driver.delete_snapshot(snapshot)
    assert backend.read(volume, 0, 2 * MiB) == b'C' * MiB + b'B' * MiB
    with pytest.raises(exception.DriverError):
        driver.create_volume_from_snapshot(new_volume(), snapshot)
    driver.delete_snapshot(snapshot)  # already gone: fine
    driver.delete_volume(volume)
    assert backend.objects() == before


def test_clone_is_independent(backend: Backend) -> None:
    driver, before = backend.driver, backend.objects()
    source = new_volume(1)
    driver.create_volume(source)
    backend.write(source, 0, b'A' * MiB)
    backend.write(source, GiB - MiB, b'Z' * MiB)
    clone = new_volume(2)
    driver.create_cloned_volume(clone, source)
    assert (backend.size(clone), backend.size(source)) == (2 * GiB, GiB)
    assert backend.read(clone, 0, MiB) == b'A' * MiB
    assert backend.read(clone, GiB - MiB, 2 * MiB) == b'Z' * MiB + bytes(MiB)  # grown: zeros
    backend.write(clone, 0, b'C' * MiB)
    backend.write(source, MiB, b'S' * MiB)
    assert backend.read(source, 0, 2 * MiB) == b'A' * MiB + b'S' * MiB
    assert backend.read(clone, 0, 2 * MiB) == b'C' * MiB + bytes(MiB)
    driver.delete_volume(source)  # the clone does not need its source any more
    assert backend.read(clone, 0, MiB) == b'C' * MiB
    assert backend.read(clone, GiB - MiB, MiB) == b'Z' * MiB
    driver.delete_volume(clone)
    assert backend.objects() == before


def test_volume_from_snapshot(backend: Backend) -> None:
    backend.require(SNAPSHOTS)
    driver, before = backend.driver, backend.objects()
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 0, b'A' * MiB)
    snapshot = new_snapshot(volume)
    driver.create_snapshot(snapshot)
    backend.write(volume, 0, b'B' * MiB)
    child = new_volume(2)
    driver.create_volume_from_snapshot(child, snapshot)
    assert backend.size(child) == 2 * GiB
    assert backend.read(child, 0, MiB) == b'A' * MiB
    assert backend.read(child, GiB, MiB) == bytes(MiB)
    backend.write(child, 0, b'C' * MiB)
    assert backend.read(volume, 0, MiB) == b'B' * MiB
    assert backend.read_snapshot(snapshot, 0, MiB) == b'A' * MiB
    # neither the snapshot nor its volume is needed by the child any more
    driver.delete_snapshot(snapshot)
    driver.delete_volume(volume)
    assert backend.read(child, 0, 2 * MiB) == b'C' * MiB + bytes(MiB)
    driver.delete_volume(child)
    assert backend.objects() == before


def test_revert_to_snapshot(backend: Backend) -> None:
    backend.require(SNAPSHOTS)
    driver, before = backend.driver, backend.objects()
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 0, b'A' * MiB)
    snapshot = new_snapshot(volume)
    driver.create_snapshot(snapshot)
    backend.write(volume, 0, b'B' * MiB)
    backend.write(volume, MiB, b'B' * MiB)
    driver.extend_volume(volume, 2)
    backend.write(volume, GiB, b'E' * MiB)
    grown = VolumeRef({'id': volume.id, 'size': 2})
    driver.revert_to_snapshot(None, grown, snapshot)
    assert backend.read(volume, 0, 2 * MiB) == b'A' * MiB + bytes(MiB)
    assert backend.read(volume, GiB, MiB) == bytes(MiB)  # not in the snapshot: zeros
    assert backend.size(volume) == 2 * GiB  # the volume keeps its size
    # the snapshot is still there, unchanged, and can be reverted to again
    assert backend.read_snapshot(snapshot, 0, MiB) == b'A' * MiB
    backend.write(volume, 0, b'D' * MiB)
    driver.revert_to_snapshot(None, grown, snapshot)
    assert backend.read(volume, 0, MiB) == b'A' * MiB
    driver.delete_snapshot(snapshot)
    driver.delete_volume(grown)
    assert backend.objects() == before
