"""URL map of the API; ``ROUTES`` also feeds the OpenAPI document."""

from typing import Any, NamedTuple

import routes
import routes.middleware
import webob.dec

from gridcentric_storage.api import wsgi
from gridcentric_storage.api.controllers import backends, versions, volumes


class Route(NamedTuple):
    method: str
    path: str
    controller: str
    action: str
    summary: str
    status: int


ROUTES = [
    Route('GET', '/', 'versions', 'index', 'API versions', 200),
    Route('GET', '/v1', 'versions', 'show', 'Version 1 document', 200),
    Route('GET', '/v1/openapi.json', 'versions', 'openapi', 'This OpenAPI document', 200),
    Route('GET', '/v1/backends', 'backends', 'index', 'List backends', 200),
    Route('POST', '/v1/backends', 'backends', 'create', 'Register a backend', 201),
    Route('GET', '/v1/backends/{id}', 'backends', 'show', 'Show a backend', 200),
    Route('PUT', '/v1/backends/{id}', 'backends', 'update', 'Change a backend', 200),
    Route('DELETE', '/v1/backends/{id}', 'backends', 'delete', 'Remove an empty backend', 204),
    Route('POST', '/v1/backends/{id}/action', 'backends', 'action',
          'Enable or disable a backend', 200),
    Route('GET', '/v1/volumes', 'volumes', 'index', 'List volumes', 200),
    Route('POST', '/v1/volumes', 'volumes', 'create', 'Create a volume', 202),
    Route('GET', '/v1/volumes/{id}', 'volumes', 'show', 'Show a volume', 200),
    Route('DELETE', '/v1/volumes/{id}', 'volumes', 'delete', 'Delete a volume', 202),
]

#: Paths served before authentication (discovery documents).
PUBLIC_PATHS = frozenset({'/', '/v1', '/v1/openapi.json'})


def make_controllers() -> dict[str, Any]:
    return {'versions': versions.VersionsController(ROUTES),
            'backends': backends.BackendsController(),
            'volumes': volumes.VolumesController()}


class APIRouter:
    def __init__(self) -> None:
        self.controllers = make_controllers()
        resources = {name: wsgi.Resource(c) for name, c in self.controllers.items()}
        mapper = routes.Mapper()
        mapper.explicit = True
        for route in ROUTES:
            mapper.connect(route.path, controller=resources[route.controller],
                           action=route.action, conditions={'method': [route.method]})
        # Known path, wrong method -> 405 rather than 404.
        for path in sorted({r.path for r in ROUTES}):
            mapper.connect(path, controller=None, action=None)
        self._router = routes.middleware.RoutesMiddleware(self._dispatch, mapper)

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: Any) -> 'APIRouter':
        return cls()

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def __call__(self, req: wsgi.Request) -> Any:
        return self._router

    @staticmethod
    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def _dispatch(req: wsgi.Request) -> Any:
        match = req.environ['wsgiorg.routing_args'][1]
        if not match:
            return wsgi.fault(404, 'The resource %s could not be found.' % req.path)
        app = match['controller']
        if app is None:
            return wsgi.fault(405, 'Method %s is not allowed on %s.' % (req.method, req.path))
        return app
