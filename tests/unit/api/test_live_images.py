"""Servers, live images and the Cobalt dialect through the real API and RPC.

The virt driver here is the fake one (no VM); tests/functional/test_live_images*.py
run the same paths with real QEMU guests.
"""

import base64
import os
import stat
import uuid

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from tests.fixtures.images import store_file
from tests.fixtures.services import wait_for


def _settle_server(cloud, id, token='admin:admin'):
    def done():
        response = cloud.request('GET', '/v1/servers/%s' % id, token=token)
        if response.status_code == 404:
            return {'status': 'DELETED'}
        server = response.json()['server']
        return server if server['status'] != 'BUILD' and not server['task_state'] else None
    return wait_for(done, timeout=20)


def _settle_image(cloud, id):
    def done():
        response = cloud.request('GET', '/v1/live-images/%s' % id)
        if response.status_code == 404:
            return {'status': 'gone'}
        image = response.json()['live_image']
        return image if image['status'] not in ('blessing', 'discarding') else None
    return wait_for(done, timeout=20)


@pytest.fixture(autouse=True)
def boot_files(gc_conf):
    """A kernel and an initrd in the public image store (the fake driver boots nothing)."""
    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')


def _server(cloud, name='src', token='admin:admin'):
    response = cloud.request('POST', '/v1/servers', token=token, json={'server': {
        'name': name, 'memory_mb': 256, 'kernel': 'vmlinuz', 'initrd': 'initrd.img'}})
    assert response.status_code == 202, response.text
    server = _settle_server(cloud, response.json()['server']['id'], token)
    assert server['status'] == 'ACTIVE', server
    return server


def test_bless_launch_discard(cloud):
    source = _server(cloud)
    blessed = cloud.request('POST', '/v1/live-images',
                            json={'live_image': {'server_id': source['id'], 'name': 'gold'}})
    assert blessed.status_code == 202, blessed.text
    image = _settle_image(cloud, blessed.json()['live_image']['id'])
    assert (image['status'], image['name'], image['server_id']) == (
        'blessed', 'gold', source['id'])
    assert _settle_server(cloud, source['id'])['status'] == 'ACTIVE'  # source keeps running

    launched = cloud.request('POST', '/v1/live-images/%s/action' % image['id'], json={
        'launch': {'name': 'web', 'num_instances': 3, 'guest': {'role': 'web'}}})
    assert launched.status_code == 202, launched.text
    clones = launched.json()['servers']
    assert [c['name'] for c in clones] == ['web-0', 'web-1', 'web-2']
    assert len({c['mac'] for c in clones}) == 3
    for clone in clones:
        settled = _settle_server(cloud, clone['id'])
        assert settled['status'] == 'ACTIVE' and settled['live_image_id'] == image['id']
        assert settled['guest'] == {'role': 'web'}
    listed = cloud.request('GET', '/v1/live-images/%s/servers' % image['id']).json()
    assert sorted(s['id'] for s in listed['servers']) == sorted(c['id'] for c in clones)

    refused = cloud.request('DELETE', '/v1/live-images/%s' % image['id'])
    assert refused.status_code == 409 and '3 server(s)' in refused.text
    for clone in clones:
        assert cloud.request('DELETE', '/v1/servers/%s' % clone['id']).status_code == 204
        assert _settle_server(cloud, clone['id'])['status'] == 'DELETED'
    assert cloud.request('DELETE', '/v1/live-images/%s' % image['id']).status_code == 202
    assert _settle_image(cloud, image['id'])['status'] == 'gone'


def test_console_output_both_spellings(cloud):
    server = _server(cloud)
    response = cloud.request('POST', '/v1/servers/%s/action' % server['id'],
                             json={'os-getConsoleOutput': {'length': 10}})
    assert response.status_code == 200 and server['id'] in response.json()['output']
    nova = cloud.request('POST', '/v2.1/servers/%s/action' % server['id'],
                         json={'os-getConsoleOutput': {'length': 10}})
    assert nova.status_code == 400  # not a Cobalt action: the /v1 path serves it


def test_cobalt_dialect(cloud):
    source = _server(cloud)
    info = cloud.request('GET', '/cobaltinfo').json()
    assert {'user-data', 'num-instances', 'bless-name'} <= set(info['capabilities'])
    blessed = cloud.request('POST', '/v2.1/servers/%s/action' % source['id'],
                            json={'co_bless': {'name': 'snap'}})
    assert blessed.status_code == 200, blessed.text
    blessed_server = blessed.json()[0]
    assert blessed_server['metadata'] == {'blessed_from': source['id']}
    image_id = blessed_server['id']
    _settle_image(cloud, image_id)
    shown = cloud.request('GET', '/v2.1/proj/servers/%s' % image_id).json()['server']
    assert shown['status'] == 'BLESSED'

    launched = cloud.request('POST', '/v2.1/admin/servers/%s/action' % image_id, json={
        'gc_launch': {'name': 'c', 'num_instances': 2,
                      'user_data': base64.b64encode(b'#!/bin/sh\necho hi').decode()}})
    assert launched.status_code == 200, launched.text
    first = launched.json()[0]  # Cobalt answers a bare list: the first clone
    assert first['metadata'] == {'launched_from': image_id} and first['name'] == 'c'
    for server in cloud.request('POST', '/v2.1/servers/%s/action' % image_id,
                                json={'co_list_launched': {}}).json():
        _settle_server(cloud, server['id'])
    listed = cloud.request('POST', '/v2.1/servers/%s/action' % image_id,
                           json={'co_list_launched': {}}).json()
    assert len(listed) == 2 and all(s['status'] == 'ACTIVE' for s in listed)
    # Every clone of one launch carries the launch's name, unchanged.
    assert [s['name'] for s in listed] == ['c', 'c']
    blessed_list = cloud.request('POST', '/v2.1/servers/%s/action' % source['id'],
                                 json={'co_list_blessed': {}}).json()
    assert [s['id'] for s in blessed_list] == [image_id]

    # Cobalt's codes: state conflicts are 400; a blessed server is discarded, not deleted
    assert cloud.request('POST', '/v2.1/servers/%s/action' % source['id'],
                         json={'co_launch': {}}).status_code == 400
    assert cloud.request('POST', '/v2.1/servers/%s/action' % image_id,
                         json={'co_discard': {}}).status_code == 400  # clones exist
    deleted = cloud.request('DELETE', '/v2.1/servers/%s' % image_id)
    assert deleted.status_code == 400 and 'discard it instead' in deleted.text
    for server in listed:
        cloud.request('DELETE', '/v2.1/servers/%s' % server['id'])
        _settle_server(cloud, server['id'])
    discarded = cloud.request('POST', '/v2.1/servers/%s/action' % image_id,
                              json={'co_discard': {}})
    assert discarded.status_code == 200 and discarded.json() is None
    assert _settle_image(cloud, image_id)['status'] == 'gone'


def test_quota_is_413_with_retry_after(cloud, gc_conf):
    gc_conf.set_override('max_servers_per_project', 3, group='compute')
    try:
        source = _server(cloud)
        image = cloud.request('POST', '/v2.1/servers/%s/action' % source['id'],
                              json={'co_bless': {}}).json()[0]
        _settle_image(cloud, image['id'])
        over = cloud.request('POST', '/v2.1/servers/%s/action' % image['id'],
                             json={'co_launch': {'num_instances': 3}})
        assert over.status_code == 413 and over.headers['Retry-After'] == '0'
        assert cloud.request('GET', '/v1/servers').json()['servers'].__len__() == 1
    finally:
        gc_conf.clear_override('max_servers_per_project', group='compute')


def test_hooks_run_and_a_failing_pre_hook_stops_launch(cloud, gc_conf, tmp_path):
    hooks = tmp_path / 'hooks.d'
    hooks.mkdir()
    log = tmp_path / 'hooks.log'
    for name, body in (('pre_bless', 'echo "$GC_PHASE $GC_ACTION $GC_SERVER_ID" >> %s' % log),
                       ('post_bless', 'echo "$GC_PHASE $GC_ACTION $GC_LIVE_IMAGE_ID" >> %s'
                        % log),
                       ('pre_launch', 'echo no clones today >&2; exit 3')):
        path = hooks / name
        path.write_text('#!/bin/sh\n%s\n' % body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    source = _server(cloud)
    image = cloud.request('POST', '/v1/live-images',
                          json={'live_image': {'server_id': source['id']}}).json()['live_image']
    image = _settle_image(cloud, image['id'])
    wait_for(lambda: os.path.exists(log) and len(log.read_text().splitlines()) == 2)
    assert log.read_text().splitlines() == ['pre bless %s' % source['id'],
                                            'post bless %s' % image['id']]
    clone = cloud.request('POST', '/v1/live-images/%s/action' % image['id'],
                          json={'launch': {}}).json()['servers'][0]
    failed = _settle_server(cloud, clone['id'])
    assert failed['status'] == 'ERROR' and 'no clones today' in failed['fault']


def test_bad_input(cloud):
    source = _server(cloud)
    cases = [
        ('POST', '/v1/servers', {'server': {'name': 'x', 'memory_mb': 64}}, 400,
         'either volume_id or kernel'),
        ('POST', '/v1/servers', {'server': {'name': 'x', 'memory_mb': 1,
                                            'kernel': 'vmlinuz'}}, 400, 'memory_mb'),
        ('POST', '/v1/live-images', {'live_image': {'server_id': 'nope'}}, 400, 'server_id'),
        ('POST', '/v1/live-images/%s/action' % source['id'], {'launch': {}}, 404,
         'could not be found'),
        ('POST', '/v2.1/servers/%s/action' % source['id'], {'co_fly': {}}, 400,
         'unknown action'),
        ('POST', '/v2.1/servers/%s/action' % source['id'],
         {'co_launch': {'user_data': 'not base64!'}}, 400, 'blessed'),
    ]
    for method, path, body, status, text in cases:
        response = cloud.request(method, path, json=body)
        assert response.status_code == status, (path, response.text)
        assert text in response.text, response.text
    other = cloud.request('GET', '/v1/servers/%s' % source['id'], token='eve:other')
    assert other.status_code == 404


def test_attach_and_detach_a_volume_to_a_server(cloud):
    backend = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'b', 'driver': 'fake'}}).json()['backend']
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backend['id']}}).json()['volume']
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .json()['volume']['status'] == 'available')
    server = _server(cloud)
    path = '/v1/servers/%s/os-volume_attachments' % server['id']
    attached = cloud.request('POST', path, json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code == 202, attached.text

    def volume_status():
        return cloud.request('GET', '/v1/volumes/%s' % volume['id']).json()['volume']['status']

    wait_for(lambda: volume_status() == 'in-use')
    listed = cloud.request('GET', path).json()['volumeAttachments']
    assert [(a['volumeId'], a['status']) for a in listed] == [(volume['id'], 'attached')]
    again = cloud.request('POST', path, json={'volumeAttachment': {'volumeId': volume['id']}})
    assert again.status_code == 409
    assert cloud.request('DELETE', '%s/%s' % (path, volume['id'])).status_code == 202
    wait_for(lambda: volume_status() == 'available')
    assert cloud.request('GET', path).json()['volumeAttachments'] == []


def test_extend_of_an_attached_volume_is_shown_to_the_guest(cloud):
    """Like Cinder's volume-extended event to Nova: the backend grows the volume,
    then the hypervisor of the server using it tells the guest."""
    backend = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'b', 'driver': 'fake'}}).json()['backend']
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backend['id']}}).json()['volume']
    path = '/v1/volumes/%s' % volume['id']
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'available')
    server = _server(cloud)
    cloud.request('POST', '/v1/servers/%s/os-volume_attachments' % server['id'],
                  json={'volumeAttachment': {'volumeId': volume['id']}})
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'in-use')
    hypervisor = cloud.compute.manager.servers.driver

    extended = cloud.request('POST', path + '/action', json={'os-extend': {'new_size': 3}})
    assert extended.status_code == 202, extended.text
    wait_for(lambda: hypervisor.volume_sizes.get(volume['id']) == 3 << 30)
    shown = cloud.request('GET', path).json()['volume']
    assert (shown['status'], shown['size']) == ('in-use', 3)


def test_bless_snapshots_the_volumes_and_clones_get_their_own(cloud):
    """Disks are frozen with the memory; every clone gets copy-on-write volumes."""
    backend = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'b', 'driver': 'fake'}}).json()['backend']
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 2, 'backend_id': backend['id']}}).json()['volume']
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .json()['volume']['status'] == 'available')
    server = _server(cloud)
    cloud.request('POST', '/v1/servers/%s/os-volume_attachments' % server['id'],
                  json={'volumeAttachment': {'volumeId': volume['id']}})
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['id'])
             .json()['volume']['status'] == 'in-use')

    image = cloud.request('POST', '/v1/live-images', json={
        'live_image': {'server_id': server['id']}}).json()['live_image']
    assert _settle_image(cloud, image['id'])['status'] == 'blessed'
    snapshots = cloud.request('GET', '/v1/snapshots').json()['snapshots']
    assert [(s['volume_id'], s['name']) for s in snapshots] == [
        (volume['id'], 'live-image-%s' % image['id'])]

    clones = cloud.request('POST', '/v1/live-images/%s/action' % image['id'],
                           json={'launch': {'num_instances': 2}}).json()['servers']
    disk_volumes = set()
    for clone in clones:
        settled = _settle_server(cloud, clone['id'])
        assert settled['status'] == 'ACTIVE', settled
        disk = cloud.request('GET', '/v1/volumes/%s' % settled['volume_id']).json()['volume']
        assert (disk['status'], disk['snapshot_id'], disk['size']) == (
            'in-use', snapshots[0]['id'], 2)
        disk_volumes.add(disk['id'])
    assert len(disk_volumes) == 2 and volume['id'] not in disk_volumes
    # the source's own volume is untouched and still attached to it
    assert cloud.request('GET', '/v1/volumes/%s' % volume['id']).json()['volume'][
        'status'] == 'in-use'

    for clone in clones:
        cloud.request('DELETE', '/v1/servers/%s' % clone['id'])
        _settle_server(cloud, clone['id'])
    for volume_id in disk_volumes:  # a clone's disks go with it
        wait_for(lambda v=volume_id: cloud.request('GET', '/v1/volumes/%s' % v)
                 .status_code == 404)
    assert cloud.request('DELETE', '/v1/live-images/%s' % image['id']).status_code == 202
    _settle_image(cloud, image['id'])
    wait_for(lambda: cloud.request('GET', '/v1/snapshots').json()['snapshots'] == [])


def _blessed(cloud):
    source = _server(cloud)
    image = cloud.request('POST', '/v1/live-images', json={
        'live_image': {'server_id': source['id']}}).json()['live_image']
    assert _settle_image(cloud, image['id'])['status'] == 'blessed'
    return source, db_servers.live_image_get(image['id'])


def test_a_launch_racing_a_discard_is_refused_and_leaves_nothing(cloud):
    """The launch read the image as blessed just before a discard marked it."""
    source, image = _blessed(cloud)
    db_servers.live_image_update(image['id'], {'status': 'discarding'})
    ctxt = context.RequestContext(user_id='admin', project_id='admin', is_admin=True)
    with pytest.raises(exception.InvalidState, match='discarding'):
        compute_api.ComputeAPI().launch(ctxt, image, {'num_instances': 2})
    assert [s['id'] for s in db_servers.server_get_all()] == [source['id']]
    assert db.volume_get_all() == []


def test_a_discard_racing_a_launch_is_refused(cloud, monkeypatch):
    """The discard found no clones just before a launch created one."""
    source, image = _blessed(cloud)
    real = db_servers.server_get_all
    calls = []

    def clones_appear_after_the_first_look(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            found = real(**kwargs)
            db_servers.server_create({'id': str(uuid.uuid4()), 'name': 'c', 'status': 'BUILD',
                                      'project_id': 'admin', 'host': source['host'],
                                      'memory_mb': 256, 'vcpus': 1,
                                      'live_image_id': image['id'], 'extra': {}})
            return found
        return real(**kwargs)

    monkeypatch.setattr(db_servers, 'server_get_all', clones_appear_after_the_first_look)
    ctxt = context.RequestContext(user_id='admin', project_id='admin', is_admin=True)
    with pytest.raises(exception.InvalidState, match='launched from it meanwhile'):
        compute_api.ComputeAPI().discard(ctxt, image)
    assert db_servers.live_image_get(image['id'])['status'] == 'blessed'


def test_live_images_of_nova_instances_stay_behind_novas_endpoint(cloud):
    """Such a live image is managed through Nova's API (its clones are Nova's): this
    service's own /v1 and /v2.1 neither list it nor act on it."""
    row = db_servers.live_image_create({
        'id': str(uuid.uuid4()), 'name': 'gold', 'project_id': 'admin', 'user_id': 'admin',
        'server_id': str(uuid.uuid4()), 'host': 'nova-host', 'status': 'blessed',
        'memory_mb': 128, 'vcpus': 1, 'nova_source': {'flavor_id': '1', 'image_id': 'x'}})
    assert cloud.request('GET', '/v1/live-images').json()['live_images'] == []
    assert cloud.request('GET', '/v1/live-images/%s' % row['id']).status_code == 404
    assert cloud.request('DELETE', '/v1/live-images/%s' % row['id']).status_code == 404
    launched = cloud.request('POST', '/v2.1/servers/%s/action' % row['id'],
                             json={'co_launch': {'name': 'web'}})
    assert launched.status_code == 404, launched.text
    assert db_servers.live_image_get(row['id'])['status'] == 'blessed'
