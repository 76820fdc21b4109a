"""Volume attachments in the database."""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import row_create, row_destroy, row_get, row_get_all, row_update
from gridcentric_storage.db.records import Attachment


def attachment_create(values: dict[str, Any]) -> Attachment:
    return row_create(models.Attachment, values)


def attachment_get(attachment_id: str, project_id: str | None = None) -> Attachment:
    return row_get(models.Attachment, attachment_id, exception.AttachmentNotFound, project_id)


def attachment_get_all(volume_id: str | None = None, project_id: str | None = None,
                       host: str | None = None, statuses: tuple[str, ...] | None = None,
                       instance_uuid: str | None = None) -> list[Attachment]:
    return row_get_all(models.Attachment, {'volume_id': volume_id, 'project_id': project_id,
                                           'host': host, 'instance_uuid': instance_uuid},
                       statuses)


def attachment_update(attachment_id: str, values: dict[str, Any],
                      expected_status: tuple[str, ...] | None = None) -> Attachment:
    return row_update(models.Attachment, attachment_id, values, exception.AttachmentNotFound,
                      expected_status)


def attachment_destroy(attachment_id: str) -> None:
    row_destroy(models.Attachment, attachment_id)
