"""/v1/snapshots: point-in-time copies of volumes (copy-on-write where the backend has it)."""

import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.controllers.volumes import VolumeAccess
from gridcentric_storage.api.schemas import snapshots as schema
from gridcentric_storage.common import exception
from gridcentric_storage.db import snapshots as db_snapshots

CONF = cfg.CONF
_VIEW = ('id', 'name', 'volume_id', 'volume_size', 'status', 'status_reason', 'project_id')


def view(snapshot: dict[str, Any]) -> dict[str, Any]:
    result = {key: snapshot[key] for key in _VIEW}
    result['size'] = snapshot['volume_size']
    result['created_at'] = common.isotime(snapshot['created_at'])
    result['updated_at'] = common.isotime(snapshot['updated_at'])
    return result


class SnapshotsController(VolumeAccess):
    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'snapshot:get_all')
        project = common.listing_project(req, 'volume:get_all_tenants')
        items = db_snapshots.snapshot_get_all(project_id=project,
                                              volume_id=req.GET.get('volume_id'))
        return {'snapshots': [view(s) for s in items]}

    def show(self, req: Any, id: str) -> dict[str, Any]:
        return {'snapshot': view(self.get_snapshot(req, id, 'snapshot:get'))}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ctxt = req.context
        policy.authorize(ctxt, 'snapshot:create')
        data = body['snapshot']
        volume = self.get_volume(req, data['volume_id'], 'volume:get')
        allowed = ('available', 'in-use') if data.get('force') else ('available',)
        if volume['status'] not in allowed:
            hint = ('; add "force": true to snapshot an attached volume'
                    if volume['status'] == 'in-use' else '')
            raise exception.InvalidState(
                resource='Volume', id=volume['id'], state=volume['status'],
                reason='a snapshot needs it to be %s%s' % (' or '.join(allowed), hint))
        existing = db_snapshots.snapshot_get_all(volume_id=volume['id'])
        if len(existing) >= CONF.volume.max_snapshots_per_volume:
            raise exception.Conflict(reason='volume %s already has %d snapshots (limit %d)'
                                     % (volume['id'], len(existing),
                                        CONF.volume.max_snapshots_per_volume))
        snapshot = db_snapshots.snapshot_create({
            'id': str(uuid.uuid4()), 'name': data.get('name'),
            'project_id': ctxt.project_id, 'user_id': ctxt.user_id,
            'volume_id': volume['id'], 'volume_size': volume['size'], 'status': 'creating',
            'backend_id': volume['backend_id'], 'host': volume['host']})
        self.rpcapi.create_snapshot(ctxt, volume['host'], snapshot['id'])
        return 202, {'snapshot': view(snapshot)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        snapshot = self.get_snapshot(req, id, 'snapshot:delete')
        deletable = ('available', 'error', 'error_deleting')
        if snapshot['status'] not in deletable:
            raise exception.InvalidState(resource='Snapshot', id=id, state=snapshot['status'],
                                         reason='only %s snapshots can be deleted'
                                         % ', '.join(deletable))
        db_snapshots.snapshot_update(id, {'status': 'deleting'}, expected_status=deletable)
        self.rpcapi.delete_snapshot(req.context, snapshot['host'], id)
        return 202, None
