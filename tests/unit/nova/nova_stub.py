"""A stand-in for Nova's REST API, for the unit tests of ``gridcentric_storage.nova``.

It answers the calls ``nova.client`` makes the way Nova 34 does (views,
visibility by project, admin-only host and all_tenants, microversion-shaped
flavors, fault bodies, quota 403s, paged listings), served over HTTP on
loopback so the client's keystoneauth path is the real one. The real Nova is
exercised by tests/functional/nova on the tools/nova.sh stack.
"""

import json
import os
import queue
import re
import subprocess
import threading
import uuid
from typing import Any

import oslo_messaging as messaging
import webob
import webob.dec
from oslo_config import cfg

from gridcentric_storage.common import exception, wsgi_server
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.conf import nova as nova_conf
from gridcentric_storage.db import servers as db_servers

#: token -> (user, project, admin)
TOKENS = {'tok-alice': ('alice', 'proj-a', False), 'tok-bob': ('bob', 'proj-b', False),
          'tok-admin': ('admin', 'admin', True), 'service': ('gridcentric', 'service', True)}
FLAVORS = {'f-tiny': {'ram': 128, 'vcpus': 1, 'name': 'm1.tiny'},
           'f-small': {'ram': 256, 'vcpus': 1, 'name': 'm1.small'}}
#: the one image instances boot (Glance ids are UUIDs)
IMAGE = '0b1a7c0e-3c55-4d1e-9a57-4f6f2f7b9c11'
IMAGES = {IMAGE}
PAGE = 2  # small pages, so listings follow servers_links


def _fault(code: int, name: str, message: str) -> webob.Response:
    return webob.Response(status=code, json_body={name: {'code': code, 'message': message}})


def _version(req: webob.Request) -> tuple[int, int]:
    header = req.headers.get('OpenStack-API-Version', '')
    value = header.split()[-1] if header.startswith('compute ') else '2.1'
    major, minor = value.split('.')
    return int(major), int(minor)


class StubNova:
    def __init__(self) -> None:
        self.servers: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # bodies of POST /servers
        self.requests: list[tuple[str, str, str, str]] = []  # method, path, token, version
        self.bodies: list[bytes] = []  # of every POST, as received
        self.quota: dict[str, int] = {}  # project -> instances allowed
        self.lock = threading.Lock()
        self.server = wsgi_server.WSGIService(self.app, '127.0.0.1', 0)
        self.server.start()
        self.url = 'http://127.0.0.1:%d/v2.1' % self.server.port

    def stop(self) -> None:
        self.server.stop()

    def add(self, name: str, project: str, host: str = 'nova-host-1', status: str = 'ACTIVE',
            task_state: str | None = None, image: str | None = IMAGE,
            metadata: dict[str, str] | None = None) -> dict[str, Any]:
        server = {'id': str(uuid.uuid4()), 'name': name, 'tenant_id': project,
                  'user_id': 'someone', 'status': status, 'task_state': task_state,
                  'host': host, 'flavor_id': 'f-tiny', 'image_id': image,
                  'metadata': dict(metadata or {})}
        self.servers[server['id']] = server
        return server

    def _view(self, req: webob.Request, server: dict[str, Any], admin: bool
              ) -> dict[str, Any]:
        flavor: dict[str, Any] = {'id': server['flavor_id'], 'links': []}
        if _version(req) >= (2, 47):
            flavor = {k: v for k, v in FLAVORS[server['flavor_id']].items() if k != 'name'}
            flavor['original_name'] = FLAVORS[server['flavor_id']]['name']
        view = {'id': server['id'], 'name': server['name'], 'status': server['status'],
                'tenant_id': server['tenant_id'], 'user_id': server['user_id'],
                'metadata': server['metadata'], 'flavor': flavor,
                'image': {'id': server['image_id'], 'links': []} if server['image_id'] else '',
                'OS-EXT-STS:task_state': server['task_state'], 'hostId': 'x', 'links': []}
        if admin:
            view['OS-EXT-SRV-ATTR:host'] = server['host']
        return view

    @webob.dec.wsgify
    def app(self, req: webob.Request) -> webob.Response:
        """Served on its own port, or mounted under /v2.1 (nova-api's app)."""
        token = req.headers.get('X-Auth-Token', '')
        self.requests.append((req.method, req.path, token, '%d.%d' % _version(req)))
        if req.method == 'POST':
            self.bodies.append(req.body)
        if token not in TOKENS:
            return _fault(401, 'unauthorized', 'The request you have made requires '
                                               'authentication.')
        user, project, admin = TOKENS[token]
        parts = req.path.strip('/').split('/')
        if parts[:1] != ['v2.1']:
            return _fault(404, 'itemNotFound', 'no such path')
        parts = parts[1:]
        if len(parts) > 1 and parts[0] not in ('servers', 'flavors', 'images'):  # legacy
            if parts.pop(0) != project:
                return _fault(400, 'badRequest', "Malformed request URL: URL's project_id "
                                                 "doesn't match Context's project_id")
        with self.lock:
            if parts == ['os-services'] and req.method == 'GET':
                if not admin:
                    return _fault(403, 'forbidden', 'Policy does not allow '
                                  'os_compute_api:os-services:list to be performed.')
                hosts = sorted({s['host'] for s in self.servers.values() if s['host']}
                               | {'nova-host-1'})
                return webob.Response(json_body={'services': [
                    {'binary': 'nova-compute', 'host': h, 'state': 'up', 'status': 'enabled'}
                    for h in hosts]})
            if parts[:1] == ['flavors'] and req.method == 'GET':
                return self._flavors(parts[1:])
            if parts[:1] == ['images'] and len(parts) == 2 and req.method == 'GET':
                if parts[1] not in IMAGES or _version(req) >= (2, 36):
                    return _fault(404, 'itemNotFound', 'Image not found.')
                return webob.Response(json_body={'image': {'id': parts[1]}})
            if parts in (['servers', 'detail'], ['servers']) and req.method == 'GET':
                return self._list(req, project, admin, detail=parts[-1] == 'detail')
            if parts == ['servers'] and req.method == 'POST':
                return self._create(req, user, project)
            if len(parts) == 3 and parts[::2] == ['servers', 'action']:
                if parts[1] not in self.servers:
                    return _fault(404, 'itemNotFound',
                                  'Instance %s could not be found.' % parts[1])
                return webob.Response(status=202)
            if len(parts) == 2 and parts[0] == 'servers':
                server = self.servers.get(parts[1])
                if server is None or not (admin or server['tenant_id'] == project):
                    return _fault(404, 'itemNotFound',
                                  'Instance %s could not be found.' % parts[1])
                if req.method == 'DELETE':
                    del self.servers[parts[1]]
                    return webob.Response(status=204)
                return webob.Response(json_body={'server': self._view(req, server, admin)})
        return _fault(404, 'itemNotFound', 'no such path')

    @staticmethod
    def _flavors(parts: list[str]) -> webob.Response:
        def view(id: str) -> dict[str, Any]:
            return dict(FLAVORS[id], id=id, links=[])
        if parts == ['detail']:
            return webob.Response(json_body={'flavors': [view(f) for f in sorted(FLAVORS)]})
        if len(parts) == 1 and parts[0] in FLAVORS:
            return webob.Response(json_body={'flavor': view(parts[0])})
        return _fault(404, 'itemNotFound', 'Flavor %s could not be found.' % '/'.join(parts))

    def _list(self, req: webob.Request, project: str, admin: bool, detail: bool = True
              ) -> webob.Response:
        everyone = admin and req.GET.get('all_tenants') in ('1', 'True', 'true')
        found = [s for s in self.servers.values()
                 if (everyone or s['tenant_id'] == project)
                 and ('image' not in req.GET or s['image_id'] == req.GET['image'])
                 and ('name' not in req.GET or re.search(req.GET['name'], s['name']))]
        found.sort(key=lambda s: s['id'])
        if 'marker' in req.GET:
            found = [s for s in found if s['id'] > req.GET['marker']]
        page = found[:PAGE]
        body: dict[str, Any] = {'servers': [
            self._view(req, s, admin) if detail else
            {'id': s['id'], 'name': s['name'], 'links': []} for s in page]}
        if len(found) > PAGE:
            body['servers_links'] = [{'rel': 'next', 'href': 'next'}]
        return webob.Response(json_body=body)

    def _create(self, req: webob.Request, user: str, project: str) -> webob.Response:
        if _version(req) < (2, 37):
            return _fault(400, 'badRequest', 'networks is required')
        body = json.loads(req.body)
        self.created.append(body)
        spec = body['server']
        if spec['flavorRef'] not in FLAVORS:
            return _fault(400, 'badRequest', 'Flavor %s could not be found.'
                          % spec['flavorRef'])
        count = spec.get('min_count', 1)
        used = sum(1 for s in self.servers.values() if s['tenant_id'] == project)
        allowed = self.quota.get(project, 100)
        if used + count > allowed:
            return _fault(403, 'forbidden', 'Quota exceeded for instances: Requested %d, '
                          'but already used %d of %d instances' % (count, used, allowed))
        first = None
        for _ in range(count):
            server = self.add(spec['name'], project, host='', status='BUILD',
                              image=spec['imageRef'], metadata=spec.get('metadata'))
            server['flavor_id'] = spec['flavorRef']
            server['user_id'] = user
            first = first or server
        assert first is not None
        return webob.Response(status=202, json_body={'server': {'id': first['id'],
                                                                'links': []}})


def service_conf(tmp_path: Any, nova_url: str, **extra: str) -> Any:
    """gridcentric-storage.conf as an operator writes it for the cobalt endpoint and
    nova-api's filter: fake:// messaging, the service's token for Nova."""
    path = tmp_path / 'gridcentric-storage.conf'
    lines = ['[DEFAULT]', 'transport_url = fake://', '[nova]', 'enabled = true',
             'auth_type = admin_token', 'endpoint = %s' % nova_url, 'token = service']
    lines += ['%s = %s' % item for item in extra.items()]
    path.write_text('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    nova_conf.register_opts(conf)
    conf(args=[], project='gridcentric-storage', default_config_files=[str(path)])
    return conf


class ComputeRecorder:
    """gridcentric-compute's side of what the endpoint sends (compute RPC 2.3): casts
    are recorded; an export answers a made-up image, an import blesses the row."""

    def __init__(self) -> None:
        self.target = messaging.Target(version='2.3')
        self.calls: queue.Queue[tuple[str, ...]] = queue.Queue()

    @staticmethod
    def _of_this_test(live_image_id: str) -> bool:
        """A cast an earlier test sent may still sit in the fake transport's queue
        and reach this test's server; it names a live image this test's fresh
        database does not have."""
        try:
            db_servers.live_image_get(live_image_id)
        except exception.LiveImageNotFound:
            return False
        return True

    def bless_nova_instance(self, ctxt: Any, live_image_id: str, instance_uuid: str) -> None:
        if self._of_this_test(live_image_id):
            self.calls.put(('bless_nova_instance', live_image_id, instance_uuid))

    def discard_live_image(self, ctxt: Any, live_image_id: str) -> None:
        if self._of_this_test(live_image_id):
            self.calls.put(('discard_live_image', live_image_id))

    def export_live_image(self, ctxt: Any, live_image_id: str) -> dict[str, Any]:
        self.calls.put(('export_live_image', live_image_id))
        return {'image': 'live-image-%s.tar' % live_image_id, 'sha256': 'ab' * 32,
                'size': 4096}

    def import_live_image(self, ctxt: Any, live_image_id: str, image: str,
                          sha256: str) -> None:
        self.calls.put(('import_live_image', live_image_id, image, sha256))
        set_live_image(live_image_id, L.BLESSED, L.BLESSING)


NOVA_VENV = os.environ.get('GC_NOVA_VENV', '/opt/gc-nova-venv')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
#: Nova's configuration and objects, as its services set them up.
NOVA_PRELUDE = '''
import json
import nova.conf
from nova import objects
CONF = nova.conf.CONF
CONF([], project='nova', default_config_files=[])
objects.register_all()
'''


def nova_python(code: str, timeout: float = 120) -> Any:
    """Run ``code`` (after ``NOVA_PRELUDE``) under Nova's own venv with this checkout
    importable; the JSON it prints last. Skips when there is no Nova venv."""
    import pytest

    python = os.path.join(NOVA_VENV, 'bin', 'python')
    if not os.path.exists(python):
        pytest.skip('needs real Nova: no Nova venv at %s (tools/nova.sh builds it; '
                    'GC_NOVA_VENV names another)' % NOVA_VENV)
    proc = subprocess.run([python, '-c', NOVA_PRELUDE + code], capture_output=True,
                          text=True, timeout=timeout, cwd='/',
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])
