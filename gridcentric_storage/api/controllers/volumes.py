"""/v1/volumes: create (blank, from a snapshot, a volume or an image), list, show, delete."""

import math
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
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.image import store as image_store
from gridcentric_storage.scheduler import visibility
from gridcentric_storage.scheduler.request import RequestSpec
from gridcentric_storage.scheduler.scheduler import Scheduler

CONF = cfg.CONF
GiB = 1 << 30
_SORT_KEYS = ('created_at', 'name', 'size', 'status')
DELETABLE = ('available', 'error', 'error_deleting', 'in-use')
_PUBLIC = ('id', 'name', 'size', 'status', 'status_reason', 'backend_id', 'project_id',
           'user_id', 'tags', 'source_volid', 'snapshot_id', 'image_id', 'multiattach')
_ADMIN_ONLY = ('host', 'provider_location')


def view(volume: dict[str, Any], is_admin: bool) -> dict[str, Any]:
    result = {key: volume.get(key) for key in _PUBLIC}
    if is_admin:
        result.update({key: volume.get(key) for key in _ADMIN_ONLY})
    result['attachments'] = [
        dict({'id': a['id'], 'status': a['status'], 'instance_uuid': a['instance_uuid']},
             **({'host': a['host'], 'device_path': a['device_path']} if is_admin else {}))
        for a in db_attachments.attachment_get_all(volume_id=volume['id'])]
    result['created_at'] = common.isotime(volume['created_at'])
    result['updated_at'] = common.isotime(volume['updated_at'])
    return result


class VolumeAccess:
    """Project-scoped lookups shared by the volume, snapshot and attachment APIs."""

    rpcapi = rpcapi.LazyComputeAPI()

    @staticmethod
    def project_scope(ctxt: Any) -> str | None:
        return None if policy.check(ctxt, 'volume:get_all_tenants') else ctxt.project_id

    def get_volume(self, req: Any, id: str, action: str) -> dict[str, Any]:
        ctxt = req.context
        volume = db.volume_get(id, project_id=self.project_scope(ctxt))
        policy.authorize(ctxt, action, {'project_id': volume['project_id']})
        return volume

    def get_snapshot(self, req: Any, id: str, action: str) -> dict[str, Any]:
        ctxt = req.context
        snapshot = db_snapshots.snapshot_get(id, project_id=self.project_scope(ctxt))
        policy.authorize(ctxt, action, {'project_id': snapshot['project_id']})
        return snapshot


class VolumesController(VolumeAccess):
    def __init__(self) -> None:
        super().__init__()
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Scheduler:
        with self._lock:
            if self._scheduler is None:
                self._scheduler = Scheduler(CONF)
            return self._scheduler

    def _place(self, ctxt: Any, spec: RequestSpec) -> dict[str, Any]:
        details = policy.check(ctxt, 'volume:placement_details')
        if not details:
            visibility.check_member_request(spec)
        try:
            return self.scheduler.select(spec, db.backend_get_all()).backend
        except exception.NoValidBackend as e:
            if details:
                raise
            raise visibility.member_error(e, spec) from None

    def index(self, req: Any) -> dict[str, Any]:
        ctxt = req.context
        policy.authorize(ctxt, 'volume:get_all')
        project = common.listing_project(req, 'volume:get_all_tenants')
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
        return {'volume': view(self.get_volume(req, id, 'volume:get'), req.context.is_admin)}

    def _source(self, req: Any, data: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        """Fields the source fixes (backend, origin) and the smallest size it allows."""
        sources = [k for k in ('source_volid', 'snapshot_id', 'imageRef') if data.get(k)]
        if len(sources) > 1:
            raise exception.Invalid(reason='give at most one of source_volid, snapshot_id '
                                    'and imageRef, not %s' % ' and '.join(sources))
        if data.get('snapshot_id'):
            snapshot = self.get_snapshot(req, data['snapshot_id'], 'snapshot:get')
            if snapshot['status'] != 'available':
                raise exception.InvalidState(resource='Snapshot', id=snapshot['id'],
                                             state=snapshot['status'],
                                             reason='only an available snapshot can be '
                                                    'the source of a volume')
            return ({'snapshot_id': snapshot['id'], 'backend_id': snapshot['backend_id']},
                    snapshot['volume_size'])
        if data.get('source_volid'):
            source = self.get_volume(req, data['source_volid'], 'volume:get')
            if source['status'] not in ('available', 'in-use'):
                raise exception.InvalidState(resource='Volume', id=source['id'],
                                             state=source['status'],
                                             reason='only an available or in-use volume '
                                                    'can be cloned')
            return ({'source_volid': source['id'], 'backend_id': source['backend_id']},
                    source['size'])
        if data.get('imageRef'):
            # A member's host path is refused here, before any RPC; the compute
            # host resolves the rest (names, an admin's allowed paths) itself.
            image_store.check_reference(req.context, data['imageRef'])
            return {'image_id': data['imageRef']}, None
        return {}, None

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ctxt = req.context
        policy.authorize(ctxt, 'volume:create')
        data = dict(body['volume'])
        if data.get('backend_id'):
            policy.authorize(ctxt, 'volume:create_on_backend')
        origin, minimum = self._source(req, data)
        if 'backend_id' in origin:
            data['backend_id'] = origin['backend_id']  # copy-on-write needs the same backend
        size = data.get('size') or minimum
        if size is None and 'image_id' not in origin:
            raise exception.ValidationError(field='size', reason="'size' is a required "
                                            'property')
        spec = RequestSpec.from_volume_request(dict(data, size=size or 1))
        backend = self._place(ctxt, spec)
        if 'image_id' in origin:
            info = self.rpcapi.get_image_info(ctxt, backend['host'], origin['image_id'])
            image_gb = max(1, math.ceil(info['virtual_size'] / GiB))
            size = size or image_gb
            minimum = image_gb
        assert size is not None
        if minimum is not None and size < minimum:
            raise exception.ValidationError(
                field='size', reason='%d GiB is smaller than its source (%d GiB)'
                % (size, minimum))
        volume = db.volume_create(dict(
            origin, id=str(uuid.uuid4()), name=data.get('name'),
            project_id=ctxt.project_id, user_id=ctxt.user_id, size=size,
            status='creating', backend_id=backend['id'], host=backend['host'],
            tags=data.get('tags', []), multiattach=data.get('multiattach', False)))
        self.rpcapi.create_volume(ctxt, backend['host'], volume['id'])
        return 202, {'volume': view(volume, ctxt.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:delete')
        cascade = validation.query_bool(req, 'cascade')
        force = validation.query_bool(req, 'force')
        if force:
            policy.authorize(req.context, 'volume:force_delete',
                             {'project_id': volume['project_id']})
        attachments = db_attachments.attachment_get_all(volume_id=id)
        if (attachments or volume['status'] == 'in-use') and not force:
            raise exception.InvalidState(
                resource='Volume', id=id, state=volume['status'],
                reason='it has %d attachment(s); detach it first or delete with '
                       '?force=true' % len(attachments))
        snapshots = db_snapshots.snapshot_get_all(volume_id=id)
        if snapshots and not cascade:
            raise exception.InvalidState(
                resource='Volume', id=id, state=volume['status'],
                reason='it has %d snapshot(s); delete them first or use ?cascade=true'
                % len(snapshots))
        if volume['status'] not in DELETABLE:
            raise exception.InvalidState(
                resource='Volume', id=id, state=volume['status'],
                reason='only volumes that are %s can be deleted' % ', '.join(DELETABLE))
        volume = db.volume_update(id, {'status': 'deleting', 'status_reason': None},
                                  expected_status=DELETABLE)
        self.rpcapi.delete_volume(req.context, volume['host'], id, cascade=cascade)
        return 202, None
