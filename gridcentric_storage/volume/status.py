"""Status writes of volumes, snapshots and attachments, checked against their tables.

Only ``volume.api`` and ``volume.manager`` call these. Each write names the
states it may start from, checks the move in ``common.states`` first and is
one compare-and-swap statement in the DB, so two racing requests cannot both
move a resource.
"""

from typing import Any

from gridcentric_storage.common import states
from gridcentric_storage.common.states import AttachmentStatus, VolumeStatus
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Attachment, Snapshot, Volume


def _from(machine: states.StateMachine, resource_id: str, new: str,
          expected: str | tuple[str, ...] | None) -> tuple[str, ...]:
    sources = machine.sources(new) if expected is None else (
        (expected,) if isinstance(expected, str) else tuple(expected))
    machine.check(resource_id, sources, new)
    return sources


def move_volume(volume_id: str, new: VolumeStatus, expected: str | tuple[str, ...] | None = None,
                **values: Any) -> Volume:
    """Move the volume to ``new`` from ``expected`` (default: any state the table allows)."""
    sources = _from(states.VOLUME, volume_id, new, expected)
    return db.volume_update(volume_id, dict(values, status=new), expected_status=sources)


def move_snapshot(snapshot_id: str, new: states.SnapshotStatus,
                  expected: str | tuple[str, ...] | None = None, **values: Any) -> Snapshot:
    sources = _from(states.SNAPSHOT, snapshot_id, new, expected)
    return db_snapshots.snapshot_update(snapshot_id, dict(values, status=new),
                                        expected_status=sources)


def move_attachment(attachment_id: str, new: AttachmentStatus,
                    expected: str | tuple[str, ...] | None = None, **values: Any
                    ) -> Attachment:
    sources = _from(states.ATTACHMENT, attachment_id, new, expected)
    return db_attachments.attachment_update(attachment_id, dict(values, status=new),
                                            expected_status=sources)


def settle_volume(volume_id: str, **values: Any) -> Volume:
    """``in-use`` while any attachment holds the volume, else ``available``.

    Only a volume between attach states moves; one that is busy otherwise
    (extending, deleting...) keeps its status, its own work settles it.
    """
    # An attachment in error whose export is still there (a failed detach)
    # holds the volume as much as an attached one.
    live = [a for a in db_attachments.attachment_get_all(volume_id=volume_id)
            if a['status'] in states.ATTACHMENT_LIVE or a['connection_info'] is not None]
    new = VolumeStatus.IN_USE if live else VolumeStatus.AVAILABLE
    volume = db.volume_get(volume_id)
    if volume['status'] not in (VolumeStatus.ATTACHING, VolumeStatus.IN_USE,
                                VolumeStatus.AVAILABLE):
        return db.volume_update(volume_id, values) if values else volume
    return move_volume(volume_id, new, expected=volume['status'], **values)
