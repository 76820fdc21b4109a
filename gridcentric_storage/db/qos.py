"""QoS specs in the database, and which specs govern a volume.

A volume is governed by its own specs (``volumes.qos_specs_id``), else by its
backend's (``backends.qos_specs_id``), else by none.
"""

from typing import Any

import sqlalchemy as sa
from oslo_db import exception as db_exc

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import reader, row_get, row_get_all, to_dict, writer
from gridcentric_storage.db.records import QosSpecs, Volume


def qos_specs_create(values: dict[str, Any]) -> QosSpecs:
    try:
        with writer() as session:
            row = models.QosSpecs(**values)
            session.add(row)
            session.flush()
            return to_dict(row)  # type: ignore[no-any-return]
    except db_exc.DBDuplicateEntry:
        raise exception.Duplicate(resource='QoS specs', name=values['name']) from None


def qos_specs_get(specs_id: str) -> QosSpecs:
    return row_get(models.QosSpecs, specs_id, exception.QosSpecsNotFound)  # type: ignore


def qos_specs_get_all(name: str | None = None) -> list[QosSpecs]:
    return row_get_all(models.QosSpecs, {'name': name})  # type: ignore[no-any-return]


def qos_specs_update(specs_id: str, values: dict[str, Any]) -> QosSpecs:
    try:
        with writer() as session:
            count = (session.query(models.QosSpecs).filter_by(id=specs_id)
                     .update(values, synchronize_session=False))
    except db_exc.DBDuplicateEntry:
        raise exception.Duplicate(resource='QoS specs', name=values.get('name')) from None
    if not count:
        raise exception.QosSpecsNotFound(id=specs_id)
    return qos_specs_get(specs_id)


def associations(specs_id: str) -> dict[str, list[dict[str, Any]]]:
    """The backends and volumes that name these specs themselves."""
    with reader() as session:
        backends = (session.query(models.Backend.id, models.Backend.name)
                    .filter_by(qos_specs_id=specs_id).order_by(models.Backend.name))
        volumes = (session.query(models.Volume.id, models.Volume.name,
                                 models.Volume.project_id)
                   .filter_by(qos_specs_id=specs_id).order_by(models.Volume.created_at))
        return {'backends': [{'id': i, 'name': n} for i, n in backends],
                'volumes': [{'id': i, 'name': n, 'project_id': p} for i, n, p in volumes]}


def qos_specs_destroy(specs_id: str, force: bool = False) -> None:
    """Remove specs; in use, QosSpecsInUse unless ``force`` (which disassociates)."""
    with writer() as session:
        row = session.query(models.QosSpecs).filter_by(id=specs_id).with_for_update().first()
        if row is None:
            raise exception.QosSpecsNotFound(id=specs_id)
        used = {model.__tablename__: session.query(model).filter_by(qos_specs_id=specs_id)
                .count() for model in (models.Backend, models.Volume)}
        if any(used.values()) and not force:
            raise exception.QosSpecsInUse(id=specs_id, what=', '.join(
                '%d %s' % (count, table) for table, count in sorted(used.items()) if count))
        for model in (models.Backend, models.Volume):
            session.query(model).filter_by(qos_specs_id=specs_id).update(
                {'qos_specs_id': None}, synchronize_session=False)
        session.delete(row)


def governing_specs(volume: Volume) -> QosSpecs | None:
    """The specs that govern ``volume``: its own, else its backend's, else None."""
    with reader() as session:
        specs_id = volume.get('qos_specs_id')
        if specs_id is None:
            specs_id = (session.query(models.Backend.qos_specs_id)
                        .filter_by(id=volume['backend_id']).scalar())
        if specs_id is None:
            return None
        row = session.query(models.QosSpecs).filter_by(id=specs_id).first()
        return to_dict(row) if row is not None else None  # type: ignore[no-any-return]


def governed_volumes(specs_id: str | None = None, backend_id: str | None = None
                     ) -> list[Volume]:
    """Volumes whose limits change with ``specs_id`` (theirs, or their backend's
    while they have none), or with the specs of ``backend_id``."""
    with reader() as session:
        query = session.query(models.Volume)
        if backend_id is not None:
            query = query.filter(models.Volume.backend_id == backend_id,
                                 models.Volume.qos_specs_id.is_(None))
        else:
            on_backend: Any = sa.select(models.Backend.id).where(
                models.Backend.qos_specs_id == specs_id)
            query = query.filter(sa.or_(
                models.Volume.qos_specs_id == specs_id,
                sa.and_(models.Volume.qos_specs_id.is_(None),
                        models.Volume.backend_id.in_(on_backend))))
        return [to_dict(v) for v in query.order_by(models.Volume.created_at)]
