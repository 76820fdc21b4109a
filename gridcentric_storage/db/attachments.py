"""Volume attachments in the database."""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import reader, to_dict, writer


class AttachmentNotFound(exception.NotFound):
    msg_fmt = 'Attachment %(id)s could not be found.'


def attachment_create(values: dict[str, Any]) -> dict[str, Any]:
    with writer() as session:
        attachment = models.Attachment(**values)
        session.add(attachment)
        session.flush()
        return to_dict(attachment)


def attachment_get(attachment_id: str, project_id: str | None = None) -> dict[str, Any]:
    with reader() as session:
        query = session.query(models.Attachment).filter_by(id=attachment_id)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        attachment = query.first()
        if attachment is None:
            raise AttachmentNotFound(id=attachment_id)
        return to_dict(attachment)


def attachment_get_all(volume_id: str | None = None, project_id: str | None = None,
                       host: str | None = None, statuses: tuple[str, ...] | None = None
                       ) -> list[dict[str, Any]]:
    with reader() as session:
        query = session.query(models.Attachment)
        for key, value in (('volume_id', volume_id), ('project_id', project_id),
                           ('host', host)):
            if value is not None:
                query = query.filter(getattr(models.Attachment, key) == value)
        if statuses is not None:
            query = query.filter(models.Attachment.status.in_(statuses))
        return [to_dict(a) for a in query.order_by(models.Attachment.created_at)]


def attachment_update(attachment_id: str, values: dict[str, Any]) -> dict[str, Any]:
    with writer() as session:
        session.query(models.Attachment).filter_by(id=attachment_id).update(
            values, synchronize_session=False)
    return attachment_get(attachment_id)


def attachment_destroy(attachment_id: str) -> None:
    with writer() as session:
        session.query(models.Attachment).filter_by(id=attachment_id).delete(
            synchronize_session=False)
