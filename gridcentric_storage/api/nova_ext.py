"""Nova-extension dialect, wire-compatible with Gridcentric/Cobalt clients.

``POST /v2.1[/{project_id}]/servers/{id}/action`` with ``co_bless``,
``co_launch``, ``co_discard``, ``co_list_launched``, ``co_list_blessed``
(also spelled ``gc_*``) and Nova's ``pause``/``unpause``;
``GET /servers``, ``/servers/detail`` (``?name=``) and ``/servers/{id}``;
``GET /gcinfo`` and ``/cobaltinfo``; ``co_export`` of a blessed server and
``POST /v2.1[/{project_id}]/co-import-server`` (also ``gc-import-server``)
of what it answered. As in Cobalt, a live image is
addressable as a server in state ``BLESSED``, and every answer that carries
servers is a bare JSON list of Nova detail views (the clients index the body
as a list): ``co_bless`` answers ``[<blessed server>]``, ``co_launch``
``[<first clone>]``, the list actions every match or ``[]``; ``co_discard``
answers ``null``; ``co_export`` the export document (``fields``,
``metadata``, ``system_metadata``, ``flavor_name``, ``export_image_id``: the
image of the caller's store holding the live image) and the import
``{"server": <the new blessed server>}``. Cobalt's error codes apply: invalid state 400, quota 413
with ``Retry-After: 0``.
"""

import hashlib
from typing import Any

import webob

from gridcentric_storage.api import policy, validation, wsgi
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.controllers.servers import (
    check_forced_host,
    get_live_image,
    get_server,
    scope,
)
from gridcentric_storage.api.schemas import servers as schema
from gridcentric_storage.common import exception
from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.compute import live_image_export
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage, Server

CAPABILITIES = ['user-data', 'launch-name', 'availability-zone', 'num-instances',
                'bless-name', 'launch-key', 'scheduler-hints', 'supports-volumes',
                'launch-nics', 'launch-params', 'import-export']
_VM_STATE = {'BUILD': 'building', 'ACTIVE': 'active', 'PAUSED': 'paused',
             'ERROR': 'error', 'BLESSED': 'active'}
_POWER_STATE = {'ACTIVE': 1, 'PAUSED': 3, 'BLESSED': 1}  # Nova's RUNNING, PAUSED


def links(root: str, kind: str, id: str) -> list[dict[str, str]]:
    """Nova's self and bookmark links under ``root`` (the URL above ``/v2.1``)."""
    root = root.rstrip('/')
    return [{'rel': 'self', 'href': '%s/v2.1/%s/%s' % (root, kind, id)},
            {'rel': 'bookmark', 'href': '%s/%s/%s' % (root, kind, id)}]


def detail(root: str, *, id: str, name: str, status: str, task_state: str | None,
           project_id: str | None, user_id: str | None, host: str | None,
           memory_mb: int, vcpus: int, image_id: str | None, metadata: dict[str, str],
           created: Any, updated: Any, flavor_id: str | None = None,
           **extra: Any) -> dict[str, Any]:
    """A server as Nova's detail view renders it (the fields Cobalt's clients read);
    ``root`` is the URL above ``/v2.1``. Without a ``flavor_id`` (this service
    has no flavors) the flavor is named by its size."""
    flavor_id = flavor_id or '%d-%d' % (memory_mb, vcpus)
    view = {
        'id': id, 'name': name, 'status': status, 'tenant_id': project_id,
        'user_id': user_id, 'metadata': metadata,
        # Nova's opaque host id: a hash of project and host, never the host.
        'hostId': hashlib.sha224(('%s%s' % (project_id, host)).encode()).hexdigest()
        if host else '',
        'image': {'id': image_id, 'links': links(root, 'images', image_id)}
        if image_id else '',
        'flavor': {'id': flavor_id, 'links': links(root, 'flavors', flavor_id),
                   'ram': memory_mb, 'vcpus': vcpus},
        'addresses': {}, 'accessIPv4': '', 'accessIPv6': '',
        'links': links(root, 'servers', id),
        'created': common.isotime(created), 'updated': common.isotime(updated),
        'OS-EXT-STS:vm_state': _VM_STATE.get(status, status.lower()),
        'OS-EXT-STS:task_state': task_state,
        'OS-EXT-STS:power_state': _POWER_STATE.get(status, 0),
        'OS-EXT-SRV-ATTR:host': host,
        'security_groups': [],
    }
    view.update(extra)
    return view


def nova_server(req: Any, server: Server) -> dict[str, Any]:
    metadata = {}
    if server['live_image_id']:
        metadata['launched_from'] = server['live_image_id']
    view = detail(
        req.application_url, id=server['id'], name=server['name'], status=server['status'],
        task_state=server['task_state'], project_id=server['project_id'],
        user_id=server['user_id'], host=server['host'], memory_mb=server['memory_mb'],
        vcpus=server['vcpus'], image_id=server['live_image_id'] or server['kernel'],
        metadata=metadata, created=server['created_at'], updated=server['updated_at'],
        key_name=server['key_name'])
    view.update({'OS-EXT-AZ:availability_zone': server['availability_zone'],
                 'fault': {'message': server['fault']} if server['fault'] else None})
    return view


def nova_blessed(req: Any, live_image: LiveImage) -> dict[str, Any]:
    status = {'blessed': 'BLESSED', 'blessing': 'BUILD', 'discarding': 'BLESSED',
              'error': 'ERROR'}[live_image['status']]
    return detail(
        req.application_url, id=live_image['id'], name=live_image['name'], status=status,
        task_state=live_image['status'] if status != 'BLESSED' else None,
        project_id=live_image['project_id'], user_id=live_image['user_id'],
        host=live_image['host'], memory_mb=live_image['memory_mb'],
        vcpus=live_image['vcpus'], image_id=None,
        metadata={'blessed_from': live_image['server_id']},
        created=live_image['created_at'], updated=live_image['updated_at'])


def export_document(live_image: LiveImage, exported: dict[str, Any],
                    flavor_name: str | None = None, **fields: Any) -> dict[str, Any]:
    """What co_export answers and co-import-server takes back: the live image's
    fields (and ``fields``), the export's checksum and the image holding it."""
    return {
        'fields': {'id': live_image['id'], 'name': live_image['name'],
                   'memory_mb': live_image['memory_mb'], 'vcpus': live_image['vcpus'],
                   **fields},
        'metadata': {'blessed_from': live_image['server_id']},
        'system_metadata': {'export_format': live_image_export.FORMAT,
                            'export_sha256': exported['sha256'],
                            'export_size': exported['size']},
        'flavor_name': flavor_name or '%d-%d' % (live_image['memory_mb'], live_image['vcpus']),
        'export_image_id': exported['image']}


def for_caller(ctxt: Any, result: Any) -> Any:
    """Drop the host from servers shown to non-administrators, as Nova's policy does."""
    if ctxt.is_admin or isinstance(result, webob.Response):
        return result
    servers = result if isinstance(result, list) else (
        result.get('servers') or [result.get('server') or {}])
    for server in servers:
        host = server.pop('OS-EXT-SRV-ATTR:host', None)
        if server.get('fault'):
            server['fault'] = dict(server['fault'], message=common.for_member(
                server['fault'].get('message'), [host]))
    return result


def _live_image_or_none(ctxt: Any, id: str, action: str) -> LiveImage | None:
    try:
        return get_live_image(ctxt, id, action)
    except exception.LiveImageNotFound:
        return None


class NovaExtensionController:
    def __init__(self) -> None:
        self.compute = compute_api.ComputeAPI()

    def cobaltinfo(self, req: Any, project_id: str | None = None) -> dict[str, Any]:
        return {'capabilities': CAPABILITIES}

    def index(self, req: Any, project_id: str | None = None) -> dict[str, Any]:
        """``GET /servers`` and ``/servers/detail``: the project's servers and live
        images (``?all_tenants=1`` for administrators), ``?name=`` exactly."""
        policy.authorize(req.context, 'server:get_all')
        project = common.listing_project(req, 'server:get_all_tenants')
        name = req.GET.get('name')
        views = [nova_server(req, s) for s in db_servers.server_get_all(project_id=project)]
        views += [nova_blessed(req, i)
                  for i in db_servers.live_image_get_all(project_id=project)]
        views = [v for v in views if name is None or v['name'] == name]
        return for_caller(req.context, {'servers': views})

    def show(self, req: Any, id: str, project_id: str | None = None) -> dict[str, Any]:
        live_image = _live_image_or_none(req.context, id, 'live_image:get')
        if live_image is not None:
            return for_caller(req.context, {'server': nova_blessed(req, live_image)})
        server = get_server(req.context, id, 'server:get')
        return for_caller(req.context, {'server': nova_server(req, server)})

    def delete(self, req: Any, id: str, project_id: str | None = None) -> Any:
        return self._translated(self._delete, req, id)

    def _delete(self, req: Any, id: str) -> tuple[int, None]:
        if _live_image_or_none(req.context, id, 'live_image:get') is not None:
            raise exception.Invalid(reason='server %s is blessed; discard it instead' % id)
        self.compute.delete_server(req.context, get_server(req.context, id, 'server:delete'))
        return 204, None

    def action(self, req: Any, id: str, project_id: str | None = None) -> Any:
        return for_caller(req.context, self._translated(self._action, req, id))

    # The OpenAPI document publishes it; _action validates each verb by name.
    action.request_schema = schema.cobalt_action  # type: ignore[attr-defined]

    def _translated(self, fn: Any, *args: Any) -> Any:
        """Cobalt's codes: a state conflict is 400; quota is 413 with Retry-After."""
        try:
            return fn(*args)
        except exception.QuotaExceeded as e:
            response = wsgi.fault(413, e.message)
            response.headers['Retry-After'] = '0'
            return response
        except exception.InvalidState as e:
            return wsgi.fault(400, e.message)

    def _action(self, req: Any, id: str) -> Any:
        body = req.json_body_or_400()
        if not isinstance(body, dict) or len(body) != 1:
            raise exception.Invalid(reason='the body names exactly one action')
        name, args = next(iter(body.items()))
        verbs = dict(schema.cobalt_actions, **schema.nova_actions)
        if name not in verbs:
            raise exception.Invalid(reason='unknown action %s' % name)
        # Before any lookup or write: a bless with a bad name used to leave
        # the server in task_state "blessing".
        validation.validate(body, verbs[name])
        handler = getattr(self, '_%s' % name if name in schema.nova_actions
                          else '_co_%s' % name[3:])
        return handler(req, id, args or {})

    def _not_blessed(self, req: Any, id: str, action: str) -> None:
        if _live_image_or_none(req.context, id, 'live_image:get') is not None:
            raise exception.InvalidState(resource='Server', id=id, state='BLESSED',
                                         reason='a blessed server cannot be %s' % action)

    def _co_bless(self, req: Any, id: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        self._not_blessed(req, id, 'blessed again')
        server = get_server(req.context, id, 'live_image:bless')
        live_image = self.compute.bless(req.context, server, args.get('name'))
        return [nova_blessed(req, live_image)]

    def _blessed(self, req: Any, id: str, action: str, rule: str) -> LiveImage:
        live_image = _live_image_or_none(req.context, id, rule)
        if live_image is None:
            get_server(req.context, id, 'server:get')  # 404 if it is nothing at all
            raise exception.InvalidState(resource='Server', id=id, state='ACTIVE',
                                         reason='only a blessed server can be %s' % action)
        return live_image

    def _co_launch(self, req: Any, id: str, args: dict[str, Any]) -> list[dict[str, Any]]:
        live_image = self._blessed(req, id, 'launched', 'live_image:launch')
        check_forced_host(req.context, args.get('availability_zone'))
        clones = self.compute.launch(req.context, live_image, args, numbered=False)
        return [nova_server(req, clones[0])]

    def _co_discard(self, req: Any, id: str, args: dict[str, Any]) -> webob.Response:
        live_image = self._blessed(req, id, 'discarded', 'live_image:discard')
        self.compute.discard(req.context, live_image)
        return webob.Response(status=200, content_type='application/json', body=b'null')

    def _co_list_launched(self, req: Any, id: str, args: dict[str, Any]
                          ) -> list[dict[str, Any]]:
        live_image = _live_image_or_none(req.context, id, 'live_image:get')
        if live_image is None:
            get_server(req.context, id, 'server:get')
            return []  # a server that is not blessed launched nothing
        clones = db_servers.server_get_all(live_image_id=live_image['id'])
        return [nova_server(req, c) for c in clones]

    def _co_list_blessed(self, req: Any, id: str, args: dict[str, Any]
                         ) -> list[dict[str, Any]]:
        if _live_image_or_none(req.context, id, 'live_image:get') is not None:
            return []  # a live image is not itself blessed
        server = get_server(req.context, id, 'server:get')
        images = db_servers.live_image_get_all(server_id=server['id'],
                                               project_id=scope(req.context))
        return [nova_blessed(req, i) for i in images]

    def _co_export(self, req: Any, id: str, args: dict[str, Any]) -> dict[str, Any]:
        live_image = self._blessed(req, id, 'exported', 'live_image:export')
        return export_document(live_image, self.compute.export(req.context, live_image))

    def _co_migrate(self, req: Any, id: str, args: dict[str, Any]) -> webob.Response:
        """Live migration of a running server of this service's QEMU driver; answers
        (200, as Cobalt did) once the source host was asked to do it. The server
        shows task ``migrating`` until the guest runs on the destination, or stays
        where it was with a fault note."""
        self._not_blessed(req, id, 'migrated')
        server = get_server(req.context, id, 'server:get')
        policy.authorize(req.context, 'server:migrate', {'project_id': server['project_id']})
        self.compute.migrate(req.context, server, args.get('dest'))
        return webob.Response(status=200, content_type='application/json', body=b'null')

    def import_server(self, req: Any, project_id: str | None = None) -> Any:
        """``co-import-server``: a new blessed server of the caller's project."""
        return for_caller(req.context, self._translated(self._import_server, req))

    import_server.request_schema = schema.cobalt_import  # type: ignore[attr-defined]

    def _import_server(self, req: Any) -> dict[str, Any]:
        body = req.json_body_or_400()
        validation.validate(body, schema.cobalt_import)
        policy.authorize(req.context, 'live_image:import',
                         {'project_id': req.context.project_id})
        data = body['data']
        fields = data['fields']
        # Its "source" is the exported live image: never a server of this cloud, so
        # nothing (a restart's resume of blessed sources) acts on another's server.
        live_image = self.compute.import_(
            req.context, fields['name'], fields['memory_mb'], fields['vcpus'], fields['id'],
            data['export_image_id'], data['system_metadata']['export_sha256'])
        return {'server': nova_blessed(req, live_image)}

    def _pause(self, req: Any, id: str, args: dict[str, Any]) -> webob.Response:
        self._not_blessed(req, id, 'paused')
        self.compute.pause(req.context, get_server(req.context, id, 'server:pause'))
        return wsgi.empty_response(202)

    def _unpause(self, req: Any, id: str, args: dict[str, Any]) -> webob.Response:
        self._not_blessed(req, id, 'unpaused')
        self.compute.unpause(req.context, get_server(req.context, id, 'server:pause'))
        return wsgi.empty_response(202)
