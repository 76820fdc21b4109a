"""/v1/volumes: create (blank, from a snapshot, a volume or an image), list, show, delete."""

from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.schemas import volumes as schema
from gridcentric_storage.common import exception, states
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Snapshot, Volume
from gridcentric_storage.image import store as image_store
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import migration, qos_enforce

CONF = cfg.CONF
_SORT_KEYS = ('created_at', 'name', 'size', 'status')
_PUBLIC = ('id', 'name', 'size', 'status', 'status_reason', 'backend_id', 'project_id',
           'user_id', 'tags', 'source_volid', 'snapshot_id', 'image_id', 'multiattach')
_ADMIN_ONLY = ('host', 'provider_location')


def view(volume: Volume, is_admin: bool) -> dict[str, Any]:
    result = {key: volume.get(key) for key in _PUBLIC}
    if is_admin:
        result.update({key: volume.get(key) for key in _ADMIN_ONLY})
    else:
        result['status_reason'] = common.for_member(volume['status_reason'],
                                                    [volume['host']])
    result['attachments'] = [
        dict({'id': a['id'], 'status': a['status'], 'instance_uuid': a['instance_uuid']},
             **({'host': a['host'], 'device_path': a['device_path']} if is_admin else {}))
        for a in db_attachments.attachment_get_all(volume_id=volume['id'])]
    # the limits that govern it, for its owner too; which specs, only for admins
    result['qos'] = qos_enforce.view(volume)
    if is_admin:
        result['qos_specs_id'] = volume.get('qos_specs_id')
        # Cinder's os-vol-mig-status-attr, under our own names too: members
        # see only the status ``migrating``.
        result['migration_status'] = volume.get('migration_status')
        result['migration_progress'] = volume.get('migration_progress')
        result['os-vol-mig-status-attr:migstat'] = volume.get('migration_status')
        result['os-vol-mig-status-attr:name_id'] = volume.get('name_id')
    result['created_at'] = common.isotime(volume['created_at'])
    result['updated_at'] = common.isotime(volume['updated_at'])
    return result


class VolumeAccess:
    """Project-scoped lookups shared by the volume, snapshot and attachment APIs."""

    volumes = volume_api.API()

    @staticmethod
    def project_scope(ctxt: Any) -> str | None:
        return None if policy.check(ctxt, 'volume:get_all_tenants') else ctxt.project_id

    def get_volume(self, req: Any, id: str, action: str) -> Volume:
        ctxt = req.context
        volume = db.volume_get(id, project_id=self.project_scope(ctxt))
        policy.authorize(ctxt, action, {'project_id': volume['project_id']})
        return volume

    def get_snapshot(self, req: Any, id: str, action: str) -> Snapshot:
        ctxt = req.context
        snapshot = db_snapshots.snapshot_get(id, project_id=self.project_scope(ctxt))
        policy.authorize(ctxt, action, {'project_id': snapshot['project_id']})
        return snapshot


class VolumesController(VolumeAccess):
    def index(self, req: Any) -> dict[str, Any]:
        ctxt = req.context
        policy.authorize(ctxt, 'volume:get_all')
        project = common.listing_project(req, 'volume:get_all_tenants')
        filters = {k: req.GET[k] for k in ('name', 'status', 'backend_id') if k in req.GET}
        page = common.pagination(req, _SORT_KEYS)
        items = [view(v, ctxt.is_admin)
                 for v in db.volume_get_all(project_id=project, filters=filters, **page)
                 # a migration's temporary destination is internal
                 if ctxt.is_admin or not migration.is_target(v)]
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
            if snapshot['status'] != states.SnapshotStatus.AVAILABLE:
                raise exception.InvalidState(resource='Snapshot', id=snapshot['id'],
                                             state=snapshot['status'],
                                             reason='only an available snapshot can be '
                                                    'the source of a volume')
            return ({'snapshot_id': snapshot['id'], 'backend_id': snapshot['backend_id']},
                    snapshot['volume_size'])
        if data.get('source_volid'):
            source = self.get_volume(req, data['source_volid'], 'volume:get')
            if source['status'] not in (states.VolumeStatus.AVAILABLE,
                                        states.VolumeStatus.IN_USE):
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
        volume = self.volumes.create(ctxt, data, origin, minimum,
                                        details=policy.check(ctxt, 'volume:placement_details'))
        return 202, {'volume': view(volume, ctxt.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:delete')
        cascade = validation.query_bool(req, 'cascade')
        force = validation.query_bool(req, 'force')
        if force:
            policy.authorize(req.context, 'volume:force_delete',
                             {'project_id': volume['project_id']})
        self.volumes.delete(req.context, volume, cascade=cascade, force=force)
        return 202, None
