"""Storage backends: the admin-only pool (``/v1/backends``) and its ``backend-*`` commands.

A novaclient extension module: :class:`BackendManager` is attached to the client as
``gc_backends`` (see :data:`gridcentric_storage.client.EXTENSIONS`), and the
``do_backend_*`` functions are the ``gc-api`` commands. Example::

    gc.gc_backends.create(name='fast', driver='file', options={'path': '/srv/fast'},
                          tags=['ssd'], cost=1)
    gc.gc_backends.disable('fast', reason='disk replacement')
    [b.name for b in gc.gc_backends.list(state='enabled', tag='ssd')]

A backend as the API shows it::

    {"id": "6f0c...", "name": "fast", "driver": "file", "options": {"path": "/srv/fast"},
     "state": "enabled", "disabled_reason": null, "status": "up", "role": "san",
     "cost": 1, "tags": ["ssd"], "availability_zone": "nova", "host": "node1",
     "total_capacity_gb": 100.0, "free_capacity_gb": 80.0,
     "provisioned_capacity_gb": 20.0, "max_over_subscription_ratio": 1.0,
     "reserved_percentage": 0, "volume_count": 2, "capabilities": {}, ...}
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from typing import Any

from novaclient import base, exceptions
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

ROLES = ('san', 'repository')
FILTERS = ('name', 'driver', 'state', 'status', 'role', 'host', 'availability_zone', 'tag')
CREATE_FIELDS = ('options', 'role', 'cost', 'tags', 'availability_zone', 'host',
                 'max_over_subscription_ratio', 'reserved_percentage')
UPDATE_FIELDS = ('name', 'options', 'role', 'cost', 'tags', 'availability_zone',
                 'max_over_subscription_ratio', 'reserved_percentage')


class Backend(base.Resource):
    def __repr__(self) -> str:
        return '<Backend {}>'.format(self._info.get('name', self._info.get('id')))

    def update(self, **fields: Any) -> Backend:
        return self.manager.update(self, **fields)

    def enable(self) -> Backend:
        return self.manager.enable(self)

    def disable(self, reason: str | None = None) -> Backend:
        return self.manager.disable(self, reason)

    def delete(self) -> None:
        self.manager.delete(self)


class BackendManager(utils.GCManager):
    resource_class = Backend
    collection_key = 'backends'
    resource_key = 'backend'
    base_url = '/v1/backends'

    def list(self, limit: int | None = None, marker: str | None = None,
             sort_key: str | None = None, sort_dir: str | None = None,
             search_opts: dict[str, Any] | None = None, **filters: Any) -> list[Backend]:
        """Backends matching ``filters`` (any of :data:`FILTERS`; ``tag`` may be a
        list); every page unless ``limit`` is given. ``search_opts`` are more filters,
        under the name ``ManagerWithFind.findall`` passes its name filter to the API."""
        filters.update(search_opts or {})
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise TypeError('unknown backend filters: {}'.format(', '.join(sorted(unknown))))
        params = dict(filters, sort_key=sort_key, sort_dir=sort_dir)
        return self._list_paged(params, limit=limit, marker=marker)

    def get(self, backend: Any) -> Backend:
        return self._get_one(backend)

    def create(self, name: str, driver: str, **fields: Any) -> Backend:
        """Register a backend; ``fields`` are any of :data:`CREATE_FIELDS`."""
        body = {'name': name, 'driver': driver}
        body.update(self._fields(fields, CREATE_FIELDS))
        return self._post(self.base_url, {'backend': body})

    def update(self, backend: Any, **fields: Any) -> Backend:
        """Change any of :data:`UPDATE_FIELDS`; ``options`` replaces the options."""
        body = self._fields(fields, UPDATE_FIELDS)
        return self._put(self._url(backend), {'backend': body})

    def delete(self, backend: Any) -> None:
        """Remove an empty backend (HTTP 409 while it still holds volumes)."""
        self._delete(self._url(backend))

    def enable(self, backend: Any) -> Backend:
        return self._post(self._url(backend, '/action'), {'enable': {}})

    def disable(self, backend: Any, reason: str | None = None) -> Backend:
        body = {'reason': reason} if reason else {}
        return self._post(self._url(backend, '/action'), {'disable': body})

    @staticmethod
    def _fields(fields: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
        unknown = set(fields) - set(allowed)
        if unknown:
            raise TypeError('unknown backend fields: {}'.format(', '.join(sorted(unknown))))
        return {k: v for k, v in fields.items() if v is not None}


# ---------------------------------------------------------------------------
# gc-api commands


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None   # Cinder-style 'unknown' / 'infinite' / missing
    return float(value) if math.isfinite(value) else None


def _gib(value: Any) -> str:
    number = _number(value)
    if number is None:
        return '-' if value is None else str(value)
    return f'{number:.0f}' if number == int(number) else f'{number:.1f}'


def _usage(info: dict[str, Any]) -> str:
    total = _number(info.get('total_capacity_gb'))
    free = _number(info.get('free_capacity_gb'))
    if total is None or free is None:
        return f"-/{_gib(info.get('total_capacity_gb'))}"
    used = total - free
    percent = f'{round(100 * used / total)}%' if total else '-'
    return f'{_gib(used)}/{_gib(total)} ({percent})'


LIST_COLUMNS = [
    ('ID', 'id'), ('Name', 'name'), ('Driver', 'driver'), ('Role', 'role'),
    ('State', 'state'), ('Status', 'status'), ('Cost', 'cost'), ('Tags', 'tags'),
    ('Free GiB', lambda b: _gib(b.get('free_capacity_gb'))),
    ('Total GiB', lambda b: _gib(b.get('total_capacity_gb'))),
    ('Volumes', 'volume_count'),
]

TOP_COLUMNS = [
    ('Name', 'name'), ('State', 'state'), ('Status', 'status'), ('Role', 'role'),
    ('Cost', 'cost'), ('Used/Total GiB', _usage),
    ('Provisioned GiB', lambda b: _gib(b.get('provisioned_capacity_gb'))),
    ('Volumes', 'volume_count'),
]


# The fields backend-create and backend-update share.
COMMON_ARGS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (('--option',), dict(metavar='KEY=VALUE', action='append', dest='options',
                         help='Driver option (repeatable); VALUE is parsed as JSON '
                              'when it is valid JSON, else taken as a string.')),
    (('--role',), dict(choices=ROLES, help='What the backend is for.')),
    (('--cost',), dict(type=utils.non_negative_int, help='Placement cost (lower wins).')),
    (('--tag',), dict(action='append', dest='tags', metavar='TAG',
                      help='Tag (repeatable); volumes ask for tags to land here.')),
    (('--availability-zone',), dict(metavar='AZ')),
    (('--max-over-subscription-ratio',), dict(type=utils.non_negative_float, metavar='RATIO')),
    (('--reserved-percentage',), dict(type=utils.non_negative_int, metavar='PERCENT')),
]


def _common_args(func: Any) -> Any:
    for args, kwargs in reversed(COMMON_ARGS):
        func = arg(*args, **kwargs)(func)
    return func


def _options(args: argparse.Namespace) -> dict[str, Any] | None:
    if args.options is None:
        return None
    return dict(utils.key_values(args.options, '--option', parse_json=True))


def _fields(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    fields = {name: getattr(args, name, None) for name in names}
    fields['options'] = _options(args)
    return fields


@arg('name', metavar='NAME', help='Unique backend name.')
@arg('--driver', required=True, help='Volume driver (file, lvm, rbd, storpool, ...).')
@_common_args
@arg('--host', help='Host whose gridcentric-compute runs the driver.')
def do_backend_create(gc: Any, args: argparse.Namespace) -> None:
    """Register a storage backend."""
    backend = gc.gc_backends.create(args.name, args.driver, **_fields(args, CREATE_FIELDS))
    utils.print_dict(backend, args.json)


@arg('--name', help='Exact backend name.')
@arg('--driver')
@arg('--state', choices=('enabled', 'disabled'))
@arg('--status', choices=('up', 'down'))
@arg('--role', choices=ROLES)
@arg('--host')
@arg('--availability-zone', metavar='AZ')
@arg('--tag', action='append', metavar='TAG', help='Has this tag (repeatable).')
@arg('--sort-key', metavar='KEY', help='Sort by this field.')
@arg('--sort-dir', choices=('asc', 'desc'))
@arg('--limit', type=utils.positive_int, help='At most this many backends.')
@arg('--marker', metavar='ID', help='Start after this backend ID.')
def do_backend_list(gc: Any, args: argparse.Namespace) -> None:
    """List storage backends."""
    filters = {name: getattr(args, name) for name in FILTERS}
    backends = gc.gc_backends.list(limit=args.limit, marker=args.marker,
                                   sort_key=args.sort_key, sort_dir=args.sort_dir,
                                   **filters)
    utils.print_list(backends, LIST_COLUMNS, args.json)


@arg('backend', metavar='ID|NAME')
def do_backend_show(gc: Any, args: argparse.Namespace) -> None:
    """Show a storage backend."""
    utils.print_dict(find_resource(gc.gc_backends, args.backend), args.json)


@arg('backend', metavar='ID|NAME')
@arg('--name', help='New name.')
@_common_args
def do_backend_update(gc: Any, args: argparse.Namespace) -> None:
    """Change a storage backend (--option replaces the whole option set)."""
    fields = _fields(args, UPDATE_FIELDS)
    if all(value is None for value in fields.values()):
        raise exceptions.CommandError('Nothing to update; give at least one field to change.')
    backend = find_resource(gc.gc_backends, args.backend)
    utils.print_dict(gc.gc_backends.update(backend, **fields), args.json)


@arg('backend', metavar='ID|NAME')
def do_backend_enable(gc: Any, args: argparse.Namespace) -> None:
    """Let the scheduler place new volumes on a backend."""
    backend = find_resource(gc.gc_backends, args.backend)
    utils.print_dict(gc.gc_backends.enable(backend), args.json)


@arg('backend', metavar='ID|NAME')
@arg('--reason', help='Why (shown as disabled_reason).')
def do_backend_disable(gc: Any, args: argparse.Namespace) -> None:
    """Stop placing new volumes on a backend (existing volumes keep working)."""
    backend = find_resource(gc.gc_backends, args.backend)
    utils.print_dict(gc.gc_backends.disable(backend, args.reason), args.json)


@arg('backends', metavar='ID|NAME', nargs='+')
def do_backend_delete(gc: Any, args: argparse.Namespace) -> None:
    """Remove empty storage backends."""
    utils.for_each(args.backends,
                   lambda name: gc.gc_backends.delete(find_resource(gc.gc_backends, name)),
                   'Unable to delete backend(s)')


@arg('--interval', type=utils.seconds, default=2.0, metavar='SECONDS',
     help='Seconds between refreshes (default 2).')
@arg('--count', type=utils.positive_int, metavar='N',
     help='Refresh N times, then exit (default: until Ctrl-C).')
def do_backend_top(gc: Any, args: argparse.Namespace) -> None:
    """Live view of the pool: state, status, usage and volume count per backend."""
    out = sys.stdout
    clear = out.isatty() and not args.json
    shown = 0
    try:
        while True:
            backends = sorted(gc.gc_backends.list(), key=lambda b: str(b.name))
            if args.json:
                utils.print_json([b.to_dict() for b in backends])
            else:
                if clear:
                    out.write('\033[H\033[2J')
                elif shown:
                    out.write('\n')
                out.write(_top_header(backends) + '\n')
                utils.print_list(backends, TOP_COLUMNS)
            out.flush()
            shown += 1
            if args.count is not None and shown >= args.count:
                return
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return


def _top_header(backends: list[Backend]) -> str:
    total = sum(_number(b.to_dict().get('total_capacity_gb')) or 0.0 for b in backends)
    free = sum(_number(b.to_dict().get('free_capacity_gb')) or 0.0 for b in backends)
    up = sum(1 for b in backends if b.to_dict().get('status') == 'up')
    usage = _usage({'total_capacity_gb': total, 'free_capacity_gb': free})
    now = datetime.datetime.now().strftime('%H:%M:%S')
    return f'backends: {len(backends)} ({up} up)   used/total GiB: {usage}   {now}'
