"""The cobalt endpoint's logic (nova.api) against a stand-in for Nova's REST API.

Real here: the database (SQLite through the migrations), policy, keystoneauth
over HTTP to the stand-in, and the compute casts over fake:// RPC to a
recorder on the live image's host. Nova itself is the stand-in of
``nova_stub``; tests/functional/nova runs the same flows on a real Nova.
"""

import hashlib

import oslo_messaging as messaging
import pytest
from keystoneauth1 import adapter, session, token_endpoint
from oslo_config import cfg

from gridcentric_storage.common import context as gc_context
from gridcentric_storage.common import exception, rpc
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.nova import api, client, hint
from tests.unit.nova import nova_stub

CONF = cfg.CONF
ROOT = 'http://nova.example:8774'


def ctx(token):
    user, project, admin = nova_stub.TOKENS[token]
    return gc_context.RequestContext(user_id=user, project_id=project, auth_token=token,
                                     is_admin=admin,
                                     roles=['admin', 'member'] if admin else ['member'])


ALICE, BOB, ADMIN = 'tok-alice', 'tok-bob', 'tok-admin'


HINT_KEY = 'hint secret shared with nova-scheduler'


@pytest.fixture
def cobalt(gc_db, nova, compute, tmp_path):
    CONF.set_override('scheduler_hint_key', HINT_KEY, group='nova')
    yield api.API(client.NovaClient(nova_stub.service_conf(tmp_path, nova.url)))
    CONF.clear_override('scheduler_hint_key', group='nova')


def hinted_hosts(body, project='proj-a'):
    """The hosts the launch's sealed hint allows, as nova-scheduler's filter opens it."""
    [token] = body['os:scheduler_hints']['gc_live_image_hosts']
    return hint.unseal(HINT_KEY, token, project)


def _blessed(cobalt, nova, compute, name='gold'):
    source = nova.add('src', 'proj-a')
    [view] = cobalt.bless(ctx(ALICE), source['id'], {'name': name}, ROOT)
    assert compute.calls.get(timeout=10) == ('bless_nova_instance', view['id'], source['id'])
    set_live_image(view['id'], L.BLESSED, L.BLESSING)  # what the compute host does
    return source, view['id']


def test_bless_records_the_instance_and_casts_to_its_host(cobalt, nova, compute):
    source = nova.add('src', 'proj-a')
    [view] = cobalt.bless(ctx(ALICE), source['id'], {'name': 'gold'}, ROOT)
    assert compute.calls.get(timeout=10) == ('bless_nova_instance', view['id'], source['id'])
    assert (view['name'], view['status'], view['metadata']) == (
        'gold', 'BUILD', {'blessed_from': source['id']})
    assert view['flavor']['id'] == 'f-tiny' and view['image']['id'] == nova_stub.IMAGE
    # Nova's opaque hostId; a member never sees the host itself.
    assert view['hostId'] == hashlib.sha224(b'proj-a' + b'nova-host-1').hexdigest()
    assert 'OS-EXT-SRV-ATTR:host' not in view
    assert view['links'][0]['href'] == ROOT + '/v2.1/servers/' + view['id']
    row = db_servers.live_image_get(view['id'])
    assert (row['server_id'], row['host'], row['project_id'], row['status']) == (
        source['id'], 'nova-host-1', 'proj-a', 'blessing')
    assert (row['memory_mb'], row['vcpus']) == (128, 1)
    assert row['nova_source'] == {'flavor_id': 'f-tiny', 'image_id': nova_stub.IMAGE}
    # The caller's token read the instance; the service's only read its host.
    gets = [(token, version) for method, path, token, version in nova.requests
            if method == 'GET']
    assert gets == [('tok-alice', '2.1'), ('service', '2.47')]


def test_bless_is_refused_with_nothing_written(cobalt, nova, compute):
    mine = nova.add('src', 'proj-a')
    with pytest.raises(exception.ServerNotFound):  # another project's instance
        cobalt.bless(ctx(BOB), mine['id'], None, ROOT)
    for server in (nova.add('off', 'proj-a', status='SHUTOFF'),
                   nova.add('busy', 'proj-a', task_state='rebooting')):
        with pytest.raises(exception.InvalidState):
            cobalt.bless(ctx(ALICE), server['id'], None, ROOT)
    with pytest.raises(exception.Invalid, match='boots from a volume'):
        cobalt.bless(ctx(ALICE), nova.add('bfv', 'proj-a', image=None)['id'], None, ROOT)
    with pytest.raises(exception.Invalid, match="'color' was unexpected"):
        cobalt.bless(ctx(ALICE), mine['id'], {'name': 'x', 'color': 'red'}, ROOT)
    clone = nova.add('clone', 'proj-a', metadata={'launched_from': 'li-gold'})
    with pytest.raises(exception.Invalid, match='clone of live image li-gold') as refused:
        cobalt.bless(ctx(ALICE), clone['id'], None, ROOT)
    assert refused.value.code == 400
    assert db_servers.live_image_get_all() == []
    assert compute.calls.empty()


def test_one_bless_at_a_time_and_a_live_image_is_not_blessed_again(cobalt, nova, compute):
    source = nova.add('src', 'proj-a')
    [first] = cobalt.bless(ctx(ALICE), source['id'], None, ROOT)
    assert first['name'] == 'src-0'
    with pytest.raises(exception.InvalidState, match='wait until its bless finishes'):
        cobalt.bless(ctx(ALICE), source['id'], None, ROOT)
    with pytest.raises(exception.InvalidState, match='cannot be blessed again'):
        cobalt.bless(ctx(ALICE), first['id'], None, ROOT)
    assert [i['id'] for i in db_servers.live_image_get_all()] == [first['id']]
    set_live_image(first['id'], L.BLESSED, L.BLESSING)
    [second] = cobalt.bless(ctx(ALICE), source['id'], None, ROOT)
    assert second['name'] == 'src-1'


def test_launch_boots_clones_through_nova_on_the_live_images_host(cobalt, nova, compute):
    source, live_image = _blessed(cobalt, nova, compute)
    [first] = cobalt.launch(ctx(ALICE), live_image, {
        'name': 'web', 'num_instances': 2, 'key_name': 'k1', 'user_data': 'IyEvYmluL3NoCg==',
        'security_groups': None, 'availability_zone': None, 'target': '0',
        'scheduler_hints': {'group': 'g1'}, 'guest': {}}, ROOT)
    # one create per clone: Nova would rename a multi-create's servers web-1, web-2
    assert len(nova.created) == 2 and nova.created[0] == nova.created[1]
    body = nova.created[0]
    server = body['server']
    assert (server['flavorRef'], server['imageRef']) == ('f-tiny', nova_stub.IMAGE)
    assert server['name'] == 'web' and 'min_count' not in server
    assert server['metadata'] == {'launched_from': live_image}
    assert server['networks'] == 'none' and 'security_groups' not in server
    assert (server['key_name'], server['user_data']) == ('k1', 'IyEvYmluL3NoCg==')
    assert set(body['os:scheduler_hints']) == {'group', 'gc_live_image_hosts'}
    assert body['os:scheduler_hints']['group'] == 'g1'
    # sealed: members read hints back, and nothing names the host to them
    assert 'nova-host-1' not in str(body['os:scheduler_hints'])
    assert hinted_hosts(body) == ['nova-host-1']
    assert hinted_hosts(body, project='proj-b') == []
    assert [(token, version) for method, path, token, version in nova.requests
            if method == 'POST'] == [('tok-alice', '2.37')] * 2
    # The answer is Nova's own view of the first clone, as the caller reads it.
    assert first['metadata'] == {'launched_from': live_image} and first['name'] == 'web'
    clones = cobalt.list_launched(ctx(ALICE), live_image, None, ROOT)
    assert sorted(c['id'] for c in clones) == sorted(
        s['id'] for s in nova.servers.values() if s['metadata'])
    assert len(clones) == 2 and first['id'] in {c['id'] for c in clones}
    assert cobalt.list_launched(ctx(ALICE), source['id'], None, ROOT) == []
    with pytest.raises(exception.ServerNotFound):  # bob sees neither
        cobalt.list_launched(ctx(BOB), live_image, None, ROOT)


def test_launch_passes_networks_and_security_groups(cobalt, nova, compute):
    _, live_image = _blessed(cobalt, nova, compute)
    cobalt.launch(ctx(ALICE), live_image, {
        'networks': [{'uuid': 'net-1', 'fixed_ip': None, 'port': None}, {'port': 'p-1'}],
        'security_groups': ['default', 'web']}, ROOT)
    server = nova.created[0]['server']
    assert server['networks'] == [{'uuid': 'net-1'}, {'port': 'p-1'}]
    assert server['security_groups'] == [{'name': 'default'}, {'name': 'web'}]
    assert server['name'] == 'gold-clone' and len(nova.created) == 1


def test_launch_refusals(cobalt, nova, compute):
    source, live_image = _blessed(cobalt, nova, compute)
    with pytest.raises(exception.InvalidState, match='only a blessed server'):
        cobalt.launch(ctx(ALICE), source['id'], None, ROOT)
    with pytest.raises(exception.Invalid, match='guest parameters'):
        cobalt.launch(ctx(ALICE), live_image, {'guest': {'role': 'web'}}, ROOT)
    with pytest.raises(exception.Invalid, match='its own project'):
        cobalt.launch(ctx(ADMIN), live_image, None, ROOT)
    nova.quota['proj-a'] = 2  # the source is one
    with pytest.raises(exception.QuotaExceeded, match='Quota exceeded for instances'):
        cobalt.launch(ctx(ALICE), live_image, {'num_instances': 2}, ROOT)
    db_servers.live_image_update(live_image, {'nova_source': {'flavor_id': 'gone',
                                                              'image_id': nova_stub.IMAGE}})
    with pytest.raises(exception.Invalid, match='Flavor gone could not be found'):
        cobalt.launch(ctx(ALICE), live_image, None, ROOT)
    assert [s['id'] for s in nova.servers.values()] == [source['id']]


def test_a_launch_that_races_a_discard_leaves_no_clone(cobalt, nova, compute):
    _, live_image = _blessed(cobalt, nova, compute)
    create = nova._create

    def discard_meanwhile(*args):
        response = create(*args)
        if db_servers.live_image_get(live_image)['status'] == L.BLESSED:
            set_live_image(live_image, L.DISCARDING, L.BLESSED)
        return response
    nova._create = discard_meanwhile
    with pytest.raises(exception.InvalidState, match='discarding'):
        cobalt.launch(ctx(ALICE), live_image, {'num_instances': 2}, ROOT)
    assert not [s for s in nova.servers.values() if s['metadata']]


def test_discard_waits_for_every_clone_in_every_project(cobalt, nova, compute):
    source, live_image = _blessed(cobalt, nova, compute)
    cobalt.launch(ctx(ALICE), live_image, None, ROOT)
    [clone] = [s for s in nova.servers.values() if s['metadata']]
    clone['tenant_id'] = 'proj-b'  # alice no longer sees it; it still needs the files
    with pytest.raises(exception.InvalidState, match='1 server'):
        cobalt.discard(ctx(ALICE), live_image, None)
    assert db_servers.live_image_get(live_image)['status'] == 'blessed'
    del nova.servers[clone['id']]
    with pytest.raises(exception.InvalidState, match='only a blessed server'):
        cobalt.discard(ctx(ALICE), source['id'], None)
    assert cobalt.discard(ctx(ALICE), live_image, None) is None
    assert db_servers.live_image_get(live_image)['status'] == 'discarding'
    assert compute.calls.get(timeout=10) == ('discard_live_image', live_image)
    with pytest.raises(exception.InvalidState, match='wait until it settles'):
        cobalt.discard(ctx(ALICE), live_image, None)


def test_reads_of_live_images_as_servers(cobalt, nova, compute):
    source, live_image = _blessed(cobalt, nova, compute)
    shown = cobalt.show(ctx(ALICE), live_image, ROOT)
    assert shown is not None
    assert (shown['status'], shown['OS-EXT-STS:vm_state']) == ('BLESSED', 'active')
    assert cobalt.show(ctx(BOB), live_image, ROOT) is None
    assert cobalt.show(ctx(ALICE), source['id'], ROOT) is None  # Nova's own
    admin_view = cobalt.show(ctx(ADMIN), live_image, ROOT)
    assert admin_view is not None and admin_view['OS-EXT-SRV-ATTR:host'] == 'nova-host-1'
    assert [v['id'] for v in cobalt.list_blessed(ctx(ALICE), source['id'], None, ROOT)] == [
        live_image]
    assert cobalt.list_blessed(ctx(ALICE), live_image, None, ROOT) == []
    with pytest.raises(exception.ServerNotFound):
        cobalt.list_blessed(ctx(BOB), source['id'], None, ROOT)
    # Nova's ?name= is a regex search: a literal one matches here the same way.
    assert [v['id'] for v in cobalt.find(ctx(ALICE), 'gol', False, ROOT)] == [live_image]
    assert cobalt.find(ctx(ALICE), 'g.*(x+)+$', False, ROOT) == []
    assert cobalt.find(ctx(BOB), 'gold', False, ROOT) == []
    assert cobalt.find(ctx(BOB), 'gold', True, ROOT) == []  # a member's all_tenants
    assert cobalt.find(ctx(ADMIN), 'gold', False, ROOT) == []
    assert [v['id'] for v in cobalt.find(ctx(ADMIN), 'gold', True, ROOT)] == [live_image]


def test_a_failed_bless_shows_its_fault_without_host_paths(cobalt, nova, compute):
    source = nova.add('src', 'proj-a')
    [view] = cobalt.bless(ctx(ALICE), source['id'], None, ROOT)
    set_live_image(view['id'], L.ERROR, L.BLESSING,
                   status_reason='cannot read /var/lib/gridcentric-storage/x on nova-host-1')
    shown = cobalt.show(ctx(ALICE), view['id'], ROOT)
    assert shown is not None and shown['status'] == 'ERROR'
    assert shown['fault']['message'] == 'cannot read <path> on <host>'


def test_nova_unreachable_is_503(gc_db, tmp_path):
    broken = api.API(client.NovaClient(nova_stub.service_conf(
        tmp_path, 'http://127.0.0.1:9/v2.1')))
    with pytest.raises(exception.ServiceUnavailable, match='Nova could not be reached'):
        broken.bless(ctx(ALICE), 'c7a3e7c4-2f0e-4a55-8f1f-3f8f4f3c0a11', None, ROOT)


def test_a_catalog_url_with_the_services_project_serves_the_caller(gc_db, nova, tmp_path):
    class ServiceToken(token_endpoint.Token):
        def get_project_id(self, session, **kwargs):
            return 'service'
    nova_client = client.NovaClient(nova_stub.service_conf(tmp_path, nova.url))
    nova_client._service = adapter.Adapter(
        session.Session(), auth=ServiceToken(nova.url + '/service', 'service'),
        service_type='compute', raise_exc=False)
    source = nova.add('src', 'proj-a')
    assert nova_client.get_server(ctx(ALICE), source['id'])['id'] == source['id']
    assert nova.requests[-1][:3] == ('GET', '/v2.1/proj-a/servers/' + source['id'],
                                     'tok-alice')


def test_a_bless_that_cannot_reach_the_host_leaves_nothing(cobalt, nova, monkeypatch):
    def unreachable(*args, **kwargs):
        raise messaging.MessageDeliveryFailure('no route')
    monkeypatch.setattr(cobalt.compute_rpcapi, 'bless_nova_instance', unreachable)
    with pytest.raises(exception.ServiceUnavailable, match='cannot be reached'):
        cobalt.bless(ctx(ALICE), nova.add('src', 'proj-a')['id'], None, ROOT)
    assert db_servers.live_image_get_all() == []


def test_gridcentric_api_serves_the_endpoint_only_when_enabled(gc_db):
    from gridcentric_storage.cmd import api as cmd_api
    from gridcentric_storage.nova import rpcapi

    assert cmd_api.start_cobalt_endpoint() is None  # [nova] enabled defaults to false
    CONF.set_override('enabled', True, group='nova')
    try:
        server = cmd_api.start_cobalt_endpoint()
    finally:
        CONF.clear_override('enabled', group='nova')
    try:
        filter_conf = cfg.ConfigOpts()
        filter_conf(args=[], default_config_files=[])
        caller = rpcapi.CobaltAPI(filter_conf, transport=rpc.get_transport())
        context = {'user': 'alice', 'project_id': 'proj-a', 'roles': ['member'],
                   'auth_token': 'tok-alice'}
        assert caller.show(context, 'c7a3e7c4-2f0e-4a55-8f1f-3f8f4f3c0a11', ROOT) is None
        with pytest.raises(exception.Invalid, match='unexpected'):
            caller.bless(context, 'c7a3e7c4-2f0e-4a55-8f1f-3f8f4f3c0a11', {'x': 1}, ROOT)
    finally:
        server.stop()
        server.wait()


def test_two_racing_blesses_never_both_go_on(cobalt, nova, compute, monkeypatch):
    source = nova.add('src', 'proj-a')
    create = db_servers.live_image_create

    def racing_create(values):
        # The other request passed the same check and wrote its row first.
        monkeypatch.setattr(db_servers, 'live_image_create', create)
        create(dict(values, id='6f0c3b52-8d0e-4f1e-9d0a-3f2b1c0d9e8f', name='other'))
        return create(values)
    monkeypatch.setattr(db_servers, 'live_image_create', racing_create)
    with pytest.raises(exception.InvalidState, match='another bless of it started'):
        cobalt.bless(ctx(ALICE), source['id'], None, ROOT)
    assert [i['name'] for i in db_servers.live_image_get_all()] == ['other']
    assert compute.calls.empty()


def test_export_names_the_flavor_and_image_its_clones_boot_with(cobalt, nova, compute):
    source, live_image_id = _blessed(cobalt, nova, compute)
    document = cobalt.export(ctx(ALICE), live_image_id, None)
    assert compute.calls.get(timeout=10) == ('export_live_image', live_image_id)
    assert document['fields'] == {'id': live_image_id, 'name': 'gold', 'memory_mb': 128,
                                  'vcpus': 1, 'flavor_id': 'f-tiny', 'image_id': nova_stub.IMAGE}
    assert document['flavor_name'] == 'm1.tiny'
    assert document['metadata'] == {'blessed_from': source['id']}
    assert document['export_image_id'] == 'live-image-%s.tar' % live_image_id
    with pytest.raises(exception.ServerNotFound):
        cobalt.export(ctx(BOB), live_image_id, None)
    with pytest.raises(exception.InvalidState, match='only a blessed server'):
        cobalt.export(ctx(ALICE), source['id'], None)


def _document(cobalt, nova, compute):
    _, live_image_id = _blessed(cobalt, nova, compute)
    document = cobalt.export(ctx(ALICE), live_image_id, None)
    compute.calls.get(timeout=10)
    return document


def _hosts_up(*hosts):
    """gridcentric-compute's heartbeat on these hosts (Nova's stand-in runs nova-host-1)."""
    for host in hosts:
        db.service_heartbeat(host, CONF.compute.topic, 'gridcentric-compute')


def test_import_makes_a_live_image_that_launches_through_nova(cobalt, nova, compute):
    _hosts_up('nova-host-1', 'not-a-nova-host')
    document = _document(cobalt, nova, compute)
    answer = cobalt.import_server(ctx(BOB), {'data': document}, ROOT)['server']
    assert compute.calls.get(timeout=10) == (
        'import_live_image', answer['id'], document['export_image_id'],
        document['system_metadata']['export_sha256'])
    assert answer['status'] == 'BLESSED' and answer['tenant_id'] == 'proj-b'
    assert db_servers.live_image_get(answer['id'])['host'] == 'nova-host-1'
    assert answer['flavor']['id'] == 'f-tiny' and answer['image']['id'] == nova_stub.IMAGE
    row = db_servers.live_image_get(answer['id'])
    assert row['nova_source'] == {'flavor_id': 'f-tiny', 'image_id': nova_stub.IMAGE}
    [clone] = cobalt.launch(ctx(BOB), answer['id'], {'name': 'web'}, ROOT)
    assert clone['tenant_id'] == 'proj-b'
    assert nova.created[-1]['server']['flavorRef'] == 'f-tiny'


def test_import_finds_a_flavor_by_name_and_size_in_another_cloud(cobalt, nova, compute):
    _hosts_up('nova-host-1')
    document = _document(cobalt, nova, compute)
    document['fields']['flavor_id'] = 'gone'
    answer = cobalt.import_server(ctx(ALICE), {'data': document}, ROOT)['server']
    assert answer['flavor']['id'] == 'f-tiny'
    document['flavor_name'] = 'm1.small'  # a name whose size differs does not count
    with pytest.raises(exception.Invalid, match='no flavor you can use has 128 MiB'):
        cobalt.import_server(ctx(ALICE), {'data': document}, ROOT)


def test_import_refusals_leave_no_live_image(cobalt, nova, compute):
    document = _document(cobalt, nova, compute)
    before = len(db_servers.live_image_get_all())
    with pytest.raises(exception.Conflict, match='no host runs both'):
        cobalt.import_server(ctx(ALICE), {'data': document}, ROOT)
    _hosts_up('nova-host-1')
    unknown_image = dict(document, fields=dict(document['fields'],
                                               image_id='6f1e0b7c-61d5-4a43-9e11-3fb4d1e4b8a0'))
    with pytest.raises(exception.Invalid, match='not an image you can boot here'):
        cobalt.import_server(ctx(ALICE), {'data': unknown_image}, ROOT)
    standalone = dict(document, fields={k: v for k, v in document['fields'].items()
                                        if k not in ('flavor_id', 'image_id')})
    with pytest.raises(exception.Invalid, match='names no image'):
        cobalt.import_server(ctx(ALICE), {'data': standalone}, ROOT)
    with pytest.raises(exception.Invalid, match='export_image_id'):
        cobalt.import_server(ctx(ALICE), {'data': dict(document, export_image_id='/etc/x')},
                             ROOT)
    assert len(db_servers.live_image_get_all()) == before


def test_migrate_is_novas_live_migration(cobalt, nova, compute):
    source = nova.add('src', 'proj-a')
    cobalt.migrate(ctx(ADMIN), source['id'], {'dest': 'nova-host-2'})
    method, path, token, version = nova.requests[-1]
    assert (method, path, token, version) == (
        'POST', '/v2.1/servers/%s/action' % source['id'], ADMIN, '2.25')
    assert nova.bodies[-1] == (b'{"os-migrateLive": {"host": "nova-host-2", '
                               b'"block_migration": "auto"}}')
    cobalt.migrate(ctx(ALICE), source['id'], None)  # Nova's policy decides who may
    assert b'"host": null' in nova.bodies[-1]


def test_migrate_refusals(cobalt, nova, compute):
    source, live_image_id = _blessed(cobalt, nova, compute)
    sent = len(nova.bodies)
    with pytest.raises(exception.InvalidState, match='only an ACTIVE server'):
        cobalt.migrate(ctx(ALICE), live_image_id, None)
    off = nova.add('off', 'proj-a', status='SHUTOFF')
    with pytest.raises(exception.InvalidState, match='only an ACTIVE server'):
        cobalt.migrate(ctx(ALICE), off['id'], None)
    clone = nova.add('web', 'proj-a', metadata={api.LAUNCHED_FROM: live_image_id})
    with pytest.raises(exception.Invalid, match='migrating clones is not supported'):
        cobalt.migrate(ctx(ALICE), clone['id'], None)
    with pytest.raises(exception.ServerNotFound):
        cobalt.migrate(ctx(BOB), source['id'], None)
    with pytest.raises(exception.Invalid, match="'x' was unexpected"):
        cobalt.migrate(ctx(ALICE), source['id'], {'dest': 'host-2', 'x': 1})
    assert len(nova.bodies) == sent  # nothing reached Nova
