"""Cobalt's co_export and co-import-server through the real API and RPC.

The compute service runs the fake virt driver with real live image files
(tests/unit/compute/test_live_image_export.FilesFakeDriver), so the export
is a real tar in the image store and the import unpacks it.
"""

import json
import os

import pytest

from gridcentric_storage.compute import manager
from gridcentric_storage.db import servers as db_servers
from tests.fixtures.images import store_file
from tests.fixtures.services import InProcessCloud, gc_api, wait_for
from tests.unit.compute.test_live_image_export import FilesFakeDriver

ALICE = 'alice:proj-a'
BOB = 'bob:proj-b'


@pytest.fixture
def cloud(gc_db, tmp_path, monkeypatch):
    driver = FilesFakeDriver(str(tmp_path / 'live-images'))
    monkeypatch.setattr(manager.virt, 'load_driver', lambda name=None: driver)
    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')
    instance = InProcessCloud()
    instance.driver = driver
    yield instance
    instance.stop()


def _settled(cloud, id, token=ALICE):
    def done():
        server = cloud.request('GET', '/v2.1/servers/%s' % id, token=token).json()['server']
        return server if server['status'] != 'BUILD' else None
    return wait_for(done, timeout=20)


def _action(cloud, id, body, token=ALICE):
    return cloud.request('POST', '/v2.1/servers/%s/action' % id, token=token, json=body)


def _blessed(cloud, token=ALICE):
    response = cloud.request('POST', '/v1/servers', token=token, json={'server': {
        'name': 'src', 'memory_mb': 16, 'kernel': 'vmlinuz', 'initrd': 'initrd.img'}})
    assert response.status_code == 202, response.text
    source = _settled(cloud, response.json()['server']['id'], token)
    assert source['status'] == 'ACTIVE', source
    blessed = _action(cloud, source['id'], {'co_bless': {'name': 'gold'}}, token)
    assert blessed.status_code == 200, blessed.text
    image = _settled(cloud, blessed.json()[0]['id'], token)
    assert image['status'] == 'BLESSED', image
    return source, image


def test_export_import_launch(cloud, tmp_path):
    source, image = _blessed(cloud)
    exported = _action(cloud, image['id'], {'co_export': None})
    assert exported.status_code == 200, exported.text
    document = exported.json()
    assert document['fields'] == {'id': image['id'], 'name': 'gold', 'memory_mb': 16,
                                  'vcpus': 1}
    assert document['metadata'] == {'blessed_from': source['id']}
    assert document['export_image_id'] == 'live-image-%s.tar' % image['id']
    assert 'test-host' not in exported.text and str(tmp_path) not in exported.text
    # The image is the exporter's: listed among the project's images.
    names = [i['name'] for i in cloud.request('GET', '/v1/images', token=ALICE)
             .json()['images']]
    assert document['export_image_id'] in names

    imported = cloud.request('POST', '/v2.1/co-import-server', token=ALICE,
                             json={'data': document})
    assert imported.status_code == 200, imported.text
    server = imported.json()['server']
    assert server['id'] != image['id'] and server['status'] == 'BLESSED'
    assert (server['name'], server['tenant_id'], server['flavor']['ram']) == (
        'gold', 'proj-a', 16)
    assert 'OS-EXT-SRV-ATTR:host' not in server
    assert server['metadata'] == {'blessed_from': image['id']}   # what it was exported from
    assert sorted(os.listdir(tmp_path / 'live-images')) == sorted([image['id'], server['id']])

    launched = _action(cloud, server['id'], {'co_launch': {'name': 'copy'}})
    assert launched.status_code == 200, launched.text
    clone = _settled(cloud, launched.json()[0]['id'])
    assert clone['status'] == 'ACTIVE' and clone['metadata'] == {'launched_from': server['id']}
    console = cloud.driver.get_console_output(clone['id'])
    assert 'resumed from live image %s' % server['id'] in console

    # The Gridcentric spelling, under the project prefix, makes a second one.
    again = cloud.request('POST', '/v2.1/proj-a/gc-import-server', token=ALICE,
                          json={'data': document})
    assert again.status_code == 200, again.text
    assert again.json()['server']['id'] not in (server['id'], image['id'])


def test_another_project_can_neither_export_nor_import(cloud, tmp_path):
    _source, image = _blessed(cloud)
    assert _action(cloud, image['id'], {'co_export': None}, BOB).status_code == 404
    document = _action(cloud, image['id'], {'co_export': None}).json()
    refused = cloud.request('POST', '/v2.1/co-import-server', token=BOB,
                            json={'data': document})
    assert refused.status_code == 400 and 'not found' in refused.json()['badRequest'][
        'message']
    assert sorted(os.listdir(tmp_path / 'live-images')) == [image['id']]
    assert len(db_servers.live_image_get_all()) == 1


def test_a_tampered_document_is_refused_and_leaves_no_live_image(cloud, tmp_path):
    _source, image = _blessed(cloud)
    document = _action(cloud, image['id'], {'co_export': None}).json()
    document['system_metadata']['export_sha256'] = 'f' * 64
    refused = cloud.request('POST', '/v2.1/co-import-server', token=ALICE,
                            json={'data': document})
    assert refused.status_code == 400 and 'sha256' in refused.text, refused.text
    assert sorted(os.listdir(tmp_path / 'live-images')) == [image['id']]
    assert [i['id'] for i in db_servers.live_image_get_all()] == [image['id']]


def test_only_blessed_servers_are_exported(cloud):
    source, _image = _blessed(cloud)
    refused = _action(cloud, source['id'], {'co_export': None})
    assert refused.status_code == 400 and 'blessed' in refused.text


@pytest.mark.parametrize('body', [
    {},
    {'data': None},
    {'data': {'fields': {}}},
    {'data': {'fields': {'id': 'x'}, 'system_metadata': {}, 'export_image_id': 'a.tar'}},
    'unknown field',
    'host path',
    'oversized',
])
def test_bad_import_bodies_are_400(cloud, body):
    good = {'fields': {'id': '1c8f8a56-1f0e-4d8a-9c57-0a6b5d0a1f00', 'name': 'x',
                       'memory_mb': 16, 'vcpus': 1},
            'system_metadata': {'export_format': 'gridcentric-live-image/1',
                                'export_sha256': '0' * 64},
            'export_image_id': 'live-image-x.tar'}
    if body == 'unknown field':
        body = {'data': dict(good, host='test-host')}
    elif body == 'host path':
        body = {'data': dict(good, export_image_id='/etc/passwd')}
    elif body == 'oversized':
        body = {'data': dict(good, fields=dict(good['fields'], memory_mb=1 << 40))}
    response = cloud.request('POST', '/v2.1/co-import-server', token=ALICE, json=body)
    assert response.status_code == 400, response.text
    assert db_servers.live_image_get_all() == []


def test_bad_export_body_is_400(cloud):
    _source, image = _blessed(cloud)
    response = _action(cloud, image['id'], {'co_export': {'dest': 'x'}})
    assert response.status_code == 400, response.text


def test_gc_api_export_then_import(cloud, tmp_path):
    """The operator's gc-api (noauth: the admin of project admin) round trip."""
    _source, image = _blessed(cloud)
    exported = gc_api(cloud, 'live-image-export', image['id'])
    assert exported.returncode == 0, exported.stderr
    document = json.loads(exported.stdout)
    assert document['export_image_id'] == 'live-image-%s.tar' % image['id']
    path = tmp_path / 'export.json'
    path.write_text(exported.stdout)
    imported = gc_api(cloud, '--json', 'live-image-import', str(path))
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)['status'] == 'BLESSED'
    assert [i['status'] for i in db_servers.live_image_get_all(project_id='admin')] == [
        'blessed']


def test_migrate_is_for_administrators_and_needs_another_host(cloud):
    source, image = _blessed(cloud)
    admin = 'admin:admin'
    # Where servers run is the cloud's plumbing: not a member's to choose.
    assert _action(cloud, source['id'], {'co_migrate': None}).status_code == 403
    refused = _action(cloud, source['id'], {'co_migrate': {'dest': 'host-2'}}, token=admin)
    assert refused.status_code == 400
    assert 'no compute service is up on host host-2' in \
        refused.json()['badRequest']['message']
    alone = _action(cloud, source['id'], {'co_migrate': None}, token=admin)
    assert alone.status_code == 409
    assert 'no other host with a hypervisor is up' in alone.text
    assert _action(cloud, image['id'], {'gc_migrate': None}, token=admin).status_code == 400
    assert _action(cloud, source['id'], {'co_migrate': None}, token=BOB).status_code == 404
    assert _action(cloud, source['id'], {'co_migrate': {'when': 'now'}}).status_code == 400
    assert _settled(cloud, source['id'])['status'] == 'ACTIVE'
