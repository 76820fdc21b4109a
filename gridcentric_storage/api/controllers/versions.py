"""Version discovery and the OpenAPI document (served without authentication)."""

from typing import Any

from gridcentric_storage.api import openapi


def _version(req: Any) -> dict[str, Any]:
    return {'id': 'v1.0', 'status': 'CURRENT', 'updated': '2026-11-21T00:00:00Z',
            'links': [{'rel': 'self', 'href': req.application_url + '/v1/'},
                      {'rel': 'describedby', 'type': 'application/json',
                       'href': req.application_url + '/v1/openapi.json'}]}


class VersionsController:
    def __init__(self, routes: list[Any]) -> None:
        self._routes = routes
        self._document: dict[str, Any] | None = None

    def index(self, req: Any) -> tuple[int, dict[str, Any]]:
        return 300, {'versions': [_version(req)]}

    def show(self, req: Any) -> dict[str, Any]:
        return {'version': _version(req)}

    def openapi(self, req: Any) -> dict[str, Any]:
        if self._document is None:
            from gridcentric_storage.api import router

            self._document = openapi.build(self._routes, router.make_controllers())
        return self._document
