"""/v1/volumes through the real API, placement, RPC and the fake driver."""

from tests.fixtures.services import wait_for


def _create(cloud, token='admin:admin', **fields):
    return cloud.request('POST', '/v1/volumes', token=token, json={'volume': fields})


def _wait_status(cloud, volume_id, token='admin:admin'):
    def settled():
        volume = cloud.request('GET', '/v1/volumes/%s' % volume_id,
                               token=token).json()['volume']
        return volume if volume['status'] != 'creating' else None
    return wait_for(settled, timeout=20)


def test_create_lands_on_the_backend_with_the_tags(cloud, make_backend):
    hdd = make_backend('hdd', cost=0, tags=['hdd'])
    ssd = make_backend('ssd', cost=5, tags=['ssd'])
    response = _create(cloud, size=2, name='db', tags=['ssd'])
    assert response.status_code == 202
    volume = response.json()['volume']
    assert volume['status'] == 'creating' and volume['backend_id'] == ssd['id']
    assert _wait_status(cloud, volume['id'])['status'] == 'available'
    ssd_now = cloud.request('GET', '/v1/backends/%s' % ssd['id']).json()['backend']
    assert ssd_now['volume_count'] == 1 and ssd_now['provisioned_capacity_gb'] == 2
    # no tags: the cheaper backend wins
    cheap = _create(cloud, size=1).json()['volume']
    assert cheap['backend_id'] == hdd['id']


def test_requirements_and_rank_expressions(cloud, make_backend):
    make_backend('small', options={'capacity_gb': 50})
    big = make_backend('big', options={'capacity_gb': 500}, cost=3)
    volume = _create(cloud, size=1, requirements='free_capacity_gb > 100').json()['volume']
    assert volume['backend_id'] == big['id']
    bad = _create(cloud, size=1, requirements='free_capacity_gb >')
    assert bad.status_code == 400
    assert 'Invalid expression' in bad.json()['badRequest']['message']
    unknown = _create(cloud, size=1, requirements='secret_key == 1')
    assert unknown.status_code == 400 and 'secret_key' in unknown.text


def test_no_backend_fits_says_why(cloud, make_backend):
    make_backend('tiny', options={'capacity_gb': 1})
    backend = make_backend('off')
    cloud.request('POST', '/v1/backends/%s/action' % backend['id'],
                  json={'disable': {'reason': 'maintenance'}})
    response = _create(cloud, size=10)
    assert response.status_code == 400
    message = response.json()['badRequest']['message']
    assert 'tiny' in message and 'off' in message and 'maintenance' in message
    assert cloud.request('GET', '/v1/volumes').json()['volumes'] == []


def test_bad_sizes_rejected(cloud, make_backend):
    make_backend()
    for size in (0, -1, 'ten', 1.5, None):
        response = _create(cloud, size=size)
        assert response.status_code == 400, size
        assert 'size' in response.json()['badRequest']['message']
    assert _create(cloud, name='no size').status_code == 400
    assert cloud.request('GET', '/v1/volumes').json()['volumes'] == []


def test_driver_failure_ends_in_error_with_reason(cloud, make_backend):
    make_backend(options={'fail_on': ['create_volume']})
    volume = _create(cloud, size=1).json()['volume']
    failed = _wait_status(cloud, volume['id'])
    assert failed['status'] == 'error'
    assert 'create_volume failed' in failed['status_reason']
    # an errored volume can be deleted
    assert cloud.request('DELETE', '/v1/volumes/%s' % volume['id']).status_code == 202
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .status_code == 404, timeout=20)


def test_delete_frees_capacity(cloud, make_backend):
    backend = make_backend()
    volume = _create(cloud, size=3).json()['volume']
    _wait_status(cloud, volume['id'])
    assert cloud.request('DELETE', '/v1/volumes/%s' % volume['id']).status_code == 202
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .status_code == 404, timeout=20)
    after = cloud.request('GET', '/v1/backends/%s' % backend['id']).json()['backend']
    assert after['volume_count'] == 0 and after['provisioned_capacity_gb'] == 0


def test_volumes_are_project_scoped(cloud, make_backend):
    make_backend()
    mine = _create(cloud, token='alice:proj-a', size=1).json()['volume']
    assert mine['project_id'] == 'proj-a' and 'host' not in mine
    _wait_status(cloud, mine['id'], token='alice:proj-a')
    other = cloud.request('GET', '/v1/volumes/%s' % mine['id'], token='bob:proj-b')
    assert other.status_code == 404
    assert cloud.request('DELETE', '/v1/volumes/%s' % mine['id'],
                         token='bob:proj-b').status_code == 404
    assert cloud.request('GET', '/v1/volumes', token='bob:proj-b').json()['volumes'] == []
    listed = cloud.request('GET', '/v1/volumes', token='alice:proj-a').json()['volumes']
    assert [v['id'] for v in listed] == [mine['id']]
    assert cloud.request('GET', '/v1/volumes?all_tenants=1',
                         token='bob:proj-b').status_code == 403
    everyone = cloud.request('GET', '/v1/volumes?all_tenants=1').json()['volumes']
    assert [v['id'] for v in everyone] == [mine['id']]
    assert _create(cloud, token='alice:proj-a', size=1,
                   backend_id=mine['backend_id']).status_code == 403


def test_busy_backend_delete_refused_with_count(cloud, make_backend):
    backend = make_backend()
    for _ in range(2):
        _wait_status(cloud, _create(cloud, size=1).json()['volume']['id'])
    response = cloud.request('DELETE', '/v1/backends/%s' % backend['id'])
    assert response.status_code == 409
    assert '2 volume(s)' in response.json()['conflict']['message']
    assert cloud.request('GET', '/v1/backends/%s' % backend['id']).status_code == 200


def test_unknown_volume_and_backend_ids(cloud, make_backend):
    make_backend()
    assert cloud.request('GET', '/v1/volumes/nope').status_code == 404
    response = _create(cloud, size=1, backend_id='6f1c1b43-5e0e-4c58-9d7a-0ad3d5e8a001')
    assert response.status_code == 400
    assert '6f1c1b43' in response.text


def test_volumes_no_host_can_open_refuse_streams_clearly(cloud, make_backend):
    make_backend()      # the fake driver: no os-brick connector opens its volumes
    volume = _create(cloud, size=1).json()['volume']
    assert _wait_status(cloud, volume['id'])['status'] == 'available'
    upload = cloud.request('PUT', '/v1/volumes/%s/data' % volume['id'], data=b'x' * 512,
                           headers={'Content-Type': 'application/octet-stream'})
    download = cloud.request('GET', '/v1/volumes/%s/data' % volume['id'])
    for response in (upload, download):
        assert response.status_code == 409, response.text
        assert 'cannot be streamed' in response.json()['conflict']['message']
    after = cloud.request('GET', '/v1/volumes/%s' % volume['id']).json()['volume']
    assert after['status'] == 'available'
