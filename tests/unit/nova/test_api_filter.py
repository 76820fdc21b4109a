"""nova-api's gridcentric paste filter in front of a stand-in for Nova's own app.

The pipeline is what api-paste.ini builds, minus keystone: a stand-in for
``keystonecontext`` puts a ``nova.context`` into the environ, then the filter
(made by its paste factory from a config file), then the app. The app is the
Nova stand-in of ``nova_stub``, which the cobalt endpoint also reads over
HTTP; the endpoint runs in an oslo.messaging RPC server on the filter's own
``fake://`` transport, as gridcentric-api serves it on RabbitMQ.
"""

import io
import json
import os
import types

import oslo_messaging as messaging
import pytest
import webob
from oslo_config import cfg

from gridcentric_storage.common import rpc
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import api as db
from gridcentric_storage.nova import api, api_filter, client, manager, rpcapi
from tests.unit.nova import nova_stub

CONF = cfg.CONF
BASE = 'http://nova.example:8774/v2.1'


class KeystoneContext:
    """What nova-api's keystonecontext leaves for the next filter."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        token = environ.get('HTTP_X_AUTH_TOKEN')
        if token in nova_stub.TOKENS:
            user, project, admin = nova_stub.TOKENS[token]
            environ['nova.context'] = types.SimpleNamespace(
                user_id=user, project_id=project, is_admin=admin, auth_token=token,
                roles=['admin', 'member'] if admin else ['member'], request_id='req-1')
        return self.app(environ, start_response)


class Cloud:
    def __init__(self, tmp_path, nova, endpoint=True, **options):
        self.nova = nova
        self.conf = nova_stub.service_conf(tmp_path, nova.url, **options)
        self.filter = api_filter.filter_factory(
            {}, config_file=str(tmp_path / 'gridcentric-storage.conf'))(nova.app)
        self.pipeline = KeystoneContext(self.filter)
        self.endpoint = None
        if endpoint:
            cfg.CONF.set_override('scheduler_hint_key', 'hint secret', group='nova')
            self.api = api.API(client.NovaClient(self.conf))
            self.endpoint = messaging.get_rpc_server(
                self.filter.rpc.transport,
                messaging.Target(exchange=rpcapi.EXCHANGE, topic=self.conf.nova.cobalt_topic,
                                 server='api-1'),
                [manager.CobaltManager(self.api)], executor='threading',
                serializer=rpc.RequestContextSerializer())
            self.endpoint.start()

    def stop(self):
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint.wait()
            cfg.CONF.clear_override('scheduler_hint_key', group='nova')
        self.filter.rpc.transport.cleanup()

    def request(self, method, path, token='tok-alice', body=None, **kwargs):
        req = webob.Request.blank(path, base_url=BASE, method=method, **kwargs)
        req.headers['X-Auth-Token'] = token
        if body is not None:
            req.body = body if isinstance(body, bytes) else json.dumps(body).encode()
            req.content_type = 'application/json'
        return req.get_response(self.pipeline)

    def action(self, server_id, name, args=None, token='tok-alice', prefix=''):
        return self.request('POST', '%s/servers/%s/action' % (prefix, server_id), token,
                            {name: args})


@pytest.fixture
def cloud(tmp_path, nova, compute):
    instance = Cloud(tmp_path, nova)
    yield instance
    instance.stop()


@pytest.fixture
def no_endpoint(tmp_path, nova, gc_db):
    instance = Cloud(tmp_path, nova, endpoint=False, rpc_timeout='1')
    yield instance
    instance.stop()


def _fault(response, code):
    assert response.status_int == code, response.body
    [(name, fault)] = response.json.items()
    assert fault['code'] == code
    assert 'Traceback' not in response.text
    return name, fault['message']


@pytest.mark.parametrize('prefix', ['co', 'gc'])
def test_the_clients_whole_flow_through_nova_api(cloud, nova, compute, prefix):
    source = nova.add('src', 'proj-a')
    assert cloud.action(source['id'], prefix + '_list_blessed').json == []
    response = cloud.action(source['id'], prefix + '_bless', {'name': 'gold'})
    assert response.status_int == 200 and response.content_type == 'application/json'
    [blessed] = response.json
    assert blessed['metadata'] == {'blessed_from': source['id']}
    assert compute.calls.get(timeout=10)[0] == 'bless_nova_instance'
    set_live_image(blessed['id'], L.BLESSED, L.BLESSING)

    # Cobalt's clients find the live image as a server, by id and by name.
    shown = cloud.request('GET', '/servers/%s' % blessed['id'])
    assert shown.status_int == 200 and shown.json['server']['status'] == 'BLESSED'
    assert shown.json['server']['links'][0]['href'] == BASE + '/servers/' + blessed['id']
    nova.add('golden-retriever', 'proj-a')
    found = cloud.request('GET', '/servers/detail?name=gold').json['servers']
    assert [s['name'] for s in found] == ['golden-retriever', 'gold']  # Nova's, then ours
    assert found[1]['status'] == 'BLESSED'
    summary = cloud.request('GET', '/servers?name=gold').json['servers']
    assert set(summary[1]) == {'id', 'name', 'links'}
    assert [s['id'] for s in cloud.action(source['id'], prefix + '_list_blessed').json] == [
        blessed['id']]

    launch = {'name': 'web', 'num_instances': 2, 'target': '0', 'security_groups': None,
              'key_name': None, 'availability_zone': None, 'user_data': None,
              'scheduler_hints': {}, 'guest': {}}
    [first] = cloud.action(blessed['id'], prefix + '_launch', launch).json
    assert first['metadata'] == {'launched_from': blessed['id']}
    clones = cloud.action(blessed['id'], prefix + '_list_launched').json
    assert sorted(c['name'] for c in clones) == ['web', 'web']

    deleted = cloud.request('DELETE', '/servers/%s' % blessed['id'])
    assert _fault(deleted, 400)[1] == 'Server %s is blessed; discard it instead' % blessed['id']
    assert 'delete them first' in _fault(cloud.action(blessed['id'], prefix + '_discard'),
                                         400)[1]
    for clone in clones:  # Nova's own delete, through the filter
        assert cloud.request('DELETE', '/servers/%s' % clone['id']).status_int == 204
    discarded = cloud.action(blessed['id'], prefix + '_discard')
    assert (discarded.status_int, discarded.body) == (200, b'null')
    assert compute.calls.get(timeout=10) == ('discard_live_image', blessed['id'])


def test_project_id_in_the_path(cloud, nova, compute):
    source = nova.add('src', 'proj-a')
    response = cloud.action(source['id'], 'co_bless', prefix='/proj-a')
    assert response.status_int == 200, response.body
    wrong = cloud.action(source['id'], 'co_bless', prefix='/proj-b')
    assert "URL's project_id 'proj-b'" in _fault(wrong, 400)[1]
    info = cloud.request('GET', '/proj-a/cobaltinfo')
    assert 'bless-name' in info.json['capabilities']


def test_everything_else_passes_to_nova_byte_for_byte(no_endpoint, nova):
    # No endpoint here: a request the filter took would end in a 503.
    server = nova.add('src', 'proj-a')
    bodies = [b'{ "pause" :  null }', b'not json at all', b'["co_bless"]',
              b'{"co_bless": null, "pause": null}',
              json.dumps({'rebuild': {'user_data': 'x' * (api_filter.MAX_BODY + 10)}}).encode()]
    for body in bodies:
        response = no_endpoint.request('POST', '/servers/%s/action' % server['id'],
                                       body=body)
        assert response.status_int == 202, response.body
        assert nova.bodies[-1] == body
    # A chunked body (no Content-Length) too.
    req = webob.Request.blank('/servers/%s/action' % server['id'], base_url=BASE,
                              method='POST')
    req.headers['X-Auth-Token'] = 'tok-alice'
    req.environ['wsgi.input'] = io.BytesIO(b'{"unpause": null}')
    req.environ['wsgi.input_terminated'] = True
    req.environ.pop('CONTENT_LENGTH', None)
    req.headers['Transfer-Encoding'] = 'chunked'
    assert req.get_response(no_endpoint.pipeline).status_int == 202
    assert nova.bodies[-1] == b'{"unpause": null}'
    for path in ('/servers/detail', '/servers/%s' % server['id'], '/flavors'):
        direct = webob.Request.blank(path, base_url=BASE)
        direct.headers['X-Auth-Token'] = 'tok-alice'
        response = no_endpoint.request('GET', path)
        assert (response.status_int, response.body) == (
            direct.get_response(nova.app).status_int, direct.get_response(nova.app).body)


def test_unreachable_service_is_a_503_for_actions_only(no_endpoint, nova):
    server = nova.add('src', 'proj-a')
    name, message = _fault(no_endpoint.action(server['id'], 'co_bless'), 503)
    assert name == 'serviceUnavailable'
    assert 'did not answer' in message and 'gridcentric-cobalt' in message
    # Reads keep Nova's own answer.
    missing = no_endpoint.request('GET', '/servers/c7a3e7c4-2f0e-4a55-8f1f-3f8f4f3c0a11')
    assert _fault(missing, 404)[0] == 'itemNotFound'
    listed = no_endpoint.request('GET', '/servers/detail?name=src')
    assert [s['id'] for s in listed.json['servers']] == [server['id']]


def test_errors_are_novas_fault_bodies(cloud, nova, compute):
    source = nova.add('src', 'proj-a')
    path = '/servers/%s/action' % source['id']
    assert _fault(cloud.request('POST', path, body=b'{"co_bless": {'), 400) == (
        'badRequest', 'Malformed request body')
    huge = b'{"co_launch": {"user_data": "%s"}}' % (b'x' * api_filter.MAX_BODY)
    assert 'at most' in _fault(cloud.request('POST', path, body=huge), 400)[1]
    assert 'no such action' in _fault(cloud.action(source['id'], 'co_frobnicate'), 400)[1]
    assert 'not supported for Nova instances' in _fault(
        cloud.action(source['id'], 'co_get_policy'), 400)[1]
    assert 'not supported' in _fault(cloud.request('POST', '/gcpolicy', body={}), 400)[1]
    assert "'data' is a required property" in _fault(
        cloud.request('POST', '/gc-import-server', body={}), 400)[1]
    assert 'Malformed' in _fault(
        cloud.request('POST', '/co-import-server', body=b'{"data": '), 400)[1]
    assert _fault(cloud.action(source['id'], 'co_bless', token='tok-bob'), 404) == (
        'itemNotFound', 'Server %s could not be found.' % source['id'])
    assert "'color' was unexpected" in _fault(
        cloud.action(source['id'], 'co_bless', {'color': 'red'}), 400)[1]
    off = nova.add('off', 'proj-a', status='SHUTOFF')
    assert 'only an ACTIVE server' in _fault(cloud.action(off['id'], 'co_bless'), 400)[1]
    [blessed] = cloud.action(source['id'], 'co_bless').json
    set_live_image(blessed['id'], L.BLESSED, L.BLESSING)
    nova.quota['proj-a'] = 2
    quota = cloud.action(blessed['id'], 'co_launch', {'num_instances': 5})
    assert _fault(quota, 413)[0] == 'overLimit' and quota.headers['Retry-After'] == '0'
    assert 'Quota exceeded' in quota.json['overLimit']['message']


@pytest.mark.parametrize('prefix', ['co', 'gc'])
def test_export_import_and_migrate_through_nova_api(cloud, nova, compute, prefix):
    db.service_heartbeat('nova-host-1', CONF.compute.topic, 'gridcentric-compute')
    source = nova.add('src', 'proj-a')
    [blessed] = cloud.action(source['id'], prefix + '_bless', {'name': 'gold'}).json
    set_live_image(blessed['id'], L.BLESSED, L.BLESSING)
    document = cloud.action(blessed['id'], prefix + '_export').json
    assert document['fields']['image_id'] == nova_stub.IMAGE
    assert document['export_image_id'] == 'live-image-%s.tar' % blessed['id']
    imported = cloud.request('POST', '/%s-import-server' % prefix, 'tok-bob',
                             {'data': document})
    assert imported.status_int == 200, imported.body
    server = imported.json['server']
    assert (server['status'], server['tenant_id']) == ('BLESSED', 'proj-b')
    assert cloud.request('GET', '/servers/%s' % server['id'], 'tok-bob').json[
        'server']['name'] == 'gold'
    moved = cloud.action(source['id'], prefix + '_migrate', {'dest': 'nova-host-2'},
                         token='tok-admin')
    assert (moved.status_int, moved.json) == (200, None)
    assert json.loads(nova.bodies[-1]) == {
        'os-migrateLive': {'host': 'nova-host-2', 'block_migration': 'auto'}}
    assert 'only an ACTIVE server' in _fault(
        cloud.action(blessed['id'], prefix + '_migrate'), 400)[1]


def test_capabilities(cloud):
    for path in ('/gcinfo', '/cobaltinfo'):
        body = cloud.request('GET', path).json
        assert {'user-data', 'launch-name', 'num-instances', 'bless-name',
                'import-export'} <= set(
            body['capabilities'])


def test_a_misplaced_filter_says_so(no_endpoint, nova):
    req = webob.Request.blank('/gcinfo', base_url=BASE)  # no nova.context: no keystone
    assert 'misplaced' in _fault(req.get_response(no_endpoint.filter), 500)[1]


def test_an_endpoint_failure_is_a_500_without_its_details(cloud, nova, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError('secret /var/lib/x on nova-host-1')
    monkeypatch.setattr(cloud.api, 'bless', broken)
    name, message = _fault(cloud.action(nova.add('src', 'proj-a')['id'], 'co_bless'), 500)
    assert name == 'computeFault' and 'secret' not in message and 'nova-host-1' not in message


PASTE_CODE = '''
import gc, os, sys
from nova import rpc
import oslo_messaging
from paste import deploy
oslo_messaging.get_rpc_transport(CONF)  # registers transport_url
CONF.set_override('transport_url', 'fake://')
rpc.init(CONF)
from nova.api.auth import NovaKeystoneContext

def load(paste):
    before = set(CONF.keys())
    deploy.loadapp('config:' + paste, name='osapi_compute')
    return sorted(set(CONF.keys()) - before)

stock = load(os.environ['STOCK_PASTE'])
ours = load(os.environ['GC_PASTE'])
from gridcentric_storage.nova.api_filter import CobaltFilter
filters = [o for o in gc.get_objects() if isinstance(o, CobaltFilter)]
print(json.dumps({
    'stock_conf': stock, 'ours_conf': ours,
    'filters': [type(f.app).__name__ for f in filters],
    'after_context': [type(o.application).__name__ for o in gc.get_objects()
                      if isinstance(o, NovaKeystoneContext)],
    'gc_modules': sorted(m for m in sys.modules if m.startswith('gridcentric_storage.')
                         and not m.endswith('virt_alias')),
}))
'''


def test_nova_api_loads_the_filter_right_after_keystonecontext(tmp_path, monkeypatch):
    """The operator's edit (etc/nova/api-paste.ini.fragment) in Nova 34's own
    api-paste.ini: the filter sits between keystonecontext and Nova's router,
    imports none of this service's configuration and adds no option to Nova's."""
    stock = os.path.join(nova_stub.NOVA_VENV, 'etc', 'nova', 'api-paste.ini')
    if not os.path.exists(stock):
        pytest.skip('needs real Nova: no %s (tools/nova.sh builds the Nova venv)' % stock)
    fragment = open(os.path.join(nova_stub.ROOT, 'etc', 'nova',
                                 'api-paste.ini.fragment')).read()
    section = fragment[fragment.index('[filter:gridcentric]'):fragment.index('# 2.')]
    conf = tmp_path / 'gc.conf'
    conf.write_text('[DEFAULT]\ntransport_url = fake://\n')
    edited = open(stock).read().replace('keystonecontext osapi_compute_app_v21',
                                        'keystonecontext gridcentric osapi_compute_app_v21')
    edited += '\n' + section.replace('/etc/gridcentric-storage/gridcentric-storage.conf',
                                     str(conf))
    (tmp_path / 'api-paste.ini').write_text(edited)
    monkeypatch.setenv('STOCK_PASTE', stock)
    monkeypatch.setenv('GC_PASTE', str(tmp_path / 'api-paste.ini'))
    result = nova_stub.nova_python(PASTE_CODE)
    assert result['filters'] == ['APIRouterV21']
    assert 'CobaltFilter' in result['after_context']
    assert result['ours_conf'] == []  # the stock load already registered Nova's own
    assert result['gc_modules'] == ['gridcentric_storage.common',
                                    'gridcentric_storage.common.exception',
                                    'gridcentric_storage.nova',
                                    'gridcentric_storage.nova.api_filter',
                                    'gridcentric_storage.nova.rpcapi']


class Mount:
    """Nova's urlmap: the v2.1 app sees /v2.1 in SCRIPT_NAME, the rest in PATH_INFO."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        if path.startswith('/v2.1'):
            environ['SCRIPT_NAME'] = environ.get('SCRIPT_NAME', '') + '/v2.1'
            environ['PATH_INFO'] = path[len('/v2.1'):]
        return self.app(environ, start_response)


def test_cobalts_novaclient_extension_through_the_filter(cloud, nova, compute):
    """The emulation of Cobalt's client (tests/unit/api/test_cobalt_clients.py), over
    python-novaclient and HTTP, against the filter in front of "Nova"."""
    from keystoneauth1 import session as ks_session
    from keystoneauth1 import token_endpoint
    from novaclient import client as nova_client

    from gridcentric_storage.common import wsgi_server
    from tests.unit.api import test_cobalt_clients as emulation

    server = wsgi_server.WSGIService(Mount(cloud.pipeline), '127.0.0.1', 0)
    server.start()
    try:
        auth = token_endpoint.Token('http://127.0.0.1:%d/v2.1' % server.port, 'tok-alice')
        novac = nova_client.Client('2.1', session=ks_session.Session(auth=auth))
        cobalt = emulation.CobaltManager(novac)
        assert 'bless-name' in cobalt.capabilities()
        source = nova.add('src', 'proj-a')
        [blessed] = cobalt.bless(source['id'], name='gold')
        assert compute.calls.get(timeout=10)[0] == 'bless_nova_instance'
        set_live_image(blessed.id, L.BLESSED, L.BLESSING)
        assert novac.servers.get(blessed.id).status == 'BLESSED'
        assert [s.id for s in cobalt.find_by_name('gold')] == [blessed.id]
        [first] = cobalt.launch(blessed.id, name='web', num_instances=2, target='0',
                                security_groups=None, key_name=None,
                                availability_zone=None, user_data=None,
                                scheduler_hints={}, guest={})
        assert first.metadata == {'launched_from': blessed.id}
        clones = cobalt.list_launched(blessed.id)
        assert sorted(c.name for c in clones) == ['web', 'web']
        with pytest.raises(Exception) as refused:
            cobalt.bless(blessed.id)
        assert getattr(refused.value, 'code', None) == 400
        for clone in clones:
            novac.servers.delete(clone.id)
        resp, body = cobalt.discard(blessed.id)
        assert (resp.status_code, body) == (200, None)
    finally:
        server.stop()


@pytest.mark.parametrize('path', ['/gcservers', '/coservers', '/proj-a/gcservers'])
def test_cobalts_boot_is_novas_own_create(no_endpoint, nova, path):
    # No endpoint: the filter itself only points the request at Nova's create.
    body = {'server': {'name': 'booted', 'flavorRef': 'f-tiny', 'imageRef': nova_stub.IMAGE,
                       'networks': 'none', 'metadata': {'gc:target_host': 'h1'}}}
    response = no_endpoint.request('POST', path, body=body,
                                   headers={'OpenStack-API-Version': 'compute 2.37'})
    assert response.status_int == 202, response.body
    assert nova.requests[-1][:2] == ('POST', '/v2.1' + path.replace(path.rsplit('/', 1)[1],
                                                                  'servers'))
    assert nova.created[-1] == body
    assert [s['name'] for s in nova.servers.values()] == ['booted']
