"""Volume migration (volume.migration) against a real volume manager and the fake driver.

A compute service runs in this process over fake:// RPC; the fake driver's
in-memory store is "the storage". The attached-volume path asks the
server's host to mirror the disk: that host's answer is the one thing
replaced here (its QEMU side has its own tests).
"""

import uuid

import pytest

from gridcentric_storage.common import context, exception, states
from gridcentric_storage.common.states import VolumeStatus as V
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.volume import migration
from gridcentric_storage.volume.drivers import fake as fake_volume
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.fixtures.services import wait_for
from tests.unit.compute import helpers

CONNECTOR = {'host': 'attacher', 'initiator': 'iqn.2004-10.org.test:attacher'}


@pytest.fixture
def one(service):
    return helpers.add_backend('one')


@pytest.fixture
def two(service):
    return helpers.add_backend('two')


@pytest.fixture
def volume(api, ctxt, one):
    return helpers.make_volume(api, ctxt, one, size=1, name='v')


def _store(service, backend):
    return service.volumes.pool.get(backend['id'])


def _settled(volume_id):
    return helpers.settled_volume(volume_id, timeout=30)


# ---------------------------------------------------------------- states, refs

def test_migrating_goes_back_to_where_it_was():
    machine = states.VOLUME
    assert machine.allows(V.AVAILABLE, V.MIGRATING) and machine.allows(V.IN_USE, V.MIGRATING)
    assert machine.allows(V.MIGRATING, V.AVAILABLE) and machine.allows(V.MIGRATING, V.IN_USE)
    # a migration never leaves a volume in error or deletes it
    assert not machine.allows(V.MIGRATING, V.ERROR)
    assert not machine.allows(V.MIGRATING, V.DELETING)
    assert V.MIGRATING in states.VOLUME_BUSY
    assert states.migration_target('x') == 'target:x'


def test_refs_name_the_backend_data_after_name_id():
    vid, nid = str(uuid.uuid4()), str(uuid.uuid4())
    ref = VolumeRef({'id': vid, 'name_id': nid, 'size': 1})
    assert (ref.id, ref.name, ref.volume_id) == (nid, 'volume-%s' % nid, vid)
    assert VolumeRef({'id': vid, 'name_id': None}).name == 'volume-%s' % vid
    snap = SnapshotRef({'id': 's', 'volume_id': vid, 'volume_name_id': nid})
    assert snap.volume_id == nid
    assert SnapshotRef({'id': 's', 'volume_id': vid}).volume_id == vid


# ---------------------------------------------------------------- driver-assisted

def test_fake_to_fake_moves_the_blocks(service, api, ctxt, volume, one, two):
    data = b'migrated bytes' * 1000
    _store(service, one).write(volume['id'], 0, data)
    api.migrate(ctxt, db.volume_get(volume['id']), 'two', None)
    moved = _settled(volume['id'])
    assert moved['status'] == 'available' and moved['backend_id'] == two['id']
    assert moved['migration_status'] == 'success' and moved['migration_progress'] == 100
    assert moved['name_id'] is None                 # the driver kept the name
    assert _store(service, two).read(volume['id'], 0, len(data)) == data
    assert 'volume-%s' % volume['id'] not in _store(service, one).objects()


def test_placement_picks_another_backend(service, api, ctxt, volume, one, two):
    db.backend_update(two['id'], {'tags': ['gold']})
    api.migrate(ctxt, db.volume_get(volume['id']), None, {'tags': ['gold']})
    assert _settled(volume['id'])['backend_id'] == two['id']


def test_driver_error_leaves_the_volume_where_it_was(service, api, ctxt, volume, one, two,
                                                     monkeypatch):
    def refuse(self, *args):
        raise exception.DriverError(reason='the array said no')
    monkeypatch.setattr(fake_volume.FakeDriver, 'migrate_volume', refuse)
    api.migrate(ctxt, db.volume_get(volume['id']), two['id'], None)
    failed = _settled(volume['id'])
    assert failed['status'] == 'available' and failed['backend_id'] == one['id']
    assert failed['migration_status'] == 'error'
    assert 'the array said no' in failed['status_reason']
    assert not db.volume_migration_targets(volume['id'])


# ---------------------------------------------------------------- refusals

def _refused(error_class, fragment, api, ctxt, volume_id, backend):
    before = db.volume_get(volume_id)
    with pytest.raises(error_class) as refused:
        api.migrate(ctxt, before, backend, None)
    assert fragment in str(refused.value)
    after = db.volume_get(volume_id)
    assert (after['status'], after['migration_status']) == (before['status'],
                                                             before['migration_status'])


def test_refusals(service, api, ctxt, volume, one, two):
    vid = volume['id']
    _refused(exception.Invalid, 'already', api, ctxt, vid, 'one')
    _refused(exception.BackendNotFound, 'could not be found', api, ctxt, vid, 'three')
    db.backend_update(two['id'], {'state': 'disabled'})
    _refused(exception.NoValidBackend, 'No valid backend', api, ctxt, vid, 'two')
    small = helpers.add_backend('small', capacity_gb=0.5)
    wait_for(lambda: (db.backend_get(small['id'])['free_capacity_gb'] or 0) > 0,
             what='the small backend to report its capacity')
    _refused(exception.NoValidBackend, 'No valid backend', api, ctxt, vid, 'small')


def test_refused_while_busy_or_with_snapshots(service, api, ctxt, volume, one, two):
    snapshot = api.create_snapshot(ctxt, db.volume_get(volume['id']), 's')
    helpers.settled_snapshot(snapshot['id'])
    _refused(exception.Invalid, 'snapshot', api, ctxt, volume['id'], 'two')
    db.volume_update(volume['id'], {'status': V.EXTENDING})
    _refused(exception.InvalidState, 'available or in-use', api, ctxt, volume['id'], 'two')


def _attach(api, ctxt, volume_id, instance=None):
    attachment = api.attach(ctxt, db.volume_get(volume_id), 'test-host', instance, 'rw')
    api.connect(ctxt, attachment, CONNECTOR)
    api.attach_complete(attachment['id'])
    return db_attachments.attachment_get(attachment['id'])


def _server(host='test-host'):
    return db_servers.server_create({'id': str(uuid.uuid4()), 'name': 'vm', 'host': host,
                                     'status': 'ACTIVE', 'memory_mb': 64, 'vcpus': 1})


def test_attached_volumes_that_cannot_move_live(service, api, ctxt, volume, one, two,
                                                monkeypatch):
    attachment = _attach(api, ctxt, volume['id'], instance=str(uuid.uuid4()))
    _refused(exception.Invalid, 'which this service does not run', api, ctxt,
             volume['id'], 'two')      # a Nova instance
    db_attachments.attachment_update(attachment['id'], {'instance_uuid': None})
    _refused(exception.Invalid, 'not to a server', api, ctxt, volume['id'], 'two')
    server = _server()
    db_attachments.attachment_update(attachment['id'], {'instance_uuid': server['id']})
    monkeypatch.setattr(migration, 'can_mirror', lambda host: False)
    _refused(exception.Invalid, 'cannot move an attached disk', api, ctxt, volume['id'],
             'two')


def test_can_mirror_reads_the_service_capability(service):
    caps = {s['host']: s['capabilities'] for s in db.service_get_all()}
    assert migration.can_mirror('test-host') is bool(
        (caps.get('test-host') or {}).get('volume_mirror'))
    assert migration.can_mirror('no-such-host') is False


# ---------------------------------------------------------------- live (attached)

class _Hypervisor:
    """The server host's answer to migrate_server_volume (its QEMU side is tested
    with QEMU): records the call and reports progress as it would."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def __call__(self, ctxt, host, server_id, attachment_id, connection_info, size_gb=None):
        self.calls.append((host, server_id, attachment_id, connection_info, size_gb))
        migration.report_progress(db_attachments.attachment_get(attachment_id)['volume_id'],
                                  50)
        if self.fail:
            raise exception.DriverError(reason='blockdev-mirror failed')


def _live_setup(service, api, ctxt, volume, monkeypatch, fail):
    server = _server()
    attachment = _attach(api, ctxt, volume['id'], instance=server['id'])
    monkeypatch.setattr(migration, 'can_mirror', lambda host: True)
    hypervisor = _Hypervisor(fail)
    monkeypatch.setattr(service.volumes.compute_rpcapi, 'migrate_server_volume', hypervisor)
    return server, attachment, hypervisor


def test_attached_volume_moves_live(service, api, ctxt, volume, one, two, monkeypatch):
    server, attachment, hypervisor = _live_setup(service, api, ctxt, volume, monkeypatch,
                                                 fail=False)
    data = b'live' * 4096
    _store(service, one).write(volume['id'], 0, data)
    api.migrate(ctxt, db.volume_get(volume['id']), 'two', None)
    moved = _settled(volume['id'])
    assert moved['status'] == 'in-use' and moved['backend_id'] == two['id']
    assert moved['migration_status'] == 'success'
    [(host, server_id, attachment_id, info, size_gb)] = hypervisor.calls
    assert (host, server_id, attachment_id, size_gb) == ('test-host', server['id'],
                                                         attachment['id'], 1)
    # the attachment now carries the destination's connection
    assert db_attachments.attachment_get(attachment['id'])['connection_info'] == info
    assert info['data']['volume_id'] == moved['name_id'] != volume['id']
    wait_for(lambda: not db.volume_migration_targets(volume['id']))
    assert 'volume-%s' % volume['id'] not in _store(service, one).objects()


def test_failed_mirror_keeps_the_guest_on_the_source(service, api, ctxt, volume, one, two,
                                                     monkeypatch):
    _, attachment, hypervisor = _live_setup(service, api, ctxt, volume, monkeypatch,
                                            fail=True)
    before = db_attachments.attachment_get(attachment['id'])['connection_info']
    api.migrate(ctxt, db.volume_get(volume['id']), 'two', None)
    failed = _settled(volume['id'])
    assert failed['status'] == 'in-use' and failed['backend_id'] == one['id']
    assert failed['migration_status'] == 'error'
    assert 'blockdev-mirror failed' in failed['status_reason']
    assert db_attachments.attachment_get(attachment['id'])['connection_info'] == before
    wait_for(lambda: not db.volume_migration_targets(volume['id']))
    assert not [o for o in _store(service, two).objects() if o.startswith('volume-')]


# ---------------------------------------------------------------- progress, restart

def test_report_progress_only_while_migrating(service, volume):
    migration.report_progress(volume['id'], 40)
    assert db.volume_get(volume['id'])['migration_progress'] is None
    db.volume_update(volume['id'], {'status': V.MIGRATING})
    migration.report_progress(volume['id'], 140)
    assert db.volume_get(volume['id'])['migration_progress'] == 100
    migration.report_progress(str(uuid.uuid4()), 10)    # gone: ignored


def test_restart_discards_the_destination(service, api, ctxt, volume, one, two):
    data = b'intact' * 1000
    _store(service, one).write(volume['id'], 0, data)
    db.volume_update(volume['id'], {'status': V.MIGRATING, 'migration_status': 'migrating'})
    target = service.volumes.migrations._create_target(
        context.get_admin_context(), db.volume_get(volume['id']), two)
    assert 'volume-%s' % target['id'] in _store(service, two).objects()
    service.volumes.init_host()
    settled = _settled(volume['id'])
    assert settled['status'] == 'available' and settled['migration_status'] == 'error'
    assert 'interrupted by a restart' in settled['status_reason']
    wait_for(lambda: not db.volume_migration_targets(volume['id']))
    assert 'volume-%s' % target['id'] not in _store(service, two).objects()
    assert _store(service, one).read(volume['id'], 0, len(data)) == data
    api.migrate(ctxt, db.volume_get(volume['id']), 'two', None)
    assert _settled(volume['id'])['migration_status'] == 'success'


def test_attached_file_volume_moves_through_the_compute_host(service, api, ctxt, tmp_path):
    """The whole path with no stand-in: the compute host's migrate_server_volume
    (fake virt driver, which advertises volume_mirror) switches the server's disk
    to the destination file, and the volume is in-use on the other backend."""
    from gridcentric_storage.compute import api as compute_api

    fone = helpers.add_backend('fone', driver='file', path=str(tmp_path / 'fone'))
    ftwo = helpers.add_backend('ftwo', driver='file', path=str(tmp_path / 'ftwo'))
    compute = compute_api.ComputeAPI()
    root = helpers.make_volume(api, ctxt, fone, size=1)
    server = helpers.settled_server(compute.create_server(
        ctxt, {'name': 'vm', 'memory_mb': 128, 'volume_id': root['id']})['id'])
    assert server['status'] == 'ACTIVE', server
    wait_for(lambda: migration.can_mirror(server['host']), what='the host to advertise')
    api.migrate(ctxt, db.volume_get(root['id']), 'ftwo', None)
    moved = _settled(root['id'])
    assert moved['status'] == 'in-use' and moved['backend_id'] == ftwo['id'], moved
    assert moved['migration_status'] == 'success'
    disk = next(d for d in service.manager.servers.driver.disks(server['id'])
                if d.volume_id == root['id'])
    path = disk.connection_info['data']['device_path']
    assert path.startswith(str(tmp_path / 'ftwo')) and moved['name_id'] in path
    [attachment] = db_attachments.attachment_get_all(volume_id=root['id'])
    assert attachment['connection_info']['data']['device_path'] == path
    wait_for(lambda: not [n for n in (tmp_path / 'fone').iterdir()
                          if n.name.startswith('volume-')], what='the source deleted')
