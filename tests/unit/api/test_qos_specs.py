"""/v1/qos-specs through the real API, RPC, the fake volume driver and the fake hypervisor.

What a user checks: the backend enforces the limits it is given (the fake
driver's ``qos``), the hypervisor of a server using the volume gets the
front-end ones (the fake virt driver's disk), members never see specs, and a
change reaches a volume already in use. tests/functional/test_qos.py checks
the same against QEMU, Ceph and the StorPool simulator.
"""

import pytest

from tests.fixtures.images import store_file
from tests.fixtures.services import wait_for

MEMBER = 'alice:p1'


def _specs(cloud, expect=200, token='admin:admin', **body):
    response = cloud.request('POST', '/v1/qos-specs', token=token, json={'qos_specs': body})
    assert response.status_code == expect, response.text
    return response.json().get('qos_specs', response.json())


def _volume(cloud, backend_id=None, size=1, token='admin:admin'):
    body = {'size': size}
    if backend_id:
        body['backend_id'] = backend_id
    volume = cloud.request('POST', '/v1/volumes', token=token,
                           json={'volume': body}).json()['volume']
    wait_for(lambda: _get(cloud, volume['id'], token)['status'] == 'available')
    return _get(cloud, volume['id'], token)


def _get(cloud, volume_id, token='admin:admin'):
    return cloud.request('GET', '/v1/volumes/%s' % volume_id, token=token).json()['volume']


def _associate(cloud, volume_id, specs_id, token='admin:admin'):
    return cloud.request('POST', '/v1/volumes/%s/action' % volume_id, token=token,
                         json={'qos': {'qos_specs_id': specs_id}})


def _enforced(cloud, backend_id, volume_id):
    """What the backend enforces on the volume (the storage's view)."""
    return cloud.compute.volumes.pool.get(backend_id).qos(volume_id)


@pytest.fixture
def backend(make_backend):
    return make_backend('fast')


def test_cinder_shaped_crud(cloud, backend):
    gold = _specs(cloud, name='gold', consumer='both', total_iops_sec='500',
                  read_bytes_sec=1 << 20)
    assert (gold['name'], gold['consumer'], gold['specs']) == (
        'gold', 'both', {'total_iops_sec': 500, 'read_bytes_sec': 1 << 20})
    silver = _specs(cloud, name='silver', total_iops_sec_per_gb=10)
    assert silver['consumer'] == 'back-end'          # Cinder's default
    listed = cloud.request('GET', '/v1/qos-specs').json()['qos_specs']
    assert sorted(s['name'] for s in listed) == ['gold', 'silver']
    path = '/v1/qos-specs/%s' % gold['id']
    updated = cloud.request('PUT', path, json={'qos_specs': {'write_bytes_sec': '2048',
                                                             'consumer': 'front-end'}})
    assert updated.status_code == 200, updated.text
    assert updated.json()['qos_specs']['specs'] == {
        'total_iops_sec': 500, 'read_bytes_sec': 1 << 20, 'write_bytes_sec': 2048}
    assert updated.json()['qos_specs']['consumer'] == 'front-end'
    removed = cloud.request('PUT', path + '/delete_keys', json={'keys': ['read_bytes_sec']})
    assert removed.status_code == 202, removed.text
    shown = cloud.request('GET', path).json()['qos_specs']
    assert shown['specs'] == {'total_iops_sec': 500, 'write_bytes_sec': 2048}
    # a per-GB key replaces its fixed one (and back)
    per_gb = cloud.request('PUT', path, json={'qos_specs': {'total_iops_sec_per_gb': 5}})
    assert per_gb.json()['qos_specs']['specs'] == {'total_iops_sec_per_gb': 5,
                                                   'write_bytes_sec': 2048}
    assert cloud.request('DELETE', path).status_code == 202
    assert cloud.request('GET', path).status_code == 404


def test_bad_specs_are_400_and_names_unique(cloud):
    for body in ({'name': 'x', 'total_iops_sec': 0},
                 {'name': 'x', 'iops': 5},
                 {'name': 'x', 'total_bytes_sec': 5, 'read_bytes_sec': 5},
                 {'name': 'x', 'consumer': 'hypervisor'},
                 {'total_iops_sec': 5}):
        assert 'badRequest' in _specs(cloud, expect=400, **body)
    _specs(cloud, name='x', total_iops_sec=5)
    _specs(cloud, expect=409, name='x', total_iops_sec=6)


def test_members_never_see_or_touch_specs_only_their_volumes_limits(cloud, backend):
    gold = _specs(cloud, name='gold', consumer='both', total_iops_sec=300)
    for method, path, body in (
            ('GET', '/v1/qos-specs', None), ('POST', '/v1/qos-specs', {'qos_specs': {
                'name': 'mine', 'total_iops_sec': 9}}),
            ('GET', '/v1/qos-specs/%s' % gold['id'], None),
            ('GET', '/v1/qos-specs/%s/associations' % gold['id'], None),
            ('PUT', '/v1/qos-specs/%s' % gold['id'], {'qos_specs': {'total_iops_sec': 9}}),
            ('DELETE', '/v1/qos-specs/%s' % gold['id'], None)):
        response = cloud.request(method, path, token=MEMBER, json=body)
        assert response.status_code == 403, (method, path, response.text)
    volume = _volume(cloud, token=MEMBER)
    assert volume['qos'] is None and 'qos_specs_id' not in volume
    assert _associate(cloud, volume['id'], gold['id'], token=MEMBER).status_code == 403
    assert _associate(cloud, volume['id'], gold['id']).status_code == 202
    seen = wait_for(lambda: _get(cloud, volume['id'], MEMBER)['qos'])
    assert seen == {'consumer': 'both', 'limits': {'total_iops_sec': 300}}
    assert 'qos_specs_id' not in _get(cloud, volume['id'], MEMBER)
    assert _get(cloud, volume['id'])['qos_specs_id'] == gold['id']


def test_a_volumes_specs_reach_its_backend_and_follow_changes(cloud, backend):
    volume = _volume(cloud, size=4)
    gold = _specs(cloud, name='gold', total_iops_sec_per_gb=100, write_bytes_sec=1 << 20)
    assert _enforced(cloud, backend['id'], volume['id']) is None
    assert _associate(cloud, volume['id'], gold['id']).status_code == 202
    wait_for(lambda: _enforced(cloud, backend['id'], volume['id']) == {
        'total_iops_sec': 400, 'write_bytes_sec': 1 << 20})
    # per GB: the extend recomputes it
    cloud.request('POST', '/v1/volumes/%s/action' % volume['id'],
                  json={'os-extend': {'new_size': 6}})
    wait_for(lambda: (_enforced(cloud, backend['id'], volume['id']) or {}).get(
        'total_iops_sec') == 600)
    cloud.request('PUT', '/v1/qos-specs/%s' % gold['id'],
                  json={'qos_specs': {'write_bytes_sec': 4096}})
    wait_for(lambda: _enforced(cloud, backend['id'], volume['id']) == {
        'total_iops_sec': 600, 'write_bytes_sec': 4096})
    # front-end only: the backend's limits go
    cloud.request('PUT', '/v1/qos-specs/%s' % gold['id'],
                  json={'qos_specs': {'consumer': 'front-end'}})
    wait_for(lambda: _enforced(cloud, backend['id'], volume['id']) == {})
    assert _associate(cloud, volume['id'], None).status_code == 202
    assert wait_for(lambda: _get(cloud, volume['id'])['qos_specs_id'] is None)


def test_a_backends_specs_govern_its_volumes_without_their_own(cloud, make_backend):
    bronze = _specs(cloud, name='bronze', total_iops_sec=100)
    gold = _specs(cloud, name='gold', total_iops_sec=900)
    slow = make_backend('slow', qos_specs_id=bronze['id'])
    assert slow['qos_specs_id'] == bronze['id']
    plain, own = _volume(cloud, slow['id']), _volume(cloud, slow['id'])
    # a new volume gets its backend's limits as it is created
    assert _enforced(cloud, slow['id'], plain['id']) == {'total_iops_sec': 100}
    _associate(cloud, own['id'], gold['id'])
    wait_for(lambda: _enforced(cloud, slow['id'], own['id']) == {'total_iops_sec': 900})
    associations = cloud.request('GET', '/v1/qos-specs/%s/associations'
                                 % bronze['id']).json()['qos_associations']
    assert associations == [{'association_type': 'backend', 'id': slow['id'],
                             'name': 'slow'}]
    cloud.request('PUT', '/v1/qos-specs/%s' % bronze['id'],
                  json={'qos_specs': {'total_iops_sec': 50}})
    wait_for(lambda: _enforced(cloud, slow['id'], plain['id']) == {'total_iops_sec': 50})
    assert _enforced(cloud, slow['id'], own['id']) == {'total_iops_sec': 900}
    # specs in use stay unless forced; forced, their volumes lose the limits
    in_use = cloud.request('DELETE', '/v1/qos-specs/%s' % bronze['id'])
    assert in_use.status_code == 409 and 'backends' in in_use.text
    assert cloud.request('DELETE', '/v1/qos-specs/%s?force=true'
                         % bronze['id']).status_code == 202
    wait_for(lambda: _enforced(cloud, slow['id'], plain['id']) == {})
    backend_now = cloud.request('GET', '/v1/backends/%s' % slow['id']).json()['backend']
    assert backend_now['qos_specs_id'] is None
    missing = cloud.request('PUT', '/v1/backends/%s' % slow['id'], json={'backend': {
        'qos_specs_id': bronze['id']}})
    assert missing.status_code == 404


def test_a_backend_that_cannot_limit_says_so_on_the_volume(cloud, make_backend):
    """A backend whose driver cannot enforce a limit leaves a note, and the volume works."""
    broken = make_backend('broken', options={'fail_on': ['set_qos']})
    gold = _specs(cloud, name='gold', total_iops_sec=100)
    volume = _volume(cloud, broken['id'])
    _associate(cloud, volume['id'], gold['id'])
    shown = wait_for(lambda: _get(cloud, volume['id'])['status_reason'])
    assert shown.startswith('QoS not applied') and 'set_qos failed' in shown
    assert _get(cloud, volume['id'])['status'] == 'available'


def test_front_end_limits_reach_the_hypervisor_and_change_live(cloud, backend, gc_conf):
    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')
    volume = _volume(cloud, size=2)
    gold = _specs(cloud, name='gold', consumer='front-end', total_bytes_sec_per_gb=1 << 20,
                  total_iops_sec=200)
    _associate(cloud, volume['id'], gold['id'])
    server = cloud.request('POST', '/v1/servers', json={'server': {
        'name': 'vm', 'memory_mb': 256, 'kernel': 'vmlinuz', 'initrd': 'initrd.img'}}
    ).json()['server']
    wait_for(lambda: cloud.request('GET', '/v1/servers/%s' % server['id'])
             .json()['server']['status'] == 'ACTIVE')
    cloud.request('POST', '/v1/servers/%s/os-volume_attachments' % server['id'],
                  json={'volumeAttachment': {'volumeId': volume['id']}})
    wait_for(lambda: _get(cloud, volume['id'])['status'] == 'in-use')
    hypervisor = cloud.compute.manager.servers.driver

    def disk_limits():
        disk = next(d for d in hypervisor.disks(server['id']) if d.volume_id == volume['id'])
        return disk.connection_info['data'].get('qos_specs')
    assert disk_limits() == {'total_bytes_sec': 2 << 20, 'total_iops_sec': 200}
    assert not _enforced(cloud, backend['id'], volume['id'])   # front-end only
    cloud.request('PUT', '/v1/qos-specs/%s' % gold['id'],
                  json={'qos_specs': {'total_iops_sec': 50}})
    wait_for(lambda: disk_limits() == {'total_bytes_sec': 2 << 20, 'total_iops_sec': 50})
    cloud.request('POST', '/v1/volumes/%s/action' % volume['id'],
                  json={'os-extend': {'new_size': 3}})
    wait_for(lambda: disk_limits() == {'total_bytes_sec': 3 << 20, 'total_iops_sec': 50})
    _associate(cloud, volume['id'], None)
    wait_for(lambda: not disk_limits())
