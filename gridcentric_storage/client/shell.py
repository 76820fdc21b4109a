"""``gc-api``: the command line of gridcentric-storage.

Authentication is keystoneauth's, with the usual ``--os-*`` options and ``OS_*``
environment variables::

    gc-api --os-auth-type none --os-endpoint http://127.0.0.1:8779 backend-list
    OS_AUTH_TYPE=none OS_ENDPOINT=http://127.0.0.1:8779 gc-api volume-create --size 1 --wait
    . openrc && gc-api backend-top        # keystone: endpoint from the catalog

The commands are the ``do_*`` functions of the extension modules listed in
:data:`gridcentric_storage.client.EXTENSIONS`. Exit status: 0 on success, 1 on any
failure (one ``ERROR: ...`` line on stderr; a traceback only with ``--debug``),
2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading, noauth
from novaclient import exceptions as nova_exc
from novaclient import utils as nova_utils

from gridcentric_storage import client as gc_client
from gridcentric_storage.client import cobalt, live_images, utils

DEFAULT_AUTH_TYPE = 'password'
NOAUTH_HINT = ('for an API without keystone use --os-auth-type none '
               '--os-endpoint URL (or OS_AUTH_TYPE=none OS_ENDPOINT=URL)')


class _VersionAction(argparse.Action):
    """``--version``, reading the package version only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help='Show the version and exit.')

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from gridcentric_storage import version
        sys.stdout.write(f'{parser.prog} {version.version_string}\n')
        parser.exit()


def _commands() -> Iterator[tuple[str, Callable[..., Any]]]:
    for _attr, module in gc_client.EXTENSIONS:
        for name, func in vars(module).items():
            if name.startswith('do_') and callable(func):
                yield name[3:].replace('_', '-'), func


def _add_service_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        'Service Options', 'Which endpoint of the service catalog to talk to.')
    env = nova_utils.env   # the first of these variables that is set and not empty
    group.add_argument('--os-service-type', metavar='<name>',
                       default=env('OS_GRIDCENTRIC_SERVICE_TYPE', default=None),
                       help='Service type in the catalog. Defaults to '
                            'env[OS_GRIDCENTRIC_SERVICE_TYPE]; else "gridcentric", '
                            'except for the live-image (Cobalt) commands, which go to '
                            '"compute" (Nova with the gridcentric filter) when the '
                            'catalog has it.')
    group.add_argument('--os-service-name', metavar='<name>',
                       default=env('OS_GRIDCENTRIC_SERVICE_NAME', default=None),
                       help='Service name in the catalog. Defaults to '
                            'env[OS_GRIDCENTRIC_SERVICE_NAME].')
    group.add_argument('--os-interface', '--os-endpoint-type', metavar='<name>',
                       default=env('OS_INTERFACE', 'OS_ENDPOINT_TYPE', default='public'),
                       help='public, internal or admin. Defaults to env[OS_INTERFACE] '
                            'or "public".')
    group.add_argument('--os-region-name', metavar='<name>',
                       default=env('OS_REGION_NAME', default=None),
                       help='Region of the endpoint. Defaults to env[OS_REGION_NAME].')
    group.add_argument('--os-endpoint-override', metavar='<url>',
                       default=env('OS_ENDPOINT_OVERRIDE', default=None),
                       help='API root to use instead of the catalog\'s, e.g. '
                            'http://host:8779. Defaults to env[OS_ENDPOINT_OVERRIDE].')


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The full parser; ``argv`` is needed to register the chosen auth plugin's options."""
    parser = argparse.ArgumentParser(
        prog='gc-api', description='Command line of gridcentric-storage.',
        epilog=f'Authentication: {NOAUTH_HINT}; with keystone the usual --os-auth-url, '
               '--os-username, --os-password, --os-project-name... (or an openrc file).')
    parser.add_argument('--version', action=_VersionAction)
    parser.add_argument('--json', action='store_true', help='Print JSON, not tables.')
    parser.add_argument('--debug', action='store_true',
                        help='Log HTTP requests; print tracebacks on errors.')
    loading.register_session_argparse_arguments(parser)
    loading.register_auth_argparse_arguments(parser, list(argv), default=DEFAULT_AUTH_TYPE)
    _add_service_arguments(parser)

    # --json/--debug are also accepted after the command (SUPPRESS keeps the
    # value given before it when they are absent there).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--json', action='store_true', default=argparse.SUPPRESS,
                        help='Print JSON, not tables.')
    common.add_argument('--debug', action='store_true', default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
    commands = parser.add_subparsers(title='commands', dest='command', metavar='COMMAND')
    commands.required = True
    for name, func in _commands():
        doc = (func.__doc__ or '').strip()
        sub = commands.add_parser(name, parents=[common], help=doc.split('\n')[0],
                                  description=doc)
        for args, kwargs in getattr(func, 'arguments', []):
            sub.add_argument(*args, **kwargs)
        sub.set_defaults(func=func)
    return parser


def make_client(args: argparse.Namespace) -> Any:
    """A client from parsed options (no network traffic unless the catalog is asked
    where a live-image command goes)."""
    auth = loading.load_auth_from_argparse_arguments(args)
    session = loading.load_session_from_argparse_arguments(args, auth=auth, app_name='gc-api')
    args.os_service_type = _service_type(args, auth, session)
    return gc_client.get_client(
        session, endpoint_override=args.os_endpoint_override,
        service_type=args.os_service_type, service_name=args.os_service_name,
        endpoint_type=args.os_interface, region_name=args.os_region_name)


def _service_type(args: argparse.Namespace, auth: Any, session: Any) -> str:
    """The one asked for; else Nova's for live-image commands in a cloud whose
    catalog has Nova (its live images are Nova instances, served by the
    gridcentric filter in nova-api); else ours."""
    if args.os_service_type:
        return str(args.os_service_type)
    cobalt_command = args.func in live_images.COBALT_COMMANDS
    if cobalt_command and not args.os_endpoint_override and not isinstance(auth, noauth.NoAuth):
        try:
            if session.get_endpoint(auth, service_type=cobalt.NOVA_SERVICE_TYPE,
                                    interface=args.os_interface,
                                    region_name=args.os_region_name):
                return cobalt.NOVA_SERVICE_TYPE
        except ks_exc.EndpointNotFound:
            pass
    return gc_client.SERVICE_TYPE


def _known_endpoint(args: argparse.Namespace, gc: Any) -> str | None:
    endpoint = args.os_endpoint_override or getattr(args, 'os_endpoint', None)
    if endpoint or gc is None:
        return endpoint
    try:   # from the (cached) catalog; fails when keystone itself is unreachable
        return gc.client.get_endpoint()
    except Exception:
        return None


def _describe(exc: BaseException, args: argparse.Namespace, gc: Any) -> str:
    if isinstance(exc, nova_exc.ClientException):
        message = exc.message if exc.message not in (None, '', 'n/a') else type(exc).message
        return f'{message} (HTTP {exc.code})'
    failure = _cause(exc, (ks_exc.ConnectFailure, ks_exc.ConnectTimeout))
    if failure is not None:
        reason = _connect_reason(failure)
        # Discovery failures are keystone's; otherwise ask the catalog (cached
        # after a successful authentication) where the API should have been.
        in_discovery = isinstance(exc, ks_exc.DiscoveryFailure)
        endpoint = None if in_discovery else _known_endpoint(args, gc)
        if endpoint:
            return (f'The gridcentric API is not reachable at {endpoint} ({reason}); '
                    'is gridcentric-api running there?')
        auth_url = getattr(args, 'os_auth_url', None)
        if auth_url:
            return f'The identity service is not reachable at {auth_url} ({reason}).'
        return str(failure)
    if isinstance(exc, ks_exc.MissingRequiredOptions):
        return f'{exc}; {NOAUTH_HINT}.'
    if isinstance(exc, ks_exc.EndpointNotFound):
        return (f'No endpoint for service type {args.os_service_type!r} ({exc}); '
                f'set --os-endpoint-override, or {NOAUTH_HINT}.')
    if isinstance(exc, (utils.ClientError, nova_exc.CommandError, ks_exc.ClientException)):
        return str(exc)
    return f'{type(exc).__name__}: {exc}'


def _cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """``exc`` or the first exception of ``kinds`` it was raised from or during."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _connect_reason(exc: BaseException) -> str:
    """'Connection refused', 'Name or service not known'... from urllib3's long text."""
    match = re.search(r'\[Errno -?\d+\] ([^"\'()]+)', str(exc))
    if match:
        return match.group(1).strip()
    return 'timed out' if isinstance(exc, ks_exc.ConnectTimeout) else 'cannot connect'


@contextlib.contextmanager
def _logging(debug: bool) -> Iterator[None]:
    """With --debug, log everything (HTTP requests included) to stderr; without it,
    nothing: library warnings would break the one-line error contract."""
    root = logging.getLogger()
    handler: logging.Handler
    old_level = root.level
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(levelname)s %(name)s: %(message)s'))
        root.setLevel(logging.DEBUG)
    else:
        handler = logging.NullHandler()   # keeps logging's last-resort stderr handler away
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _one_line(text: str) -> str:
    return ' '.join(str(text).split()) or 'unknown error'


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:   # usage errors (2), --help and --version (0)
        return _exit_code(exc)
    except ks_exc.NoMatchingPlugin as exc:
        sys.stderr.write(f'gc-api: error: {_one_line(str(exc))}\n')
        return 2

    with _logging(args.debug):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    gc = None
    try:
        gc = make_client(args)
        args.func(gc, args)
        return 0
    except KeyboardInterrupt:
        sys.stderr.write('ERROR: Interrupted\n')
        return 130
    except BrokenPipeError:   # e.g. `gc-api backend-list | head -1`
        _silence_stdout()
        return 1
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f'ERROR: {_one_line(_describe(exc, args, gc))}\n')
        return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == '__main__':
    sys.exit(main())
