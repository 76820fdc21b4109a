"""URL map of the API; ``ROUTES`` also feeds the OpenAPI document."""

from typing import Any, NamedTuple

import routes
import routes.middleware
import webob.dec

from gridcentric_storage.api import nova_ext, wsgi
from gridcentric_storage.api.controllers import (
    attachments,
    backends,
    images,
    qos_specs,
    servers,
    snapshots,
    versions,
    volume_actions,
    volumes,
)


class Route(NamedTuple):
    method: str
    path: str
    controller: str
    action: str
    summary: str
    status: int
    #: Media type of the request body (a body of another type is a 415).
    media_type: str = wsgi.JSON


ROUTES = [
    Route('GET', '/', 'versions', 'index', 'API versions', 300),
    Route('GET', '/v1', 'versions', 'show', 'Version 1 document', 200),
    Route('GET', '/v1/openapi.json', 'versions', 'openapi', 'This OpenAPI document', 200),
    Route('GET', '/v1/backends', 'backends', 'index', 'List backends', 200),
    Route('POST', '/v1/backends', 'backends', 'create', 'Register a backend', 201),
    Route('GET', '/v1/backends/{id}', 'backends', 'show', 'Show a backend', 200),
    Route('PUT', '/v1/backends/{id}', 'backends', 'update', 'Change a backend', 200),
    Route('DELETE', '/v1/backends/{id}', 'backends', 'delete', 'Remove an empty backend', 204),
    Route('POST', '/v1/backends/{id}/action', 'backends', 'action',
          'Enable or disable a backend', 200),
    Route('GET', '/v1/qos-specs', 'qos_specs', 'index', 'List QoS specs', 200),
    Route('POST', '/v1/qos-specs', 'qos_specs', 'create', 'Create QoS specs', 200),
    Route('GET', '/v1/qos-specs/{id}', 'qos_specs', 'show', 'Show QoS specs', 200),
    Route('PUT', '/v1/qos-specs/{id}', 'qos_specs', 'update', 'Set keys of QoS specs', 200),
    Route('PUT', '/v1/qos-specs/{id}/delete_keys', 'qos_specs', 'delete_keys',
          'Remove keys of QoS specs', 202),
    Route('DELETE', '/v1/qos-specs/{id}', 'qos_specs', 'delete', 'Delete QoS specs', 202),
    Route('GET', '/v1/qos-specs/{id}/associations', 'qos_specs', 'associations',
          'Backends and volumes associated with QoS specs', 200),
    Route('GET', '/v1/volumes', 'volumes', 'index', 'List volumes', 200),
    Route('POST', '/v1/volumes', 'volumes', 'create', 'Create a volume', 202),
    Route('GET', '/v1/volumes/{id}', 'volumes', 'show', 'Show a volume', 200),
    Route('DELETE', '/v1/volumes/{id}', 'volumes', 'delete', 'Delete a volume', 202),
    Route('POST', '/v1/volumes/{id}/action', 'volume_actions', 'action',
          'Extend, revert, force-detach, write a volume to an image or set its QoS', 202),
    Route('GET', '/v1/volumes/{id}/data', 'volume_actions', 'download',
          'Read the whole volume as a byte stream', 200),
    Route('PUT', '/v1/volumes/{id}/data', 'volume_actions', 'upload',
          'Write the whole volume from a byte stream', 200, wsgi.OCTET_STREAM),
    Route('GET', '/v1/snapshots', 'snapshots', 'index', 'List snapshots', 200),
    Route('POST', '/v1/snapshots', 'snapshots', 'create', 'Snapshot a volume', 202),
    Route('GET', '/v1/snapshots/{id}', 'snapshots', 'show', 'Show a snapshot', 200),
    Route('DELETE', '/v1/snapshots/{id}', 'snapshots', 'delete', 'Delete a snapshot', 202),
    Route('GET', '/v1/attachments', 'attachments', 'index', 'List attachments', 200),
    Route('POST', '/v1/attachments', 'attachments', 'create',
          'Attach a volume to a compute host', 202),
    Route('GET', '/v1/attachments/{id}', 'attachments', 'show', 'Show an attachment', 200),
    Route('DELETE', '/v1/attachments/{id}', 'attachments', 'delete', 'Detach a volume', 202),
    Route('GET', '/v1/image-cache', 'image_cache', 'index', 'List the image cache', 200),
    Route('POST', '/v1/image-cache/action', 'image_cache', 'action',
          'Purge the image cache', 200),
    Route('DELETE', '/v1/image-cache/{id}', 'image_cache', 'delete',
          'Purge one image cache entry', 204),
    Route('GET', '/v1/servers', 'servers', 'index', 'List servers', 200),
    Route('POST', '/v1/servers', 'servers', 'create', 'Start a server', 202),
    Route('GET', '/v1/servers/{id}', 'servers', 'show', 'Show a server', 200),
    Route('DELETE', '/v1/servers/{id}', 'servers', 'delete', 'Delete a server', 204),
    Route('POST', '/v1/servers/{id}/action', 'servers', 'action',
          'Console output (os-getConsoleOutput)', 200),
    Route('GET', '/v1/servers/{server_id}/os-volume_attachments', 'volume_attachments',
          'index', 'Volumes attached to a server', 200),
    Route('POST', '/v1/servers/{server_id}/os-volume_attachments', 'volume_attachments',
          'create', 'Attach a volume to a server (a QEMU drive)', 202),
    Route('DELETE', '/v1/servers/{server_id}/os-volume_attachments/{id}',
          'volume_attachments', 'delete', 'Detach a volume from a server', 202),
    Route('GET', '/v1/live-images', 'live_images', 'index', 'List live images', 200),
    Route('POST', '/v1/live-images', 'live_images', 'create',
          'Bless a running server into a live image', 202),
    Route('GET', '/v1/live-images/{id}', 'live_images', 'show', 'Show a live image', 200),
    Route('DELETE', '/v1/live-images/{id}', 'live_images', 'delete',
          'Discard a live image', 202),
    Route('POST', '/v1/live-images/{id}/action', 'live_images', 'action',
          'Launch clones of a live image', 202),
    Route('GET', '/v1/live-images/{id}/servers', 'live_images', 'servers',
          'Servers launched from a live image', 200),
] + [
    route
    for prefix in ('/v2.1', '/v2.1/{project_id}')
    for route in (
        Route('POST', prefix + '/servers/{id}/action', 'nova', 'action',
              'Cobalt co_*/gc_* server actions, pause and unpause', 200),
        Route('GET', prefix + '/servers', 'nova', 'index',
              'Servers and blessed live images, in Nova\'s detail shape', 200),
        Route('GET', prefix + '/servers/detail', 'nova', 'index',
              'Servers and blessed live images, in Nova\'s detail shape', 200),
        Route('GET', prefix + '/servers/{id}', 'nova', 'show',
              'A server or a blessed live image, in Nova\'s shape', 200),
        Route('DELETE', prefix + '/servers/{id}', 'nova', 'delete',
              'Delete a server (a blessed one must be discarded)', 204),
        Route('POST', prefix + '/co-import-server', 'nova', 'import_server',
              'Import an exported live image as a blessed server (Cobalt)', 200),
        Route('POST', prefix + '/gc-import-server', 'nova', 'import_server',
              'Import an exported live image (the Gridcentric spelling)', 200),
        Route('GET', prefix + '/cobaltinfo', 'nova', 'cobaltinfo',
              'Cobalt capabilities', 200),
        Route('GET', prefix + '/gcinfo', 'nova', 'cobaltinfo',
              'Cobalt capabilities (the Gridcentric spelling)', 200),
    )
] + [Route('GET', path, 'nova', 'cobaltinfo', 'Cobalt capabilities', 200)
     for path in ('/cobaltinfo', '/gcinfo')] + [
    Route('GET', '/v1/images', 'images', 'index',
          "List the images the project may use (its own and the public ones)", 200),
    Route('DELETE', '/v1/images/{name}', 'images', 'delete',
          "Delete one of the project's images", 204),
]

#: Paths served before authentication (discovery documents).
PUBLIC_PATHS = frozenset({'/', '/v1', '/v1/openapi.json'})


def make_controllers() -> dict[str, Any]:
    return {'versions': versions.VersionsController(ROUTES),
            'backends': backends.BackendsController(),
            'volumes': volumes.VolumesController(),
            'volume_actions': volume_actions.VolumeActionsController(),
            'snapshots': snapshots.SnapshotsController(),
            'attachments': attachments.AttachmentsController(),
            'image_cache': attachments.ImageCacheController(),
            'servers': servers.ServersController(),
            'live_images': servers.LiveImagesController(),
            'volume_attachments': servers.VolumeAttachmentsController(),
            'nova': nova_ext.NovaExtensionController(),
            'images': images.ImagesController(),
            'qos_specs': qos_specs.QosSpecsController()}


class APIRouter:
    def __init__(self) -> None:
        self.controllers = make_controllers()
        resources = {name: wsgi.Resource(c) for name, c in self.controllers.items()}
        mapper = routes.Mapper()
        mapper.explicit = True
        for route in ROUTES:
            mapper.connect(route.path, controller=resources[route.controller],
                           action=route.action, media_type=route.media_type,
                           conditions={'method': [route.method]})
        # Known path, wrong method -> 405 rather than 404.
        for path in sorted({r.path for r in ROUTES}):
            mapper.connect(path, controller=None, action=None)
        # No method tunnelling: with it, a cross-site form posting
        # ``_method=DELETE`` (in the query or the form) would delete.
        self._router = routes.middleware.RoutesMiddleware(self._dispatch, mapper,
                                                          use_method_override=False)

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
