"""Snapshots and the per-backend image cache in the database."""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import (
    reader,
    row_create,
    row_destroy,
    row_get,
    row_get_all,
    row_update,
    to_dict,
    utcnow,
    writer,
)
from gridcentric_storage.db.records import ImageCacheEntry, Snapshot


def snapshot_create(values: dict[str, Any]) -> Snapshot:
    return row_create(models.Snapshot, values)


def snapshot_get(snapshot_id: str, project_id: str | None = None) -> Snapshot:
    return row_get(models.Snapshot, snapshot_id, exception.SnapshotNotFound, project_id)


def snapshot_get_all(project_id: str | None = None, volume_id: str | None = None,
                     statuses: tuple[str, ...] | None = None, host: str | None = None
                     ) -> list[Snapshot]:
    return row_get_all(models.Snapshot, {'project_id': project_id, 'volume_id': volume_id,
                                         'host': host}, statuses)


def snapshot_update(snapshot_id: str, values: dict[str, Any],
                    expected_status: tuple[str, ...] | None = None) -> Snapshot:
    return row_update(models.Snapshot, snapshot_id, values, exception.SnapshotNotFound,
                      expected_status)


def snapshot_destroy(snapshot_id: str) -> None:
    row_destroy(models.Snapshot, snapshot_id)


# ------------------------------------------------------------ image cache

def cache_get(backend_id: str, image_key: str) -> ImageCacheEntry | None:
    with reader() as session:
        entry = (session.query(models.ImageCacheEntry)
                 .filter_by(backend_id=backend_id, image_key=image_key).first())
        return to_dict(entry) if entry is not None else None


def cache_create(values: dict[str, Any]) -> ImageCacheEntry:
    return row_create(models.ImageCacheEntry, values)


def cache_touch(entry_id: str) -> None:
    """Count a hit and mark the entry most recently used (LRU order)."""
    with writer() as session:
        session.query(models.ImageCacheEntry).filter_by(id=entry_id).update(
            {'hits': models.ImageCacheEntry.hits + 1, 'last_used_at': utcnow()},
            synchronize_session=False)


def cache_update(entry_id: str, values: dict[str, Any]) -> None:
    with writer() as session:
        session.query(models.ImageCacheEntry).filter_by(id=entry_id).update(
            values, synchronize_session=False)


def cache_get_all(backend_id: str | None = None, host: str | None = None
                  ) -> list[ImageCacheEntry]:
    """Entries, least recently used first."""
    with reader() as session:
        query = session.query(models.ImageCacheEntry)
        if backend_id is not None:
            query = query.filter_by(backend_id=backend_id)
        if host is not None:
            query = query.filter_by(host=host)
        query = query.order_by(models.ImageCacheEntry.last_used_at,
                               models.ImageCacheEntry.created_at)
        return [to_dict(e) for e in query]


def cache_get_entry(entry_id: str) -> ImageCacheEntry:
    return row_get(models.ImageCacheEntry, entry_id, exception.CacheEntryNotFound)


def cache_destroy(entry_id: str) -> None:
    row_destroy(models.ImageCacheEntry, entry_id)
