"""The disks of live images: frozen with the memory, cloned for every launch.

Bless pauses the VM, takes a copy-on-write snapshot of each of its volumes
(on the volumes' own backends, through their owner hosts), then saves the
memory and resumes, so disks and RAM are of the same instant. A launch gets
one new volume per snapshot (``create_volume_from_snapshot``: copy-on-write
on file-reflink, rbd and lvm-thin backends); those volumes belong to the
clone and are deleted with it.
"""

import logging
import time
import uuid
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.compute import brick
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.virt import base as virt

LOG = logging.getLogger(__name__)
VOLUME_WAIT = 300.0


def attachments_of(server_id: str) -> list[dict[str, Any]]:
    """The server's volumes in the order the VM got them (root first)."""
    return [a for a in db_attachments.attachment_get_all()
            if a['instance_uuid'] == server_id and a['status'] == 'attached']


def snapshot_all(ctxt: Any, rpcapi: Any, server_id: str, live_image_id: str
                 ) -> list[virt.Disk]:
    """Snapshot every volume of the (paused) server; the Disk names the snapshot."""
    disks = []
    for attachment in attachments_of(server_id):
        volume = db.volume_get(attachment['volume_id'])
        snapshot = db_snapshots.snapshot_create({
            'id': str(uuid.uuid4()), 'name': 'live-image-%s' % live_image_id,
            'project_id': volume['project_id'], 'user_id': None,
            'volume_id': volume['id'], 'volume_size': volume['size'], 'status': 'creating',
            'backend_id': volume['backend_id'], 'host': volume['host']})
        # A call, not the usual cast: the memory is saved only once the disks are.
        rpcapi.call_create_snapshot(ctxt, volume['host'], snapshot['id'])
        snapshot = db_snapshots.snapshot_get(snapshot['id'])
        if snapshot['status'] != 'available':
            raise exception.DriverError(reason='snapshot of volume %s failed: %s'
                                        % (volume['id'], snapshot['status_reason']))
        disks.append(virt.Disk(volume_id=snapshot['id'], connection_info={},
                               read_only=attachment['mode'] == 'ro'))
    return disks


def delete_snapshots(ctxt: Any, rpcapi: Any, disks: list[dict[str, Any]]) -> None:
    for disk in disks:
        try:
            snapshot = db_snapshots.snapshot_get(disk['volume_id'])
        except exception.NotFound:
            continue
        db_snapshots.snapshot_update(snapshot['id'], {'status': 'deleting'})
        rpcapi.delete_snapshot(ctxt, snapshot['host'], snapshot['id'])


def create_clone_volumes(project_id: str | None, artifacts: dict[str, Any] | None
                         ) -> list[dict[str, Any]]:
    """API side of a launch: one new volume row per live-image snapshot."""
    volumes = []
    for disk in (artifacts or {}).get('disks', []):
        snapshot = db_snapshots.snapshot_get(disk['volume_id'])
        volumes.append(db.volume_create({
            'id': str(uuid.uuid4()), 'name': None, 'project_id': project_id,
            'size': snapshot['volume_size'], 'status': 'creating',
            'backend_id': snapshot['backend_id'], 'host': snapshot['host'],
            'snapshot_id': snapshot['id'], 'tags': []}))
    return volumes


def connect_clone_volumes(ctxt: Any, rpcapi: Any, host: str, server: dict[str, Any],
                          artifacts: virt.LiveImageArtifacts) -> list[virt.Disk]:
    """Compute side of a launch: wait for the clone's volumes, export them here."""
    disks = []
    volume_ids = server['extra'].get('volumes', [])
    for volume_id, image_disk in zip(volume_ids, artifacts.disks, strict=True):
        deadline = time.monotonic() + VOLUME_WAIT
        while True:
            volume = db.volume_get(volume_id)
            if volume['status'] == 'available':
                break
            if volume['status'] == 'error' or time.monotonic() > deadline:
                raise exception.DriverError(reason='disk volume %s of the clone is %s: %s'
                                            % (volume_id, volume['status'],
                                               volume['status_reason']))
            time.sleep(0.1)
        connector = brick.connector_properties(host)
        info = rpcapi.initialize_connection(ctxt, volume['host'], volume_id, connector)
        db_attachments.attachment_create({
            'id': str(uuid.uuid4()), 'volume_id': volume_id,
            'project_id': volume['project_id'], 'host': host, 'instance_uuid': server['id'],
            'mode': 'ro' if image_disk.read_only else 'rw', 'status': 'attached',
            'connector': connector, 'connection_info': info})
        db.volume_update(volume_id, {'status': 'in-use'})
        disks.append(virt.Disk(volume_id=volume_id, connection_info=info,
                               read_only=image_disk.read_only))
    return disks


def delete_clone_volumes(ctxt: Any, rpcapi: Any, server: dict[str, Any]) -> None:
    for volume_id in server['extra'].get('volumes', []):
        try:
            volume = db.volume_get(volume_id)
        except exception.VolumeNotFound:
            continue
        db.volume_update(volume_id, {'status': 'deleting'})
        rpcapi.delete_volume(ctxt, volume['host'], volume_id, cascade=True)
