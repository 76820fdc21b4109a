"""The volume API: what callers of volumes, snapshots and attachments use.

The REST controllers call it after policy; the compute manager calls it as a
library (as Nova calls Cinder) to make, attach and release the disks of its
servers. It checks state, places new volumes, writes the DB rows and sends
the work to the owner host's volume manager (``volume.rpcapi``). With that
manager it is the only writer of volume, snapshot and attachment status.
"""

import logging
import math
import threading
import uuid
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import exception, rpc
from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import AttachmentStatus as A
from gridcentric_storage.common.states import SnapshotStatus as S
from gridcentric_storage.common.states import VolumeStatus as V
from gridcentric_storage.compute import rpcapi as compute_rpcapi
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Attachment, Backend, Snapshot, Volume
from gridcentric_storage.image import store as image_store
from gridcentric_storage.scheduler import visibility
from gridcentric_storage.scheduler.request import RequestSpec
from gridcentric_storage.scheduler.scheduler import Scheduler
from gridcentric_storage.volume import migration, rpcapi, status

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GiB = 1 << 30


def _require(volume: Volume, allowed: tuple[str, ...], action: str) -> None:
    if volume['status'] not in allowed:
        raise exception.InvalidState(
            resource='Volume', id=volume['id'], state=volume['status'],
            reason='%s needs it to be %s' % (action, ' or '.join(allowed)))


class API:
    volume_rpcapi = rpc.LazyClient(rpcapi.VolumeAPI)
    compute_rpcapi = rpc.LazyClient(compute_rpcapi.ComputeAPI)

    def __init__(self) -> None:
        self._scheduler: Scheduler | None = None
        self._lock = threading.Lock()

    @property
    def scheduler(self) -> Scheduler:
        with self._lock:
            if self._scheduler is None:
                self._scheduler = Scheduler(CONF)
            return self._scheduler

    # ------------------------------------------------------------- volumes
    def place(self, ctxt: Any, spec: RequestSpec, details: bool) -> Backend:
        """The backend for a new volume; ``details``: the caller may see why not."""
        if not details:
            visibility.check_member_request(spec)
        try:
            return self.scheduler.select(spec, db.backend_get_all()).backend
        except exception.NoValidBackend as e:
            if details:
                raise
            raise visibility.member_error(e, spec) from None

    def create(self, ctxt: Any, data: dict[str, Any], origin: dict[str, Any],
               minimum: int | None, details: bool) -> Volume:
        """A new volume from ``data`` (the request) and ``origin`` (the source's
        fields: snapshot_id/source_volid with its backend_id, or image_id)."""
        if 'backend_id' in origin:
            data = dict(data, backend_id=origin['backend_id'])  # copy-on-write: same backend
        size = data.get('size') or minimum
        if size is None and 'image_id' not in origin:
            raise exception.ValidationError(field='size', reason="'size' is a required "
                                            'property')
        backend = self.place(ctxt, RequestSpec.from_volume_request(dict(data, size=size or 1)),
                             details)
        if 'image_id' in origin:
            info = self.volume_rpcapi.get_image_info(ctxt, backend['host'], origin['image_id'])
            minimum = max(1, math.ceil(info['virtual_size'] / GiB))
            size = size or minimum
        assert size is not None
        if minimum is not None and size < minimum:
            raise exception.ValidationError(
                field='size', reason='%d GiB is smaller than its source (%d GiB)'
                % (size, minimum))
        volume = db.volume_create(dict(
            origin, id=str(uuid.uuid4()), name=data.get('name'),
            project_id=ctxt.project_id, user_id=ctxt.user_id, size=size,
            status=V.CREATING, backend_id=backend['id'], host=backend['host'],
            tags=data.get('tags', []), multiattach=data.get('multiattach', False)))
        self.volume_rpcapi.create_volume(ctxt, backend['host'], volume['id'])
        return volume

    def create_from_snapshot_and_wait(self, ctxt: Any, snapshot: Snapshot,
                                      project_id: str | None,
                                      owned_by: Callable[[str], None] | None = None
                                      ) -> Volume:
        """A copy-on-write volume of ``snapshot``, returned once it is available.

        A call to the owner host, so the caller (a launch) goes on exactly
        when the volume exists; DriverError when its creation failed.
        ``owned_by(volume_id)`` is told of the row before the work starts, so
        the caller owns (and deletes) even a volume whose creation fails.
        """
        volume = db.volume_create({
            'id': str(uuid.uuid4()), 'name': None, 'project_id': project_id,
            'size': snapshot['volume_size'], 'status': V.CREATING,
            'backend_id': snapshot['backend_id'], 'host': snapshot['host'],
            'snapshot_id': snapshot['id'], 'tags': []})
        if owned_by is not None:
            owned_by(volume['id'])
        self.volume_rpcapi.create_volume_and_wait(ctxt, volume['host'], volume['id'])
        volume = db.volume_get(volume['id'])
        if volume['status'] != V.AVAILABLE:
            raise exception.DriverError(reason='volume %s from snapshot %s is %s: %s'
                                        % (volume['id'], snapshot['id'], volume['status'],
                                           volume['status_reason']))
        return volume

    def delete(self, ctxt: Any, volume: Volume, cascade: bool = False,
               force: bool = False) -> None:
        vid = volume['id']
        attachments = db_attachments.attachment_get_all(volume_id=vid)
        if (attachments or volume['status'] == V.IN_USE) and not force:
            raise exception.InvalidState(
                resource='Volume', id=vid, state=volume['status'],
                reason='it has %d attachment(s); detach it first or delete with '
                       '?force=true' % len(attachments))
        snapshots = db_snapshots.snapshot_get_all(volume_id=vid)
        if snapshots and not cascade:
            raise exception.InvalidState(
                resource='Volume', id=vid, state=volume['status'],
                reason='it has %d snapshot(s); delete them first or use ?cascade=true'
                % len(snapshots))
        if volume['status'] not in st.VOLUME_DELETABLE:
            raise exception.InvalidState(
                resource='Volume', id=vid, state=volume['status'],
                reason='only volumes that are %s can be deleted'
                % ', '.join(st.VOLUME_DELETABLE))
        volume = status.move_volume(vid, V.DELETING, st.VOLUME_DELETABLE, status_reason=None)
        self.volume_rpcapi.delete_volume(ctxt, volume['host'], vid, cascade=cascade)

    def delete_owned_by_server(self, ctxt: Any, volume_id: str) -> None:
        """Delete a disk a clone's launch made, with its snapshots, whatever its state."""
        try:
            volume = db.volume_get(volume_id)
        except exception.VolumeNotFound:
            return
        # The owner ends any export left and removes the attachments first.
        volume = status.move_volume(volume_id, V.DELETING, volume['status'])
        self.volume_rpcapi.delete_volume(ctxt, volume['host'], volume_id, cascade=True)

    def extend(self, ctxt: Any, volume: Volume, new_size: int) -> None:
        _require(volume, (V.AVAILABLE, V.IN_USE), 'extend')
        if new_size <= volume['size']:
            raise exception.Invalid(reason='new_size %d GiB must be larger than the current '
                                    '%d GiB (volumes cannot shrink)' % (new_size, volume['size']))
        if volume['status'] == V.IN_USE:
            backend = db.backend_get(volume['backend_id'])
            if not backend['capabilities'].get('online_extend_support'):
                raise exception.InvalidState(
                    resource='Volume', id=volume['id'], state=V.IN_USE,
                    reason='backend %s cannot extend attached volumes; detach it first'
                    % backend['name'])
        status.move_volume(volume['id'], V.EXTENDING, volume['status'])
        self.volume_rpcapi.extend_volume(ctxt, volume['host'], volume['id'], new_size,
                                         volume['status'])

    def revert(self, ctxt: Any, volume: Volume, snapshot: Snapshot) -> None:
        if snapshot['volume_id'] != volume['id']:
            raise exception.Invalid(reason='snapshot %s belongs to volume %s, not to %s'
                                    % (snapshot['id'], snapshot['volume_id'], volume['id']))
        _require(volume, (V.AVAILABLE,), 'revert')
        if snapshot['status'] != S.AVAILABLE:
            raise exception.InvalidState(resource='Snapshot', id=snapshot['id'],
                                         state=snapshot['status'],
                                         reason='only an available snapshot can be used')
        # The snapshot first: a delete racing this revert wins or loses it
        # before the volume has moved, so a lost race changes nothing.
        status.move_snapshot(snapshot['id'], S.RESTORING, S.AVAILABLE)
        try:
            status.move_volume(volume['id'], V.REVERTING, V.AVAILABLE)
        except Exception:
            status.move_snapshot(snapshot['id'], S.AVAILABLE, S.RESTORING)
            raise
        self.volume_rpcapi.revert_volume(ctxt, volume['host'], volume['id'], snapshot['id'])

    def upload_to_image(self, ctxt: Any, volume: Volume, name: str,
                        disk_format: str) -> None:
        """Write the volume to the image ``name`` of the caller's project."""
        _require(volume, (V.AVAILABLE,), 'writing it to an image')
        image_store.check_name(name)
        status.move_volume(volume['id'], V.UPLOADING, V.AVAILABLE)
        try:
            # A call, so that an existing image is a 409 now, never overwritten later.
            self.volume_rpcapi.reserve_image(ctxt, volume['host'], name)
        except Exception:
            status.move_volume(volume['id'], V.AVAILABLE, V.UPLOADING)
            raise
        self.volume_rpcapi.copy_volume_to_image(ctxt, volume['host'], volume['id'],
                                                {'name': name, 'disk_format': disk_format})

    def prepare_transfer(self, ctxt: Any, volume: Volume,
                         direction: str) -> dict[str, Any]:
        """A one-time URL on the owner host's data server (``read`` or ``write``)."""
        _require(volume, (V.AVAILABLE,), 'download' if direction == 'read' else 'upload')
        return self.volume_rpcapi.prepare_transfer(ctxt, volume['host'], volume['id'],
                                                   direction)

    # ------------------------------------------------------------- migration
    def migrate(self, ctxt: Any, volume: Volume, backend_ref: str | None,
                placement: dict[str, Any] | None, force_host_copy: bool = False) -> Volume:
        """Move the volume to the backend ``backend_ref`` (a name or id) or, without
        one, to the best other backend for ``placement`` (a create's tags, role,
        requirements...); the scheduler checks the destination is up, enabled and
        has room either way."""
        if backend_ref is not None:
            dest = migration.find_backend(backend_ref)
            migration.check(volume, dest)
            spec = RequestSpec(size=volume['size'], backend_id=dest['id'])
            dest = self.scheduler.select(spec, db.backend_get_all()).backend
        else:
            spec = RequestSpec.from_volume_request(dict(placement or {}, size=volume['size']))
            others = [b for b in db.backend_get_all() if b['id'] != volume['backend_id']]
            dest = self.scheduler.select(spec, others).backend
            migration.check(volume, dest)
        return migration.start(self.volume_rpcapi, ctxt, volume, dest, force_host_copy)

    # ------------------------------------------------------------- QoS
    def associate_qos(self, ctxt: Any, volume: Volume, specs_id: str | None) -> Volume:
        """Govern the volume by specs ``specs_id`` (None: its backend's again), now."""
        if volume['status'] in (V.CREATING, V.DELETING, V.ERROR_DELETING):
            raise exception.InvalidState(resource='Volume', id=volume['id'],
                                         state=volume['status'],
                                         reason='wait until it settles')
        volume = db.volume_update(volume['id'], {'qos_specs_id': specs_id})
        self.apply_qos(ctxt, [volume])
        return volume

    def apply_qos(self, ctxt: Any, volumes: list[Volume]) -> None:
        """Have each volume's owner enforce its current limits (specs changed)."""
        for volume in volumes:
            self.volume_rpcapi.apply_qos(ctxt, volume['host'], volume['id'])

    # ------------------------------------------------------------- snapshots
    def create_snapshot(self, ctxt: Any, volume: Volume, name: str | None,
                        force: bool = False) -> Snapshot:
        allowed = (V.AVAILABLE, V.IN_USE) if force else (V.AVAILABLE,)
        if volume['status'] not in allowed:
            hint = ('; add "force": true to snapshot an attached volume'
                    if volume['status'] == V.IN_USE else '')
            raise exception.InvalidState(
                resource='Volume', id=volume['id'], state=volume['status'],
                reason='a snapshot needs it to be %s%s' % (' or '.join(allowed), hint))
        existing = db_snapshots.snapshot_get_all(volume_id=volume['id'])
        if len(existing) >= CONF.volume.max_snapshots_per_volume:
            raise exception.Conflict(reason='volume %s already has %d snapshots (limit %d)'
                                     % (volume['id'], len(existing),
                                        CONF.volume.max_snapshots_per_volume))
        snapshot = self._snapshot_row(volume, name, ctxt.project_id, ctxt.user_id)
        self.volume_rpcapi.create_snapshot(ctxt, volume['host'], snapshot['id'])
        return snapshot

    @staticmethod
    def _snapshot_row(volume: Volume, name: str | None, project_id: str | None,
                      user_id: str | None) -> Snapshot:
        return db_snapshots.snapshot_create({
            'id': str(uuid.uuid4()), 'name': name, 'project_id': project_id,
            'user_id': user_id, 'volume_id': volume['id'], 'volume_size': volume['size'],
            'status': S.CREATING, 'backend_id': volume['backend_id'],
            'host': volume['host']})

    def create_quiesced_snapshot_and_wait(self, ctxt: Any, volume_id: str,
                                          name: str) -> Snapshot:
        """Snapshot a volume whose VM is paused (a bless), returned once taken."""
        volume = db.volume_get(volume_id)
        snapshot = self._snapshot_row(volume, name, volume['project_id'], None)
        self.volume_rpcapi.create_snapshot_and_wait(ctxt, volume['host'], snapshot['id'])
        snapshot = db_snapshots.snapshot_get(snapshot['id'])
        if snapshot['status'] != S.AVAILABLE:
            raise exception.DriverError(reason='snapshot of volume %s failed: %s'
                                        % (volume_id, snapshot['status_reason']))
        return snapshot

    def delete_snapshot(self, ctxt: Any, snapshot: Snapshot) -> None:
        if snapshot['status'] not in st.SNAPSHOT_DELETABLE:
            raise exception.InvalidState(resource='Snapshot', id=snapshot['id'],
                                         state=snapshot['status'],
                                         reason='only %s snapshots can be deleted'
                                         % ', '.join(st.SNAPSHOT_DELETABLE))
        status.move_snapshot(snapshot['id'], S.DELETING, st.SNAPSHOT_DELETABLE)
        self.volume_rpcapi.delete_snapshot(ctxt, snapshot['host'], snapshot['id'])

    def delete_snapshot_if_exists(self, ctxt: Any, snapshot_id: str) -> None:
        try:
            snapshot = db_snapshots.snapshot_get(snapshot_id)
        except exception.NotFound:
            return
        if snapshot['status'] != S.DELETING:
            status.move_snapshot(snapshot_id, S.DELETING, snapshot['status'])
        self.volume_rpcapi.delete_snapshot(ctxt, snapshot['host'], snapshot_id)

    # ------------------------------------------------------------- attachments
    def attach(self, ctxt: Any, volume: Volume, host: str,
               instance_uuid: str | None, mode: str, attachment_id: str | None = None
               ) -> Attachment:
        """Reserve the volume for a new attachment on ``host`` (status ``attaching``).

        The attacher then connects (:meth:`connect`) and ends it with
        :meth:`attach_complete` or :meth:`attach_failed`.
        """
        live = db_attachments.attachment_get_all(volume_id=volume['id'],
                                                 statuses=st.ATTACHMENT_LIVE)
        if volume['status'] == V.AVAILABLE and not live:
            next_status = V.ATTACHING
        elif volume['status'] in (V.IN_USE, V.ATTACHING) and live:
            backend = db.backend_get(volume['backend_id'])
            if not (volume['multiattach'] and backend['capabilities'].get('multiattach')):
                raise exception.InvalidState(
                    resource='Volume', id=volume['id'], state=volume['status'],
                    reason='it is attached already and is not a multiattach volume on a '
                           'backend that supports multiattach')
            next_status = V(volume['status'])
        else:
            raise exception.InvalidState(resource='Volume', id=volume['id'],
                                         state=volume['status'],
                                         reason='only available volumes can be attached')
        status.move_volume(volume['id'], next_status, volume['status'])
        return db_attachments.attachment_create({
            'id': attachment_id or str(uuid.uuid4()), 'volume_id': volume['id'],
            'project_id': volume['project_id'], 'host': host,
            'instance_uuid': instance_uuid, 'mode': mode, 'status': A.ATTACHING})

    def attach_on_host(self, ctxt: Any, volume: Volume, host: str,
                       instance_uuid: str | None, mode: str) -> Attachment:
        """POST /v1/attachments: the attacher host connects the volume with os-brick."""
        attachment = self.attach(ctxt, volume, host, instance_uuid, mode)
        self.compute_rpcapi.attach_volume(ctxt, host, attachment['id'])
        return attachment

    def connect(self, ctxt: Any, attachment: Attachment,
                connector: dict[str, Any]) -> dict[str, Any]:
        """Export the attachment's volume to the attacher; its connection info."""
        volume = db.volume_get(attachment['volume_id'])
        info = self.volume_rpcapi.initialize_connection(ctxt, volume['host'], volume['id'],
                                                        connector)
        db_attachments.attachment_update(attachment['id'], {'connector': connector,
                                                            'connection_info': info})
        return info

    def attach_complete(self, attachment_id: str, device_path: str | None = None) -> None:
        attachment = status.move_attachment(attachment_id, A.ATTACHED, A.ATTACHING,
                                            device_path=device_path, status_reason=None)
        status.settle_volume(attachment['volume_id'])

    def attach_failed(self, ctxt: Any, attachment_id: str, error: Exception) -> None:
        """End a failed attach: the export (if made) ends, the volume settles."""
        attachment = db_attachments.attachment_get(attachment_id)
        if attachment['connection_info'] is not None:
            self._terminate(ctxt, attachment)
        # No connection info: this attachment holds no export (unlike one
        # whose detach failed, which still counts as using the volume).
        status.move_attachment(attachment_id, A.ERROR, A.ATTACHING, connection_info=None,
                               status_reason=exception.describe(error))
        status.settle_volume(attachment['volume_id'])

    def attach_for_server(self, ctxt: Any, volume_id: str, server_id: str, host: str,
                          connector: dict[str, Any], mode: str = 'rw',
                          attachment_id: str | None = None) -> dict[str, Any]:
        """Attach a volume that a server boots from or a launch made, in one step."""
        attachment = self.attach(ctxt, db.volume_get(volume_id), host, server_id, mode,
                                 attachment_id=attachment_id)
        try:
            info = self.connect(ctxt, attachment, connector)
        except Exception as e:
            self.attach_failed(ctxt, attachment['id'], e)
            raise
        self.attach_complete(attachment['id'])
        return info

    def begin_detach(self, ctxt: Any, attachment: Attachment) -> None:
        if attachment['status'] in (A.ATTACHING, A.DETACHING):
            raise exception.InvalidState(resource='Attachment', id=attachment['id'],
                                         state=attachment['status'],
                                         reason='wait until it settles')
        status.move_attachment(attachment['id'], A.DETACHING, attachment['status'])

    def detach_on_host(self, ctxt: Any, attachment: Attachment) -> None:
        """DELETE /v1/attachments/{id}: the attacher host disconnects, then ends it."""
        self.begin_detach(ctxt, attachment)
        self.compute_rpcapi.detach_volume(ctxt, attachment['host'], attachment['id'])

    def force_detach(self, ctxt: Any, volume: Volume,
                     attachment_id: str | None) -> None:
        attachments = db_attachments.attachment_get_all(volume_id=volume['id'])
        if attachment_id:
            attachments = [a for a in attachments if a['id'] == attachment_id]
            if not attachments:
                raise exception.AttachmentNotFound(id=attachment_id)
        for attachment in attachments:
            if attachment['status'] != A.DETACHING:
                status.move_attachment(attachment['id'], A.DETACHING, attachment['status'])
            self.compute_rpcapi.detach_volume(ctxt, attachment['host'], attachment['id'])

    def detach_complete(self, ctxt: Any, attachment_id: str) -> None:
        """The attacher let go: the export ends, the attachment goes, the volume settles."""
        attachment = db_attachments.attachment_get(attachment_id)
        self._terminate(ctxt, attachment, strict=True)
        db_attachments.attachment_destroy(attachment_id)
        status.settle_volume(attachment['volume_id'])

    def detach_failed(self, attachment_id: str, error: Exception) -> None:
        """The attacher still holds the volume: the attachment says why (``error``),
        keeps its export and can be detached again; the volume stays in use."""
        attachment = status.move_attachment(
            attachment_id, A.ERROR, A.DETACHING,
            status_reason='detach failed: %s' % exception.describe(error))
        status.settle_volume(attachment['volume_id'])

    def attachment_note(self, attachment_id: str, note: str | None) -> None:
        """Say (or clear) what the attacher could not do, the attachment itself intact."""
        db_attachments.attachment_update(attachment_id, {'status_reason': note})

    def attach_for_migration(self, ctxt: Any, attachment: Attachment, host: str,
                             connector: dict[str, Any]) -> dict[str, Any]:
        """Connect a server's attached volume on the host its guest is migrating to:
        a second attachment of the same server, on ``host``. Both hosts hold the
        volume while the guest moves (only one of them runs it), so neither the
        volume's status nor the multiattach rule applies. The caller releases the
        attachment of the host the guest left."""
        second = db_attachments.attachment_create({
            'id': str(uuid.uuid4()), 'volume_id': attachment['volume_id'],
            'project_id': attachment['project_id'], 'host': host,
            'instance_uuid': attachment['instance_uuid'], 'mode': attachment['mode'],
            'status': A.ATTACHING})
        try:
            info = self.connect(ctxt, second, connector)
        except Exception:
            self.release(ctxt, db_attachments.attachment_get(second['id']))
            raise
        self.attach_complete(second['id'])
        return info

    def release(self, ctxt: Any, attachment: Attachment) -> None:
        """Remove an attachment whose VM is gone (a server delete), whatever its state."""
        self._terminate(ctxt, attachment)
        db_attachments.attachment_destroy(attachment['id'])
        try:
            status.settle_volume(attachment['volume_id'])
        except exception.VolumeNotFound:
            pass

    def _terminate(self, ctxt: Any, attachment: Attachment, strict: bool = False) -> None:
        try:
            volume = db.volume_get(attachment['volume_id'])
            self.volume_rpcapi.terminate_connection(ctxt, volume['host'], volume['id'],
                                                    attachment['connector'],
                                                    attachment['id'])
        except Exception:
            if strict:
                raise
            LOG.warning(
                'Could not end the export of volume %s for %s', attachment['volume_id'],
                attachment['host'], exc_info=True)
