"""A tiny in-memory stand-in for the gridcentric-storage REST API, for client unit tests.

It is *not* the real API: it implements only what ``gridcentric_storage.client``
talks to (``/v1/backends``, ``/v1/volumes``; snapshots, attachments, volume actions,
streams and the image cache in :mod:`.fake_api_volumes`) with the documented request and
response envelopes, Cinder-style fault bodies (``{"conflict": {"code": 409,
"message": ...}}``), ``backends_links`` pagination, 202 + a transitional status
for volume create/delete, and a crude scheduler (enabled, up, role, zone, tags,
free space; lowest cost wins). Expressions are stored, not evaluated; there is no
policy. Functional tests against the real API are added separately.

A minimal keystone (``/identity/v3``) can be switched on to test catalog lookup.
It runs ``http.server`` in a thread on 127.0.0.1 with an ephemeral port::

    with FakeAPI() as api:
        print(api.url)       # http://127.0.0.1:NNNNN, the API root
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .fake_api_volumes import VolumeFeatures

ERROR_KEYS = {400: 'badRequest', 401: 'unauthorized', 403: 'forbidden',
              404: 'itemNotFound', 409: 'conflict', 411: 'lengthRequired'}
DRIVERS = ('fake', 'file', 'lvm', 'rbd', 'storpool', 'cinder')
BACKEND_CREATE = {'name', 'driver', 'options', 'role', 'cost', 'tags', 'availability_zone',
                  'host', 'max_over_subscription_ratio', 'reserved_percentage'}
BACKEND_UPDATE = BACKEND_CREATE - {'driver', 'host'}
VOLUME_CREATE = {'size', 'name', 'backend_id', 'tags', 'role', 'availability_zone',
                 'requirements', 'rank', 'source_volid', 'snapshot_id', 'imageRef',
                 'multiattach', 'capabilities'}
SECRET = re.compile('password|secret|token|key', re.I)
TOKEN = 'fake-token'


class Fault(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')


def _check_fields(body: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise Fault(400, f"Missing required element '{key}' in request body.")
    extra = sorted(set(body[key]) - allowed)
    if extra:
        unexpected = ', '.join(repr(e) for e in extra)
        raise Fault(400, f'Additional properties are not allowed ({unexpected} was unexpected)')
    return body[key]


class FakeAPI(VolumeFeatures):
    CAPACITY_GB = 100.0

    def __init__(self, settle_after: int = 2) -> None:
        # A volume in a transitional state settles on its ``settle_after``-th read.
        self.settle_after = settle_after
        self.max_limit = 1000       # page size cap, like Cinder's osapi_max_limit
        self.backends: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.deletes: list[tuple[str, dict[str, list[str]]]] = []   # (volume id, query)
        self.keystone = False       # serve /identity/v3 and require its token on /v1
        self.lock = threading.Lock()
        self._init_volume_features()
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        self.server.daemon_threads = True
        self.server.api = self      # type: ignore[attr-defined]
        self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.01,),
                                        daemon=True)

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- dispatch ----------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        self.requests.append((method, path, headers))
        if path.startswith('/identity'):
            return self._identity(method, path, body)
        if self.keystone and headers.get('x-auth-token') != TOKEN:
            raise Fault(401, 'The request you have made requires authentication.')
        for pattern, handler in self.ROUTES:
            match = re.fullmatch(pattern, path)
            if match:
                name = f'_{handler}_{method.lower()}'
                if not hasattr(self, name):
                    raise Fault(405, f'Method {method} not allowed.')
                code, payload = getattr(self, name)(*match.groups(), query=query, body=body)
                return code, payload, {}
        raise Fault(404, 'The resource could not be found.')

    ROUTES = [
        (r'/v1/backends', 'backends'),
        (r'/v1/backends/([^/]+)', 'backend'),
        (r'/v1/backends/([^/]+)/action', 'backend_action'),
        (r'/v1/volumes', 'volumes'),
        (r'/v1/volumes/([^/]+)', 'volume'),
    ] + VolumeFeatures.EXTRA_ROUTES

    # -- backends ----------------------------------------------------------

    def _view_backend(self, b: dict[str, Any]) -> dict[str, Any]:
        vols = [v for v in self.volumes.values() if v['backend_id'] == b['id']]
        provisioned = float(sum(v['size'] for v in vols))
        view = dict(b, options={k: ('***' if SECRET.search(k) else v)
                                for k, v in b['options'].items()})
        view.update(volume_count=len(vols), provisioned_capacity_gb=provisioned,
                    total_capacity_gb=self.CAPACITY_GB,
                    free_capacity_gb=self.CAPACITY_GB - provisioned)
        return view

    def _find_backend(self, backend_id: str) -> dict[str, Any]:
        if backend_id not in self.backends:
            raise Fault(404, f'Backend {backend_id} could not be found.')
        return self.backends[backend_id]

    def _validate_backend(self, fields: dict[str, Any], exclude: str | None = None) -> None:
        if 'name' in fields:
            if not isinstance(fields['name'], str) or not fields['name']:
                raise Fault(400, "Invalid input for field 'name': must be a non-empty string")
            if any(b['name'] == fields['name'] and b['id'] != exclude
                   for b in self.backends.values()):
                raise Fault(409, 'Backend with name {!r} already exists'.format(fields['name']))
        if 'role' in fields and fields['role'] not in ('san', 'repository'):
            raise Fault(400, "Invalid input for field 'role': {!r} is not one of "
                             "['san', 'repository']".format(fields['role']))
        if 'cost' in fields and (not isinstance(fields['cost'], int) or fields['cost'] < 0):
            raise Fault(400, "Invalid input for field 'cost': must be an integer >= 0")
        if 'tags' in fields and not (isinstance(fields['tags'], list) and
                                     all(isinstance(t, str) for t in fields['tags'])):
            raise Fault(400, "Invalid input for field 'tags': must be a list of strings")
        if 'options' in fields and not isinstance(fields['options'], dict):
            raise Fault(400, "Invalid input for field 'options': must be an object")

    def _backends_get(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = [self._view_backend(b) for b in self.backends.values()]
        for key in ('name', 'driver', 'state', 'status', 'role', 'host', 'availability_zone'):
            if key in query:
                items = [b for b in items if str(b[key]) == query[key][-1]]
        for tag in query.get('tag', []):
            items = [b for b in items if tag in b['tags']]
        sort_key = query.get('sort_key', ['created_at'])[-1]
        if items and sort_key not in items[0]:
            raise Fault(400, f'Invalid sort key {sort_key!r}')
        items.sort(key=lambda b: (b[sort_key] is None, b[sort_key]),
                   reverse=query.get('sort_dir', ['asc'])[-1] == 'desc')
        return 200, self._page(items, query, 'backends')

    def _page(self, items: list[dict[str, Any]], query: dict[str, list[str]],
              key: str) -> dict[str, Any]:
        if 'marker' in query:
            ids = [i['id'] for i in items]
            if query['marker'][-1] not in ids:
                raise Fault(400, 'Marker {} could not be found.'.format(query['marker'][-1]))
            items = items[ids.index(query['marker'][-1]) + 1:]
        result: dict[str, Any] = {key: items}
        limit = min(int(query.get('limit', [self.max_limit])[-1]), self.max_limit)
        if len(items) > limit:
            result[key] = items[:limit]
            next_query = {k: v[-1] for k, v in query.items() if k != 'marker'}
            next_query['marker'] = items[limit - 1]['id']
            href = f'{self.url}/v1/{key}?{urllib.parse.urlencode(next_query)}'
            result[key + '_links'] = [{'rel': 'next', 'href': href}]
        return result

    def _backends_post(self, query: Any, body: Any) -> tuple[int, Any]:
        fields = _check_fields(body, 'backend', BACKEND_CREATE)
        for required in ('name', 'driver'):
            if required not in fields:
                raise Fault(400, f"'{required}' is a required property")
        if fields['driver'] not in DRIVERS:
            raise Fault(400, f"Unknown driver {fields['driver']}; available: {', '.join(DRIVERS)}")
        self._validate_backend(fields)
        now = _now()
        backend = {
            'id': str(uuid.uuid4()), 'options': {}, 'state': 'enabled',
            'disabled_reason': None, 'status': 'up', 'role': 'san', 'cost': 0, 'tags': [],
            'availability_zone': 'nova', 'host': 'fakehost',
            'max_over_subscription_ratio': 1.0, 'reserved_percentage': 0,
            'capabilities': {'thin_provisioning_support': True}, 'created_at': now,
            'updated_at': None, 'stats_updated_at': now,
        }
        backend.update(fields)
        self.backends[backend['id']] = backend
        return 201, {'backend': self._view_backend(backend)}

    def _backend_get(self, backend_id: str, query: Any, body: Any) -> tuple[int, Any]:
        return 200, {'backend': self._view_backend(self._find_backend(backend_id))}

    def _backend_put(self, backend_id: str, query: Any, body: Any) -> tuple[int, Any]:
        backend = self._find_backend(backend_id)
        fields = _check_fields(body, 'backend', BACKEND_UPDATE)
        self._validate_backend(fields, exclude=backend_id)
        backend.update(fields, updated_at=_now())
        return 200, {'backend': self._view_backend(backend)}

    def _backend_delete(self, backend_id: str, query: Any, body: Any) -> tuple[int, Any]:
        backend = self._view_backend(self._find_backend(backend_id))
        if backend['volume_count']:
            raise Fault(409, f"Backend {backend['name']} still holds {backend['volume_count']} "
                             'volume(s); delete or migrate them first.')
        del self.backends[backend_id]
        return 204, None

    def _backend_action_post(self, backend_id: str, query: Any, body: Any) -> tuple[int, Any]:
        backend = self._find_backend(backend_id)
        if isinstance(body, dict) and set(body) == {'enable'}:
            backend.update(state='enabled', disabled_reason=None, updated_at=_now())
        elif isinstance(body, dict) and set(body) == {'disable'}:
            backend.update(state='disabled', disabled_reason=body['disable'].get('reason'),
                           updated_at=_now())
        else:
            raise Fault(400, 'Invalid action; expected one of: enable, disable')
        return 200, {'backend': self._view_backend(backend)}

    # -- volumes -----------------------------------------------------------

    def _settle(self, volume: dict[str, Any]) -> dict[str, Any] | None:
        """Count a read; a transitional volume settles after ``settle_after`` reads."""
        return self._settle_item(self.volumes, volume)

    def _schedule(self, volume: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        tags, size = set(spec.get('tags') or []), volume['size']
        candidates = [self._view_backend(b) for b in self.backends.values()
                      if spec.get('backend_id') in (None, b['id'])]
        candidates = [b for b in candidates
                      if b['state'] == 'enabled' and b['status'] == 'up'
                      and b['role'] == spec.get('role', 'san') and tags <= set(b['tags'])
                      and spec.get('availability_zone') in (None, b['availability_zone'])
                      and b['free_capacity_gb'] >= size]
        if not candidates:
            return {'status': 'error', 'status_reason': 'No valid backend was found: no '
                    f'enabled backend with tags {sorted(tags)} has {size} GiB free'}
        best = min(candidates, key=lambda b: (b['cost'], -b['free_capacity_gb']))
        return {'status': 'available', 'backend_id': best['id']}

    def _volumes_get(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = [v for v in (self._settle(v) for v in list(self.volumes.values())) if v]
        for key in ('name', 'status', 'backend_id'):
            if key in query:
                items = [v for v in items if v[key] == query[key][-1]]
        return 200, self._page(items, query, 'volumes')

    def _volumes_post(self, query: Any, body: Any) -> tuple[int, Any]:
        spec = _check_fields(body, 'volume', VOLUME_CREATE)
        origin = self._origin(spec)
        spec.setdefault('size', origin.pop('size', None))
        if not isinstance(spec.get('size'), int) or spec['size'] < 1:
            raise Fault(400, "Invalid input for field 'size': must be an integer >= 1")
        if spec.get('backend_id') is not None:
            self._find_backend(spec['backend_id'])
        now = _now()
        volume = {'id': str(uuid.uuid4()), 'name': spec.get('name'), 'size': spec['size'],
                  'status': 'creating', 'status_reason': None, 'backend_id': None,
                  'project_id': 'fake-project', 'user_id': 'fake-user',
                  'tags': spec.get('tags') or [], 'created_at': now, 'updated_at': None,
                  'source_volid': None, 'snapshot_id': None, 'image_id': None,
                  'multiattach': spec.get('multiattach', False), '_reads': 0}
        volume.update(origin)
        volume['_outcome'] = self._schedule(volume, spec)
        self.volumes[volume['id']] = volume
        return 202, {'volume': {k: v for k, v in volume.items() if not k.startswith('_')}}

    def _volume_get(self, volume_id: str, query: Any, body: Any) -> tuple[int, Any]:
        view = self._settle(self.volumes[volume_id]) if volume_id in self.volumes else None
        if view is None:
            raise Fault(404, f'Volume {volume_id} could not be found.')
        return 200, {'volume': view}

    def _volume_delete(self, volume_id: str, query: Any, body: Any) -> tuple[int, Any]:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise Fault(404, f'Volume {volume_id} could not be found.')
        self.deletes.append((volume_id, query))
        if self._live_attachments(volume_id) and 'force' not in query:
            raise Fault(409, f'Volume {volume_id} has attachments; detach it first')
        if any(s['volume_id'] == volume_id for s in self.snapshots.values()):
            if 'cascade' not in query:
                raise Fault(409, f'Volume {volume_id} has snapshots; delete them first')
        if volume['status'] not in ('available', 'error', 'in-use'):
            raise Fault(409, 'Volume {} is {}; it can be deleted when available or in '
                             'error'.format(volume_id, volume['status']))
        self._start(volume, 'deleting')
        return 202, None

    # -- keystone ----------------------------------------------------------

    def _identity(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        from keystoneauth1 import fixture
        if not self.keystone:
            raise Fault(404, 'The resource could not be found.')
        if method == 'GET' and path.rstrip('/') == '/identity/v3':
            return 200, {'version': fixture.V3Discovery(self.url + '/identity/v3')}, {}
        if method == 'POST' and path == '/identity/v3/auth/tokens':
            password = body['auth']['identity']['password']['user']['password']
            if password != 'secret':
                raise Fault(401, 'The request you have made requires authentication.')
            token = fixture.V3Token(project_id='fake-project', user_id='fake-user')
            service = token.add_service('gridcentric', name='gridcentric')
            service.add_standard_endpoints(public=self.url, internal=self.url,
                                           region='RegionOne')
            return 201, token, {'X-Subject-Token': TOKEN}
        raise Fault(404, 'The resource could not be found.')


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:   # keep test output clean
        pass

    def _serve(self) -> None:
        api: FakeAPI = self.server.api
        parts = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parts.query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        extra: dict[str, str] = {}
        try:
            length = int(self.headers.get('Content-Length') or 0)
            raw = self.rfile.read(length) if length else b''
            if parts.path.endswith('/data'):    # a byte stream: None without a length
                body = raw if 'Content-Length' in self.headers else None
            else:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    raise Fault(400, 'Malformed request body') from None
            with api.lock:
                result = api.handle(self.command, parts.path, query, headers, body)
            code, payload, extra = result
        except Fault as fault:
            code = fault.code
            if parts.path.startswith('/identity'):    # keystone's own error body
                payload = {'error': {'code': code, 'message': fault.message,
                                     'title': 'Unauthorized' if code == 401 else 'Error'}}
            else:
                payload = {ERROR_KEYS.get(code, 'computeFault'): {'code': code,
                                                                  'message': fault.message}}
        binary = isinstance(payload, bytes)
        data = payload if binary else b'' if payload is None else json.dumps(payload).encode()
        self.send_response(code)
        for key, value in extra.items():
            self.send_header(key, value)
        if data:
            self.send_header('Content-Type',
                             'application/octet-stream' if binary else 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve
