"""No host files for members: images and boot files are entries of the image store.

Through the real API, RPC and file backend (InProcessCloud): a member
(``alice:projA``) can name only images of the store, never a host path; an
administrator (``admin:admin``) may name host files under ``[image]
allowed_paths`` only; no image may name another file (backing or data file);
and bytes a user wrote are never read back as anything but those bytes.
"""

import os
import subprocess

import pytest

from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from tests.fixtures import loopfs
from tests.fixtures.images import store_file
from tests.fixtures.services import file_backend, wait_for

MEMBER, OTHER, ADMIN = 'alice:projA', 'bob:projB', 'admin:admin'
MiB = 1 << 20
SECRET = b'root:$6$the-host-secret:19000:0:99999:7:::\n'


@pytest.fixture
def secret(tmp_path):
    """A host file no member may read (stands for /etc/shadow, whose bytes vary)."""
    path = tmp_path / 'host-secret'
    path.write_bytes(SECRET)
    return str(path)


@pytest.fixture
def backend(cloud, tmp_path):
    """qcow2 copy-on-write (ext4): volumes are qcow2 files the service made."""
    return file_backend(cloud, tmp_path / 'files')


@pytest.fixture(params=['qcow2', 'reflink'])
def any_backend(request, cloud, tmp_path):
    """Both file modes: qcow2 volumes, and raw volumes on a loop-mounted XFS."""
    if request.param == 'qcow2':
        yield file_backend(cloud, tmp_path / 'files')
        return
    for mountpoint in loopfs.mounted_or_skip('xfs', tmp_path):
        yield file_backend(cloud, os.path.join(mountpoint, 'files'))
        cloud.stop()  # release the files before the filesystem is unmounted


@pytest.fixture
def allowed(gc_conf, tmp_path):
    """[image] allowed_paths = <tmp>/allowed, for the administrator's host paths."""
    directory = tmp_path / 'allowed'
    directory.mkdir()
    gc_conf.set_override('allowed_paths', [str(directory)], group='image')
    yield directory
    gc_conf.clear_override('allowed_paths', group='image')


def settle(cloud, kind, id, token):
    def done():
        response = cloud.request('GET', '/v1/%s/%s' % (kind, id), token=token)
        item = next(iter(response.json().values()))
        return item if item['status'] not in ('creating', 'uploading', 'downloading',
                                              'BUILD') else None
    return wait_for(done, timeout=60, what='%s %s to settle' % (kind, id))


def create_volume(cloud, token, **fields):
    response = cloud.request('POST', '/v1/volumes', token=token, json={'volume': fields})
    assert response.status_code == 202, response.text
    volume = settle(cloud, 'volumes', response.json()['volume']['id'], token)
    assert volume['status'] == 'available', volume
    return volume


def upload(cloud, token, volume_id, data: bytes):
    response = cloud.request('PUT', '/v1/volumes/%s/data' % volume_id, token=token,
                             data=data)
    assert response.status_code == 200, response.text
    assert settle(cloud, 'volumes', volume_id, token)['status'] == 'available'


def download(cloud, token, volume_id, length: int) -> bytes:
    response = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, token=token,
                             stream=True)
    assert response.status_code == 200, response.text
    data = b''
    for chunk in response.iter_content(MiB):
        data += chunk
        if len(data) >= length:
            break
    response.close()
    assert settle(cloud, 'volumes', volume_id, token)['status'] == 'available'
    return data[:length]


def export(cloud, token, volume_id, name, disk_format='raw'):
    return cloud.request('POST', '/v1/volumes/%s/action' % volume_id, token=token,
                         json={'os-volume_upload_image': {'image_name': name,
                                                          'disk_format': disk_format}})


def exported(cloud, token, volume_id, name, disk_format='raw'):
    response = export(cloud, token, volume_id, name, disk_format)
    assert response.status_code == 202, response.text
    assert response.json()['os-volume_upload_image']['image_id'] == name
    volume = settle(cloud, 'volumes', volume_id, token)
    assert (volume['status'], volume['status_reason']) == ('available', None), volume


def evil_qcow2(path, data_file) -> bytes:
    """A qcow2 image whose data lives in ``data_file`` (made before that file has data:
    qemu-img create writes the data file)."""
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-o',
                    'data_file=%s,data_file_raw=on' % data_file, str(path), '1M'], check=True)
    return path.read_bytes()


# ---------------------------------------------------------------- volumes from images
def test_member_host_paths_are_403_and_create_nothing(cloud, backend, gc_conf, secret):
    volume_file = os.path.join(backend['options']['path'], 'volume-%s'
                               % create_volume(cloud, OTHER, size=1)['id'])
    state = gc_conf.state_path
    for ref in ('/etc/shadow', '/etc/passwd', secret, volume_file,
                os.path.join(state, 'gc.sqlite'), os.path.join(state, 'images'),
                '/proc/self/environ', '/../etc/shadow'):
        response = cloud.request('POST', '/v1/volumes', token=MEMBER,
                                 json={'volume': {'size': 1, 'imageRef': ref}})
        assert response.status_code == 403, (ref, response.text)
        assert 'only administrators may name host files' in response.text
    assert db.volume_get_all(project_id='projA') == []


@pytest.mark.parametrize('ref', ['../etc/shadow', '../../gc.sqlite', 'projects/projB/x',
                                 '.hidden', 'a/../b', 'image\n', 'C:/x'])
def test_malformed_names_are_400(cloud, backend, ref):
    response = cloud.request('POST', '/v1/volumes', token=MEMBER,
                             json={'volume': {'size': 1, 'imageRef': ref}})
    assert response.status_code == 400, response.text
    assert 'is not an image name' in response.text
    assert db.volume_get_all(project_id='projA') == []


def test_public_images_for_all_project_images_for_their_project(cloud, backend):
    store_file('debian.raw', b'public bytes'.ljust(MiB, b'\0'))
    theirs = create_volume(cloud, OTHER, size=1)
    upload(cloud, OTHER, theirs['id'], b'project B only')
    exported(cloud, OTHER, theirs['id'], 'mine')
    response = cloud.request('POST', '/v1/volumes', token=MEMBER,
                             json={'volume': {'imageRef': 'mine'}})
    assert response.status_code == 400 and 'image mine was not found' in response.text
    assert db.volume_get_all(project_id='projA') == []
    mine = create_volume(cloud, OTHER, imageRef='mine')
    assert mine['image_id'] == 'mine'
    assert download(cloud, OTHER, mine['id'], 14) == b'project B only'
    public = create_volume(cloud, MEMBER, imageRef='debian.raw')
    assert download(cloud, MEMBER, public['id'], 12) == b'public bytes'


def test_images_naming_another_file_are_refused(cloud, backend, tmp_path, secret):
    evil = evil_qcow2(tmp_path / 'evil.qcow2', tmp_path / 'data')
    (tmp_path / 'data').write_bytes(SECRET.ljust(MiB, b'\0'))
    store_file('evil.qcow2', evil)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', secret,
                    str(tmp_path / 'backed.qcow2')], check=True)
    store_file('backed.qcow2', (tmp_path / 'backed.qcow2').read_bytes())
    for name, why in (('evil.qcow2', 'external data file'), ('backed.qcow2', 'backing file')):
        for token in (MEMBER, ADMIN):
            response = cloud.request('POST', '/v1/volumes', token=token,
                                     json={'volume': {'imageRef': name}})
            assert response.status_code == 400, response.text
            assert why in response.text
    assert db.volume_get_all() == []


def test_bytes_a_user_wrote_stay_those_bytes(cloud, any_backend, tmp_path, secret):
    """A qcow2 header naming a host file, uploaded into a volume, comes back as itself;
    exported raw and used as an image, it is refused."""
    evil = evil_qcow2(tmp_path / 'evil.qcow2', secret)
    with open(secret, 'wb') as f:
        f.write(SECRET)  # after qemu-img create wrote the data file
    volume = create_volume(cloud, MEMBER, size=1)
    upload(cloud, MEMBER, volume['id'], evil)
    data = download(cloud, MEMBER, volume['id'], len(evil) + MiB)
    assert data[:len(evil)] == evil and data[len(evil):] == b'\0' * MiB
    assert SECRET not in data
    clone = create_volume(cloud, MEMBER, source_volid=volume['id'])
    assert download(cloud, MEMBER, clone['id'], len(evil)) == evil
    exported(cloud, MEMBER, volume['id'], 'evil')
    response = cloud.request('POST', '/v1/volumes', token=MEMBER,
                             json={'volume': {'imageRef': 'evil'}})
    assert response.status_code == 400 and 'external data file' in response.text


# ---------------------------------------------------------------- exports
def test_export_twice_is_409_and_keeps_the_first(cloud, backend, gc_conf):
    volume = create_volume(cloud, MEMBER, size=1)
    upload(cloud, MEMBER, volume['id'], b'first')
    exported(cloud, MEMBER, volume['id'], 'disk')
    upload(cloud, MEMBER, volume['id'], b'second')
    again = export(cloud, MEMBER, volume['id'], 'disk', 'qcow2')
    assert again.status_code == 409, again.text
    assert 'project projA already has an image named disk' in again.text
    assert settle(cloud, 'volumes', volume['id'], MEMBER)['status'] == 'available'
    copy = create_volume(cloud, MEMBER, imageRef='disk')
    assert download(cloud, MEMBER, copy['id'], 5) == b'first'
    directory = os.path.join(gc_conf.image.store_path, 'projects', 'projA')
    assert os.listdir(directory) == ['disk']


def test_two_projects_export_the_same_name_separately(cloud, backend):
    volumes = {}
    for token, data in ((MEMBER, b'from A'), (OTHER, b'from B')):
        volumes[token] = create_volume(cloud, token, size=1)
        upload(cloud, token, volumes[token]['id'], data)
        exported(cloud, token, volumes[token]['id'], 'disk', 'qcow2')
    for token, data in ((MEMBER, b'from A'), (OTHER, b'from B')):
        copy = create_volume(cloud, token, imageRef='disk')
        assert download(cloud, token, copy['id'], 6) == data


@pytest.mark.parametrize('name', ['../projB/disk', '.disk', 'a/b'])
def test_export_names_are_names(cloud, backend, name):
    volume = create_volume(cloud, MEMBER, size=1)
    response = export(cloud, MEMBER, volume['id'], name)
    assert response.status_code == 400, response.text
    assert settle(cloud, 'volumes', volume['id'], MEMBER)['status'] == 'available'


def test_a_failed_export_leaves_no_file(cloud, backend, gc_conf):
    volume = create_volume(cloud, MEMBER, size=1)
    os.unlink(os.path.join(backend['options']['path'], 'volume-%s' % volume['id']))
    response = export(cloud, MEMBER, volume['id'], 'broken')
    assert response.status_code == 202, response.text
    settled = settle(cloud, 'volumes', volume['id'], MEMBER)
    assert 'upload to image failed' in settled['status_reason']
    assert os.listdir(os.path.join(gc_conf.image.store_path, 'projects', 'projA')) == []


# ---------------------------------------------------------------- administrators
def test_admin_host_paths_only_under_allowed_paths(cloud, backend, allowed, tmp_path,
                                                   secret):
    image = allowed / 'disk.raw'
    image.write_bytes(b'allowed bytes'.ljust(MiB, b'\0'))
    (allowed / 'link').symlink_to(secret)
    for ref in (secret, str(allowed / 'link'), str(allowed / '..' / 'host-secret'),
                '/etc/shadow'):
        response = cloud.request('POST', '/v1/volumes', token=ADMIN,
                                 json={'volume': {'imageRef': ref}})
        assert response.status_code == 403, (ref, response.text)
        assert 'allowed_paths' in response.text
    assert db.volume_get_all() == []
    volume = create_volume(cloud, ADMIN, imageRef=str(image))
    assert volume['image_id'] == str(image)
    assert download(cloud, ADMIN, volume['id'], 13) == b'allowed bytes'
    response = cloud.request('POST', '/v1/volumes', token=MEMBER,
                             json={'volume': {'imageRef': str(image)}})
    assert response.status_code == 403


# ---------------------------------------------------------------- servers
def _server(cloud, token, **fields):
    return cloud.request('POST', '/v1/servers', token=token, json={'server': dict(
        {'name': 'vm', 'memory_mb': 64}, **fields)})


def test_member_boot_files_are_store_names(cloud, secret):
    for fields in ({'kernel': '/etc/passwd'}, {'kernel': secret},
                   {'kernel': '/boot/vmlinuz', 'initrd': '/etc/shadow'}):
        response = _server(cloud, MEMBER, **fields)
        assert response.status_code == 403, response.text
    for fields in ({'kernel': '../vmlinuz'}, {'kernel': 'missing'}):
        assert _server(cloud, MEMBER, **fields).status_code == 400
    assert db_servers.server_get_all() == []
    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')
    response = _server(cloud, MEMBER, kernel='vmlinuz', initrd='initrd.img')
    assert response.status_code == 202, response.text
    server = settle(cloud, 'servers', response.json()['server']['id'], MEMBER)
    assert server['status'] == 'ACTIVE', server
    assert (server['kernel'], server['initrd']) == ('vmlinuz', 'initrd.img')


def test_admin_boot_files_under_allowed_paths(cloud, allowed, secret):
    assert _server(cloud, ADMIN, kernel=secret).status_code == 403
    assert _server(cloud, ADMIN, kernel=str(allowed / 'missing')).status_code == 400
    assert db_servers.server_get_all() == []
    kernel = allowed / 'vmlinuz'
    kernel.write_bytes(b'kernel')
    response = _server(cloud, ADMIN, kernel=str(kernel))
    assert response.status_code == 202, response.text
    server = settle(cloud, 'servers', response.json()['server']['id'], ADMIN)
    assert server['status'] == 'ACTIVE', server
