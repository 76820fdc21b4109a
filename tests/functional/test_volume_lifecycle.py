"""Volume lifecycle on the file backend through the real API, RPC and os-brick.

Snapshots, clones, revert, extend (also while attached), streams, images with
the template cache, attach/detach through os-brick's LocalConnector, and the
bad input of issue 3. The backend directory is on this machine's filesystem
(qcow2 copy-on-write on ext4; the reflink mode is covered by the driver tests).
"""

import hashlib
import os
import subprocess

import pytest

from tests.fixtures import ceph, loopfs
from tests.fixtures.images import store_file
from tests.fixtures.services import file_backend, wait_for

MiB = 1 << 20
GiB = 1 << 30


@pytest.fixture
def backend(cloud, tmp_path):
    """A file backend on this machine's ext4: qcow2 copy-on-write."""
    created = file_backend(cloud, tmp_path / 'files')
    assert created['capabilities']['copy_on_write'] == 'qcow2'
    return created


@pytest.fixture
def reflink_backend(cloud, tmp_path):
    """A file backend on a loop-mounted XFS (reflink=1): FICLONE copy-on-write."""
    for mountpoint in loopfs.mounted_or_skip('xfs', tmp_path):
        created = file_backend(cloud, os.path.join(mountpoint, 'files'))
        assert created['capabilities']['copy_on_write'] == 'reflink'
        yield created
        cloud.stop()  # release the files before the filesystem is unmounted


def settle(cloud, kind, id, away=('creating', 'deleting', 'extending', 'reverting',
                                  'uploading', 'downloading', 'attaching', 'detaching')):
    def done():
        response = cloud.request('GET', '/v1/%s/%s' % (kind, id))
        if response.status_code == 404:
            return {'status': 'deleted'}
        item = next(iter(response.json().values()))
        return item if item['status'] not in away else None
    return wait_for(done, timeout=60)


def create_volume(cloud, **fields):
    response = cloud.request('POST', '/v1/volumes', json={'volume': fields})
    assert response.status_code == 202, response.text
    volume = settle(cloud, 'volumes', response.json()['volume']['id'])
    assert volume['status'] == 'available', volume
    return volume


def snapshot(cloud, volume_id, **fields):
    response = cloud.request('POST', '/v1/snapshots',
                             json={'snapshot': dict(volume_id=volume_id, **fields)})
    assert response.status_code == 202, response.text
    snap = settle(cloud, 'snapshots', response.json()['snapshot']['id'])
    assert snap['status'] == 'available', snap
    return snap


def upload(cloud, volume_id, data: bytes):
    response = cloud.request('PUT', '/v1/volumes/%s/data' % volume_id, data=data)
    assert response.status_code == 200, response.text
    assert settle(cloud, 'volumes', volume_id)['status'] == 'available'


def download(cloud, volume_id, length: int | None = None) -> bytes:
    """The volume's bytes (the first ``length`` only: the rest is not read)."""
    response = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    assert response.status_code == 200, response.text
    if length is None:
        data = response.content
    else:
        data = next(response.iter_content(length))
        response.close()
    assert settle(cloud, 'volumes', volume_id)['status'] == 'available'
    return data


@pytest.fixture
def rbd_backend(cloud):
    """An rbd backend on the single-node Ceph that tools/ceph.sh started."""
    conf = ceph.ceph_conf()
    ceph.bindings_or_skip()
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'ceph', 'driver': 'rbd', 'options': {
            'pool': 'rbd', 'ceph_conf': conf, 'keyring_in_connection_info': True}}})
    assert response.status_code == 201, response.text
    yield response.json()['backend']
    # Leave the shared test pool as it was found.
    for volume in cloud.request('GET', '/v1/volumes').json()['volumes']:
        cloud.request('DELETE', '/v1/volumes/%s?cascade=true&force=true' % volume['id'])
    wait_for(lambda: cloud.request('GET', '/v1/volumes').json()['volumes'] == [], timeout=120)
    assert ceph.CephCLI(conf).images() == []


@pytest.fixture(params=['qcow2', 'reflink', 'rbd'])
def any_backend(request):
    return request.getfixturevalue({'qcow2': 'backend', 'reflink': 'reflink_backend',
                                    'rbd': 'rbd_backend'}[request.param])


def test_stream_snapshot_clone_revert(cloud, any_backend):
    volume = create_volume(cloud, size=1, name='src')
    first = os.urandom(2 * MiB)
    upload(cloud, volume['id'], first)
    data = download(cloud, volume['id'])
    assert len(data) == GiB and data[:len(first)] == first
    assert data[len(first):len(first) + MiB] == bytes(MiB)

    snap = snapshot(cloud, volume['id'], name='before')
    upload(cloud, volume['id'], b'\xee' * MiB)
    assert download(cloud, volume['id'], MiB) == b'\xee' * MiB

    from_snap = create_volume(cloud, snapshot_id=snap['id'])
    assert from_snap['size'] == 1 and from_snap['snapshot_id'] == snap['id']
    assert download(cloud, from_snap['id'], len(first)) == first

    clone = create_volume(cloud, source_volid=volume['id'], size=2)
    assert clone['size'] == 2
    assert download(cloud, clone['id'], MiB) == b'\xee' * MiB

    reverted = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'],
                             json={'revert': {'snapshot_id': snap['id']}})
    assert reverted.status_code == 202, reverted.text
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'available'
    assert download(cloud, volume['id'], len(first)) == first
    # the clone did not change with its source
    assert download(cloud, clone['id'], MiB) == b'\xee' * MiB


def test_delete_rules_and_data_never_leaks(cloud, backend):
    volume = create_volume(cloud, size=1)
    secret = b'secret!!' * (MiB // 8)
    upload(cloud, volume['id'], secret)
    snap = snapshot(cloud, volume['id'])
    refused = cloud.request('DELETE', '/v1/volumes/%s' % volume['id'])
    assert refused.status_code == 409 and '1 snapshot' in refused.text
    assert cloud.request('DELETE', '/v1/volumes/%s?cascade=true' % volume['id']) \
        .status_code == 202
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'deleted'
    assert cloud.request('GET', '/v1/snapshots/%s' % snap['id']).status_code == 404
    fresh = create_volume(cloud, size=1)
    assert hashlib.sha256(download(cloud, fresh['id'])).digest() == \
        hashlib.sha256(bytes(GiB)).digest()


def test_online_extend_refused_where_the_backend_cannot(cloud, backend):
    """qcow2 files are locked by a running QEMU, so that mode reports no online extend."""
    volume = create_volume(cloud, size=1)
    response = cloud.request('POST', '/v1/attachments',
                             json={'attachment': {'volume_id': volume['id']}})
    settle(cloud, 'attachments', response.json()['attachment']['id'])
    # the volume moves to in-use just after its attachment settles
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'in-use'
    refused = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'],
                            json={'os-extend': {'new_size': 2}})
    assert refused.status_code == 409 and 'cannot extend attached' in refused.text
    assert settle(cloud, 'volumes', volume['id'])['size'] == 1


def test_extend_while_attached_is_visible_to_the_attacher(cloud, reflink_backend):
    volume = create_volume(cloud, size=1)
    response = cloud.request('POST', '/v1/attachments',
                             json={'attachment': {'volume_id': volume['id']}})
    assert response.status_code == 202, response.text
    attachment = settle(cloud, 'attachments', response.json()['attachment']['id'])
    assert attachment['status'] == 'attached', attachment
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'in-use'
    device = attachment['device_path']  # what os-brick's LocalConnector returned
    assert device and os.path.exists(device)

    def visible_size() -> int:
        info = subprocess.run(['qemu-img', 'info', '--output=json', '-U', device],
                              capture_output=True, text=True, check=True).stdout
        import json
        return int(json.loads(info)['virtual-size'])

    assert visible_size() == GiB
    grown = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'],
                          json={'os-extend': {'new_size': 3}})
    assert grown.status_code == 202, grown.text
    after = settle(cloud, 'volumes', volume['id'])
    assert (after['status'], after['size']) == ('in-use', 3)
    assert visible_size() == 3 * GiB

    busy = cloud.request('DELETE', '/v1/volumes/%s' % volume['id'])
    assert busy.status_code == 409 and 'attachment' in busy.text
    detached = cloud.request('DELETE', '/v1/attachments/%s' % attachment['id'])
    assert detached.status_code == 202
    assert settle(cloud, 'attachments', attachment['id'])['status'] == 'deleted'
    # in-use stays a settled state for a moment after the attachment is gone
    wait_for(lambda: settle(cloud, 'volumes', volume['id'])['status'] == 'available',
             timeout=60)


def test_force_delete_ends_attachments(cloud, backend):
    volume = create_volume(cloud, size=1)
    response = cloud.request('POST', '/v1/attachments',
                             json={'attachment': {'volume_id': volume['id']}})
    settle(cloud, 'attachments', response.json()['attachment']['id'])
    again = cloud.request('POST', '/v1/attachments',
                          json={'attachment': {'volume_id': volume['id']}})
    assert again.status_code == 409 and 'multiattach' in again.text
    assert cloud.request('DELETE', '/v1/volumes/%s?force=true' % volume['id']) \
        .status_code == 202
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'deleted'
    assert cloud.request('GET', '/v1/attachments').json()['attachments'] == []


def _make_image(tmp_path, name: str, fmt: str, payload: bytes) -> str:
    """A 64 MiB image starting with ``payload`` in the public image store: its name."""
    raw = str(tmp_path / (name + '.raw'))
    with open(raw, 'wb') as f:
        f.write(payload)
        f.truncate(64 * MiB)
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', fmt, raw, store_file(name)],
                   check=True)
    return name


def test_images_and_template_cache(cloud, backend, tmp_path, gc_conf):
    payload = os.urandom(MiB)
    image = _make_image(tmp_path, 'img.qcow2', 'qcow2', payload)
    volumes = [create_volume(cloud, imageRef=image) for _ in range(3)]
    assert all(v['size'] == 1 and v['image_id'] == image for v in volumes)
    for volume in volumes:
        assert download(cloud, volume['id'], MiB) == payload
    cache = cloud.request('GET', '/v1/image-cache').json()['image_cache']
    assert len(cache) == 1 and cache[0]['hits'] == 2 and cache[0]['image_id'] == image

    # volume -> image, then a volume from that image has the same bytes
    upload(cloud, volumes[0]['id'], b'\x42' * MiB)
    written = cloud.request('POST', '/v1/volumes/%s/action' % volumes[0]['id'],
                            json={'os-volume_upload_image': {'image_name': 'copy',
                                                             'disk_format': 'qcow2'}})
    assert written.status_code == 202, written.text
    image_id = written.json()['os-volume_upload_image']['image_id']
    assert image_id == 'copy'  # the admin project's image, by name
    assert settle(cloud, 'volumes', volumes[0]['id'])['status'] == 'available'
    image_path = os.path.join(gc_conf.image.store_path, 'projects', 'admin', 'copy')
    assert subprocess.run(['qemu-img', 'compare', '-f', 'qcow2', image_path,
                           os.path.join(backend['options']['path'],
                                        'volume-%s' % volumes[0]['id'])],
                          capture_output=True).returncode == 0
    assert download(cloud, create_volume(cloud, imageRef=image_id)['id'], MiB) == \
        b'\x42' * MiB

    purged = cloud.request('POST', '/v1/image-cache/action', json={'purge': {}})
    assert purged.json()['purged'] == 2
    assert cloud.request('GET', '/v1/image-cache').json()['image_cache'] == []
    # volumes made from the purged cache keep their data
    assert download(cloud, volumes[1]['id'], MiB) == payload


def test_template_cache_on_reflink(cloud, reflink_backend, tmp_path):
    payload = os.urandom(MiB)
    image = _make_image(tmp_path, 'img.raw', 'raw', payload)
    volumes = [create_volume(cloud, imageRef=image) for _ in range(2)]
    for volume in volumes:
        assert download(cloud, volume['id'], MiB) == payload
    cache = cloud.request('GET', '/v1/image-cache').json()['image_cache']
    assert [(c['image_id'], c['hits']) for c in cache] == [(image, 1)]


def test_cache_evicts_least_recently_used(cloud, backend, tmp_path, gc_conf):
    gc_conf.set_override('image_cache_max_entries', 2, group='volume')
    try:
        images = [_make_image(tmp_path, 'i%d' % i, 'raw', os.urandom(4096))
                  for i in range(3)]
        for image in images:
            create_volume(cloud, imageRef=image)
        cached = [e['image_id'] for e in
                  cloud.request('GET', '/v1/image-cache').json()['image_cache']]
        assert sorted(cached) == sorted(images[1:])
    finally:
        gc_conf.clear_override('image_cache_max_entries', group='volume')


def test_bad_input_leaves_sources_alone(cloud, backend, tmp_path):
    volume = create_volume(cloud, size=2)
    other = create_volume(cloud, size=1)
    snap = snapshot(cloud, volume['id'])
    cases = [
        ('POST', '/v1/volumes/%s/action' % volume['id'], {'os-extend': {'new_size': 1}},
         400, 'cannot shrink'),
        ('POST', '/v1/volumes/%s/action' % other['id'],
         {'revert': {'snapshot_id': snap['id']}}, 400, 'belongs to volume'),
        ('POST', '/v1/volumes', {'volume': {'imageRef': 'missing.img'}},
         400, 'image missing.img was not found'),
        ('POST', '/v1/volumes', {'volume': {'size': 1, 'imageRef': '/etc/hostname',
                                            'snapshot_id': snap['id']}},
         400, 'at most one'),
        ('POST', '/v1/volumes', {'volume': {'snapshot_id': snap['id'], 'size': 1}},
         400, 'smaller than its source'),
        ('PUT', '/v1/volumes/%s/data' % other['id'], None, 400, 'do not fit'),
    ]
    for method, path, body, status, text in cases:
        kwargs = {'json': body} if body is not None else {'data': b'x' * (GiB + 1)}
        response = cloud.request(method, path, **kwargs)
        assert response.status_code == status, (path, response.text)
        assert text in response.text, response.text
    # the failed calls changed nothing
    assert settle(cloud, 'volumes', volume['id'])['size'] == 2
    assert settle(cloud, 'volumes', other['id'])['status'] == 'available'
    assert cloud.request('GET', '/v1/volumes').json()['volumes'].__len__() == 2

    failed = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}})
    broken = failed.json()['volume']
    settle(cloud, 'volumes', broken['id'])
    from gridcentric_storage.db import api as db
    db.volume_update(broken['id'], {'status': 'error', 'status_reason': 'test'})
    refused = cloud.request('POST', '/v1/snapshots',
                            json={'snapshot': {'volume_id': broken['id']}})
    assert refused.status_code == 409 and 'is error' in refused.text
