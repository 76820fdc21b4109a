"""/v1/volumes: create, list, show, delete (project-scoped)."""

import threading
import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.schemas import volumes as schema
from gridcentric_storage.common import exception
from gridcentric_storage.compute import rpcapi
from gridcentric_storage.db import api as db
from gridcentric_storage.scheduler.request import RequestSpec
from gridcentric_storage.scheduler.scheduler import Scheduler

CONF = cfg.CONF
_SORT_KEYS = ('created_at', 'name', 'size', 'status')
_DELETABLE = ('available', 'error', 'error_deleting')
_PUBLIC = ('id', 'name', 'size', 'status', 'status_reason', 'backend_id', 'project_id',
           'user_id', 'tags')
_ADMIN_ONLY = ('host', 'provider_location')


def view(volume: dict[str, Any], is_admin: bool) -> dict[str, Any]:
    result = {key: volume[key] for key in _PUBLIC}
    if is_admin:
        result.update({key: volume[key] for key in _ADMIN_ONLY})
    result['created_at'] = common.isotime(volume['created_at'])
    result['updated_at'] = common.isotime(volume['updated_at'])
    return result


class VolumesController:
    def __init__(self) -> None:
        self._rpcapi: rpcapi.ComputeAPI | None = None
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    @property
    def rpcapi(self) -> rpcapi.ComputeAPI:
        if self._rpcapi is None:
            self._rpcapi = rpcapi.ComputeAPI()
        return self._rpcapi

    @property
    def scheduler(self) -> Scheduler:
        with self._lock:
            if self._scheduler is None:
                self._scheduler = Scheduler(CONF)
            return self._scheduler

    def _get(self, req: Any, id: str, action: str) -> dict[str, Any]:
        ctxt = req.context
        project = None if policy.check(ctxt, 'volume:get_all_tenants') else ctxt.project_id
        volume = db.volume_get(id, project_id=project)
        policy.authorize(ctxt, action, {'project_id': volume['project_id']})
        return volume

    def index(self, req: Any) -> dict[str, Any]:
        ctxt = req.context
        policy.authorize(ctxt, 'volume:get_all')
        project: str | None = ctxt.project_id
        if validation.query_bool(req, 'all_tenants'):
            policy.authorize(ctxt, 'volume:get_all_tenants')
            project = None
        filters = {k: req.GET[k] for k in ('name', 'status', 'backend_id') if k in req.GET}
        page = common.pagination(req, _SORT_KEYS)
        items = [view(v, ctxt.is_admin)
                 for v in db.volume_get_all(project_id=project, filters=filters, **page)]
        result: dict[str, Any] = {'volumes': items}
        links = common.next_links(req, 'volumes', items, page['limit'])
        if links:
            result['volumes_links'] = links
        return result

    def show(self, req: Any, id: str) -> dict[str, Any]:
        return {'volume': view(self._get(req, id, 'volume:get'), req.context.is_admin)}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ctxt = req.context
        policy.authorize(ctxt, 'volume:create')
        data = body['volume']
        if data.get('backend_id'):
            policy.authorize(ctxt, 'volume:create_on_backend')
        spec = RequestSpec.from_volume_request(data)
        placement = self.scheduler.select(spec, db.backend_get_all())
        backend = placement.backend
        volume = db.volume_create({
            'id': str(uuid.uuid4()), 'name': data.get('name'),
            'project_id': ctxt.project_id, 'user_id': ctxt.user_id,
            'size': data['size'], 'status': 'creating', 'backend_id': backend['id'],
            'host': backend['host'], 'tags': data.get('tags', []),
        })
        self.rpcapi.create_volume(ctxt, backend['host'], volume['id'])
        return 202, {'volume': view(volume, ctxt.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        volume = self._get(req, id, 'volume:delete')
        if volume['status'] not in _DELETABLE:
            raise exception.InvalidState(
                resource='Volume', id=id, state=volume['status'],
                reason='only volumes that are %s can be deleted' % ', '.join(_DELETABLE))
        volume = db.volume_update(id, {'status': 'deleting', 'status_reason': None},
                                  expected_status=_DELETABLE)
        self.rpcapi.delete_volume(req.context, volume['host'], id)
        return 202, None
