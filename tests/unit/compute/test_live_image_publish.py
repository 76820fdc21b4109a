"""Publishing a live image: what is copied, and the publish status it ends in."""

import os

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.compute import live_image_publish as publish
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.virt import base as virt

ID = '3cf79ff2-f7ea-4ca6-accf-7554510e4c26'
MiB = 1 << 20


def _sparse(path, size, data_at):
    with open(path, 'wb') as f:
        f.truncate(size)
        for offset in data_at:
            f.seek(offset)
            f.write(b'\x01' * 4096)


def test_data_extents_leave_holes_out(tmp_path):
    path = tmp_path / 'ram'
    _sparse(path, 64 * MiB, [0, 32 * MiB])
    with open(path, 'rb') as f:
        extents = publish._data_extents(f.fileno(), 64 * MiB)
    covered = sum(length for _, length in extents)
    assert covered < 64 * MiB
    assert any(start <= 32 * MiB < start + length for start, length in extents)


class Store:
    """Records what publish hands the Ceph client."""

    pool = 'rbd'

    def __init__(self, fail=False):
        self.images, self.objects, self.fail = {}, {}, fail

    def write_image(self, name, path):
        if self.fail:
            raise exception.DriverError(reason='pool rbd does not exist')
        self.images[name] = os.stat(path).st_size
        return 4096

    def put_object(self, name, data):
        self.objects[name] = data

    def remove_image(self, name):
        self.images.pop(name, None)

    def remove_object(self, name):
        self.objects.pop(name, None)


def _artifacts(tmp_path):
    _sparse(tmp_path / 'ram', 16 * MiB, [MiB])
    (tmp_path / 'state').write_bytes(b'device state')
    (tmp_path / 'layout.json').write_text('{"layout": {}}')
    return virt.LiveImageArtifacts(live_image_id=ID, directory=str(tmp_path),
                                   memory_path=str(tmp_path / 'ram'),
                                   state_path=str(tmp_path / 'state'), memory_mb=16,
                                   vcpus=1)


def test_publish_records_what_a_host_checks(tmp_path):
    store = Store()
    location = publish.publish(store, _artifacts(tmp_path))
    assert store.images == {'gc-live-%s' % ID: 16 * MiB}
    assert store.objects['gc-live-%s.state' % ID] == b'device state'
    assert location['ram_size'] == 16 * MiB
    assert location['state_sha256'] == publish.sha256_of(b'device state')
    assert location['snapshot'] == publish.SNAPSHOT


def test_an_image_id_that_is_not_a_uuid_names_no_image():
    with pytest.raises(exception.DriverError, match='not a UUID'):
        publish.image_name('../x')


@pytest.fixture
def live_image(gc_db, tmp_path):
    artifacts = _artifacts(tmp_path)
    import dataclasses
    return db_servers.live_image_create({
        'id': ID, 'name': 'li', 'server_id': 's', 'host': 'h', 'status': 'blessed',
        'memory_mb': 16, 'vcpus': 1, 'artifacts': dataclasses.asdict(artifacts)})


def test_a_publish_ends_published_with_its_location(live_image):
    publisher = publish.Publisher()
    publisher._client = Store()
    publisher.run(ID)
    row = db_servers.live_image_get(ID)
    assert row['publish_status'] == publish.PUBLISHED
    assert row['publish_location']['image'] == 'gc-live-%s' % ID


def test_a_failed_publish_says_why_and_leaves_no_copy(live_image):
    publisher = publish.Publisher()
    publisher._client = store = Store(fail=True)
    publisher.run(ID)
    row = db_servers.live_image_get(ID)
    assert row['publish_status'] == publish.ERROR
    assert 'pool rbd does not exist' in row['publish_reason']
    assert store.images == {} and store.objects == {}


def test_a_published_live_image_is_not_published_twice(live_image):
    publisher = publish.Publisher()
    publisher._client = Store()
    publisher.run(ID)
    publisher._client = store = Store()
    publisher.run(ID)
    assert store.images == {}  # the second run found it published and left it


def test_a_publish_cut_short_by_a_restart_runs_again(live_image, monkeypatch):
    monkeypatch.setattr(publish, 'enabled', lambda: True)
    db_servers.live_image_set_publish(ID, publish.PUBLISHING)
    publisher = publish.Publisher()
    publisher._client = Store()
    monkeypatch.setattr(publisher, 'start', publisher.run)  # in the foreground
    publisher.recover('h')
    assert db_servers.live_image_get(ID)['publish_status'] == publish.PUBLISHED


def test_a_failed_publish_is_not_retried_at_each_start(live_image, monkeypatch):
    monkeypatch.setattr(publish, 'enabled', lambda: True)
    db_servers.live_image_set_publish(ID, publish.ERROR, publish_reason='pool gone')
    publisher = publish.Publisher()
    monkeypatch.setattr(publisher, 'start', publisher.run)
    publisher._client = store = Store()
    publisher.recover('h')
    assert store.images == {}
    assert db_servers.live_image_get(ID)['publish_reason'] == 'pool gone'
