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
import json
from typing import Any

from novaclient import base, exceptions
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import cobalt, utils

LIST_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Status', 'status'),
                ('Server', 'server_id'), ('Host', 'host'), ('Memory MB', 'memory_mb')]
SERVER_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Status', 'status'),
                  ('Host', 'OS-EXT-SRV-ATTR:host')]
NOVA_MODE = ('against Nova\'s endpoint (--os-service-type compute) a live image is a '
             'server in status BLESSED')


class LiveImage(base.Resource):
    def __repr__(self) -> str:
        return '<LiveImage %s>' % (self._info.get('name') or self._info.get('id'))


class GridcentricManager(utils.GCManager):
    resource_class = LiveImage
    collection_key = 'live_images'
    resource_key = 'live_image'
    base_url = '/v1/live-images'
    transitional = frozenset({'blessing', 'discarding'})

    @property
    def _cobalt(self) -> cobalt.CobaltServerManager:
        return self.api.gc_cobalt  # type: ignore[no-any-return]

    def _action(self, server: Any, action: str, args: dict[str, Any] | None = None) -> Any:
        return self._cobalt.action(server, action, args)

    def _servers(self, body: Any) -> builtins.list[cobalt.CobaltServer]:
        return self._cobalt.servers(body)

    def list(self, server: Any = None, name: str | None = None) -> list[LiveImage]:
        params = {'server_id': base.getid(server) if server is not None else None}
        images = self._list_paged(params)
        if name is not None:
            return base.ListWithMeta([i for i in images if i.name == name],
                                     images.request_ids)
        return images

    def bless(self, server: Any, name: str | None = None) -> cobalt.CobaltServer:
        return self._servers(self._action(server, 'co_bless',
                                          {'name': name} if name else {}))[0]

    def launch(self, live_image: Any, name: str | None = None, num_instances: int = 1,
               user_data: bytes | None = None, key_name: str | None = None,
               availability_zone: str | None = None,
               scheduler_hints: dict[str, Any] | None = None,
               guest: dict[str, str] | None = None,
               networks: builtins.list[dict[str, Any]] | None = None) -> cobalt.CobaltServer:
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

    def list_launched(self, live_image: Any) -> builtins.list[cobalt.CobaltServer]:
        return self._servers(self._action(live_image, 'co_list_launched'))

    def list_blessed(self, server: Any) -> builtins.list[cobalt.CobaltServer]:
        return self._servers(self._action(server, 'co_list_blessed'))

    def capabilities(self) -> builtins.list[str]:
        return self._cobalt.capabilities()


def _find_server(gc: Any, name_or_id: str) -> Any:
    """A server: our own (standalone) or Nova's (``--os-service-type compute``)."""
    if gc.gc_cobalt.on_nova:
        return gc.gc_cobalt.find_server(name_or_id)
    return find_resource(gc.gc_servers, name_or_id)


def _find_live_image(gc: Any, name_or_id: str) -> Any:
    if gc.gc_cobalt.on_nova:
        return gc.gc_cobalt.find_server(name_or_id)
    return find_resource(gc.gridcentric, name_or_id)


def _print_servers(servers: builtins.list[Any], as_json: bool) -> None:
    if as_json:
        utils.print_json([s.to_dict() for s in servers])
    else:
        utils.print_list(servers, SERVER_COLUMNS)


@arg('server', metavar='SERVER', help='ID or name of a running server.')
@arg('name', metavar='NAME', nargs='?', help='Name of the live image.')
@arg('--name', dest='name_option', metavar='NAME', help='Name of the live image.')
@utils.wait_args
def do_live_image_create(gc: Any, args: argparse.Namespace) -> None:
    """Bless a running server into a live image (alias: bless)."""
    server = _find_server(gc, args.server)
    blessed = gc.gridcentric.bless(server, args.name_option or args.name)
    if gc.gc_cobalt.on_nova:
        if args.wait:
            blessed = gc.gc_cobalt.wait_settled(blessed, args.timeout, action='blessing')
        utils.print_dict(blessed.to_dict(), args.json)
        return
    if args.wait:
        utils.wait_for(gc.gridcentric, blessed, args.timeout, 'blessing')
    utils.print_dict(gc.gridcentric.get(blessed.id), args.json)


@arg('--live-image', metavar='LIVE_IMAGE',
     help='ID or name of the live image (or give it first, with --name).')
@arg('name', metavar='NAME', nargs='?',
     help='Name of the new server(s); without --live-image, the live image.')
@arg('--name', dest='name_option', metavar='NAME', help='Name of the new server(s).')
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
    # Cobalt's form: --live-image LI NAME; the short one: LI --name NAME
    if args.live_image:
        which, name = args.live_image, args.name_option or args.name
    elif args.name:
        which, name = args.name, args.name_option
    else:
        raise exceptions.CommandError('name the live image: launch LIVE_IMAGE [--name NAME] '
                                      'or live-image-start --live-image LIVE_IMAGE [NAME]')
    live_image = _find_live_image(gc, which)
    first = gc.gridcentric.launch(
        live_image, name=name, num_instances=args.num_instances,
        user_data=args.user_data.read() if args.user_data else None,
        key_name=args.key_name, availability_zone=args.availability_zone,
        scheduler_hints=hints, guest=guest, networks=networks)
    clones = gc.gridcentric.list_launched(live_image)
    if args.wait:
        for clone in clones:
            if gc.gc_cobalt.on_nova:
                gc.gc_cobalt.wait_settled(clone, args.timeout, action='launching')
            else:
                utils.wait_for(gc.gc_servers, clone, args.timeout, 'launching')
        clones = gc.gridcentric.list_launched(live_image)
    if not args.json:
        print(f'Launched from {utils.label(live_image)}; first server {first.id}')
    _print_servers(clones, args.json)


@arg('live_images', metavar='LIVE_IMAGE', nargs='+')
@utils.wait_args
def do_live_image_delete(gc: Any, args: argparse.Namespace) -> None:
    """Discard live images; refused while servers launched from them exist (alias: discard)."""
    for name_or_id in args.live_images:
        live_image = _find_live_image(gc, name_or_id)
        gc.gridcentric.discard(live_image)
        if args.wait and gc.gc_cobalt.on_nova:
            gc.gc_cobalt.wait_settled(live_image, args.timeout, deleted=True,
                                      action='discarding')
        elif args.wait:
            utils.wait_for(gc.gridcentric, live_image, args.timeout, 'discarding',
                           deleted=True)


@arg('server', metavar='SERVER', nargs='?',
     help='Only the live images of this server (required against Nova\'s endpoint).')
def do_live_image_list(gc: Any, args: argparse.Namespace) -> None:
    """List live images (alias: list-blessed)."""
    if gc.gc_cobalt.on_nova:
        if not args.server:
            raise exceptions.CommandError('name the server whose live images to list: '
                                          + NOVA_MODE)
        _print_servers(gc.gridcentric.list_blessed(_find_server(gc, args.server)), args.json)
        return
    server = _find_server(gc, args.server) if args.server else None
    utils.print_list(gc.gridcentric.list(server), LIST_COLUMNS, args.json)


@arg('live_image', metavar='LIVE_IMAGE')
def do_live_image_servers(gc: Any, args: argparse.Namespace) -> None:
    """List the servers launched from a live image (alias: list-launched)."""
    _print_servers(gc.gridcentric.list_launched(_find_live_image(gc, args.live_image)),
                   args.json)


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


@arg('server', metavar='SERVER', help='ID or name of a running server.')
@arg('--dest', metavar='HOST', help='Destination host (default: the scheduler picks).')
def do_cobalt_migrate(gc: Any, args: argparse.Namespace) -> None:
    """Live-migrate a server to another host (Cobalt's co_migrate; in a cloud with Nova,
    Nova's live migration, which its policy gives to administrators)."""
    server = _find_server(gc, args.server)
    gc.gc_cobalt.action(server, 'co_migrate', {'dest': args.dest} if args.dest else {})


@arg('live_image', metavar='LIVE_IMAGE')
def do_live_image_export(gc: Any, args: argparse.Namespace) -> None:
    """Export a live image; prints the document live-image-import takes."""
    exported = gc.gc_cobalt.action(_find_live_image(gc, args.live_image), 'co_export')
    utils.print_json(exported)


@arg('file', metavar='FILE', type=argparse.FileType('r'),
     help='What live-image-export printed (- for stdin).')
def do_live_image_import(gc: Any, args: argparse.Namespace) -> None:
    """Import an exported live image."""
    try:
        data = json.load(args.file)
    except ValueError as e:
        raise exceptions.CommandError('%s is not an export: %s' % (args.file.name, e)) from e
    _resp, body = gc.client.post('%s/co-import-server' % gc.gc_cobalt.root,
                                 body={'data': data})
    utils.print_dict(body.get('server') or body, args.json)


#: The Cobalt verbs: sent to Nova's endpoint in a cloud with Nova (shell._service_type).
COBALT_COMMANDS = frozenset({do_live_image_create, do_live_image_start, do_live_image_delete,
                             do_live_image_list, do_live_image_servers, do_capabilities,
                             do_cobalt_migrate, do_live_image_export, do_live_image_import})
