"""Small helpers for the file driver's own tests (test_file*.py)."""

import os
import uuid
from typing import Any

from gridcentric_storage.volume.drivers import file as file_driver
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

GiB, MiB = 1 << 30, 1 << 20


def new_volume(size: int = 1) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size, 'name': 'data'})


def new_snapshot(volume: VolumeRef, **extra: Any) -> SnapshotRef:
    return SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                        'volume_size': volume.size, **extra})


def make_driver(path: Any, **options: Any) -> file_driver.FileDriver:
    driver = file_driver.FileDriver('backend-1', 'default', {'path': str(path), **options})
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


def our_files(driver: file_driver.FileDriver) -> list[str]:
    """The driver's own files in its directory (hidden and marker files included)."""
    return sorted(n for n in os.listdir(driver.root)
                  if file_driver._NAME_RE.match(n.split('.')[0]))
