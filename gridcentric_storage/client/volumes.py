"""Volumes (``/v1/volumes``, per project) and their ``volume-*`` commands.

A novaclient extension module: :class:`VolumeManager` is attached to the client as
``gc_volumes`` (novaclient's own ``volumes`` attribute is Nova's volume proxy).
Creation and deletion are asynchronous (HTTP 202); :meth:`VolumeManager.wait`
polls until the work is done::

    vol = gc.gc_volumes.create(size=1, name='v1', tags=['ssd'])   # status 'creating'
    vol = gc.gc_volumes.wait(vol, timeout=300)                     # 'available'
    gc.gc_volumes.delete(vol)
    gc.gc_volumes.wait(vol, deleted=True)                          # gone (None)

A volume as the API shows it::

    {"id": "0b5e...", "name": "v1", "size": 1, "status": "available",
     "status_reason": null, "backend_id": "6f0c...", "project_id": "...",
     "user_id": "...", "tags": ["ssd"], "created_at": "...", "updated_at": "..."}
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from novaclient import base, exceptions

from gridcentric_storage.client import utils

FILTERS = ('name', 'status', 'backend_id')
CREATE_FIELDS = ('name', 'backend_id', 'tags', 'role', 'availability_zone',
                 'requirements', 'rank')
# States a volume passes through on its own; waiting ends when it leaves them.
TRANSITIONAL = frozenset({'creating', 'deleting', 'extending', 'reverting', 'migrating',
                          'attaching', 'detaching', 'downloading', 'uploading'})
POLL_INTERVAL = 1.0     # seconds between polls of ``--wait``
DEFAULT_TIMEOUT = 600.0


class Volume(base.Resource):
    def __repr__(self) -> str:
        return '<Volume %s>' % (self._info.get('name') or self._info.get('id'))

    def delete(self) -> None:
        self.manager.delete(self)


def _label(volume: Any) -> str:
    info = volume.to_dict() if hasattr(volume, 'to_dict') else {}
    name, vid = info.get('name'), info.get('id', base.getid(volume))
    return f'{name} ({vid})' if name else str(vid)


class VolumeManager(utils.GCManager):
    resource_class = Volume
    collection_key = 'volumes'
    resource_key = 'volume'
    base_url = '/v1/volumes'

    def list(self, limit: int | None = None, marker: str | None = None,
             all_tenants: bool = False, **filters: Any) -> list[Volume]:
        """Volumes matching ``filters`` (any of :data:`FILTERS`); every page unless
        ``limit`` is given; ``all_tenants`` (admin) lists every project's."""
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise TypeError('unknown volume filters: {}'.format(', '.join(sorted(unknown))))
        params = dict(filters, all_tenants=1 if all_tenants else None)
        return self._list_paged(params, limit=limit, marker=marker)

    def get(self, volume: Any) -> Volume:
        return self._get_one(volume)

    def create(self, size: int, **fields: Any) -> Volume:
        """Ask for a ``size`` GiB volume; ``fields`` are any of :data:`CREATE_FIELDS`.
        Returns at once with status ``creating``; see :meth:`wait`."""
        unknown = set(fields) - set(CREATE_FIELDS)
        if unknown:
            raise TypeError('unknown volume fields: {}'.format(', '.join(sorted(unknown))))
        body = {'size': size}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self._post(self.base_url, {'volume': body})

    def delete(self, volume: Any) -> None:
        """Start deleting a volume (status ``deleting``, then it disappears)."""
        self._delete(self._url(volume))

    def wait(self, volume: Any, deleted: bool = False, timeout: float | None = None,
             poll_interval: float | None = None,
             progress: Callable[[Volume, float], None] | None = None) -> Volume | None:
        """Poll until ``volume`` leaves its transitional state.

        Returns the settled volume, or None once it is gone when ``deleted``.
        Raises :class:`~gridcentric_storage.client.utils.ResourceInErrorState` when
        it ends in an ``error`` state and
        :class:`~gridcentric_storage.client.utils.WaitTimeout` after ``timeout``
        seconds. ``progress(volume, elapsed)`` is called after every poll.
        """
        interval = POLL_INTERVAL if poll_interval is None else poll_interval
        started = time.monotonic()
        while True:
            try:
                current = self.get(volume)
            except exceptions.NotFound:
                if deleted:
                    return None
                raise
            elapsed = time.monotonic() - started
            status = str(getattr(current, 'status', ''))
            if progress is not None:
                progress(current, elapsed)
            if status.startswith('error'):
                reason = current.to_dict().get('status_reason') or 'no reason given'
                raise utils.ResourceInErrorState(
                    current, f'Volume {_label(current)} went to status {status}: {reason}')
            if not deleted and status not in TRANSITIONAL:
                return current
            if timeout is not None and elapsed >= timeout:
                raise utils.WaitTimeout(
                    f'Timed out after {elapsed:.0f}s waiting for volume {_label(current)} '
                    f'(status: {status})')
            time.sleep(interval)


# ---------------------------------------------------------------------------
# gc-api commands


LIST_COLUMNS = [
    ('ID', 'id'), ('Name', 'name'), ('Status', 'status'), ('Size', 'size'),
    ('Backend', 'backend_id'), ('Tags', 'tags'),
]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid integer: {text!r}') from None
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1: {text!r}')
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'invalid number of seconds: {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'must not be negative: {text!r}')
    return value


def _backend_id(gc: Any, name_or_id: str | None) -> str | None:
    """An ID is passed through untouched (no admin-only lookup); a name is resolved."""
    if name_or_id is None or utils.is_uuid_like(name_or_id):
        return name_or_id
    return gc.gc_backends.find(name_or_id).id


def _wait(gc: Any, volume: Any, timeout: float, deleted: bool = False) -> Volume | None:
    action = 'deleting' if deleted else 'creating'
    progress = utils.Progress(f'{action} volume {_label(volume)}')
    try:
        return gc.gc_volumes.wait(volume, deleted=deleted, timeout=timeout or None,
                                  progress=lambda v, _elapsed: progress.update(v.status))
    finally:
        progress.done()


def _wait_args(func: Any) -> Any:
    func = utils.arg('--timeout', type=_seconds, default=DEFAULT_TIMEOUT, metavar='SECONDS',
                     help=f'With --wait: give up after this long (default '
                          f'{DEFAULT_TIMEOUT:.0f}, 0 = never).')(func)
    return utils.arg('--wait', action='store_true',
                     help='Wait until done; a progress line is drawn on a tty.')(func)


@utils.arg('--size', type=_positive_int, required=True, metavar='GIB', help='Size in GiB.')
@utils.arg('--name')
@utils.arg('--backend', metavar='ID|NAME', help='Place on this backend (admin).')
@utils.arg('--tag', action='append', dest='tags', metavar='TAG',
           help='Required backend tag (repeatable).')
@utils.arg('--role', choices=('san', 'repository'))
@utils.arg('--availability-zone', metavar='AZ')
@utils.arg('--requirements', metavar='EXPR', help='Backend filter expression.')
@utils.arg('--rank', metavar='EXPR',
           help='Backend ranking expression (higher wins); write --rank=EXPR when EXPR '
                'starts with "-".')
@_wait_args
def do_volume_create(gc: Any, args: argparse.Namespace) -> None:
    """Create a volume on the best backend the scheduler finds."""
    volume = gc.gc_volumes.create(
        args.size, name=args.name, backend_id=_backend_id(gc, args.backend), tags=args.tags,
        role=args.role, availability_zone=args.availability_zone,
        requirements=args.requirements, rank=args.rank)
    if args.wait:
        volume = _wait(gc, volume, args.timeout)
    utils.print_dict(volume, args.json)


@utils.arg('--name', help='Exact volume name.')
@utils.arg('--status')
@utils.arg('--backend', metavar='ID|NAME')
@utils.arg('--all-tenants', action='store_true', help='Every project (admin).')
@utils.arg('--limit', type=_positive_int, help='At most this many volumes.')
@utils.arg('--marker', metavar='ID', help='Start after this volume ID.')
def do_volume_list(gc: Any, args: argparse.Namespace) -> None:
    """List volumes."""
    volumes = gc.gc_volumes.list(limit=args.limit, marker=args.marker,
                                 all_tenants=args.all_tenants, name=args.name,
                                 status=args.status, backend_id=_backend_id(gc, args.backend))
    columns = LIST_COLUMNS + ([('Project', 'project_id')] if args.all_tenants else [])
    utils.print_list(volumes, columns, args.json)


@utils.arg('volume', metavar='ID|NAME')
def do_volume_show(gc: Any, args: argparse.Namespace) -> None:
    """Show a volume."""
    utils.print_dict(gc.gc_volumes.find(args.volume), args.json)


@utils.arg('volumes', metavar='ID|NAME', nargs='+')
@_wait_args
def do_volume_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete volumes."""
    failures, deleting = [], []
    for name_or_id in args.volumes:
        try:
            volume = gc.gc_volumes.find(name_or_id)
            gc.gc_volumes.delete(volume)
            deleting.append(volume)
        except (exceptions.ClientException, utils.ClientError) as exc:
            failures.append(f'{name_or_id}: {exc}')
    for volume in deleting if args.wait else []:
        try:
            _wait(gc, volume, args.timeout, deleted=True)
        except (exceptions.ClientException, utils.ClientError) as exc:
            failures.append(str(exc))
    if failures:
        raise utils.CommandError('Unable to delete volume(s): {}'.format('; '.join(failures)))
