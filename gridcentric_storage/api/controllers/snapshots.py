"""/v1/snapshots: point-in-time copies of volumes (copy-on-write where the backend has it)."""

from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.controllers.volumes import VolumeAccess
from gridcentric_storage.api.schemas import snapshots as schema
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Snapshot

CONF = cfg.CONF
_VIEW = ('id', 'name', 'volume_id', 'volume_size', 'status', 'status_reason', 'project_id')


def view(snapshot: Snapshot, is_admin: bool) -> dict[str, Any]:
    result = common.pick(snapshot, _VIEW)
    if not is_admin:
        result['status_reason'] = common.for_member(snapshot['status_reason'],
                                                    [snapshot['host']])
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
        return {'snapshots': [view(s, req.context.is_admin) for s in items]}

    def show(self, req: Any, id: str) -> dict[str, Any]:
        return {'snapshot': view(self.get_snapshot(req, id, 'snapshot:get'),
                                 req.context.is_admin)}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ctxt = req.context
        policy.authorize(ctxt, 'snapshot:create')
        data = body['snapshot']
        volume = self.get_volume(req, data['volume_id'], 'volume:get')
        snapshot = self.volumes.create_snapshot(ctxt, volume, data.get('name'),
                                                force=bool(data.get('force')))
        return 202, {'snapshot': view(snapshot, ctxt.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        snapshot = self.get_snapshot(req, id, 'snapshot:delete')
        self.volumes.delete_snapshot(req.context, snapshot)
        return 202, None
