"""/v1/servers and /v1/live-images: VMs, blessing them, launching clones."""

from typing import Any

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.schemas import servers as schema
from gridcentric_storage.common import exception
from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import Attachment, LiveImage, Server

_SERVER_VIEW = ('id', 'name', 'status', 'task_state', 'fault', 'host', 'availability_zone',
                'memory_mb', 'vcpus', 'volume_id', 'kernel', 'initrd', 'cmdline', 'mac',
                'live_image_id', 'launch_index', 'key_name', 'guest', 'project_id',
                'user_id')
_IMAGE_VIEW = ('id', 'name', 'status', 'status_reason', 'server_id', 'host', 'memory_mb',
               'vcpus', 'project_id')


#: Which host runs it: the cloud's plumbing, as Nova's OS-EXT-SRV-ATTR:host.
_ADMIN_ONLY = ('host',)


def server_view(server: Server, is_admin: bool = False) -> dict[str, Any]:
    result = common.pick(server, [key for key in _SERVER_VIEW
                                  if is_admin or key not in _ADMIN_ONLY])
    if not is_admin:
        result['fault'] = common.for_member(server['fault'], [server['host']])
    result['created_at'] = common.isotime(server['created_at'])
    result['updated_at'] = common.isotime(server['updated_at'])
    return result


def live_image_view(live_image: LiveImage, is_admin: bool = False) -> dict[str, Any]:
    result = common.pick(live_image, [key for key in _IMAGE_VIEW
                                      if is_admin or key not in _ADMIN_ONLY])
    if not is_admin:
        result['status_reason'] = common.for_member(live_image['status_reason'],
                                                    [live_image['host']])
    # Where its copy is (and why publishing failed) is the cloud's plumbing;
    # members learn only that its clones may start on any host.
    published = live_image.get('publish_status') == 'published'
    result['launch_anywhere'] = published
    if is_admin:
        result['publish_status'] = live_image.get('publish_status') or 'none'
        result['publish_reason'] = live_image.get('publish_reason')
    result['created_at'] = common.isotime(live_image['created_at'])
    return result


def scope(ctxt: Any) -> str | None:
    """The project a lookup by id is limited to: none for administrators."""
    return None if policy.check(ctxt, 'server:get_all_tenants') else ctxt.project_id


def get_server(ctxt: Any, id: str, action: str) -> Server:
    server = db_servers.server_get(id, project_id=scope(ctxt))
    policy.authorize(ctxt, action, {'project_id': server['project_id']})
    return server


def check_forced_host(ctxt: Any, availability_zone: str | None) -> None:
    """Nova's ``az:host`` picks a host: the cloud's plumbing, for administrators."""
    if availability_zone and ':' in availability_zone:
        policy.authorize(ctxt, 'server:create:forced_host')


def get_live_image(ctxt: Any, id: str, action: str) -> LiveImage:
    """One of this service's own live images. Those of Nova instances are Nova's
    servers' and live behind Nova's endpoint (``nova.api``): not found here."""
    live_image = db_servers.live_image_get(id, project_id=scope(ctxt))
    if live_image['nova_source']:
        raise exception.LiveImageNotFound(id=id)
    policy.authorize(ctxt, action, {'project_id': live_image['project_id']})
    return live_image


class ServersController:
    def __init__(self) -> None:
        self.compute = compute_api.ComputeAPI()

    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'server:get_all')
        project = common.listing_project(req, 'server:get_all_tenants')
        servers = db_servers.server_get_all(project_id=project)
        return {'servers': [server_view(s, req.context.is_admin) for s in servers]}

    def show(self, req: Any, id: str) -> dict[str, Any]:
        return {'server': server_view(get_server(req.context, id, 'server:get'),
                                      req.context.is_admin)}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        policy.authorize(req.context, 'server:create')
        check_forced_host(req.context, body['server'].get('availability_zone'))
        server = self.compute.create_server(req.context, body['server'])
        return 202, {'server': server_view(server, req.context.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        server = get_server(req.context, id, 'server:delete')
        self.compute.delete_server(req.context, server)
        return 204, None

    @validation.body(schema.action)
    def action(self, req: Any, id: str, body: dict[str, Any]) -> dict[str, Any]:
        server = get_server(req.context, id, 'server:console')
        length = body['os-getConsoleOutput'].get('length')
        return {'output': self.compute.console_output(req.context, server, length)}


class VolumeAttachmentsController:
    """Nova's shape: /v1/servers/{id}/os-volume_attachments."""

    def __init__(self) -> None:
        self.compute = compute_api.ComputeAPI()

    @staticmethod
    def _view(attachment: Attachment) -> dict[str, Any]:
        return {'id': attachment['id'], 'volumeId': attachment['volume_id'],
                'serverId': attachment['instance_uuid'], 'status': attachment['status'],
                'mode': attachment['mode']}

    def index(self, req: Any, server_id: str) -> dict[str, Any]:
        server = get_server(req.context, server_id, 'server:get')
        rows = db_attachments.attachment_get_all(project_id=server['project_id'],
                                                 instance_uuid=server_id)
        return {'volumeAttachments': [self._view(a) for a in rows]}

    @validation.body(schema.volume_attach)
    def create(self, req: Any, server_id: str, body: dict[str, Any]
               ) -> tuple[int, dict[str, Any]]:
        server = get_server(req.context, server_id, 'server:attach_volume')
        data = body['volumeAttachment']
        attachment = self.compute.attach_volume(req.context, server, data['volumeId'],
                                                data.get('mode', 'rw'))
        return 202, {'volumeAttachment': self._view(attachment)}

    def delete(self, req: Any, server_id: str, id: str) -> tuple[int, None]:
        server = get_server(req.context, server_id, 'server:attach_volume')
        self.compute.detach_volume(req.context, server, id)
        return 202, None


class LiveImagesController:
    def __init__(self) -> None:
        self.compute = compute_api.ComputeAPI()

    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'live_image:get_all')
        project = common.listing_project(req, 'server:get_all_tenants')
        images = db_servers.live_image_get_all(project_id=project,
                                               server_id=req.GET.get('server_id'))
        return {'live_images': [live_image_view(i, req.context.is_admin) for i in images
                                if not i['nova_source']]}

    def show(self, req: Any, id: str) -> dict[str, Any]:
        return {'live_image': live_image_view(
            get_live_image(req.context, id, 'live_image:get'), req.context.is_admin)}

    @validation.body(schema.bless)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        data = body['live_image']
        server = get_server(req.context, data['server_id'], 'live_image:bless')
        live_image = self.compute.bless(req.context, server, data.get('name'))
        return 202, {'live_image': live_image_view(live_image, req.context.is_admin)}

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        live_image = get_live_image(req.context, id, 'live_image:discard')
        self.compute.discard(req.context, live_image)
        return 202, None

    @validation.body(schema.live_image_action)
    def action(self, req: Any, id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        live_image = get_live_image(req.context, id, 'live_image:launch')
        check_forced_host(req.context, body['launch'].get('availability_zone'))
        clones = self.compute.launch(req.context, live_image, body['launch'])
        return 202, {'servers': [server_view(c, req.context.is_admin) for c in clones]}

    def servers(self, req: Any, id: str) -> dict[str, Any]:
        live_image = get_live_image(req.context, id, 'live_image:get')
        clones = db_servers.server_get_all(live_image_id=live_image['id'])
        return {'servers': [server_view(c, req.context.is_admin) for c in clones]}


def require_not_live_image(id: str) -> None:
    """A blessed server id names a live image: Cobalt's 'discard it instead'."""
    try:
        db_servers.live_image_get(id)
    except exception.LiveImageNotFound:
        return
    raise exception.Invalid(reason='%s is a blessed live image; discard it instead' % id)
