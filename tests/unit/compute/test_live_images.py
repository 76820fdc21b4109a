"""Bless, launch and discard through compute.api on a real compute host (no WSGI).

The source boots from a volume and has a second one hot-plugged; a bless
snapshots both with the memory, and every clone of a launch gets its own two
volumes made from those snapshots on the host, by calls to their owner.
"""

import sys
import time
import types

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.common import states as st
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.volume.drivers import fake as fake_volume
from tests.unit.compute import helpers

ROOT_DATA, DISK_DATA = b'root at bless', b'data at bless'


def _forbid_sleep(monkeypatch):
    """Make every ``time.sleep`` of the compute and volume modules raise (and be
    recorded), so work that waits by polling cannot finish."""
    slept = []

    def no_sleep(seconds):
        slept.append(seconds)
        raise AssertionError('slept %s s: the launch polls' % seconds)

    quiet_time = types.SimpleNamespace(
        **{name: getattr(time, name) for name in dir(time) if not name.startswith('_')})
    quiet_time.sleep = no_sleep
    for name, module in list(sys.modules.items()):
        if not name.startswith(('gridcentric_storage.compute', 'gridcentric_storage.volume')):
            continue
        if getattr(module, 'time', None) is time:
            monkeypatch.setattr(module, 'time', quiet_time)
        if getattr(module, 'sleep', None) is time.sleep:
            monkeypatch.setattr(module, 'sleep', no_sleep)
    return slept


@pytest.fixture
def storage(service, backend):
    """The fake backend's driver on the host: the volumes as the storage holds them."""
    return service.volumes.pool.get(backend['id'])


@pytest.fixture
def source(compute, volumes, ctxt, backend, storage):
    """An ACTIVE server booted from a volume, with a second volume hot-plugged."""
    root = helpers.make_volume(volumes, ctxt, backend, size=1, name='root')
    data = helpers.make_volume(volumes, ctxt, backend, size=2, name='data')
    storage.write(root['id'], 0, ROOT_DATA)
    storage.write(data['id'], 0, DISK_DATA)
    server = compute.create_server(ctxt, {'name': 'src', 'memory_mb': 256,
                                          'volume_id': root['id']})
    server = helpers.settled_server(server['id'])
    assert server is not None and server['status'] == 'ACTIVE', server
    compute.attach_volume(ctxt, server, data['id'], 'rw')
    assert helpers.settled_volume(data['id'])['status'] == 'in-use'
    return server, root, data


@pytest.fixture
def blessed(compute, ctxt, source, storage):
    server, root, data = source
    image = compute.bless(ctxt, db_servers.server_get(server['id']), 'gold')
    image = helpers.settled_live_image(image['id'])
    assert image is not None and image['status'] == 'blessed', image
    # The source runs on and writes after the bless: the clones must not see it.
    storage.write(root['id'], 0, b'root AFTER bless')
    storage.write(data['id'], 0, b'data AFTER bless')
    return image


def _image_snapshots(image):
    """The live image's snapshots, in the order of the source's disks."""
    return [db_snapshots.snapshot_get(disk['volume_id'])
            for disk in image['artifacts']['disks']]


def _clone_volumes(image):
    snapshot_ids = {s['id'] for s in _image_snapshots(image)}
    return [v for v in db.volume_get_all() if v['snapshot_id'] in snapshot_ids]


def test_bless_snapshots_both_volumes_with_the_memory(blessed, source):
    server, root, data = source
    snapshots = _image_snapshots(blessed)
    assert [(s['volume_id'], s['status'], s['name']) for s in snapshots] == [
        (root['id'], 'available', 'live-image-%s' % blessed['id']),
        (data['id'], 'available', 'live-image-%s' % blessed['id'])]
    assert helpers.settled_server(server['id'])['status'] == 'ACTIVE'


def test_launch_gives_each_clone_its_own_volumes_without_polling(
        compute, ctxt, blessed, source, storage, hypervisor, monkeypatch):
    server, root, data = source
    root_snapshot, data_snapshot = _image_snapshots(blessed)

    with monkeypatch.context() as patch:
        slept = _forbid_sleep(patch)
        clones = compute.launch(ctxt, blessed, {'num_instances': 4, 'name': 'web'})
        settled = [helpers.settled_server(c['id']) for c in clones]
    assert slept == []
    assert [(c['name'], c['status']) for c in settled] == [
        ('web-%d' % i, 'ACTIVE') for i in range(4)], [c['fault'] for c in settled]

    seen = set()
    for clone in settled:
        volume_ids = clone['extra']['volumes']
        assert len(volume_ids) == 2 and clone['volume_id'] == volume_ids[0]
        assert [d.volume_id for d in hypervisor.disks(clone['id'])] == volume_ids
        for volume_id, snapshot, data_at_bless in zip(
                volume_ids, (root_snapshot, data_snapshot), (ROOT_DATA, DISK_DATA),
                strict=True):
            volume = db.volume_get(volume_id)
            assert (volume['status'], volume['snapshot_id'], volume['size'],
                    volume['project_id']) == ('in-use', snapshot['id'],
                                              snapshot['volume_size'], ctxt.project_id)
            assert storage.read(volume_id, 0, len(data_at_bless)) == data_at_bless
            assert [(a['status'], a['host'], a['instance_uuid'])
                    for a in helpers.attachments_of_volume(volume_id)] == [
                ('attached', clone['host'], clone['id'])]
        seen.update(volume_ids)
    assert len(seen) == 8 and not seen & {root['id'], data['id']}

    # The source's own volumes are untouched: still its, still in use.
    for volume in (root, data):
        assert db.volume_get(volume['id'])['status'] == 'in-use'
        assert [(a['status'], a['instance_uuid'])
                for a in helpers.attachments_of_volume(volume['id'])] == [
            ('attached', server['id'])]
    assert storage.read(root['id'], 0, 16) == b'root AFTER bless'
    assert helpers.settled_server(server['id'])['status'] == 'ACTIVE'


def test_discard_refuses_while_clones_exist_and_deleting_them_deletes_their_volumes(
        compute, ctxt, blessed, source, storage):
    server, root, data = source
    clones = compute.launch(ctxt, blessed, {'num_instances': 2})
    for clone in clones:
        assert helpers.settled_server(clone['id'])['status'] == 'ACTIVE'
    made = {v['id'] for v in _clone_volumes(blessed)}
    assert len(made) == 4

    with pytest.raises(exception.InvalidState, match=r'2 server\(s\)') as refused:
        compute.discard(ctxt, db_servers.live_image_get(blessed['id']))
    assert refused.value.code == 409
    assert db_servers.live_image_get(blessed['id'])['status'] == 'blessed'

    for clone in clones:
        compute.delete_server(ctxt, db_servers.server_get(clone['id']))
    for clone in clones:
        assert helpers.settled_server(clone['id']) is None
    for volume_id in made:
        assert helpers.settled_volume(volume_id) is None
    assert not {'volume-%s' % v for v in made} & storage.objects()
    assert db.volume_get(root['id'])['status'] == 'in-use'

    compute.discard(ctxt, db_servers.live_image_get(blessed['id']))
    assert helpers.settled_live_image(blessed['id']) is None
    for snapshot in blessed['artifacts']['disks']:
        assert helpers.settled_snapshot(snapshot['volume_id']) is None
    assert helpers.settled_server(server['id'])['status'] == 'ACTIVE'


@pytest.mark.parametrize('failing_disk', [0, 1], ids=['root', 'second'])
def test_a_clone_whose_volume_cannot_be_made_ends_in_error_and_leaves_nothing(
        compute, ctxt, blessed, storage, monkeypatch, failing_disk):
    failing = _image_snapshots(blessed)[failing_disk]['id']
    real = fake_volume.FakeDriver.create_volume_from_snapshot

    def create_volume_from_snapshot(self, volume, snapshot):
        if snapshot.id == failing:
            raise exception.DriverError(reason='the backend is full')
        return real(self, volume, snapshot)

    monkeypatch.setattr(fake_volume.FakeDriver, 'create_volume_from_snapshot',
                        create_volume_from_snapshot)
    clone = compute.launch(ctxt, blessed, {})[0]
    failed = helpers.settled_server(clone['id'])
    assert failed['status'] == 'ERROR' and 'the backend is full' in failed['fault']
    made = _clone_volumes(blessed)
    assert [v['status'] for v in made if v['status'] in st.VOLUME_BUSY] == []
    assert [a for v in made for a in helpers.attachments_of_volume(v['id'])] == []

    monkeypatch.undo()
    compute.delete_server(ctxt, db_servers.server_get(clone['id']))
    assert helpers.settled_server(clone['id']) is None
    for volume_id in failed['extra'].get('volumes', []):
        assert helpers.settled_volume(volume_id) is None
    # Every volume the failed launch made goes with the clone, the failed one too.
    left = [(v['id'], v['status'], v['status_reason']) for v in _clone_volumes(blessed)]
    assert left == []
    assert not {'volume-%s' % v['id'] for v in made} & storage.objects()
