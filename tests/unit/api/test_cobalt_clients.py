"""Cobalt's own novaclient extensions, on the wire, against the standalone dialect.

``CobaltManager`` below does what ``cobalt_python_novaclient_ext`` (and the
older ``gridcentric_python_novaclient_ext``) do, written here from their
documented behaviour: it posts ``co_*``/``gc_*`` actions through
python-novaclient's HTTP client and indexes every answer as a *list* of
Nova server views, finds servers by name through ``GET /servers/detail?name=``
and reads ``/gcinfo``. A dialect that answered ``{"servers": [...]}`` breaks
it exactly as it broke the real clients.
"""

import base64

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1 import token_endpoint
from novaclient import base as nova_base
from novaclient import client as nova_client

from tests.fixtures.images import store_file
from tests.fixtures.services import wait_for


class CobaltServer(nova_base.Resource):
    pass


class CobaltManager(nova_base.Manager):
    resource_class = CobaltServer

    def __init__(self, api, prefix='co'):
        super().__init__(api)
        self.prefix = prefix

    def _action(self, verb, server_id, info=None):
        url = '/servers/%s/action' % server_id
        resp, body = self.api.client.post(url, body={'%s_%s' % (self.prefix, verb): info})
        return resp, body

    def _servers(self, body):
        # The real clients: [self.resource_class(self, s) for s in body]
        return [self.resource_class(self, s) for s in body]

    def bless(self, server_id, name=None):
        return self._servers(self._action('bless', server_id, {'name': name})[1])

    def launch(self, live_image_id, **params):
        return self._servers(self._action('launch', live_image_id, params)[1])

    def discard(self, live_image_id):
        return self._action('discard', live_image_id)

    def list_launched(self, live_image_id):
        return self._servers(self._action('list_launched', live_image_id)[1])

    def list_blessed(self, server_id):
        return self._servers(self._action('list_blessed', server_id)[1])

    def migrate(self, server_id, dest=None):
        return self._action('migrate', server_id, {'dest': dest})

    def export(self, live_image_id):
        return self._action('export', live_image_id)[1]

    def import_instance(self, data):
        body = self.api.client.post('/%s-import-server' % self.prefix, body={'data': data})[1]
        return self.resource_class(self, body['server'])

    def capabilities(self):
        return self.api.client.get('/gcinfo')[1]['capabilities']

    def find_by_name(self, name):
        body = self.api.client.get('/servers/detail?name=%s' % name)[1]
        return [self.resource_class(self, s) for s in body['servers']]


@pytest.fixture(autouse=True)
def boot_files(gc_conf):
    store_file('vmlinuz', b'kernel')


@pytest.fixture
def nova(cloud):
    auth = token_endpoint.Token(cloud.url + '/v2.1', 'alice:proj-a')
    return nova_client.Client('2.1', session=ks_session.Session(auth=auth))


def _active_server(cloud, name='src'):
    response = cloud.request('POST', '/v1/servers', token='alice:proj-a', json={
        'server': {'name': name, 'memory_mb': 256, 'kernel': 'vmlinuz'}})
    assert response.status_code == 202, response.text
    return _settled(cloud, response.json()['server']['id'])


def _settled(cloud, server_id):
    def done():
        response = cloud.request('GET', '/v2.1/servers/%s' % server_id, token='alice:proj-a')
        if response.status_code == 404:
            return {'status': 'DELETED'}
        server = response.json()['server']
        return server if server['status'] != 'BUILD' and not server[
            'OS-EXT-STS:task_state'] else None
    return wait_for(done, timeout=20, what='server %s to settle' % server_id)


@pytest.mark.parametrize('prefix', ['co', 'gc'])
def test_the_clients_whole_flow(cloud, nova, prefix):
    cobalt = CobaltManager(nova, prefix)
    assert {'user-data', 'launch-name', 'num-instances'} <= set(cobalt.capabilities())
    source = _active_server(cloud)
    # Nothing blessed or launched yet: the list actions answer [] on any visible server.
    assert cobalt.list_blessed(source['id']) == []
    assert cobalt.list_launched(source['id']) == []

    [blessed] = cobalt.bless(source['id'], name='gold')
    assert blessed.name == 'gold' and blessed.metadata == {'blessed_from': source['id']}
    assert _settled(cloud, blessed.id)['status'] == 'BLESSED'
    assert [b.id for b in cobalt.list_blessed(source['id'])] == [blessed.id]
    assert cobalt.list_blessed(blessed.id) == []

    # The older client's "target" and a null security_groups are accepted.
    [first] = cobalt.launch(blessed.id, name='web', num_instances=2, target='0',
                            security_groups=None, key_name=None, availability_zone=None,
                            user_data=base64.b64encode(b'#!/bin/sh\n').decode(),
                            scheduler_hints={}, guest={'role': 'web'})
    assert first.name == 'web' and first.metadata == {'launched_from': blessed.id}
    clones = cobalt.list_launched(blessed.id)
    assert sorted(c.name for c in clones) == ['web', 'web']  # the launch's name, unchanged
    for clone in clones:
        assert _settled(cloud, clone.id)['status'] == 'ACTIVE'
        # Nova's detail view, as the clients and `nova show` read it
        for key in ('hostId', 'image', 'flavor', 'links', 'addresses', 'created'):
            assert key in clone._info, key
        assert clone.flavor['id'] and clone.image['id'] == blessed.id
        assert 'OS-EXT-SRV-ATTR:host' not in clone._info  # a member sees no host
    found = cobalt.find_by_name('web')
    assert sorted(s.id for s in found) == sorted(c.id for c in clones)

    for clone in clones:
        nova.servers.delete(clone.id)
        assert _settled(cloud, clone.id)['status'] == 'DELETED'
    resp, body = cobalt.discard(blessed.id)
    assert resp.status_code == 200 and body is None
    wait_for(lambda: nova.client.get('/servers/detail?name=gold')[1]['servers'] == [],
             timeout=20, what='the live image to go')


def test_state_conflicts_are_400_with_a_message(cloud, nova):
    cobalt = CobaltManager(nova)
    source = _active_server(cloud)
    [blessed] = cobalt.bless(source['id'])
    _settled(cloud, blessed.id)
    for call in (lambda: cobalt.bless(blessed.id),            # blessing a blessed server
                 lambda: cobalt.launch(source['id']),         # launching what is not blessed
                 lambda: cobalt.launch(blessed.id, availability_zone='nowhere')):
        with pytest.raises(Exception) as err:
            call()
        assert getattr(err.value, 'code', None) == 400, err.value
    assert cobalt.list_launched(blessed.id) == []  # the refused launches made nothing


def test_pause_and_unpause_a_clone(cloud, nova):
    cobalt = CobaltManager(nova)
    source = _active_server(cloud)
    [blessed] = cobalt.bless(source['id'])
    _settled(cloud, blessed.id)
    [clone] = cobalt.launch(blessed.id)
    assert _settled(cloud, clone.id)['status'] == 'ACTIVE'
    nova.servers.pause(clone.id)
    paused = _settled(cloud, clone.id)
    assert (paused['status'], paused['OS-EXT-STS:vm_state']) == ('PAUSED', 'paused')
    nova.servers.unpause(clone.id)
    assert _settled(cloud, clone.id)['status'] == 'ACTIVE'
