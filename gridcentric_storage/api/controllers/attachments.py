"""/v1/attachments: connect volumes to compute hosts through os-brick; the image cache."""

from typing import Any

from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.controllers.volumes import VolumeAccess
from gridcentric_storage.api.schemas import attachments as schema
from gridcentric_storage.common import exception, rpc
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_cache
from gridcentric_storage.db.records import Attachment, Volume
from gridcentric_storage.volume import rpcapi as volume_rpcapi

CONF = cfg.CONF
_VIEW = ('id', 'volume_id', 'instance_uuid', 'mode', 'status', 'status_reason',
         'project_id')
#: Where on which host: the cloud's plumbing, for administrators only.
_ADMIN_VIEW = ('host', 'device_path')


def view(attachment: Attachment, is_admin: bool) -> dict[str, Any]:
    result = common.pick(attachment, _VIEW)
    if is_admin:
        result.update(common.pick(attachment, _ADMIN_VIEW))
    else:
        result['status_reason'] = common.for_member(attachment['status_reason'],
                                                    [attachment['host']])
        result['connection_info'] = _without_secrets(attachment['connection_info'])
    result['created_at'] = common.isotime(attachment['created_at'])
    return result


def _without_secrets(connection_info: dict[str, Any] | None) -> dict[str, Any] | None:
    if not connection_info:
        return connection_info
    data = {k: ('***' if 'password' in k or k == 'key' else v)
            for k, v in connection_info.get('data', {}).items()}
    return dict(connection_info, data=data)


class AttachmentsController(VolumeAccess):
    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'attachment:get_all')
        items = db_attachments.attachment_get_all(
            volume_id=req.GET.get('volume_id'),
            project_id=common.listing_project(req, 'volume:get_all_tenants'))
        return {'attachments': [view(a, req.context.is_admin) for a in items]}

    def _get(self, req: Any, id: str, action: str) -> Attachment:
        attachment = db_attachments.attachment_get(id, self.project_scope(req.context))
        policy.authorize(req.context, action, {'project_id': attachment['project_id']})
        return attachment

    def show(self, req: Any, id: str) -> dict[str, Any]:
        attachment = self._get(req, id, 'attachment:get')
        return {'attachment': view(attachment, req.context.is_admin)}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        ctxt = req.context
        policy.authorize(ctxt, 'attachment:create')
        data = body['attachment']
        volume = self.get_volume(req, data['volume_id'], 'volume:get')
        if data.get('host'):
            policy.authorize(ctxt, 'attachment:create_on_host')
        if data.get('instance_uuid'):
            self._check_instance(data['instance_uuid'], volume)
        host = data.get('host') or volume['host']
        up = [s['host'] for s in db.service_get_all(CONF.compute.topic, up_only=True)]
        if host not in up:
            if data.get('host'):
                raise exception.Invalid(reason='no compute service is up on host %s' % host)
            raise exception.ServiceUnavailable(reason="the compute service that owns the "
                                               "volume's backend is down")
        attachment = self.volumes.attach_on_host(ctxt, volume, host, data.get('instance_uuid'),
                                                 data.get('mode', 'rw'))
        return 202, {'attachment': view(attachment, ctxt.is_admin)}

    @staticmethod
    def _check_instance(instance_uuid: str, volume: Volume) -> None:
        """An attachment may name only a server of the volume's own project.

        Otherwise a member could hang their volume on another project's
        server, whose owner would then meet it in every bless.
        """
        try:
            db_servers.server_get(instance_uuid, project_id=volume['project_id'])
        except exception.ServerNotFound:
            raise exception.Invalid(reason='instance_uuid %s is not a server of the '
                                    "volume's project" % instance_uuid) from None

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        attachment = self._get(req, id, 'attachment:delete')
        self.volumes.detach_on_host(req.context, attachment)
        return 202, None


class ImageCacheController(VolumeAccess):
    """Admin view of the per-backend template cache."""

    rpcapi = rpc.LazyClient(volume_rpcapi.VolumeAPI)

    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'image_cache:get_all')
        entries = db_cache.cache_get_all(backend_id=req.GET.get('backend_id'))
        return {'image_cache': [
            dict(entry, created_at=common.isotime(entry['created_at']),
                 updated_at=common.isotime(entry['updated_at']),
                 last_used_at=common.isotime(entry['last_used_at'])) for entry in entries]}

    def delete(self, req: Any, id: str) -> None:
        policy.authorize(req.context, 'image_cache:delete')
        entry = db_cache.cache_get_entry(id)
        self.rpcapi.purge_image_cache(req.context, entry['host'], entry_id=id)

    @validation.body(schema.image_cache_action)
    def action(self, req: Any, body: dict[str, Any]) -> dict[str, Any]:
        policy.authorize(req.context, 'image_cache:delete')
        backend_id = body['purge'].get('backend_id')
        hosts = ({db.backend_get(backend_id)['host']} if backend_id else
                 {e['host'] for e in db_cache.cache_get_all()})
        purged = sum(self.rpcapi.purge_image_cache(req.context, host, backend_id=backend_id)
                     for host in sorted(hosts))
        return {'purged': purged}
