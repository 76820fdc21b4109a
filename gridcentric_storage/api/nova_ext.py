"""Nova-extension dialect, wire-compatible with Gridcentric/Cobalt clients.

``POST /v2.1[/{project_id}]/servers/{id}/action`` with ``co_bless``,
``co_launch``, ``co_discard``, ``co_list_launched``, ``co_list_blessed``
(also spelled ``gc_*``), ``GET /cobaltinfo``. As in Cobalt, a live image is
addressable as a server in state ``BLESSED``: ``co_bless`` answers
``{"servers": [<blessed server>]}`` and ``co_launch`` on that id answers
``{"servers": [<first clone>]}``. Cobalt's error codes apply: invalid state
400, quota 413 with ``Retry-After: 0``.
"""

from typing import Any

import webob

from gridcentric_storage.api import validation, wsgi
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
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage, Server

CAPABILITIES = ['user-data', 'launch-name', 'availability-zone', 'num-instances',
                'bless-name', 'launch-key', 'scheduler-hints', 'supports-volumes',
                'launch-nics', 'launch-params']
_NOVA_STATUS = {'BUILD': 'BUILD', 'ACTIVE': 'ACTIVE', 'ERROR': 'ERROR'}


def nova_server(server: Server) -> dict[str, Any]:
    metadata = {}
    if server.get('live_image_id'):
        metadata['launched_from'] = server['live_image_id']
    return {
        'id': server['id'], 'name': server['name'],
        'status': _NOVA_STATUS.get(server['status'], server['status']),
        'tenant_id': server['project_id'], 'user_id': server['user_id'],
        'metadata': metadata, 'OS-EXT-STS:task_state': server['task_state'],
        'OS-EXT-SRV-ATTR:host': server['host'],
        'OS-EXT-AZ:availability_zone': server['availability_zone'],
        'key_name': server['key_name'], 'created': common.isotime(server['created_at']),
        'updated': common.isotime(server['updated_at']),
        'flavor': {'ram': server['memory_mb'], 'vcpus': server['vcpus']},
        'fault': {'message': server['fault']} if server['fault'] else None,
    }


def nova_blessed(live_image: LiveImage) -> dict[str, Any]:
    status = {'blessed': 'BLESSED', 'blessing': 'BUILD', 'discarding': 'BLESSED',
              'error': 'ERROR'}[live_image['status']]
    return {
        'id': live_image['id'], 'name': live_image['name'], 'status': status,
        'tenant_id': live_image['project_id'], 'user_id': live_image['user_id'],
        'metadata': {'blessed_from': live_image['server_id']},
        'OS-EXT-STS:task_state': live_image['status'] if status != 'BLESSED' else None,
        'OS-EXT-SRV-ATTR:host': live_image['host'],
        'created': common.isotime(live_image['created_at']),
        'updated': common.isotime(live_image['updated_at']),
        'flavor': {'ram': live_image['memory_mb'], 'vcpus': live_image['vcpus']},
    }


def _for_caller(ctxt: Any, result: Any) -> Any:
    """Drop the host from servers shown to non-administrators, as Nova's policy does."""
    if ctxt.is_admin or not isinstance(result, dict):
        return result
    for server in result.get('servers') or [result.get('server') or {}]:
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

    def show(self, req: Any, id: str, project_id: str | None = None) -> dict[str, Any]:
        live_image = _live_image_or_none(req.context, id, 'live_image:get')
        if live_image is not None:
            return _for_caller(req.context, {'server': nova_blessed(live_image)})
        return _for_caller(req.context,
                           {'server': nova_server(get_server(req.context, id, 'server:get'))})

    def delete(self, req: Any, id: str, project_id: str | None = None) -> Any:
        return self._translated(self._delete, req, id)

    def _delete(self, req: Any, id: str) -> tuple[int, None]:
        if _live_image_or_none(req.context, id, 'live_image:get') is not None:
            raise exception.Invalid(reason='server %s is blessed; discard it instead' % id)
        self.compute.delete_server(req.context, get_server(req.context, id, 'server:delete'))
        return 204, None

    def action(self, req: Any, id: str, project_id: str | None = None) -> Any:
        return _for_caller(req.context, self._translated(self._action, req, id))

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
        if name not in schema.cobalt_actions:
            raise exception.Invalid(reason='unknown action %s' % name)
        # Before any lookup or write: a bless with a bad name used to leave
        # the server in task_state "blessing".
        validation.validate(body, schema.cobalt_actions[name])
        handler = getattr(self, '_co_%s' % name[3:])
        return handler(req, id, args or {})

    def _co_bless(self, req: Any, id: str, args: dict[str, Any]) -> dict[str, Any]:
        server = get_server(req.context, id, 'live_image:bless')
        live_image = self.compute.bless(req.context, server, args.get('name'))
        return {'servers': [nova_blessed(live_image)]}

    def _co_launch(self, req: Any, id: str, args: dict[str, Any]) -> dict[str, Any]:
        live_image = _live_image_or_none(req.context, id, 'live_image:launch')
        if live_image is None:
            get_server(req.context, id, 'server:get')  # 404 if it is nothing at all
            raise exception.InvalidState(resource='Server', id=id, state='ACTIVE',
                                         reason='only a blessed server can be launched')
        check_forced_host(req.context, args.get('availability_zone'))
        clones = self.compute.launch(req.context, live_image, args)
        return {'servers': [nova_server(clones[0])]}

    def _co_discard(self, req: Any, id: str, args: dict[str, Any]) -> webob.Response:
        live_image = _live_image_or_none(req.context, id, 'live_image:discard')
        if live_image is None:
            get_server(req.context, id, 'server:get')
            raise exception.InvalidState(resource='Server', id=id, state='ACTIVE',
                                         reason='only a blessed server can be discarded')
        self.compute.discard(req.context, live_image)
        return wsgi.empty_response(200)  # Cobalt's answer: 200, no body

    def _co_list_launched(self, req: Any, id: str, args: dict[str, Any]) -> dict[str, Any]:
        live_image = get_live_image(req.context, id, 'live_image:get')
        clones = db_servers.server_get_all(live_image_id=live_image['id'])
        return {'servers': [nova_server(c) for c in clones]}

    def _co_list_blessed(self, req: Any, id: str, args: dict[str, Any]) -> dict[str, Any]:
        server = get_server(req.context, id, 'server:get')
        images = db_servers.live_image_get_all(server_id=server['id'],
                                               project_id=scope(req.context))
        return {'servers': [nova_blessed(i) for i in images]}


