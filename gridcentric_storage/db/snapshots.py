"""Snapshots and the per-backend image cache in the database."""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import reader, to_dict, utcnow, writer


class SnapshotNotFound(exception.NotFound):
    msg_fmt = 'Snapshot %(id)s could not be found.'


def snapshot_create(values: dict[str, Any]) -> dict[str, Any]:
    with writer() as session:
        snapshot = models.Snapshot(**values)
        session.add(snapshot)
        session.flush()
        return to_dict(snapshot)


def snapshot_get(snapshot_id: str, project_id: str | None = None) -> dict[str, Any]:
    with reader() as session:
        query = session.query(models.Snapshot).filter_by(id=snapshot_id)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        snapshot = query.first()
        if snapshot is None:
            raise SnapshotNotFound(id=snapshot_id)
        return to_dict(snapshot)


def snapshot_get_all(project_id: str | None = None, volume_id: str | None = None,
                     statuses: tuple[str, ...] | None = None, host: str | None = None
                     ) -> list[dict[str, Any]]:
    with reader() as session:
        query = session.query(models.Snapshot)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        if volume_id is not None:
            query = query.filter_by(volume_id=volume_id)
        if host is not None:
            query = query.filter_by(host=host)
        if statuses is not None:
            query = query.filter(models.Snapshot.status.in_(statuses))
        return [to_dict(s) for s in query.order_by(models.Snapshot.created_at)]


def snapshot_update(snapshot_id: str, values: dict[str, Any],
                    expected_status: tuple[str, ...] | None = None) -> dict[str, Any]:
    with writer() as session:
        query = session.query(models.Snapshot).filter_by(id=snapshot_id)
        if expected_status is not None:
            query = query.filter(models.Snapshot.status.in_(expected_status))
        if not query.update(values, synchronize_session=False):
            current = session.query(models.Snapshot).filter_by(id=snapshot_id).first()
            if current is None:
                raise SnapshotNotFound(id=snapshot_id)
            raise exception.InvalidState(
                resource='Snapshot', id=snapshot_id, state=current.status,
                reason='expected one of %s' % ', '.join(expected_status or ()))
    return snapshot_get(snapshot_id)


def snapshot_destroy(snapshot_id: str) -> None:
    with writer() as session:
        session.query(models.Snapshot).filter_by(id=snapshot_id).delete(
            synchronize_session=False)


# ------------------------------------------------------------ image cache

def cache_get(backend_id: str, image_key: str) -> dict[str, Any] | None:
    with reader() as session:
        entry = (session.query(models.ImageCacheEntry)
                 .filter_by(backend_id=backend_id, image_key=image_key).first())
        return to_dict(entry) if entry is not None else None


def cache_create(values: dict[str, Any]) -> dict[str, Any]:
    with writer() as session:
        entry = models.ImageCacheEntry(**values)
        session.add(entry)
        session.flush()
        return to_dict(entry)


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
                  ) -> list[dict[str, Any]]:
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


def cache_get_entry(entry_id: str) -> dict[str, Any]:
    with reader() as session:
        entry = session.query(models.ImageCacheEntry).filter_by(id=entry_id).first()
        if entry is None:
            raise exception.NotFound('Image cache entry %s could not be found.' % entry_id)
        return to_dict(entry)


def cache_destroy(entry_id: str) -> None:
    with writer() as session:
        session.query(models.ImageCacheEntry).filter_by(id=entry_id).delete(
            synchronize_session=False)
