"""The template cache module alone, on a real SQLite database.

The driver here is a recording stand-in whose clone can be held half-way, to
show what eviction and purge do while a volume is being cloned from an entry
(a unit test of image_cache.py; the real drivers are exercised by
tests/functional/test_volume_lifecycle.py).
"""

import threading
import uuid
from typing import Any

import pytest

from gridcentric_storage.db import api as db
from gridcentric_storage.db import snapshots as db_cache
from gridcentric_storage.volume.image_cache import ImageCache
from gridcentric_storage.volume.objects import VolumeRef

GiB = 1 << 30


class HeldCloneDriver:
    """Records backend calls; create_volume_from_snapshot waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.cloning = threading.Event()
        self.release = threading.Event()

    def create_volume(self, volume: Any) -> None:
        self.calls.append(('create_volume', volume.id))

    def copy_image_to_volume(self, context: Any, volume: Any, images: Any,
                             image_id: str) -> None:
        self.calls.append(('copy_image', volume.id))

    def create_snapshot(self, snapshot: Any) -> None:
        self.calls.append(('create_snapshot', snapshot.id))

    def create_volume_from_snapshot(self, volume: Any, snapshot: Any) -> dict[str, Any]:
        self.cloning.set()
        assert self.release.wait(30)
        self.calls.append(('clone', snapshot.id))
        return {'provider_location': 'volume-%s' % volume.id}

    def delete_snapshot(self, snapshot: Any) -> None:
        self.calls.append(('delete_snapshot', snapshot.id))

    def delete_volume(self, volume: Any) -> None:
        self.calls.append(('delete_volume', volume.id))


class Images:
    def info(self, context: Any, image_id: str) -> dict[str, Any]:
        return {'id': image_id, 'cache_key': 'key-' + image_id, 'virtual_size': GiB}

    def check_unchanged(self, context: Any, info: dict[str, Any]) -> None:
        pass


class Pool:
    host = 'test-host'

    def __init__(self, driver: HeldCloneDriver) -> None:
        self.driver = driver

    def get(self, backend_id: str) -> HeldCloneDriver:
        return self.driver


@pytest.fixture
def backend_id(gc_db) -> str:
    backend_id = str(uuid.uuid4())
    db.backend_create({'id': backend_id, 'name': 'b', 'driver': 'fake', 'options': {},
                       'availability_zone': 'nova', 'host': 'test-host'})
    return backend_id


def test_purge_waits_for_a_clone_in_progress(backend_id):
    driver = HeldCloneDriver()
    cache = ImageCache(Pool(driver), Images())
    volume = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    result: dict[str, Any] = {}
    cloner = threading.Thread(target=lambda: result.update(cache.create_volume_from_image(
        None, backend_id, driver, volume, 'a.raw')))
    cloner.start()
    assert driver.cloning.wait(30)
    entry_id = db_cache.cache_get_all(backend_id=backend_id)[0]['id']
    purger = threading.Thread(target=cache.purge, args=(backend_id,))
    purger.start()
    purger.join(0.5)
    assert purger.is_alive()              # the entry is in use: purge waits
    driver.release.set()
    cloner.join(30)
    purger.join(30)
    assert result == {'provider_location': 'volume-%s' % volume.id}
    # the clone read the snapshot before the entry was deleted
    assert driver.calls.index(('clone', entry_id)) < \
        driver.calls.index(('delete_snapshot', entry_id))
    assert db_cache.cache_get_all(backend_id=backend_id) == []
