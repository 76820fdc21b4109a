"""Who sees and acts on what: administrators on every project, members on their own.

Through the real paste pipeline (noauth: ``X-Auth-Token: user:project``),
the real policy engine and the fake volume and virt drivers.
"""

import requests

from tests.fixtures.services import wait_for

ALICE = 'alice:proj-a'
BOB = 'bob:proj-b'
ADMIN = 'admin:admin'


def _volume(cloud, token, **fields):
    fields.setdefault('size', 1)
    response = cloud.request('POST', '/v1/volumes', token=token, json={'volume': fields})
    assert response.status_code == 202, response.text
    volume_id = response.json()['volume']['id']

    def settled():
        volume = cloud.request('GET', '/v1/volumes/%s' % volume_id,
                               token=token).json()['volume']
        return volume if volume['status'] != 'creating' else None
    volume = wait_for(settled, timeout=20, what='volume %s to settle' % volume_id)
    assert volume['status'] == 'available', volume
    return volume


def _server(cloud, token, name='vm'):
    boot = _volume(cloud, token, name='%s-root' % name)
    response = cloud.request('POST', '/v1/servers', token=token, json={'server': {
        'name': name, 'memory_mb': 128, 'volume_id': boot['id']}})
    assert response.status_code == 202, response.text
    server_id = response.json()['server']['id']

    def active():
        server = cloud.request('GET', '/v1/servers/%s' % server_id,
                               token=token).json()['server']
        return server if server['status'] != 'BUILD' else None
    server = wait_for(active, timeout=20, what='server %s to boot' % server_id)
    assert server['status'] == 'ACTIVE', server
    return server


def test_admin_sees_and_acts_on_another_projects_volume(cloud, make_backend):
    make_backend()
    volume = _volume(cloud, ALICE, name='alices')
    shown = cloud.request('GET', '/v1/volumes/%s' % volume['id'], token=ADMIN)
    assert shown.status_code == 200, shown.text
    assert shown.json()['volume']['project_id'] == 'proj-a'
    extend = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'], token=ADMIN,
                           json={'os-extend': {'new_size': 2}})
    assert extend.status_code == 202, extend.text
    # and another member still cannot even see it
    assert cloud.request('GET', '/v1/volumes/%s' % volume['id'],
                         token=BOB).status_code == 404


def test_listings_are_per_project_unless_an_admin_asks_for_all(cloud, make_backend):
    make_backend()
    alices = _volume(cloud, ALICE)
    bobs = _volume(cloud, BOB)
    server = _server(cloud, ALICE)

    def ids(path, token, key):
        response = cloud.request('GET', path, token=token)
        assert response.status_code == 200, response.text
        return {item['id'] for item in response.json()[key]}

    assert alices['id'] in ids('/v1/volumes', ALICE, 'volumes')
    assert bobs['id'] not in ids('/v1/volumes', ALICE, 'volumes')
    assert ids('/v1/volumes', ADMIN, 'volumes') == set()        # the admin's own project
    everything = ids('/v1/volumes?all_tenants=1', ADMIN, 'volumes')
    assert {alices['id'], bobs['id']} <= everything
    assert ids('/v1/volumes?all_tenants=1&project_id=proj-b', ADMIN, 'volumes') == {
        bobs['id']}
    assert ids('/v1/servers', ADMIN, 'servers') == set()
    assert server['id'] in ids('/v1/servers?all_tenants=1', ADMIN, 'servers')
    for path in ('/v1/volumes', '/v1/servers', '/v1/snapshots', '/v1/attachments',
                 '/v1/live-images'):
        refused = cloud.request('GET', path + '?all_tenants=1', token=ALICE)
        assert refused.status_code == 403, (path, refused.text)


def test_a_volume_cannot_be_attached_to_another_projects_server(cloud, make_backend):
    make_backend()
    bobs_server = _server(cloud, BOB, name='bobs')
    alices = _volume(cloud, ALICE)
    response = cloud.request('POST', '/v1/attachments', token=ALICE, json={'attachment': {
        'volume_id': alices['id'], 'instance_uuid': bobs_server['id']}})
    assert response.status_code == 400, response.text
    assert 'not a server' in response.json()['badRequest']['message']
    after = cloud.request('GET', '/v1/volumes/%s' % alices['id'], token=ALICE).json()
    assert after['volume']['status'] == 'available'
    assert after['volume']['attachments'] == []


def test_members_name_no_compute_host(cloud, make_backend):
    make_backend()
    volume = _volume(cloud, ALICE)
    response = cloud.request('POST', '/v1/attachments', token=ALICE, json={'attachment': {
        'volume_id': volume['id'], 'host': 'test-host'}})
    assert response.status_code == 403, response.text


def test_members_see_no_hosts_or_device_paths(cloud, make_backend, tmp_path):
    # the file driver's 'local' connections attach for real through os-brick
    make_backend('files', driver='file', options={'path': str(tmp_path / 'files')})
    volume = _volume(cloud, ALICE)
    attach = cloud.request('POST', '/v1/attachments', token=ALICE,
                           json={'attachment': {'volume_id': volume['id']}})
    assert attach.status_code == 202, attach.text
    attachment_id = attach.json()['attachment']['id']
    wait_for(lambda: cloud.request('GET', '/v1/attachments/%s' % attachment_id,
                                   token=ALICE).json()['attachment']['status'] == 'attached',
             timeout=20, what='the attachment')
    member = cloud.request('GET', '/v1/attachments/%s' % attachment_id, token=ALICE).json()
    admin = cloud.request('GET', '/v1/attachments/%s' % attachment_id, token=ADMIN).json()
    assert 'host' not in member['attachment'] and 'device_path' not in member['attachment']
    assert admin['attachment']['host'] == 'test-host'
    shown = cloud.request('GET', '/v1/volumes/%s' % volume['id'], token=ALICE).json()
    [seen] = shown['volume']['attachments']
    assert 'host' not in seen and 'device_path' not in seen
    server = _server(cloud, ALICE)
    assert 'host' not in server
    as_admin = cloud.request('GET', '/v1/servers/%s' % server['id'], token=ADMIN).json()
    assert as_admin['server']['host'] == 'test-host'


def test_members_cannot_probe_hidden_backend_attributes(cloud, make_backend):
    make_backend('secret-backend')
    for field, text in (('requirements', 'host == "test-host"'),
                        ('rank', 'free_capacity_gb'),
                        ('requirements', 'name == "secret-backend" or true')):
        response = cloud.request('POST', '/v1/volumes', token=ALICE,
                                 json={'volume': {'size': 1, field: text}})
        assert response.status_code == 403, (text, response.text)
        assert 'administrators' in response.json()['forbidden']['message']
    allowed = cloud.request('POST', '/v1/volumes', token=ALICE, json={'volume': {
        'size': 1, 'requirements': 'cost <= 5 and role == "san"'}})
    assert allowed.status_code == 202, allowed.text
    as_admin = cloud.request('POST', '/v1/volumes', token=ADMIN, json={'volume': {
        'size': 1, 'requirements': 'host == "test-host"'}})
    assert as_admin.status_code == 202, as_admin.text


def test_no_backend_fits_tells_members_only_about_their_own_request(cloud, make_backend):
    make_backend('tiny-secret', options={'capacity_gb': 1})
    off = make_backend('off-secret')
    cloud.request('POST', '/v1/backends/%s/action' % off['id'], token=ADMIN,
                  json={'disable': {'reason': 'rack 7 lost power'}})
    member = cloud.request('POST', '/v1/volumes', token=ALICE,
                           json={'volume': {'size': 10, 'tags': ['ssd']}})
    assert member.status_code == 400
    text = member.json()['badRequest']['message']
    for hidden in ('tiny-secret', 'off-secret', 'rack 7', 'test-host', 'GiB free'):
        assert hidden not in text, text
    assert 'ssd' in text
    admin = cloud.request('POST', '/v1/volumes', token=ADMIN,
                          json={'volume': {'size': 10, 'tags': ['ssd']}})
    assert admin.status_code == 400
    full = admin.json()['badRequest']['message']
    assert 'tiny-secret' in full and 'rack 7 lost power' in full


def test_noauth_without_a_token_is_nobody(cloud):
    bare = requests.get(cloud.url + '/v1/backends', timeout=10)
    assert bare.status_code == 401
    assert 'X-Auth-Token' in bare.json()['unauthorized']['message']
    form = requests.post(cloud.url + '/v1/backends', timeout=10,
                         data={'backend': 'x', '_method': 'DELETE'})
    assert form.status_code == 401
    # keystoneauth's NoAuth placeholder (gc-api --os-auth-type none) is the operator
    operator = requests.get(cloud.url + '/v1/backends', timeout=10,
                            headers={'X-Auth-Token': 'notused'})
    assert operator.status_code == 200
    member = requests.get(cloud.url + '/v1/backends', timeout=10,
                          headers={'X-Auth-Token': ALICE})
    assert member.status_code == 403


def test_cobalt_views_show_the_host_to_admins_only(cloud, make_backend):
    make_backend()
    server = _server(cloud, ALICE)
    path = '/v2.1/servers/%s' % server['id']
    member = cloud.request('GET', path, token=ALICE)
    assert member.status_code == 200, member.text
    assert 'OS-EXT-SRV-ATTR:host' not in member.json()['server']
    admin = cloud.request('GET', path, token=ADMIN).json()['server']
    assert admin['OS-EXT-SRV-ATTR:host'] == 'test-host'
    blessed = cloud.request('POST', path + '/action', token=ALICE,
                            json={'co_bless': {'name': 'gold'}})
    assert blessed.status_code == 200, blessed.text
    assert all('OS-EXT-SRV-ATTR:host' not in s for s in blessed.json())


def test_only_admins_pick_the_host_of_a_server(cloud, make_backend):
    make_backend()
    boot = _volume(cloud, ALICE)
    body = {'server': {'name': 'pinned', 'memory_mb': 128, 'volume_id': boot['id'],
                       'availability_zone': 'nova:test-host'}}
    refused = cloud.request('POST', '/v1/servers', token=ALICE, json=body)
    assert refused.status_code == 403, refused.text
    assert cloud.request('GET', '/v1/servers', token=ALICE).json()['servers'] == []
    source = _server(cloud, ALICE, name='src')
    blessed = cloud.request('POST', '/v2.1/servers/%s/action' % source['id'], token=ALICE,
                            json={'co_bless': {'name': 'gold'}}).json()[0]
    wait_for(lambda: cloud.request('GET', '/v1/live-images/%s' % blessed['id'], token=ALICE)
             .json()['live_image']['status'] == 'blessed', timeout=20, what='the bless')
    launch = cloud.request('POST', '/v2.1/servers/%s/action' % blessed['id'], token=ALICE,
                           json={'co_launch': {'availability_zone': 'nova:test-host'}})
    assert launch.status_code == 403, launch.text
