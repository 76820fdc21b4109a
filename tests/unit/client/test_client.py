"""The Python API: managers as novaclient extensions, against the in-memory stand-in."""

import pytest
from keystoneauth1 import identity, noauth, session
from novaclient import exceptions
from novaclient.utils import find_resource
from novaclient.v2 import volumes as nova_volumes

from gridcentric_storage import client
from gridcentric_storage.client import (
    attachments,
    backends,
    image_cache,
    images,
    qos,
    snapshots,
    utils,
    volumes,
)


def test_extensions_are_attached_without_clashing(gc):
    assert [name for name, _ in client.EXTENSIONS] == [
        'gc_backends', 'gc_volumes', 'gc_snapshots', 'gc_attachments', 'gc_image_cache',
        'gc_images', 'gc_servers', 'gridcentric', 'gc_cobalt', 'gc_qos']
    assert isinstance(gc.gc_backends, backends.BackendManager)
    assert isinstance(gc.gc_volumes, volumes.VolumeManager)
    assert isinstance(gc.gc_snapshots, snapshots.SnapshotManager)
    assert isinstance(gc.gc_attachments, attachments.AttachmentManager)
    assert isinstance(gc.gc_image_cache, image_cache.ImageCacheManager)
    assert isinstance(gc.gc_images, images.ImagesManager)
    assert isinstance(gc.gc_qos, qos.QosSpecsManager)
    assert isinstance(gc.volumes, nova_volumes.VolumeManager)   # novaclient's own, intact


def test_backend_lifecycle(gc, api):
    created = gc.gc_backends.create(name='fast', driver='file', options={'path': '/srv/fast'},
                                    tags=['ssd'], cost=1)
    assert isinstance(created, backends.Backend)
    assert (created.name, created.driver, created.cost, created.tags) == (
        'fast', 'file', 1, ['ssd'])
    assert created.options == {'path': '/srv/fast'}
    assert created.state == 'enabled' and created.status == 'up'

    assert gc.gc_backends.get(created.id).to_dict() == created.to_dict()
    assert [b.id for b in gc.gc_backends.list()] == [created.id]

    updated = gc.gc_backends.update(created, cost=3, tags=['ssd', 'nvme'])
    assert (updated.cost, updated.tags) == (3, ['ssd', 'nvme'])

    disabled = created.disable('maintenance')
    assert (disabled.state, disabled.disabled_reason) == ('disabled', 'maintenance')
    enabled = gc.gc_backends.enable(created.id)
    assert (enabled.state, enabled.disabled_reason) == ('enabled', None)

    created.delete()
    with pytest.raises(exceptions.NotFound) as info:
        gc.gc_backends.get(created.id)
    assert info.value.code == 404 and 'could not be found' in info.value.message


def test_requests_use_absolute_paths_and_no_microversion(gc, api):
    backend = gc.gc_backends.create(name='b', driver='fake')
    gc.gc_backends.disable(backend)
    gc.gc_backends.list(tag=['x', 'y'], state='enabled')
    paths = [(method, path) for method, path, _ in api.requests]
    assert paths == [('POST', '/v1/backends'),
                     ('POST', f'/v1/backends/{backend.id}/action'),
                     ('GET', '/v1/backends')]
    for _, _, headers in api.requests:
        assert 'x-openstack-nova-api-version' not in headers
        assert 'openstack-api-version' not in headers
        assert headers['accept'] == 'application/json'


def test_list_filters_and_secret_masking(gc):
    gc.gc_backends.create(name='a', driver='rbd', tags=['ssd', 'ceph'],
                          options={'pool': 'volumes', 'rbd_secret_uuid': 's3cr3t'})
    gc.gc_backends.create(name='b', driver='file', tags=['ssd'], role='repository')
    assert [b.name for b in gc.gc_backends.list(tag=['ssd', 'ceph'])] == ['a']
    assert [b.name for b in gc.gc_backends.list(role='repository')] == ['b']
    assert [b.name for b in gc.gc_backends.list(sort_key='name', sort_dir='desc')] == [
        'b', 'a']
    assert gc.gc_backends.find(name='a').options == {'pool': 'volumes',
                                                     'rbd_secret_uuid': '***'}
    with pytest.raises(TypeError):
        gc.gc_backends.list(colour='blue')


def test_list_follows_next_links(gc, api):
    api.max_limit = 2
    for i in range(5):
        gc.gc_backends.create(name=f'b{i}', driver='fake')
    assert [b.name for b in gc.gc_backends.list()] == ['b0', 'b1', 'b2', 'b3', 'b4']
    assert [b.name for b in gc.gc_backends.list(limit=3)] == ['b0', 'b1', 'b2']
    first = gc.gc_backends.list(limit=1)[0]
    assert [b.name for b in gc.gc_backends.list(marker=first.id)] == ['b1', 'b2', 'b3', 'b4']
    assert len(api.requests) == 5 + 3 + 2 + 1 + 2


def test_api_errors_carry_code_and_message(gc):
    gc.gc_backends.create(name='fast', driver='file')
    with pytest.raises(exceptions.Conflict) as info:
        gc.gc_backends.create(name='fast', driver='file')
    assert (info.value.code, info.value.message) == (409, "Backend with name 'fast' already exists")
    with pytest.raises(exceptions.BadRequest) as info:
        gc.gc_backends.create(name='x', driver='floppy')
    assert info.value.message.startswith('Unknown driver floppy')


def test_find_by_name_or_id(gc, api):
    backend = gc.gc_backends.create(name='fast', driver='file')
    assert find_resource(gc.gc_backends, 'fast').id == backend.id
    assert find_resource(gc.gc_backends, backend.id).name == 'fast'
    with pytest.raises(exceptions.CommandError, match="No backend with a name or ID of 'slow'"):
        find_resource(gc.gc_backends, 'slow')
    gc.gc_volumes.create(1, name='twin')
    gc.gc_volumes.create(1, name='twin')
    with pytest.raises(exceptions.CommandError, match="Multiple volume matches found for 'twin'"):
        find_resource(gc.gc_volumes, 'twin')
    with pytest.raises(exceptions.NoUniqueMatch):
        gc.gc_volumes.find(name='twin')
    # The API filters by name: a lookup reads one page, not every backend's.
    gc.gc_backends.create(name='slow', driver='file')
    api.max_limit = 1
    api.requests.clear()
    assert find_resource(gc.gc_backends, 'fast').id == backend.id
    assert [(method, path) for method, path, _ in api.requests] == [('GET', '/v1/backends')]


def test_volume_create_wait_delete(gc):
    gc.gc_backends.create(name='fast', driver='file', tags=['ssd'], cost=1)
    cheap = gc.gc_backends.create(name='cheap', driver='file', tags=['ssd'], cost=0)
    volume = gc.gc_volumes.create(size=1, name='v1', tags=['ssd'])
    assert volume.status == 'creating'
    seen = []
    volume = gc.gc_volumes.wait(volume, progress=lambda v, elapsed: seen.append(v.status))
    assert (volume.status, volume.backend_id, volume.size) == ('available', cheap.id, 1)
    assert seen == ['creating', 'available']
    assert [v.name for v in gc.gc_volumes.list(backend_id=cheap.id)] == ['v1']

    gc.gc_volumes.delete(volume)
    assert gc.gc_volumes.wait(volume, deleted=True) is None
    assert gc.gc_volumes.list() == []


def test_volume_wait_error_and_timeout(gc, api):
    volume = gc.gc_volumes.create(size=1, name='nowhere', tags=['gold'])
    with pytest.raises(utils.ResourceInErrorState) as info:
        gc.gc_volumes.wait(volume)
    assert 'No valid backend was found' in str(info.value)
    assert info.value.resource.status == 'error'

    api.settle_after = 10 ** 6
    gc.gc_backends.create(name='b', driver='fake')
    slow = gc.gc_volumes.create(size=1)
    with pytest.raises(utils.WaitTimeout, match='status: creating'):
        gc.gc_volumes.wait(slow, timeout=0.05)


def test_endpoint_override_and_no_completion_cache(api, tmp_path):
    gc = client.get_client(session.Session(auth=noauth.NoAuth()), endpoint_override=api.url)
    gc.gc_backends.create(name='b', driver='fake')
    assert [b.name for b in gc.gc_backends.list()] == ['b']
    assert not (tmp_path / '.novaclient').exists()


@pytest.mark.parametrize('plugin', ['v3', 'generic'])
def test_keystone_catalog_endpoint(api, plugin):
    """With keystone, the endpoint comes from the catalog (service type gridcentric)."""
    api.keystone = True
    cls = identity.v3.Password if plugin == 'v3' else identity.Password
    auth = cls(auth_url=api.url + '/identity/v3', username='demo', password='secret',
               project_name='demo', user_domain_id='default', project_domain_id='default')
    gc = client.get_client(session.Session(auth=auth), interface='public',
                           region_name='RegionOne')
    gc.gc_backends.create(name='b', driver='fake')
    assert [b.name for b in gc.gc_backends.list()] == ['b']
    v1 = [headers for _, path, headers in api.requests if path.startswith('/v1/')]
    assert v1 and all(h['x-auth-token'] == 'fake-token' for h in v1)


def test_snapshots_attachments_and_actions(gc, api):
    gc.gc_backends.create(name='fast', driver='file')
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(1, name='v1'))
    snap = gc.gc_snapshots.create(volume, name='s1')
    assert isinstance(snap, snapshots.Snapshot) and snap.status == 'creating'
    snap = gc.gc_snapshots.wait(snap)
    assert (snap.status, snap.volume_id) == ('available', volume.id)
    assert find_resource(gc.gc_snapshots, 's1').id == snap.id
    assert [s.id for s in gc.gc_snapshots.list(volume_id=volume)] == [snap.id]

    assert gc.gc_volumes.extend(volume, 2) is None
    assert gc.gc_volumes.wait(volume).size == 2
    gc.gc_volumes.revert(volume, snap)
    assert gc.gc_volumes.wait(volume).status == 'available'
    image = gc.gc_volumes.upload_to_image(volume, 'img', disk_format='qcow2')
    assert image['image_id'].endswith('/img.qcow2') and image['status'] == 'uploading'
    gc.gc_volumes.wait(volume)

    clone = gc.gc_volumes.wait(gc.gc_volumes.create(snapshot_id=snap.id, multiattach=True))
    assert (clone.size, clone.snapshot_id, clone.multiattach) == (1, snap.id, True)
    attachment = gc.gc_attachments.create(clone, mode='ro')
    assert isinstance(attachment, attachments.Attachment)
    attachment = gc.gc_attachments.wait(attachment)
    assert (attachment.status, attachment.device_path) == ('attached', '/dev/fake0')
    gc.gc_volumes.force_detach(clone, attachment)
    assert gc.gc_attachments.wait(attachment, deleted=True) is None

    snap.delete()
    assert gc.gc_snapshots.wait(snap, deleted=True) is None
    volume.delete(cascade=True)
    assert api.deletes[-1] == (volume.id, {'cascade': ['true']})
    assert gc.gc_image_cache.list() == [] and gc.gc_image_cache.purge() == 0
    paths = [(m, p) for m, p, _ in api.requests if m == 'POST']
    assert ('POST', f'/v1/volumes/{volume.id}/action') in paths
    assert ('POST', '/v1/image-cache/action') in paths


def test_generic_wait_on_snapshots(gc, api):
    gc.gc_backends.create(name='fast', driver='file')
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(1))
    api.settle_after = 10 ** 6
    slow = gc.gc_snapshots.create(volume)
    with pytest.raises(utils.WaitTimeout, match=f'waiting for snapshot {slow.id} '
                                                r'\(status: creating\)'):
        gc.gc_snapshots.wait(slow, timeout=0.05)
    api.snapshots[slow.id].update(status='error', status_reason='broken', _outcome={})
    api.settle_after = 1
    with pytest.raises(utils.ResourceInErrorState,
                       match=f'Snapshot {slow.id} went to status error: broken'):
        gc.gc_snapshots.wait(slow)
