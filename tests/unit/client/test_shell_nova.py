"""``gc-api``'s live-image commands against Nova's endpoint (``--os-service-type
compute``): Cobalt's wire format under Nova's catalog URL, which already ends in
``/v2.1``, live images found as servers by ID or name.

The endpoint here is a stand-in that answers as the gridcentric filter in
nova-api does (the real one is exercised on a real Nova in tests/functional/nova).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SOURCE = {'id': 'aaaaaaaa-0000-0000-0000-000000000001', 'name': 'vm1', 'status': 'ACTIVE',
          'metadata': {}, 'OS-EXT-STS:task_state': None}
BLESSED = {'id': 'bbbbbbbb-0000-0000-0000-000000000002', 'name': 'gold',
           'status': 'BLESSED', 'metadata': {'blessed_from': SOURCE['id']},
           'OS-EXT-STS:task_state': None}


class NovaWithFilter(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, object]] = []
    clones: list[dict[str, object]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _known(self) -> dict[str, dict[str, object]]:
        return {s['id']: s for s in [SOURCE, BLESSED, *self.clones]}  # type: ignore[misc]

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        self.requests.append(('GET', url.path, url.query))
        if url.path == '/v2.1/gcinfo':
            return self._send(200, {'capabilities': ['launch-name']})
        if url.path == '/v2.1/servers/detail':
            name = urllib.parse.parse_qs(url.query).get('name', [None])[0]
            return self._send(200, {'servers': [s for s in self._known().values()
                                                if name in (None, s['name'])]})
        server_id = url.path.rsplit('/', 1)[-1]
        if url.path.startswith('/v2.1/servers/') and server_id in self._known():
            return self._send(200, {'server': self._known()[server_id]})
        return self._send(404, {'itemNotFound': {'code': 404, 'message': 'not found'}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        self.requests.append(('POST', self.path, body))
        (action, args), = body.items()
        if action == 'co_bless':
            return self._send(200, [dict(BLESSED, name=args.get('name') or 'gold')])
        if action == 'co_launch':
            self.clones[:] = [{'id': 'cccccccc-0000-0000-0000-00000000000%d' % i,
                               'name': args['name'], 'status': 'ACTIVE',
                               'metadata': {'launched_from': BLESSED['id']}}
                              for i in range(args['num_instances'])]
            return self._send(200, self.clones[:1])
        if action == 'co_list_launched':
            return self._send(200, self.clones)
        if action == 'co_list_blessed':
            return self._send(200, [BLESSED])
        return self._send(400, {'badRequest': {'code': 400, 'message': 'no'}})


@pytest.fixture
def nova():
    NovaWithFilter.requests = []
    NovaWithFilter.clones = []
    server = ThreadingHTTPServer(('127.0.0.1', 0), NovaWithFilter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield 'http://127.0.0.1:%d/v2.1' % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def on_nova(run, nova):
    return lambda *argv: run('--os-service-type', 'compute', *argv, endpoint=nova)


def test_the_operators_flow_by_name(on_nova):
    blessed = on_nova('--json', 'bless', 'vm1', '--name', 'gold')
    assert blessed.rc == 0, blessed
    assert (blessed.json['id'], blessed.json['status']) == (BLESSED['id'], 'BLESSED')
    launched = on_nova('--json', 'launch', 'gold', '--name', 'web', '--num-instances', '3')
    assert launched.rc == 0, launched
    assert [c['name'] for c in launched.json] == ['web'] * 3
    assert on_nova('--json', 'list-launched', 'gold').json == launched.json
    assert [i['id'] for i in on_nova('--json', 'list-blessed', 'vm1').json] == [BLESSED['id']]
    assert on_nova('capabilities').out.split() == ['launch-name']
    posts = [r for r in NovaWithFilter.requests if r[0] == 'POST']
    assert posts[0] == ('POST', '/v2.1/servers/%s/action' % SOURCE['id'],
                        {'co_bless': {'name': 'gold'}})
    assert posts[1][1:] == ('/v2.1/servers/%s/action' % BLESSED['id'],
                            {'co_launch': {'name': 'web', 'num_instances': 3}})
    # Nova's catalog URL already carries /v2.1: nothing may add it twice
    assert all(path.startswith('/v2.1/') and '/v2.1/v2.1' not in path
               for _m, path, _q in NovaWithFilter.requests)


def test_cobalts_own_spelling(on_nova):
    assert on_nova('live-image-create', 'vm1', 'gold').rc == 0
    started = on_nova('--json', 'live-image-start', '--live-image', BLESSED['id'], 'web')
    assert started.rc == 0, started
    assert [c['name'] for c in started.json] == ['web']


def test_unknown_names_and_missing_arguments_are_one_line(on_nova):
    missing = on_nova('bless', 'no-such-vm')
    assert missing.rc == 1 and missing.err.count('\n') == 1
    assert "No server or live image with a name or ID of 'no-such-vm'" in missing.err
    no_image = on_nova('launch')
    assert no_image.rc == 1 and 'name the live image' in no_image.err
    no_server = on_nova('live-image-list')
    assert no_server.rc == 1 and 'BLESSED' in no_server.err
