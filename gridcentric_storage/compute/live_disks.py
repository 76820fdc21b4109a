"""The disks of live images, on the compute host: frozen with the memory, cloned per launch.

Bless pauses the VM, snapshots each of its volumes on their own backends (a
call to each owner, through ``volume.api``), then saves the memory and
resumes, so disks and RAM are of the same instant. A launch makes one new
volume per snapshot (``create_volume_from_snapshot``: copy-on-write on
file-reflink, rbd and lvm-thin backends) by a call that returns when the
volume exists, then attaches it here; those volumes belong to the clone and
are deleted with it.
"""

import logging
from typing import Any

from gridcentric_storage.compute import brick
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Attachment, Server
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume import api as volume_api

LOG = logging.getLogger(__name__)


def attachments_of(server_id: str) -> list[Attachment]:
    """The server's volumes in the order the VM got them (root first)."""
    return db_attachments.attachment_get_all(instance_uuid=server_id,
                                             statuses=('attached',))


def snapshot_name(live_image_id: str) -> str:
    return 'live-image-%s' % live_image_id


def snapshot_all(ctxt: Any, volumes: volume_api.API, server_id: str, live_image_id: str
                 ) -> list[virt.Disk]:
    """Snapshot every volume of the (paused) server; each Disk names its snapshot."""
    disks: list[virt.Disk] = []
    try:
        for attachment in attachments_of(server_id):
            snapshot = volumes.create_quiesced_snapshot_and_wait(
                ctxt, attachment['volume_id'], snapshot_name(live_image_id))
            disks.append(virt.Disk(volume_id=snapshot['id'], connection_info={},
                                   read_only=attachment['mode'] == 'ro'))
    except Exception:
        delete_snapshots(ctxt, volumes, [d.volume_id for d in disks])
        raise
    return disks


def delete_snapshots(ctxt: Any, volumes: volume_api.API, snapshot_ids: list[str]) -> None:
    for snapshot_id in snapshot_ids:
        volumes.delete_snapshot_if_exists(ctxt, snapshot_id)


def make_clone_volumes(ctxt: Any, volumes: volume_api.API, server: Server,
                       artifacts: virt.LiveImageArtifacts,
                       record: Any) -> list[str]:
    """One volume per live-image snapshot, each available when this returns.

    ``record(volume_ids)`` is called as each volume's row is written, so a
    failure part-way leaves the clone owning (and deleting with it) every
    volume it started, the failed one too.
    """
    made: list[str] = list(server['extra'].get('volumes') or [])
    for disk in artifacts.disks[len(made):]:
        snapshot = db_snapshots.snapshot_get(disk.volume_id)

        def owned(volume_id: str) -> None:
            made.append(volume_id)
            record(made)

        volumes.create_from_snapshot_and_wait(ctxt, snapshot, server['project_id'],
                                              owned_by=owned)
    return made


def connect_clone_volumes(ctxt: Any, volumes: volume_api.API, host: str,
                          server: Server, volume_ids: list[str],
                          artifacts: virt.LiveImageArtifacts) -> list[virt.Disk]:
    """Attach the clone's volumes to this host, in the order of the live image's disks."""
    disks = []
    connector = brick.connector_properties(host)
    for volume_id, image_disk in zip(volume_ids, artifacts.disks, strict=True):
        info = volumes.attach_for_server(ctxt, volume_id, server['id'], host, connector,
                                         mode='ro' if image_disk.read_only else 'rw')
        disks.append(virt.Disk(volume_id=volume_id, connection_info=info,
                               read_only=image_disk.read_only))
    return disks
