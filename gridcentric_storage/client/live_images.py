"""Live images: bless a running server, launch clones, discard (Cobalt's verbs).

A novaclient extension module: :class:`GridcentricManager` is attached as
``gridcentric``, as Gridcentric's own client was, and speaks the Nova-extension
actions (``co_bless``, ``co_launch``, ...) so Python code written for Cobalt
reads the same::

    blessed = nova.gridcentric.bless(server, name='gold')      # a BLESSED "server"
    nova.gridcentric.wait(blessed)                             # live image blessed
    clone = nova.gridcentric.launch(blessed, name='web', num_instances=4,
                                    guest={'role': 'web'})
    nova.gridcentric.list_launched(blessed)
    nova.gridcentric.discard(blessed)
"""

from __future__ import annotations

import argparse
import base64
import builtins
from typing import Any

from novaclient import base
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

LIST_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Status', 'status'),
                ('Server', 'server_id'), ('Host', 'host'), ('Memory MB', 'memory_mb')]
SERVER_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Status', 'status'),
                  ('Host', 'OS-EXT-SRV-ATTR:host')]


class LiveImage(base.Resource):
    def __repr__(self) -> str:
        return '<LiveImage %s>' % (self._info.get('name') or self._info.get('id'))


class CobaltServer(base.Resource):
    """A server as Nova shows it; a live image appears as one in state BLESSED."""


class GridcentricManager(utils.GCManager):
    resource_class = LiveImage
    collection_key = 'live_images'
    resource_key = 'live_image'
    base_url = '/v1/live-images'
    transitional = frozenset({'blessing', 'discarding'})

    def _action(self, server: Any, action: str, args: dict[str, Any] | None = None) -> Any:
        url = '/v2.1/servers/%s/action' % base.getid(server)
        _resp, body = self.api.client.post(url, body={action: args or {}})
        return body

    def _servers(self, body: Any) -> builtins.list[CobaltServer]:
        # Cobalt's answers are bare lists of server views.
        return [CobaltServer(self, info, loaded=True) for info in body or []]

    def list(self, server: Any = None, name: str | None = None) -> list[LiveImage]:
        params = {'server_id': base.getid(server) if server is not None else None}
        images = self._list_paged(params)
        if name is not None:
            return base.ListWithMeta([i for i in images if i.name == name],
                                     images.request_ids)
        return images

    def bless(self, server: Any, name: str | None = None) -> CobaltServer:
        return self._servers(self._action(server, 'co_bless',
                                          {'name': name} if name else {}))[0]

    def launch(self, live_image: Any, name: str | None = None, num_instances: int = 1,
               user_data: bytes | None = None, key_name: str | None = None,
               availability_zone: str | None = None,
               scheduler_hints: dict[str, Any] | None = None,
               guest: dict[str, str] | None = None,
               networks: builtins.list[dict[str, Any]] | None = None) -> CobaltServer:
        args: dict[str, Any] = {'num_instances': num_instances}
        for key, value in (('name', name), ('key_name', key_name),
                           ('availability_zone', availability_zone),
                           ('scheduler_hints', scheduler_hints), ('guest', guest),
                           ('networks', networks)):
            if value:
                args[key] = value
        if user_data:
            args['user_data'] = base64.b64encode(user_data).decode()
        return self._servers(self._action(live_image, 'co_launch', args))[0]

    def discard(self, live_image: Any) -> None:
        self._action(live_image, 'co_discard')

    def list_launched(self, live_image: Any) -> builtins.list[CobaltServer]:
        return self._servers(self._action(live_image, 'co_list_launched'))

    def list_blessed(self, server: Any) -> builtins.list[CobaltServer]:
        return self._servers(self._action(server, 'co_list_blessed'))

    def capabilities(self) -> builtins.list[str]:
        _resp, body = self.api.client.get('/cobaltinfo')
        return list(body['capabilities'])


@arg('server', metavar='SERVER', help='ID or name of a running server.')
@arg('name', metavar='NAME', nargs='?', help='Name of the live image.')
@utils.wait_args
def do_live_image_create(gc: Any, args: argparse.Namespace) -> None:
    """Bless a running server into a live image (alias: bless)."""
    server = find_resource(gc.gc_servers, args.server)
    blessed = gc.gridcentric.bless(server, args.name)
    if args.wait:
        utils.wait_for(gc.gridcentric, blessed, args.timeout, 'blessing')
    utils.print_dict(gc.gridcentric.get(blessed.id), args.json)


@arg('--live-image', metavar='LIVE_IMAGE', required=True,
     help='ID or name of the live image.')
@arg('name', metavar='NAME', nargs='?', help='Name of the new server(s).')
@arg('--num-instances', type=utils.positive_int, default=1)
@arg('--user-data', metavar='FILE', type=argparse.FileType('rb'))
@arg('--key-name')
@arg('--availability-zone', metavar='AZ[:HOST]')
@arg('--params', action='append', metavar='KEY=VALUE',
     help='A guest parameter (repeatable).')
@arg('--hint', action='append', metavar='KEY=VALUE',
     help='A scheduler hint (repeatable).')
@arg('--nic', action='append', metavar='net-id=UUID',
     help='A network (repeatable; Nova\'s --nic form).')
@utils.wait_args
def do_live_image_start(gc: Any, args: argparse.Namespace) -> None:
    """Launch servers from a live image (alias: launch)."""
    networks = [{'uuid' if k == 'net-id' else k: v}
                for k, v in utils.key_values(args.nic, '--nic')]
    hints = dict(utils.key_values(args.hint, '--hint'))
    guest = dict(utils.key_values(args.params, '--params'))
    live_image = find_resource(gc.gridcentric, args.live_image)
    first = gc.gridcentric.launch(
        live_image, name=args.name, num_instances=args.num_instances,
        user_data=args.user_data.read() if args.user_data else None,
        key_name=args.key_name, availability_zone=args.availability_zone,
        scheduler_hints=hints, guest=guest, networks=networks)
    clones = gc.gridcentric.list_launched(live_image)
    if args.wait:
        for clone in clones:
            utils.wait_for(gc.gc_servers, clone, args.timeout, 'launching')
        clones = gc.gridcentric.list_launched(live_image)
    if args.json:
        utils.print_json([c.to_dict() for c in clones])
    else:
        print(f'Launched from {utils.label(live_image)}; first server {first.id}')
        utils.print_list(clones, SERVER_COLUMNS)


@arg('live_images', metavar='LIVE_IMAGE', nargs='+')
@utils.wait_args
def do_live_image_delete(gc: Any, args: argparse.Namespace) -> None:
    """Discard live images; refused while servers launched from them exist (alias: discard)."""
    for name_or_id in args.live_images:
        live_image = find_resource(gc.gridcentric, name_or_id)
        gc.gridcentric.discard(live_image)
        if args.wait:
            utils.wait_for(gc.gridcentric, live_image, args.timeout, 'discarding',
                           deleted=True)


@arg('server', metavar='SERVER', nargs='?', help='Only the live images of this server.')
def do_live_image_list(gc: Any, args: argparse.Namespace) -> None:
    """List live images (alias: list-blessed)."""
    server = find_resource(gc.gc_servers, args.server) if args.server else None
    utils.print_list(gc.gridcentric.list(server), LIST_COLUMNS, args.json)


@arg('live_image', metavar='LIVE_IMAGE')
def do_live_image_servers(gc: Any, args: argparse.Namespace) -> None:
    """List the servers launched from a live image (alias: list-launched)."""
    clones = gc.gridcentric.list_launched(find_resource(gc.gridcentric, args.live_image))
    if args.json:
        utils.print_json([c.to_dict() for c in clones])
    else:
        utils.print_list(clones, SERVER_COLUMNS)


def do_capabilities(gc: Any, args: argparse.Namespace) -> None:
    """The Cobalt capabilities of this cloud (alias: cobalt-capabilities)."""
    capabilities = gc.gridcentric.capabilities()
    if args.json:
        utils.print_json(capabilities)
    else:
        print('\n'.join(capabilities))


# Gridcentric/Cobalt command names, kept for users' scripts.
do_bless = do_live_image_create
do_launch = do_live_image_start
do_discard = do_live_image_delete
do_list_blessed = do_live_image_list
do_list_launched = do_live_image_servers
do_cobalt_capabilities = do_capabilities
