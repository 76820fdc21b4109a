"""/v1/backends through the real API, compute service and SQLite."""

from gridcentric_storage.db import api as db
from tests.fixtures.services import wait_for


def test_create_show_and_list(cloud, make_backend):
    created = make_backend('ssd-1', options={'capacity_gb': 500, 'password': 's3cret'},
                           tags=['ssd', 'fast'], cost=2, role='san',
                           availability_zone='az1', reserved_percentage=10)
    assert created['host'] == 'test-host'
    assert created['state'] == 'enabled'
    assert created['status'] == 'up'  # set up and reported at once, no restart
    assert created['total_capacity_gb'] == 500
    assert created['volume_count'] == 0
    assert created['options']['password'] == '***'
    assert 's3cret' not in cloud.request('GET', '/v1/backends').text
    shown = cloud.request('GET', '/v1/backends/%s' % created['id']).json()['backend']
    assert shown['tags'] == ['ssd', 'fast'] and shown['cost'] == 2
    assert shown['availability_zone'] == 'az1'
    # the secret is kept for the driver even though it is never shown
    assert db.backend_get(created['id'])['options']['password'] == 's3cret'


def test_list_filters_sort_and_pagination(cloud, make_backend):
    for i, (cost, tags) in enumerate([(3, ['ssd']), (1, ['hdd']), (2, ['ssd'])]):
        make_backend('b%d' % i, cost=cost, tags=tags)
    names = [b['name'] for b in cloud.request(
        'GET', '/v1/backends?sort_key=cost&sort_dir=desc').json()['backends']]
    assert names == ['b0', 'b2', 'b1']
    ssd = cloud.request('GET', '/v1/backends?tag=ssd').json()['backends']
    assert sorted(b['name'] for b in ssd) == ['b0', 'b2']
    assert cloud.request('GET', '/v1/backends?tag=ssd&tag=hdd').json()['backends'] == []
    page = cloud.request('GET', '/v1/backends?sort_key=name&limit=2').json()
    assert [b['name'] for b in page['backends']] == ['b0', 'b1']
    next_href = page['backends_links'][0]['href']
    rest = cloud.request('GET', next_href[len(cloud.url):]).json()
    assert [b['name'] for b in rest['backends']] == ['b2']
    assert cloud.request('GET', '/v1/backends?status=up').json()['backends']
    assert cloud.request('GET', '/v1/backends?state=disabled').json()['backends'] == []


def test_update_enable_disable(cloud, make_backend):
    backend = make_backend()
    path = '/v1/backends/%s' % backend['id']
    updated = cloud.request('PUT', path, json={'backend': {'cost': 7, 'tags': ['x']}})
    assert updated.status_code == 200
    assert updated.json()['backend']['cost'] == 7
    disabled = cloud.request('POST', path + '/action',
                             json={'disable': {'reason': 'maintenance'}}).json()['backend']
    assert (disabled['state'], disabled['disabled_reason']) == ('disabled', 'maintenance')
    enabled = cloud.request('POST', path + '/action', json={'enable': {}}).json()['backend']
    assert (enabled['state'], enabled['disabled_reason']) == ('enabled', None)


def test_update_options_revalidated_and_applied(cloud, make_backend):
    backend = make_backend(options={'capacity_gb': 10})
    path = '/v1/backends/%s' % backend['id']
    bad = cloud.request('PUT', path, json={'backend': {'options': {'capacity_gb': -1}}})
    assert bad.status_code == 400 and 'capacity_gb' in bad.json()['badRequest']['message']
    ok = cloud.request('PUT', path, json={'backend': {'options': {'capacity_gb': 20}}})
    assert ok.json()['backend']['total_capacity_gb'] == 20


def test_bad_input_is_a_clear_4xx_and_creates_nothing(cloud, make_backend):
    cases = [
        ({'name': 'x', 'driver': 'nope'}, 400, 'Unknown driver nope'),
        ({'name': 'x', 'driver': 'fake', 'options': {'bogus': 1}}, 400, 'bogus'),
        ({'name': 'x', 'driver': 'fake', 'cost': -1}, 400, 'cost'),
        ({'name': 'x', 'driver': 'fake', 'role': 'cache'}, 400, 'role'),
        ({'name': '', 'driver': 'fake'}, 400, 'name'),
        ({'name': 'x', 'driver': 'fake', 'host': 'elsewhere'}, 400,
         'no compute service is up on host elsewhere'),
        ({'name': 'x', 'driver': 'fake', 'options': {'fail_on': ['do_setup']}}, 400,
         'do_setup failed'),
        ({'driver': 'fake'}, 400, 'name'),
    ]
    for body, status, text in cases:
        response = cloud.request('POST', '/v1/backends', json={'backend': body})
        assert response.status_code == status, (body, response.text)
        assert text in next(iter(response.json().values()))['message'], response.text
    assert cloud.request('GET', '/v1/backends').json()['backends'] == []
    make_backend('dup')
    response = cloud.request('POST', '/v1/backends',
                             json={'backend': {'name': 'dup', 'driver': 'fake'}})
    assert response.status_code == 409 and 'already exists' in response.text
    malformed = cloud.request('POST', '/v1/backends', data=b'{not json',
                              headers={'Content-Type': 'application/json'})
    assert malformed.status_code == 400 and 'malformed JSON' in malformed.text


def test_unknown_id_and_wrong_method(cloud):
    missing = cloud.request('GET', '/v1/backends/0000')
    assert missing.status_code == 404
    assert 'could not be found' in missing.json()['itemNotFound']['message']
    assert cloud.request('DELETE', '/v1/backends/0000').status_code == 404
    assert cloud.request('PATCH', '/v1/backends').status_code == 405
    assert cloud.request('GET', '/v1/nothing-here').status_code == 404


def test_delete_empty_backend(cloud, make_backend):
    backend = make_backend()
    assert cloud.request('DELETE', '/v1/backends/%s' % backend['id']).status_code == 204
    assert cloud.request('GET', '/v1/backends/%s' % backend['id']).status_code == 404


def test_backends_are_admin_only(cloud, make_backend):
    backend = make_backend()
    for method, path, body in [('GET', '/v1/backends', None),
                               ('POST', '/v1/backends', {'backend': {'name': 'y',
                                                                     'driver': 'fake'}}),
                               ('GET', '/v1/backends/%s' % backend['id'], None),
                               ('DELETE', '/v1/backends/%s' % backend['id'], None)]:
        response = cloud.request(method, path, json=body, token='alice:proj-a')
        assert response.status_code == 403, (method, path)
        assert 'backend:' in response.json()['forbidden']['message']
    assert cloud.request('GET', '/v1/backends/%s' % backend['id']).status_code == 200


def test_an_options_update_changes_only_what_it_names(cloud, make_backend, tmp_path):
    backend = make_backend('files', driver='file', options={'path': str(tmp_path / 'files')})
    path = '/v1/backends/%s' % backend['id']
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()['volume']
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .json()['volume']['status'] == 'available', timeout=20, what='the volume')
    # an empty change used to reset path to the default, orphaning the volume
    unchanged = cloud.request('PUT', path, json={'backend': {'options': {}}})
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json()['backend']['options']['path'] == str(tmp_path / 'files')
    moved = cloud.request('PUT', path, json={'backend': {'options': {
        'path': str(tmp_path / 'elsewhere')}}})
    assert moved.status_code == 409, moved.text
    assert 'path cannot change' in moved.json()['conflict']['message']
    data = cloud.request('GET', '/v1/volumes/%s/data' % volume['id'], stream=True)
    assert data.status_code == 200, data.text
    assert len(next(data.iter_content(4096))) > 0
    data.close()


def test_a_masked_secret_sent_back_keeps_the_real_one(cloud, make_backend):
    backend = make_backend('secretive', options={'password': 'hunter2', 'capacity_gb': 5})
    assert backend['options']['password'] == '***'
    path = '/v1/backends/%s' % backend['id']
    updated = cloud.request('PUT', path, json={'backend': {'options': dict(
        backend['options'], capacity_gb=9)}})
    assert updated.status_code == 200, updated.text
    assert db.backend_get(backend['id'])['options']['password'] == 'hunter2'
