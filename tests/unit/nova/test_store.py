"""A Nova live image's files in the live image store: published with the RAM and
state, fetched back on another host, checked.

The Ceph client is a stand-in that keeps objects and images in memory (the
RBD bindings' ``Image`` and ``RBD`` included); tests/functional/nova publishes
to and launches from the real test Ceph.
"""

import contextlib
import dataclasses
import os
import types

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.compute import live_image_publish as publish
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.nova import manifest, store
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume.drivers import rbd_client

ID = '5d2b7a64-0f4e-4a7b-9a53-2f1f3b0c9e11'
NAME = 'gc-live-' + ID
MiB = 1 << 20


class _Image:
    def __init__(self, ioctx, name, read_only=False):
        self.data = ioctx.store.images[name]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def size(self):
        return len(self.data)

    def read(self, offset, length):
        return self.data[offset:offset + length]


class _RBD:
    def list(self, ioctx):
        return list(ioctx.store.images)


class Store:
    """The calls publish and fetch make of ``live_image_publish.StoreClient``."""

    pool = 'rbd'

    def __init__(self):
        self.images, self.objects, self.reads = {}, {}, []

    def write_image(self, name, path):
        with open(path, 'rb') as f:
            self.images[name] = f.read()
        return len(self.images[name])

    def put_object(self, name, data):
        self.objects[name] = data

    def get_object(self, name):
        self.reads.append(name)
        return self.objects[name]

    def remove_image(self, name, fence_watchers=False):
        self.images.pop(name, None)

    def remove_object(self, name):
        self.objects.pop(name, None)

    @contextlib.contextmanager
    def _ioctx(self):
        yield types.SimpleNamespace(store=self)

    def _run(self, what, fn, *args):
        return fn(*args)


@pytest.fixture(autouse=True)
def rbd_bindings(monkeypatch):
    monkeypatch.setattr(rbd_client, 'rbd', types.SimpleNamespace(Image=_Image, RBD=_RBD))


def _blessed(directory):
    """What nova.bless leaves: RAM, state, domain XML, a disk and its backing, manifest."""
    os.makedirs(directory)
    path = directory.__truediv__
    with open(path('ram'), 'wb') as f:
        f.truncate(8 * MiB)
        f.seek(MiB)
        f.write(b'guest page')
    path('state').write_bytes(b'device state')
    path('domain.xml').write_text('<domain type="qemu"/>')
    path('vda.qcow2').write_bytes(b'QFI\xfb top image')
    path('backing-0.qcow2').write_bytes(b'QFI\xfb base image' + bytes(4096) + b'end')
    made = manifest.NovaLiveImage(
        live_image_id=ID, project_id='proj-a', source_instance='inst-1',
        ram_path=str(path('ram')), ram_size=8 * MiB, ram_block='gc.ram',
        state_path=str(path('state')), disks={'vda': str(path('vda.qcow2'))},
        domain_xml_path=str(path('domain.xml')))
    manifest.write(str(directory), made)
    return virt.LiveImageArtifacts(
        live_image_id=ID, directory=str(directory), memory_path=str(path('ram')),
        state_path=str(path('state')), memory_mb=8, vcpus=1,
        extra={'kind': 'nova', 'ram_size': 8 * MiB})


def _mounted_ram(tmp_path):
    """Stands in for the rbd-fuse file the mount manager checked."""
    ram = tmp_path / 'mnt' / NAME
    ram.parent.mkdir(exist_ok=True)
    with open(ram, 'wb') as f:
        f.truncate(8 * MiB)
    return str(ram)


def test_published_with_its_disks_and_read_back_on_another_host(tmp_path):
    client = Store()
    location = publish.publish(client, _blessed(tmp_path / 'blessing-host' / ID))
    assert set(client.images) == {NAME, NAME + '.vda.qcow2', NAME + '.backing-0.qcow2'}
    assert set(client.objects) == {NAME + '.state', NAME + '.domain.xml', NAME + '.nova.json'}
    assert 'layout_object' not in location
    assert set(location['files']) == {'domain.xml', 'nova.json', 'vda.qcow2',
                                      'backing-0.qcow2'}

    cache = tmp_path / 'other-host' / 'cache'
    ram = _mounted_ram(tmp_path)
    assert store.fetch(client, ID, location, str(cache / ID), ram) == str(cache / ID)
    here = manifest.read(str(cache), ID)      # what nova-compute's driver reads
    assert (here.project_id, here.ram_size, here.ram_path) == ('proj-a', 8 * MiB, ram)
    assert here.disks == {'vda': str(cache / ID / 'vda.qcow2')}
    assert here.state_path == str(cache / ID / 'state')
    for name in ('vda.qcow2', 'backing-0.qcow2', 'state', 'domain.xml'):
        assert (cache / ID / name).read_bytes() == (
            tmp_path / 'blessing-host' / ID / name).read_bytes(), name
    # a second clone finds the checked files in place: nothing is read again
    client.reads.clear()
    store.fetch(client, ID, location, str(cache / ID), ram)
    assert client.reads == []


def test_a_file_that_changed_in_the_store_is_refused(tmp_path):
    client = Store()
    location = publish.publish(client, _blessed(tmp_path / 'blessing-host' / ID))
    client.images[NAME + '.backing-0.qcow2'] = client.images[
        NAME + '.backing-0.qcow2'].replace(b'base', b'evil')
    cache = tmp_path / 'cache' / ID
    with pytest.raises(exception.LiveImageFilesMissing,
                       match='published backing-0.qcow2 does not match the sha256'):
        store.fetch(client, ID, location, str(cache), _mounted_ram(tmp_path))
    assert not [n for n in os.listdir(cache) if n.endswith('.tmp')]
    assert not (cache / manifest.FILENAME).exists()


def test_a_location_naming_paths_or_another_kind_is_refused(tmp_path):
    client = Store()
    location = publish.publish(client, _blessed(tmp_path / 'blessing-host' / ID))
    bad = dict(location, files=dict(location['files'], **{
        '../escape': location['files']['vda.qcow2']}))
    with pytest.raises(exception.LiveImageFilesMissing, match='names a file'):
        store.fetch(client, ID, bad, str(tmp_path / 'cache' / ID), _mounted_ram(tmp_path))
    assert not (tmp_path / 'escape').exists()
    standalone = {k: v for k, v in location.items() if k != 'files'}
    with pytest.raises(exception.LiveImageFilesMissing, match='not one of a Nova instance'):
        store.fetch(client, ID, standalone, str(tmp_path / 'c2' / ID), _mounted_ram(tmp_path))


def test_unpublish_removes_every_file_of_it_and_only_those(tmp_path):
    client = Store()
    publish.publish(client, _blessed(tmp_path / ID))
    client.images['gc-live-another.vda.qcow2'] = b'x'
    publish.unpublish(client, ID, nova=True)
    assert client.objects == {} and client.images == {'gc-live-another.vda.qcow2': b'x'}


def test_a_refusal_names_no_host_path():
    error = exception.LiveImageFilesMissing(
        id=ID, reason='rbd-fuse exited with 1: cannot open /var/lib/gc/mnt/x.log')
    refused = store.refusal(ID, error)
    assert '/var/lib' not in refused.message and '<path>' in refused.message
    assert refused.message.startswith('Live image %s cannot be used: rbd-fuse exited' % ID)
    full = store.refusal(ID, OSError(28, 'No space left on device', '/var/lib/gc/cache'))
    assert full.message.endswith('fetching it failed on this host: No space left on device')


class FailingDisks(Store):
    """A pool that takes the RAM and objects, then fails on a disk file."""

    def write_image(self, name, path):
        if name.endswith('.qcow2') and len(self.images) > 1:
            raise exception.DriverError(reason='the OSD is full')
        return super().write_image(name, path)


def _nova_row(tmp_path):
    artifacts = _blessed(tmp_path / ID)
    return db_servers.live_image_create({
        'id': ID, 'name': 'gold', 'server_id': 'inst-1', 'host': 'h', 'status': 'blessed',
        'memory_mb': 8, 'vcpus': 1, 'project_id': 'proj-a',
        'nova_source': {'flavor_id': 'f', 'image_id': 'i'},
        'artifacts': dataclasses.asdict(artifacts)})


def test_a_nova_live_image_publishes_in_the_background_and_shows_published(gc_db, tmp_path):
    _nova_row(tmp_path)
    publisher = publish.Publisher()
    publisher._client = client = Store()
    publisher.run(ID)
    row = db_servers.live_image_get(ID)
    assert row['publish_status'] == publish.PUBLISHED
    assert set(row['publish_location']['files']) >= {'domain.xml', 'nova.json', 'vda.qcow2'}
    publisher.remove(ID, nova=True)          # discard
    assert client.images == {} and client.objects == {}


def test_a_failed_nova_publish_says_why_and_leaves_no_disk_behind(gc_db, tmp_path):
    _nova_row(tmp_path)
    publisher = publish.Publisher()
    publisher._client = client = FailingDisks()
    publisher.run(ID)
    row = db_servers.live_image_get(ID)
    assert row['publish_status'] == publish.ERROR
    assert 'the OSD is full' in row['publish_reason']
    assert client.images == {} and client.objects == {}
