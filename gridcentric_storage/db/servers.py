"""Servers and live images in the database."""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.api import (
    row_create,
    row_destroy,
    row_get,
    row_get_all,
    row_move,
    row_update,
)
from gridcentric_storage.db.records import LiveImage, Server


def server_create(values: dict[str, Any]) -> Server:
    return row_create(models.Server, values)


def server_get(server_id: str, project_id: str | None = None) -> Server:
    return row_get(models.Server, server_id, exception.ServerNotFound, project_id)


def server_get_all(project_id: str | None = None, host: str | None = None,
                   live_image_id: str | None = None,
                   statuses: tuple[str, ...] | None = None) -> list[Server]:
    return row_get_all(models.Server, {'project_id': project_id, 'host': host,
                                       'live_image_id': live_image_id}, statuses)


def server_update(server_id: str, values: dict[str, Any],
                  expected_status: tuple[str, ...] | None = None,
                  match: dict[str, Any] | None = None) -> Server:
    return row_update(models.Server, server_id, values, exception.ServerNotFound,
                      expected_status, match)


def server_move(server_id: str, values: dict[str, Any],
                allowed: dict[str, tuple[Any, ...]]) -> Server | None:
    """Write ``values`` while each column of ``allowed`` holds one of its values
    (one statement): None when written, else the row as it was."""
    return row_move(models.Server, server_id, values, allowed, exception.ServerNotFound)


def server_destroy(server_id: str) -> None:
    row_destroy(models.Server, server_id)


def live_image_create(values: dict[str, Any]) -> LiveImage:
    return row_create(models.LiveImage, values)


def live_image_get(live_image_id: str, project_id: str | None = None) -> LiveImage:
    return row_get(models.LiveImage, live_image_id, exception.LiveImageNotFound, project_id)


def live_image_get_all(project_id: str | None = None, server_id: str | None = None,
                       host: str | None = None, statuses: tuple[str, ...] | None = None
                       ) -> list[LiveImage]:
    return row_get_all(models.LiveImage, {'project_id': project_id, 'server_id': server_id,
                                          'host': host}, statuses)


def live_image_update(live_image_id: str, values: dict[str, Any],
                      expected_status: tuple[str, ...] | None = None) -> LiveImage:
    return row_update(models.LiveImage, live_image_id, values, exception.LiveImageNotFound,
                      expected_status)


def live_image_destroy(live_image_id: str) -> None:
    row_destroy(models.LiveImage, live_image_id)


def live_image_set_publish(live_image_id: str, publish_status: str,
                           expected: tuple[str | None, ...] | None = None,
                           **values: Any) -> LiveImage:
    """Write a live image's publish status (``compute.live_image_publish``'s
    alone), only from one of ``expected`` when given (NULL reads as never
    published); the row's own status is left alone."""
    values = dict(values, publish_status=publish_status)
    if expected is None:
        return row_update(models.LiveImage, live_image_id, values,
                          exception.LiveImageNotFound)
    last: exception.InvalidState | None = None
    for before in expected:
        try:
            return row_update(models.LiveImage, live_image_id, values,
                              exception.LiveImageNotFound,
                              match={'publish_status': before})
        except exception.InvalidState as e:
            last = e
    assert last is not None
    raise last
