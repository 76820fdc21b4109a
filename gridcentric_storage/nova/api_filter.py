"""nova-api's paste filter: Cobalt's ``co_*`` dialect in front of Nova's own API.

Placed right after ``keystonecontext`` in the pipelines of
``[composite:openstack_compute_api_v21]`` (``etc/nova/api-paste.ini.fragment``),
where ``environ['nova.context']`` holds the caller. It answers

* ``POST /v2.1[/{project_id}]/servers/{id}/action`` whose body's one key is a
  ``co_*``/``gc_*`` action (any other body goes to Nova byte for byte);
* ``POST /gcservers`` and ``/coservers`` (Cobalt's boot) become Nova's own
  ``POST /servers``;
* ``GET /gcinfo`` and ``/cobaltinfo``; ``POST /co-import-server`` (and
  ``gc-import-server``); the policy paths (400: not supported for Nova's
  instances yet);
* the reads Cobalt's clients make of a live image as a server: ``GET
  /servers/{id}`` when Nova answers 404, ``GET /servers[/detail]?name=``
  (matching live images are appended to Nova's answer), and ``DELETE
  /servers/{live image}`` (400: discard it instead), again only after Nova
  answered 404.

Everything else passes through untouched. The answers come from the
``cobalt`` RPC endpoint in gridcentric-api (``nova.rpcapi``); this module
imports neither Nova nor ``gridcentric_storage.conf`` and never touches the
global ``cfg.CONF``, which is Nova's in this process. When the endpoint
cannot be reached an action is a 503; the reads keep Nova's own answer.
"""

import io
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import oslo_messaging as messaging
import webob
from oslo_config import cfg

from gridcentric_storage.common import exception
from gridcentric_storage.nova import rpcapi

LOG = logging.getLogger(__name__)

DEFAULT_CONFIG_FILE = '/etc/gridcentric-storage/gridcentric-storage.conf'
#: A Cobalt action's body is small (its largest field, user_data, is at most
#: 64 KiB); a larger co_* body is refused before it is parsed.
MAX_BODY = 128 * 1024
CAPABILITIES = ['user-data', 'launch-name', 'availability-zone', 'num-instances',
                'bless-name', 'launch-key', 'scheduler-hints', 'launch-nics',
                'security-groups', 'import-export']
_SUPPORTED = ('bless', 'launch', 'discard', 'list_launched', 'list_blessed', 'export',
              'migrate')
_NOT_YET = ('import', 'get_policy', 'install_policy')
_FAULTS = {400: 'badRequest', 401: 'unauthorized', 403: 'forbidden', 404: 'itemNotFound',
           405: 'badMethod', 409: 'conflictingRequest', 413: 'overLimit',
           415: 'badMediaType', 501: 'notImplemented', 503: 'serviceUnavailable'}

_PROJECT = r'(?:/(?P<project>[^/]+))?'
_ACTION = re.compile(_PROJECT + r'/servers/(?P<id>[^/]+)/action/?$')
_SERVER = re.compile(_PROJECT + r'/servers/(?P<id>[^/]+)/?$')
_LIST = re.compile(_PROJECT + r'/servers(?P<detail>/detail)?/?$')
#: Cobalt's boot "into a target" (the old clients' gc-boot): Nova's own create
_BOOT = re.compile(_PROJECT + r'/(?:gc|co)servers/?$')
_INFO = re.compile(_PROJECT + r'/(?:gcinfo|cobaltinfo)/?$')
_IMPORT = re.compile(_PROJECT + r'/(?:gc|co)-import-server/?$')
_NOT_SUPPORTED_PATHS = re.compile(_PROJECT + r'/(?:gcpolicy|copolicy)/?$')
#: How a co_* body starts, to tell a broken or oversized one from Nova's own.
_COBALT_BODY = re.compile(rb'^\s*\{\s*"(?:co|gc)_')

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def fault(code: int, message: str) -> webob.Response:
    """An error the way Nova renders its faults."""
    name = _FAULTS.get(code, 'computeFault')
    response = webob.Response(status=code, content_type='application/json', charset=None)
    response.body = json.dumps({name: {'code': code, 'message': message}}).encode()
    return response


def _json(body: Any, status: int = 200) -> webob.Response:
    response = webob.Response(status=status, content_type='application/json', charset=None)
    response.body = json.dumps(body).encode()
    return response


def _context(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The caller, from the context nova-api's keystonecontext made, as the dict
    oslo.context rebuilds on the other side."""
    ctxt = environ.get('nova.context')
    if ctxt is None:
        return None
    get = lambda name: getattr(ctxt, name, None)  # noqa: E731
    return {'user': get('user_id'), 'project_id': get('project_id'),
            'roles': list(get('roles') or []), 'is_admin': bool(get('is_admin')),
            'auth_token': get('auth_token'), 'request_id': get('request_id'),
            'global_request_id': get('global_request_id'), 'user_name': get('user_name'),
            'project_name': get('project_name'), 'user_domain': get('user_domain_id'),
            'project_domain': get('project_domain_id')}


class _PrefixedInput(io.RawIOBase):
    """The bytes already read, then the rest of the original stream."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head = io.BytesIO(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._head.read(len(buffer)) or self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _read_body(environ: dict[str, Any]) -> tuple[bytes, bool]:
    """The body, or its first bytes when it is longer than ``MAX_BODY``; and
    whether that is the whole body. Never reads past the body's end: on a
    plain socket that would wait for bytes that never come."""
    stream = environ['wsgi.input']
    try:
        length = int(environ.get('CONTENT_LENGTH') or -1)
    except ValueError:
        length = -1
    if length < 0 and not environ.get('wsgi.input_terminated'):
        return b'', True  # no length and no terminated stream: WSGI's empty body
    limit = MAX_BODY + 1 if length < 0 else min(length, MAX_BODY + 1)
    chunks, size = [], 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    head = b''.join(chunks)
    return head, size <= MAX_BODY


class CobaltFilter:
    def __init__(self, app: WSGIApp, conf: cfg.ConfigOpts,
                 client: rpcapi.CobaltAPI | None = None) -> None:
        self.app = app
        self.conf = conf
        self._client = client
        self._lock = threading.Lock()

    @property
    def rpc(self) -> rpcapi.CobaltAPI:
        # Made on first use: nova-api's WSGI servers fork workers after the
        # pipeline is loaded, and a transport must not cross a fork.
        with self._lock:
            if self._client is None:
                self._client = rpcapi.CobaltAPI(self.conf)
            return self._client

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        handler = self._route(environ)
        if handler is None:
            return self.app(environ, start_response)
        req = webob.Request(environ)
        try:
            response = handler(req)
        except Exception:
            LOG.exception('The gridcentric filter failed on %s %s', req.method, req.path)
            response = fault(500, 'Unexpected error in the gridcentric filter; see '
                                  "nova-api's log.")
        return response(environ, start_response)

    def _route(self, environ: dict[str, Any]
               ) -> Callable[[webob.Request], webob.Response] | None:
        method = environ.get('REQUEST_METHOD')
        path = environ.get('PATH_INFO') or '/'
        if method == 'POST' and (m := _ACTION.match(path)):
            return self._maybe_action(m)
        if method == 'POST' and (m := _BOOT.match(path)):
            # Nova makes the server as for POST /servers, with the caller's quotas
            # and policy; Cobalt's gc:target_host metadata is plain metadata there.
            environ['PATH_INFO'] = '%s/servers' % ('/' + m['project'] if m['project'] else '')
            return None
        if method == 'POST' and (m := _IMPORT.match(path)):
            return self._ours(m, self._import)
        if m := _INFO.match(path):
            return self._ours(m, lambda req, ctxt: _json({'capabilities': CAPABILITIES}))
        if m := _NOT_SUPPORTED_PATHS.match(path):
            return self._ours(m, lambda req, ctxt: fault(
                400, '%s is not supported for Nova instances yet' % req.path_info))
        if 'nova.context' not in environ:
            return None  # reads are Nova's alone when the filter cannot tell who asks
        if method == 'GET' and (m := _LIST.match(path)) and 'name=' in (
                environ.get('QUERY_STRING') or ''):
            return self._ours(m, self._list)
        if method in ('GET', 'DELETE') and (m := _SERVER.match(path)) and m['id'] != 'detail':
            return self._ours(m, lambda req, ctxt: self._server(req, ctxt, m['id']))
        return None

    def _ours(self, match: re.Match[str],
              handler: Callable[[webob.Request, dict[str, Any]], webob.Response]
              ) -> Callable[[webob.Request], webob.Response]:
        def checked(req: webob.Request) -> webob.Response:
            ctxt = _context(req.environ)
            if ctxt is None:
                LOG.error('No nova.context: the gridcentric filter must come right after '
                          'keystonecontext in api-paste.ini')
                return fault(500, 'The gridcentric filter is misplaced in nova-api.')
            project = match['project']
            if project and project != ctxt['project_id']:
                # What Nova answers for the same mismatch.
                return fault(400, "Malformed request URL: URL's project_id '%s' doesn't "
                                  "match Context's project_id '%s'"
                             % (project, ctxt['project_id']))
            return handler(req, ctxt)
        return checked

    @staticmethod
    def _root(req: webob.Request) -> str:
        """The URL above ``/v2.1``, under which Nova's links are built."""
        root = req.application_url
        return root[:-len('/v2.1')] if root.endswith('/v2.1') else root

    # ---- POST /servers/{id}/action
    def _maybe_action(self, match: re.Match[str]
                      ) -> Callable[[webob.Request], webob.Response]:
        def handle(req: webob.Request) -> webob.Response:
            environ = req.environ
            stream = environ['wsgi.input']
            head, whole = _read_body(environ)
            if not whole:
                if _COBALT_BODY.match(head):
                    return fault(400, 'A Cobalt action body may be at most %d bytes'
                                 % MAX_BODY)
                environ['wsgi.input'] = io.BufferedReader(_PrefixedInput(head, stream))
                environ.pop('webob.is_body_seekable', None)
                return req.get_response(self.app)
            # Nova reads exactly the bytes the client sent.
            environ['wsgi.input'] = io.BytesIO(head)
            environ['CONTENT_LENGTH'] = str(len(head))
            environ.pop('HTTP_TRANSFER_ENCODING', None)
            try:
                body = json.loads(head)
            except ValueError:
                if _COBALT_BODY.match(head):
                    return fault(400, 'Malformed request body')
                return req.get_response(self.app)
            if not (isinstance(body, dict) and len(body) == 1
                    and re.match(r'(co|gc)_', next(iter(body)))):
                return req.get_response(self.app)
            name, args = next(iter(body.items()))
            return self._ours(match, lambda req, ctxt: self._action(
                req, ctxt, match['id'], name, args))(req)
        return handle

    def _action(self, req: webob.Request, ctxt: dict[str, Any], id: str, name: str,
                args: Any) -> webob.Response:
        verb = name[3:]
        if verb in _NOT_YET:
            return fault(400, '%s is not supported for Nova instances yet' % name)
        if verb not in _SUPPORTED:
            return fault(400, 'There is no such action: %s' % name)
        root = self._root(req)
        try:
            if verb == 'discard':
                self.rpc.discard(ctxt, id, args)
                return _json(None)
            if verb in ('bless', 'list_launched', 'list_blessed'):
                return _json(getattr(self.rpc, verb)(ctxt, id, args, root))
            if verb == 'export':
                return _json(self.rpc.export(ctxt, id, args))
            if verb == 'migrate':
                self.rpc.migrate(ctxt, id, args)
                return _json(None)
            return _json(self.rpc.launch(ctxt, id, args, root))
        except Exception as e:
            return self._failed(e)

    def _import(self, req: webob.Request, ctxt: dict[str, Any]) -> webob.Response:
        head, whole = _read_body(req.environ)
        if not whole:
            return fault(400, 'An import body may be at most %d bytes' % MAX_BODY)
        try:
            body = json.loads(head)
        except ValueError:
            return fault(400, 'Malformed request body')
        try:
            return _json(self.rpc.import_server(ctxt, body, self._root(req)))
        except Exception as e:
            return self._failed(e)

    def _failed(self, error: Exception) -> webob.Response:
        if isinstance(error, exception.QuotaExceeded):
            response = fault(413, error.message)
            response.headers['Retry-After'] = '0'
            return response
        if isinstance(error, exception.InvalidState):  # Cobalt's code for a state conflict
            return fault(400, error.message)
        if isinstance(error, exception.GCException) and error.code < 500:
            return fault(error.code, error.message)
        if isinstance(error, exception.ServiceUnavailable):
            return fault(503, error.message)
        if isinstance(error, messaging.MessagingTimeout):
            return fault(503, 'The gridcentric-storage service did not answer within %d '
                              's (is gridcentric-api running with [nova] enabled = true, on '
                              'topic %s?)' % (self.conf.nova.rpc_timeout,
                                              self.conf.nova.cobalt_topic))
        if isinstance(error, messaging.MessagingException):
            LOG.warning('The cobalt endpoint cannot be reached: %s', error)
            return fault(503, 'The gridcentric-storage service cannot be reached.')
        LOG.error('The cobalt endpoint failed: %s', error)
        return fault(500, 'The gridcentric-storage service failed; see its log.')

    # ---- reads of live images as servers
    def _server(self, req: webob.Request, ctxt: dict[str, Any], id: str
                ) -> webob.Response:
        response = req.get_response(self.app)
        if response.status_int != 404:
            return response
        try:
            live_image = self.rpc.show(ctxt, id, self._root(req))
        except Exception as e:
            LOG.warning('Could not ask the cobalt endpoint about %s: %s', id, e)
            return response  # Nova's own answer
        if live_image is None:
            return response
        if req.method == 'DELETE':
            return fault(400, 'Server %s is blessed; discard it instead' % id)
        return _json({'server': live_image})

    def _list(self, req: webob.Request, ctxt: dict[str, Any]) -> webob.Response:
        response = req.get_response(self.app)
        name = req.GET.get('name')
        # Live images join the first page only: they have no place in Nova's order.
        if response.status_int != 200 or not name or 'marker' in req.GET:
            return response
        # Nova's reading of the flag; whether the caller may is the endpoint's call.
        all_tenants = 'all_tenants' in req.GET and req.GET['all_tenants'].lower() not in (
            '0', 'false', 'no', 'off', 'n', 'f')
        try:
            body = json.loads(response.body)
            found = self.rpc.find(ctxt, name, all_tenants, self._root(req))
        except Exception as e:
            LOG.warning('Could not ask the cobalt endpoint for live images named %r: %s',
                        name, e)
            return response
        if not found:
            return response
        if not req.path_info.rstrip('/').endswith('/detail'):
            found = [{'id': s['id'], 'name': s['name'], 'links': s['links']} for s in found]
        body['servers'] = list(body.get('servers') or []) + found
        response.body = json.dumps(body).encode()
        return response


def load_conf(config_file: str) -> cfg.ConfigOpts:
    """A private configuration: this service's file, never nova-api's ``CONF``."""
    if not os.path.exists(config_file):
        raise RuntimeError('gridcentric filter: configuration file %s not found (set '
                           'config_file in its api-paste.ini section)' % config_file)
    conf = cfg.ConfigOpts()
    rpcapi.register_opts(conf)
    conf(args=[], project='gridcentric-storage', default_config_files=[config_file])
    return conf


def filter_factory(global_conf: dict[str, Any], **local_conf: Any
                   ) -> Callable[[WSGIApp], CobaltFilter]:
    """paste.deploy's entry: ``paste.filter_factory =
    gridcentric_storage.nova.api_filter:filter_factory``."""
    conf = load_conf(local_conf.get('config_file', DEFAULT_CONFIG_FILE))
    return lambda app: CobaltFilter(app, conf)
