"""Snapshots (``/v1/snapshots``, per project) and their ``snapshot-*`` commands.

A novaclient extension module: :class:`SnapshotManager` is attached to the client as
``gc_snapshots``. Snapshots are point-in-time copies of a volume (copy-on-write where
the backend has it); new volumes can start from them (``volume-create --snapshot``)
and their volume can go back to them (``volume-revert``)::

    snap = gc.gc_snapshots.create(vol, name='before')      # status 'creating'
    snap = gc.gc_snapshots.wait(snap)                      # 'available'
    gc.gc_volumes.revert(vol, snap)
    gc.gc_snapshots.delete(snap)
    gc.gc_snapshots.wait(snap, deleted=True)               # gone (None)

A snapshot as the API shows it::

    {"id": "...", "name": "before", "volume_id": "...", "volume_size": 1, "size": 1,
     "status": "available", "status_reason": null, "project_id": "...",
     "created_at": "...", "updated_at": "..."}
"""

from __future__ import annotations

import argparse
from typing import Any

from novaclient import base
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

TRANSITIONAL = frozenset({'creating', 'deleting', 'restoring'})


class Snapshot(base.Resource):
    def __repr__(self) -> str:
        return '<Snapshot %s>' % (self._info.get('name') or self._info.get('id'))

    def delete(self) -> None:
        self.manager.delete(self)


class SnapshotManager(utils.GCManager):
    resource_class = Snapshot
    collection_key = 'snapshots'
    resource_key = 'snapshot'
    base_url = '/v1/snapshots'
    transitional = TRANSITIONAL

    def list(self, volume_id: Any = None, all_tenants: bool = False,
             name: str | None = None) -> list[Snapshot]:
        """Snapshots, of one volume when ``volume_id`` (an ID or a volume) is given;
        ``all_tenants`` (admin) lists every project's; ``name`` is matched exactly."""
        params = {'volume_id': base.getid(volume_id) if volume_id is not None else None,
                  'all_tenants': 1 if all_tenants else None}
        snapshots = self._list_paged(params)
        if name is not None:
            return base.ListWithMeta([s for s in snapshots if s.name == name],
                                     snapshots.request_ids)
        return snapshots

    def create(self, volume: Any, name: str | None = None, force: bool = False) -> Snapshot:
        """Snapshot a volume (``force`` allows an attached one). Returns at once with
        status ``creating``; see ``wait``."""
        body: dict[str, Any] = {'volume_id': base.getid(volume)}
        if name is not None:
            body['name'] = name
        if force:
            body['force'] = True
        return self._post(self.base_url, {'snapshot': body})

    def delete(self, snapshot: Any) -> None:
        """Start deleting a snapshot (status ``deleting``, then it disappears)."""
        self._delete(self._url(snapshot))


# ---------------------------------------------------------------------------
# gc-api commands


LIST_COLUMNS = [
    ('ID', 'id'), ('Name', 'name'), ('Volume', 'volume_id'), ('Status', 'status'),
    ('Size', 'size'), ('Created', 'created_at'),
]


@arg('volume', metavar='VOLUME', help='ID or name of the volume.')
@arg('--name')
@arg('--force', action='store_true', help='Snapshot it even while attached.')
@utils.wait_args
def do_snapshot_create(gc: Any, args: argparse.Namespace) -> None:
    """Take a snapshot of a volume."""
    volume = find_resource(gc.gc_volumes, args.volume)
    snapshot = gc.gc_snapshots.create(volume, name=args.name, force=args.force)
    if args.wait:
        snapshot = utils.wait_for(gc.gc_snapshots, snapshot, args.timeout)
    utils.print_dict(snapshot, args.json)


@arg('--volume', metavar='ID|NAME', help='Only the snapshots of this volume.')
@arg('--name', help='Exact snapshot name.')
@arg('--all-tenants', action='store_true', help='Every project (admin).')
def do_snapshot_list(gc: Any, args: argparse.Namespace) -> None:
    """List snapshots."""
    volume = find_resource(gc.gc_volumes, args.volume) if args.volume else None
    snapshots = gc.gc_snapshots.list(volume_id=volume, all_tenants=args.all_tenants,
                                     name=args.name)
    columns = LIST_COLUMNS + ([('Project', 'project_id')] if args.all_tenants else [])
    utils.print_list(snapshots, columns, args.json)


@arg('snapshot', metavar='ID|NAME')
def do_snapshot_show(gc: Any, args: argparse.Namespace) -> None:
    """Show a snapshot."""
    utils.print_dict(find_resource(gc.gc_snapshots, args.snapshot), args.json)


@arg('snapshots', metavar='ID|NAME', nargs='+')
@utils.wait_args
def do_snapshot_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete snapshots."""
    def delete(name_or_id: str) -> Snapshot:
        snapshot = find_resource(gc.gc_snapshots, name_or_id)
        gc.gc_snapshots.delete(snapshot)
        return snapshot

    def wait(snapshot: Snapshot) -> None:
        utils.wait_for(gc.gc_snapshots, snapshot, args.timeout, 'deleting', deleted=True)

    utils.for_each(args.snapshots, delete, 'Unable to delete snapshot(s)',
                   wait if args.wait else None)
