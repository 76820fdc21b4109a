"""Attachments (``/v1/attachments``): volumes connected to compute hosts through
os-brick, and their ``attachment-*`` commands (``volume-attach``/``volume-detach``).

A novaclient extension module: :class:`AttachmentManager` is attached to the client
as ``gc_attachments``::

    att = gc.gc_attachments.create(vol, host='node2', mode='ro')   # 'attaching'
    att = gc.gc_attachments.wait(att)           # 'attached'; the volume is 'in-use'
    print(att.device_path)                      # the block device on node2
    gc.gc_attachments.delete(att)               # 'detaching'
    gc.gc_attachments.wait(att, deleted=True)   # gone; the volume is 'available' again

An attachment as the API shows it (admins also see ``connection_info``)::

    {"id": "...", "volume_id": "...", "host": "node2", "instance_uuid": null,
     "mode": "ro", "status": "attached", "status_reason": null,
     "device_path": "/dev/sdb", "project_id": "...", "created_at": "..."}
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from novaclient import base, exceptions
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

TRANSITIONAL = frozenset({'attaching', 'detaching'})
MODES = ('rw', 'ro')


class Attachment(base.Resource):
    def __repr__(self) -> str:
        return '<Attachment %s>' % self._info.get('id')

    def delete(self) -> None:
        self.manager.delete(self)


class AttachmentManager(utils.GCManager):
    resource_class = Attachment
    collection_key = 'attachments'
    resource_key = 'attachment'
    base_url = '/v1/attachments'
    transitional = TRANSITIONAL

    def list(self, volume_id: Any = None) -> list[Attachment]:
        """Attachments (of one volume when ``volume_id``, an ID or a volume, is given)."""
        volume = base.getid(volume_id) if volume_id is not None else None
        return self._list_paged({'volume_id': volume})

    def create(self, volume: Any, host: str | None = None, instance_uuid: str | None = None,
               mode: str | None = None) -> Attachment:
        """Attach a volume to ``host`` (default: the host of its backend), read-write or
        read-only (``mode`` ``ro``). Returns at once with status ``attaching``."""
        body = {'volume_id': base.getid(volume), 'host': host,
                'instance_uuid': instance_uuid, 'mode': mode}
        return self._post(self.base_url, {'attachment': {k: v for k, v in body.items()
                                                         if v is not None}})

    def delete(self, attachment: Any) -> None:
        """Start detaching (status ``detaching``, then the attachment disappears)."""
        self._delete(self._url(attachment))


# ---------------------------------------------------------------------------
# gc-api commands


def _get(gc: Any, attachment_id: str) -> Attachment:
    """An attachment by ID (attachments have no names to find them by)."""
    try:
        return gc.gc_attachments.get(attachment_id)
    except (exceptions.NotFound, exceptions.BadRequest):
        raise exceptions.CommandError(
            f"No attachment with an ID of '{attachment_id}' exists.") from None


LIST_COLUMNS = [
    ('ID', 'id'), ('Volume', 'volume_id'), ('Host', 'host'), ('Mode', 'mode'),
    ('Status', 'status'), ('Device', 'device_path'), ('Instance', 'instance_uuid'),
]


@arg('volume', metavar='VOLUME', help='ID or name of the volume.')
@arg('--host', help="Compute host to attach to (default: the backend's host).")
@arg('--instance-uuid', metavar='UUID', help='The instance the volume is for.')
@arg('--mode', choices=MODES, help='Read-write (default) or read-only.')
@utils.wait_args
def do_attachment_create(gc: Any, args: argparse.Namespace) -> None:
    """Attach a volume to a compute host (alias: volume-attach)."""
    volume = find_resource(gc.gc_volumes, args.volume)
    attachment = gc.gc_attachments.create(volume, host=args.host,
                                          instance_uuid=args.instance_uuid, mode=args.mode)
    if args.wait:
        attachment = utils.wait_for(gc.gc_attachments, attachment, args.timeout,
                                    'attaching')
    utils.print_dict(attachment, args.json)


@arg('--volume', metavar='ID|NAME', help='Only the attachments of this volume.')
def do_attachment_list(gc: Any, args: argparse.Namespace) -> None:
    """List attachments."""
    volume = find_resource(gc.gc_volumes, args.volume) if args.volume else None
    utils.print_list(gc.gc_attachments.list(volume_id=volume), LIST_COLUMNS, args.json)


@arg('attachment', metavar='ID')
def do_attachment_show(gc: Any, args: argparse.Namespace) -> None:
    """Show an attachment."""
    utils.print_dict(_get(gc, args.attachment), args.json)


@arg('attachments', metavar='ID', nargs='+')
@utils.wait_args
def do_attachment_delete(gc: Any, args: argparse.Namespace) -> None:
    """Detach volumes: end attachments (alias: volume-detach)."""
    def detach(attachment_id: str) -> Attachment:
        attachment = _get(gc, attachment_id)
        gc.gc_attachments.delete(attachment)
        return attachment

    def wait(attachment: Attachment) -> None:
        utils.wait_for(gc.gc_attachments, attachment, args.timeout, 'detaching', deleted=True)

    utils.for_each(args.attachments, detach, 'Unable to detach', wait if args.wait else None)


def _alias(command: Callable[..., None], doc: str) -> Callable[..., None]:
    def alias(gc: Any, args: argparse.Namespace) -> None:
        command(gc, args)
    alias.__doc__ = doc
    alias.__dict__['arguments'] = command.__dict__['arguments']
    return alias


do_volume_attach = _alias(do_attachment_create, 'Attach a volume to a compute host '
                                                '(same as attachment-create).')
do_volume_detach = _alias(do_attachment_delete, 'Detach volumes: end attachments '
                                                '(same as attachment-delete).')
