"""Per-backend template cache for volumes created from images.

The first volume from an image on a backend stores the image once there, as
a hidden volume ``volume-<entry id>`` with a snapshot ``snapshot-<entry
id>``; that and every later volume from the same image on that backend is a
copy-on-write clone of the snapshot (``create_volume_from_snapshot``), so the
10th volume costs what a clone costs, not what an image copy costs. Entries
are keyed by the image file's identity (path, inode, size, mtime), listed and purged
through the API, and evicted least recently used past
``[volume] image_cache_max_entries`` / ``image_cache_max_size_gb`` per backend.

The image is resolved with the caller's context (``images`` is the
:class:`~gridcentric_storage.image.base.ImageSource`), so a cache entry is only
ever reached through an image the caller may use; after a copy the file must
still be the one that was probed, else the copy is thrown away.
"""

import logging
import math
import threading
import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common.states import CacheEntryStatus as C
from gridcentric_storage.db import api as db
from gridcentric_storage.db import snapshots as db_cache
from gridcentric_storage.db.records import ImageCacheEntry
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GiB = 1 << 30


def entry_refs(entry: ImageCacheEntry) -> tuple[VolumeRef, SnapshotRef]:
    volume = VolumeRef({'id': entry['id'], 'size': entry['size'], 'name': None})
    snapshot = SnapshotRef({'id': entry['id'], 'volume_id': entry['id'],
                            'volume_size': entry['size'], 'name': None})
    return volume, snapshot


class ImageCache:
    def __init__(self, pool: Any, images: Any) -> None:
        self.pool = pool
        self.images = images
        self.locks = concurrency.KeyedLocks()
        self._evict_lock = threading.Lock()

    def create_volume_from_image(self, ctxt: Any, backend_id: str, driver: Any,
                                 volume: VolumeRef, image_id: str) -> Any:
        info = self.images.info(ctxt, image_id)
        image_gb = math.ceil(info['virtual_size'] / GiB) or 1
        if volume.size < image_gb:
            raise exception.Invalid(reason='volume of %d GiB is smaller than image %s '
                                    '(%d GiB)' % (volume.size, image_id, image_gb))
        if not CONF.volume.image_cache_enabled:
            update = driver.create_volume(volume)
            driver.copy_image_to_volume(ctxt, volume, self.images, image_id)
            self.images.check_unchanged(ctxt, info)
            return update
        # The clone happens under the entry's lock, which eviction and purge
        # take too: an entry is never removed between its lookup and the clone.
        with self.locks.get('%s:%s' % (backend_id, info['cache_key'])):
            entry = self._get_or_fill(ctxt, backend_id, driver, info, image_gb)
            _, snapshot = entry_refs(entry)
            update = driver.create_volume_from_snapshot(volume, snapshot)
        self.evict(backend_id, keep=entry['id'])
        return update

    def _get_or_fill(self, ctxt: Any, backend_id: str, driver: Any, info: dict[str, Any],
                     image_gb: int) -> ImageCacheEntry:
        """The available entry of the image on the backend, filled if need be; the
        caller holds the entry's lock."""
        entry = db_cache.cache_get(backend_id, info['cache_key'])
        if entry is not None and entry['status'] == C.AVAILABLE:
            db_cache.cache_touch(entry['id'])
            return entry
        if entry is not None:  # a failed fill: start again
            self._remove(entry, driver)
        entry = db_cache.cache_create({
            'id': str(uuid.uuid4()), 'backend_id': backend_id, 'host': self.pool.host,
            'image_id': info['id'], 'image_key': info['cache_key'], 'size': image_gb,
            'status': C.CREATING, 'hits': 0, 'last_used_at': db.utcnow()})
        volume, snapshot = entry_refs(entry)
        try:
            driver.create_volume(volume)
            driver.copy_image_to_volume(ctxt, volume, self.images, info['id'])
            self.images.check_unchanged(ctxt, info)
            driver.create_snapshot(snapshot)
        except Exception:
            self._remove(entry, driver)
            raise
        db_cache.cache_update(entry['id'], {'status': C.AVAILABLE})
        LOG.info('Cached image %s on backend %s as %s', info['id'], backend_id, entry['id'])
        return db_cache.cache_get_entry(entry['id'])

    def _remove(self, entry: ImageCacheEntry, driver: Any) -> None:
        volume, snapshot = entry_refs(entry)
        try:
            driver.delete_snapshot(snapshot)
            driver.delete_volume(volume)
        except Exception:
            LOG.warning('Could not remove cache entry %s from its backend', entry['id'],
                        exc_info=True)
            db_cache.cache_update(entry['id'], {'status': C.ERROR})
            return
        db_cache.cache_destroy(entry['id'])

    def evict(self, backend_id: str, keep: str | None = None) -> list[str]:
        """Drop least recently used entries past the limits; return their ids."""
        max_entries = CONF.volume.image_cache_max_entries
        max_gb = CONF.volume.image_cache_max_size_gb
        evicted: list[str] = []
        with self._evict_lock:
            entries = [e for e in db_cache.cache_get_all(backend_id=backend_id)
                       if e['status'] == C.AVAILABLE]
            total = sum(e['size'] for e in entries)
            for entry in entries:  # least recently used first
                over_count = max_entries and len(entries) - len(evicted) > max_entries
                over_size = max_gb and total > max_gb
                if not (over_count or over_size):
                    break
                if entry['id'] == keep:
                    continue
                self.purge_entry(entry)
                evicted.append(entry['id'])
                total -= entry['size']
        return evicted

    def purge_entry(self, entry: ImageCacheEntry) -> None:
        with self.locks.get('%s:%s' % (entry['backend_id'], entry['image_key'])):
            self._remove(entry, self.pool.get(entry['backend_id']))

    def purge(self, backend_id: str | None = None) -> int:
        entries = db_cache.cache_get_all(backend_id=backend_id, host=self.pool.host)
        for entry in entries:
            self.purge_entry(entry)
        return len(entries)
