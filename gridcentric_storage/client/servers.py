"""Servers (``/v1/servers``) and their ``server-*`` commands.

A novaclient extension module: :class:`ServerManager` is attached as ``gc_servers``
(novaclient's own ``servers`` attribute is Nova's)::

    srv = gc.gc_servers.create('template', memory_mb=256, kernel='/srv/vmlinuz',
                               initrd='/srv/initrd.img', cmdline='console=ttyS0')
    srv = gc.gc_servers.wait(srv)                 # ACTIVE
    print(gc.gc_servers.console_output(srv, length=20))
"""

from __future__ import annotations

import argparse
from typing import Any

from novaclient import base
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

CREATE_FIELDS = ('vcpus', 'kernel', 'initrd', 'cmdline', 'volume_id', 'availability_zone',
                 'id')
LIST_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Status', 'status'),
                ('Task', 'task_state'), ('Host', 'host'), ('Memory MB', 'memory_mb'),
                ('Launched from', 'live_image_id')]


class Server(base.Resource):
    def __repr__(self) -> str:
        return '<Server %s>' % (self._info.get('name') or self._info.get('id'))


class ServerManager(utils.GCManager):
    resource_class = Server
    collection_key = 'servers'
    resource_key = 'server'
    base_url = '/v1/servers'
    transitional = frozenset({'BUILD'})

    def list(self, name: str | None = None) -> list[Server]:
        servers = self._list_paged({})
        if name is not None:
            return base.ListWithMeta([s for s in servers if s.name == name],
                                     servers.request_ids)
        return servers

    def create(self, name: str, memory_mb: int, **fields: Any) -> Server:
        unknown = set(fields) - set(CREATE_FIELDS)
        if unknown:
            raise TypeError('unknown server fields: {}'.format(', '.join(sorted(unknown))))
        body = dict({k: v for k, v in fields.items() if v is not None}, name=name,
                    memory_mb=memory_mb)
        return self._post(self.base_url, {'server': body})

    def delete(self, server: Any) -> None:
        self._delete(self._url(server))

    def console_output(self, server: Any, length: int | None = None) -> str:
        _resp, body = self.api.client.post(self._url(server, '/action'),
                                           body={'os-getConsoleOutput': {'length': length}})
        return str(body['output'])

    def wait(self, resource: Any, deleted: bool = False, timeout: float | None = None,
             poll_interval: float | None = None, progress: Any = None) -> Any:
        """Until it leaves BUILD and its task (blessing, deleting) is done."""
        while True:
            current = super().wait(resource, deleted, timeout, poll_interval, progress)
            if current is None or not getattr(current, 'task_state', None):
                if current is not None and current.status == 'ERROR':
                    raise utils.ResourceInErrorState(
                        current, 'Server %s went to ERROR: %s'
                        % (utils.label(current), current.fault or 'no reason given'))
                return current


@arg('name')
@arg('--memory-mb', type=utils.positive_int, required=True, metavar='MB')
@arg('--vcpus', type=utils.positive_int, default=1)
@arg('--kernel', metavar='NAME',
     help='Kernel: an image of the image store (admins: or an allowed host path).')
@arg('--initrd', metavar='NAME',
     help='Initramfs: an image of the image store (admins: or an allowed host path).')
@arg('--cmdline', metavar='ARGS', help='Kernel command line.')
@arg('--volume', metavar='ID|NAME', help='Boot from this volume instead.')
@arg('--availability-zone', metavar='AZ[:HOST]')
@arg('--id', metavar='UUID', help="Use this UUID (e.g. a Nova instance's).")
@utils.wait_args
def do_server_create(gc: Any, args: argparse.Namespace) -> None:
    """Start a server."""
    volume_id = find_resource(gc.gc_volumes, args.volume).id if args.volume else None
    server = gc.gc_servers.create(args.name, args.memory_mb, vcpus=args.vcpus,
                                  kernel=args.kernel, initrd=args.initrd,
                                  cmdline=args.cmdline, volume_id=volume_id,
                                  availability_zone=args.availability_zone, id=args.id)
    if args.wait:
        server = utils.wait_for(gc.gc_servers, server, args.timeout, 'building')
    utils.print_dict(server, args.json)


def do_server_list(gc: Any, args: argparse.Namespace) -> None:
    """List servers."""
    utils.print_list(gc.gc_servers.list(), LIST_COLUMNS, args.json)


@arg('server', metavar='ID|NAME')
def do_server_show(gc: Any, args: argparse.Namespace) -> None:
    """Show a server."""
    utils.print_dict(find_resource(gc.gc_servers, args.server), args.json)


@arg('servers', metavar='ID|NAME', nargs='+')
@utils.wait_args
def do_server_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete servers."""
    def delete(name_or_id: str) -> Server:
        server = find_resource(gc.gc_servers, name_or_id)
        gc.gc_servers.delete(server)
        return server

    def wait(server: Server) -> None:
        utils.wait_for(gc.gc_servers, server, args.timeout, 'deleting', deleted=True)

    utils.for_each(args.servers, delete, 'Unable to delete server(s)',
                   wait if args.wait else None)


@arg('server', metavar='ID|NAME')
@arg('--length', type=utils.positive_int, metavar='LINES', help='Only the last lines.')
def do_server_console(gc: Any, args: argparse.Namespace) -> None:
    """Print a server's serial console output."""
    server = find_resource(gc.gc_servers, args.server)
    print(gc.gc_servers.console_output(server, args.length), end='')
