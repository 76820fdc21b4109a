"""The compute API: servers and live images, for both dialects of the API.

The REST controllers (``/v1/servers``, ``/v1/live-images``) and the
Nova-compatible ``co_*`` actions call it; it checks state, places servers
(``scheduler.hosts``), writes the DB rows and casts the work to the compute
host. With ``compute.servers`` and ``compute.live_images`` on the host, it is
the only writer of server and live-image status. Volumes are reached through
``volume.api``.
"""

import base64
import binascii
import random
import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import exception, rpc
from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.common.states import ServerStatus, ServerTask
from gridcentric_storage.compute import rpcapi
from gridcentric_storage.compute.status import set_live_image, set_server
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import models
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import Attachment, LiveImage, Server
from gridcentric_storage.image import store as image_store
from gridcentric_storage.scheduler import hosts
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import rpcapi as volume_rpcapi

CONF = cfg.CONF


class ComputeAPI:
    rpcapi = rpc.LazyClient(rpcapi.ComputeAPI)
    volume_rpcapi = rpc.LazyClient(volume_rpcapi.VolumeAPI)

    def __init__(self) -> None:
        self.volumes = volume_api.API()

    @staticmethod
    def _check_quota(ctxt: Any, count: int) -> None:
        limit = CONF.compute.max_servers_per_project
        if not limit:
            return
        used = db.row_count(models.Server, {'project_id': ctxt.project_id})
        if used + count > limit:
            raise exception.QuotaExceeded(
                reason='project %s has %d of %d servers; %d more requested'
                % (ctxt.project_id, used, limit, count))

    @staticmethod
    def _new_mac() -> str:
        return 'fa:16:3e:%02x:%02x:%02x' % tuple(random.randint(0, 255) for _ in range(3))

    # ---- servers
    def create_server(self, ctxt: Any, data: dict[str, Any]) -> Server:
        if bool(data.get('volume_id')) == bool(data.get('kernel')):
            raise exception.Invalid(reason='give either volume_id or kernel (with initrd '
                                    'and cmdline) to boot from')
        # Kernel and initrd are images of the store; a member's host path is a 403
        # before anything is written (QEMU would open it as root).
        boot_files = [data[k] for k in ('kernel', 'initrd') if data.get(k)]
        for ref in boot_files:
            image_store.check_reference(ctxt, ref, 'boot file')
        if data.get('volume_id'):
            volume = db.volume_get(data['volume_id'], project_id=ctxt.project_id)
            if volume['status'] != st.VolumeStatus.AVAILABLE:
                raise exception.InvalidState(resource='Volume', id=volume['id'],
                                             state=volume['status'],
                                             reason='a server boots from an available '
                                                    'volume')
        self._check_quota(ctxt, 1)
        server_id = data.get('id') or str(uuid.uuid4())
        try:
            db_servers.server_get(server_id)
        except exception.ServerNotFound:
            pass
        else:
            raise exception.Conflict(reason='server %s exists already' % server_id)
        host = hosts.select_host(data.get('availability_zone'))
        if boot_files:
            self.volume_rpcapi.check_images(ctxt, host, boot_files)
        server = db_servers.server_create({
            'id': server_id, 'name': data['name'], 'project_id': ctxt.project_id,
            'user_id': ctxt.user_id, 'host': host,
            'availability_zone': data.get('availability_zone'),
            'status': ServerStatus.BUILD, 'memory_mb': data['memory_mb'],
            'vcpus': data.get('vcpus', 1), 'kernel': data.get('kernel'),
            'initrd': data.get('initrd'), 'cmdline': data.get('cmdline'),
            'volume_id': data.get('volume_id'), 'mac': self._new_mac(),
            'vmgenid': str(uuid.uuid4()), 'guest': {}, 'extra': {}})
        self.rpcapi.spawn_server(ctxt, host, server_id)
        return server

    def delete_server(self, ctxt: Any, server: Server) -> None:
        if server['task_state'] in (ServerTask.BLESSING, ServerTask.DELETING):
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['task_state'],
                                         reason='wait until it finishes')
        self._check_no_live_image_on_disks(server)
        set_server(server['id'], {'task_state': ServerTask.DELETING})
        self.rpcapi.destroy_server(ctxt, server['host'], server['id'])

    @staticmethod
    def _check_no_live_image_on_disks(server: Server) -> None:
        """A clone's disks go with it, snapshots and all: refuse while a live image
        blessed from the clone still uses those snapshots (as a volume with
        snapshots is not deleted without them)."""
        if not (server.get('extra') or {}).get('volumes'):
            return
        for live_image in db_servers.live_image_get_all(server_id=server['id']):
            if (live_image['artifacts'] or {}).get('disks'):
                raise exception.InvalidState(
                    resource='Server', id=server['id'], state='the source of a live image',
                    reason='live image %s was blessed from it and uses its disks; discard '
                    'the live image first' % live_image['id'])

    def pause(self, ctxt: Any, server: Server) -> None:
        self._settled(server, ServerStatus.ACTIVE, 'pause')
        self.rpcapi.pause_server(ctxt, server['host'], server['id'])

    def unpause(self, ctxt: Any, server: Server) -> None:
        self._settled(server, ServerStatus.PAUSED, 'unpause')
        self.rpcapi.unpause_server(ctxt, server['host'], server['id'])

    @staticmethod
    def _settled(server: Server, status: ServerStatus, action: str) -> None:
        if server['status'] != status or server['task_state']:
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['task_state'] or server['status'],
                                         reason='%s needs it %s with no task running'
                                         % (action, status))

    def console_output(self, ctxt: Any, server: Server, length: int | None) -> str:
        if server['status'] not in (ServerStatus.ACTIVE, ServerStatus.ERROR):
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['status'],
                                         reason='it has no console yet')
        return self.rpcapi.get_console_output(ctxt, server['host'], server['id'],
                                              None if length in (None, -1) else length)

    def attach_volume(self, ctxt: Any, server: Server, volume_id: str,
                      mode: str) -> Attachment:
        if server['status'] != ServerStatus.ACTIVE or server['task_state']:
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['task_state'] or server['status'],
                                         reason='volumes attach to ACTIVE servers')
        volume = db.volume_get(volume_id, project_id=server['project_id'])
        if volume['status'] != st.VolumeStatus.AVAILABLE:
            raise exception.InvalidState(resource='Volume', id=volume_id,
                                         state=volume['status'],
                                         reason='only an available volume can be attached')
        attachment = self.volumes.attach(ctxt, volume, server['host'], server['id'], mode)
        self.rpcapi.attach_server_volume(ctxt, server['host'], server['id'], attachment['id'])
        return attachment

    def detach_volume(self, ctxt: Any, server: Server, volume_id: str) -> None:
        found = db_attachments.attachment_get_all(volume_id=volume_id,
                                                  instance_uuid=server['id'])
        if not found:
            raise exception.NotFound('Volume %s is not attached to server %s'
                                     % (volume_id, server['id']))
        if found[0]['status'] not in (st.AttachmentStatus.ATTACHED,
                                      st.AttachmentStatus.ERROR):
            raise exception.InvalidState(resource='Attachment', id=found[0]['id'],
                                         state=found[0]['status'],
                                         reason='wait until it settles')
        if server.get('volume_id') == volume_id:
            raise exception.Invalid(reason='volume %s is the root disk of server %s'
                                    % (volume_id, server['id']))
        self.volumes.begin_detach(ctxt, found[0])
        self.rpcapi.detach_server_volume(ctxt, server['host'], server['id'], found[0]['id'])

    # ---- live migration (the host side: compute.server_migration)
    def migrate(self, ctxt: Any, server: Server, dest: str | None) -> str:
        """Move a running server to ``dest`` (or the host the scheduler picks) while
        its guest runs; the destination host, once the source host was asked.
        Everything that would make the move fail for sure is refused here, before
        anything starts: a clone whose memory the destination cannot map, a disk
        only its own host can open, a host whose driver cannot migrate."""
        if server['status'] != ServerStatus.ACTIVE or server['task_state']:
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['task_state'] or server['status'],
                                         reason='only an ACTIVE server with no task running '
                                                'can be migrated')
        live_image = (db_servers.live_image_get(server['live_image_id'])
                      if server['live_image_id'] else None)
        able = None
        if live_image is not None:
            # A clone maps its live image's RAM file: on its blessing host, or the
            # published copy on a host with the store (as a remote launch does).
            able = {live_image['host']}
            if live_image.get('publish_status') == 'published':
                able |= {s['host'] for s in db.service_get_all(CONF.compute.topic,
                                                               up_only=True)
                         if (s.get('capabilities') or {}).get('live_image_store')}
        dest = hosts.select_migration_host(dest, server['host'], able)
        if live_image is not None and able is not None and dest not in able:
            raise exception.ServerMigrationRefused(
                id=server['id'], reason='it is a clone of live image %s, which is not '
                'published, and the destination did not bless it' % live_image['id'])
        caps = {s['host']: s.get('capabilities') or {}
                for s in db.service_get_all(CONF.compute.topic)}
        for host in (server['host'], dest):
            if not caps.get(host, {}).get('server_migration'):
                raise exception.ServerMigrationRefused(
                    id=server['id'], reason='the hypervisor driver of host %s cannot '
                    'live-migrate servers' % host)
        self._check_disks_reachable(server, dest)
        st.SERVER_TASK.check(server['id'], '', ServerTask.MIGRATING)
        # One statement claims the task: of two racing requests exactly one starts.
        db_servers.server_update(
            server['id'], {'task_state': ServerTask.MIGRATING,
                           'extra': dict(server['extra'] or {}, migration={'dest': dest})},
            expected_status=(ServerStatus.ACTIVE,), match={'task_state': None})
        self.rpcapi.migrate_server(ctxt, server['host'], server['id'])
        return dest

    @staticmethod
    def _check_disks_reachable(server: Server, dest: str) -> None:
        """A volume on a network backend is connected on the destination as on any
        host; a local file of another host is not reachable from there."""
        for attachment in db_attachments.attachment_get_all(instance_uuid=server['id']):
            if attachment['status'] != st.AttachmentStatus.ATTACHED:
                raise exception.InvalidState(resource='Attachment', id=attachment['id'],
                                             state=attachment['status'],
                                             reason='wait until it settles')
            kind = (attachment['connection_info'] or {}).get('driver_volume_type')
            volume = db.volume_get(attachment['volume_id'])
            if kind == 'local' and volume['host'] != dest:
                raise exception.ServerMigrationRefused(
                    id=server['id'], reason='volume %s is a local file of host %s, which '
                    'the destination cannot open; move it to a network backend first (the '
                    'volume action migrate, which works while it is attached)'
                    % (volume['id'], volume['host']))

    # ---- live images
    def bless(self, ctxt: Any, server: Server, name: str | None) -> LiveImage:
        if server['status'] != ServerStatus.ACTIVE or server['task_state']:
            raise exception.InvalidState(resource='Server', id=server['id'],
                                         state=server['task_state'] or server['status'],
                                         reason='only an ACTIVE server can be blessed')
        st.SERVER_TASK.check(server['id'], '', ServerTask.BLESSING)
        # One statement claims the task: of two racing blesses exactly one starts.
        db_servers.server_update(server['id'], {'task_state': ServerTask.BLESSING},
                                 expected_status=(ServerStatus.ACTIVE,),
                                 match={'task_state': None})
        try:
            count = len(db_servers.live_image_get_all(server_id=server['id']))
            live_image = db_servers.live_image_create({
                'id': str(uuid.uuid4()), 'name': name or '%s-%d' % (server['name'], count),
                'project_id': server['project_id'], 'user_id': ctxt.user_id,
                'server_id': server['id'], 'host': server['host'], 'status': L.BLESSING,
                'memory_mb': server['memory_mb'], 'vcpus': server['vcpus']})
        except Exception:
            # No live image, so no bless will ever end this task state.
            set_server(server['id'], {'task_state': None})
            raise
        self.rpcapi.bless_server(ctxt, server['host'], live_image['id'])
        return live_image

    def launch(self, ctxt: Any, live_image: LiveImage, params: dict[str, Any],
               numbered: bool = True) -> list[Server]:
        """``numbered``: clones of a multiple launch are named ``<name>-<index>``;
        Cobalt's dialect gives every clone the launch's name unchanged."""
        if live_image['status'] != L.BLESSED:
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='only a blessed live image can be launched')
        count = params.get('num_instances', 1)
        self._check_quota(ctxt, count)
        # Published: any host with the store may map it (compute.live_image_mounts).
        host = hosts.select_clone_host(params.get('availability_zone'), live_image['host'],
                                       live_image.get('publish_status') == 'published')
        user_data = params.get('user_data')
        if user_data:
            try:
                user_data = base64.b64decode(user_data, validate=True).decode('utf-8',
                                                                              'replace')
            except (binascii.Error, ValueError):
                raise exception.Invalid(reason='user_data must be base64')
        guest = dict(params.get('params') or {}, **(params.get('guest') or {}))
        base_name = params.get('name') or '%s-clone' % live_image['name']
        clones = []
        for index in range(count):
            name = base_name if count == 1 or not numbered else '%s-%d' % (base_name, index)
            clones.append(db_servers.server_create({
                'id': str(uuid.uuid4()), 'name': name, 'project_id': ctxt.project_id,
                'user_id': ctxt.user_id, 'host': host,
                'availability_zone': params.get('availability_zone'),
                'status': ServerStatus.BUILD,
                'memory_mb': live_image['memory_mb'], 'vcpus': live_image['vcpus'],
                'mac': self._new_mac(), 'vmgenid': str(uuid.uuid4()),
                'live_image_id': live_image['id'], 'launch_index': index,
                'key_name': params.get('key_name'), 'user_data': user_data,
                'guest': guest, 'extra': {'volumes': []}}))
        # Clones first, then the check: a discard marks the image first, then
        # looks for clones, so one of two racing requests always sees the other.
        current = db_servers.live_image_get(live_image['id'])
        if current['status'] != L.BLESSED:
            for clone in clones:
                db_servers.server_destroy(clone['id'])
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=current['status'],
                                         reason='only a blessed live image can be launched')
        # Each clone's host makes its disks (by calls to their owners) as the
        # first step of its launch: one workflow, nothing to wait for here.
        for clone in clones:
            self.rpcapi.launch_server(ctxt, host, clone['id'])
        return clones

    def discard(self, ctxt: Any, live_image: LiveImage) -> None:
        clones = db_servers.server_get_all(live_image_id=live_image['id'])
        if clones:
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='%d server(s) launched from it still exist; '
                                                'delete them first' % len(clones))
        if live_image['status'] in (L.BLESSING, L.DISCARDING):
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='wait until it settles')
        if live_image.get('publish_status') == 'publishing':
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='it is being published; wait until that '
                                                'ends')
        set_live_image(live_image['id'], L.DISCARDING, live_image['status'])
        raced = db_servers.server_get_all(live_image_id=live_image['id'])
        if raced:  # a launch created clones meanwhile: it wins
            set_live_image(live_image['id'], L(live_image['status']), L.DISCARDING)
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='%d server(s) were launched from it '
                                                'meanwhile' % len(raced))
        self.rpcapi.discard_live_image(ctxt, live_image['host'], live_image['id'])

    # ---- export and import (Cobalt's co_export, co-import-server)
    def export(self, ctxt: Any, live_image: LiveImage) -> dict[str, Any]:
        """Pack a blessed live image into the caller's image store (on its host);
        the image's name, sha256 and size."""
        if live_image['status'] != L.BLESSED:
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='only a blessed live image can be exported')
        if (live_image['artifacts'] or {}).get('disks'):
            raise exception.Invalid(reason='live image %s has volumes; exporting live '
                                    'images with volumes is not supported' % live_image['id'])
        return self.rpcapi.export_live_image(  # type: ignore[no-any-return]
            ctxt, live_image['host'], live_image['id'])

    def import_(self, ctxt: Any, name: str, memory_mb: int, vcpus: int, server_id: str,
                image: str, sha256: str, nova_source: dict[str, Any] | None = None,
                host: str | None = None) -> LiveImage:
        """A new live image of the caller's project from an export image: its row in
        ``blessing``, unpacked on the host the scheduler picks (which must hold the
        image), ``blessed`` when this returns; a refusal leaves no row.
        ``nova_source`` (the flavor and image its clones boot with) makes it the
        live image of a Nova instance, unpacked on ``host``."""
        image_store.check_reference(ctxt, image, 'export image')
        if image_store.is_host_path(image):
            raise exception.Invalid(reason='name the exported image, not a host file')
        host = host or hosts.select_host(None)
        live_image = db_servers.live_image_create({
            'id': str(uuid.uuid4()), 'name': name, 'project_id': ctxt.project_id,
            'user_id': ctxt.user_id, 'server_id': server_id, 'host': host,
            'status': L.BLESSING, 'memory_mb': memory_mb, 'vcpus': vcpus,
            'nova_source': nova_source})
        try:
            self.rpcapi.import_live_image(ctxt, host, live_image['id'], image, sha256)
        except Exception:
            db_servers.live_image_destroy(live_image['id'])
            raise
        return db_servers.live_image_get(live_image['id'])
