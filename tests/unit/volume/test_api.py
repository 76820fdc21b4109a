"""volume.api.API as the REST controllers and the compute host call it (no WSGI).

Every operation goes to a real volume manager (a compute service in this
process, fake:// RPC) driving the fake volume driver, whose in-memory store
is what the tests read as "the storage". Each test checks the state a user
sees afterwards and the 409/400 a refused request gets, with nothing written.
"""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.volume.drivers import fake as fake_volume
from tests.unit.compute import helpers

CONNECTOR = {'host': 'attacher', 'initiator': 'iqn.2004-10.org.test:attacher'}
GiB = 1 << 30


@pytest.fixture
def storage(service, backend):
    return service.volumes.pool.get(backend['id'])


@pytest.fixture
def volume(api, ctxt, backend):
    return helpers.make_volume(api, ctxt, backend, size=1, name='v')


def _fail(monkeypatch, method, reason='the array said no'):
    def raising(self, *args, **kwargs):
        raise exception.DriverError(reason=reason)
    monkeypatch.setattr(fake_volume.FakeDriver, method, raising)


def _refused(error_class, call, *args, **kwargs):
    with pytest.raises(error_class) as refused:
        call(*args, **kwargs)
    return refused.value


def _snapshot(api, ctxt, volume, name='s', force=False):
    snapshot = api.create_snapshot(ctxt, db.volume_get(volume['id']), name, force=force)
    settled = helpers.settled_snapshot(snapshot['id'])
    assert settled is not None and settled['status'] == 'available', settled
    return settled


def _attached(api, ctxt, volume, host='attacher', instance=None):
    attachment = api.attach(ctxt, db.volume_get(volume['id']), host, instance, 'rw')
    api.connect(ctxt, attachment, CONNECTOR)
    api.attach_complete(attachment['id'])
    return db_attachments.attachment_get(attachment['id'])


# ---- create

def test_create_places_the_volume_and_the_owner_makes_it(api, ctxt, backend, storage):
    created = api.create(ctxt, {'size': 2, 'name': 'db'}, {}, None, details=True)
    assert (created['status'], created['backend_id'], created['host']) == (
        'creating', backend['id'], helpers.HOST)
    done = helpers.settled_volume(created['id'])
    assert (done['status'], done['size'], done['project_id']) == ('available', 2, 'demo')
    assert storage.volume_size(created['id']) == 2 * GiB


def test_create_without_a_size_is_a_400_and_writes_nothing(api, ctxt, backend):
    error = _refused(exception.ValidationError, api.create, ctxt, {'name': 'x'}, {}, None,
                     details=True)
    assert error.code == 400 and 'size' in error.message
    assert db.volume_get_all() == []


def test_a_create_the_driver_fails_ends_in_error_and_can_be_deleted(
        api, ctxt, backend, storage, monkeypatch):
    _fail(monkeypatch, 'create_volume', 'out of extents')
    created = api.create(ctxt, {'size': 1}, {}, None, details=True)
    failed = helpers.settled_volume(created['id'])
    assert failed['status'] == 'error' and 'out of extents' in failed['status_reason']
    assert storage.objects() == set()
    api.delete(ctxt, failed)
    assert helpers.settled_volume(created['id']) is None


def test_a_volume_from_a_snapshot_has_its_data_and_at_least_its_size(
        api, ctxt, backend, storage, volume):
    storage.write(volume['id'], 0, b'snapshotted')
    snapshot = _snapshot(api, ctxt, volume)
    origin = {'snapshot_id': snapshot['id'], 'backend_id': snapshot['backend_id']}
    error = _refused(exception.ValidationError, api.create, ctxt, {'size': 1}, origin, 2,
                     details=True)
    assert error.code == 400 and 'smaller than its source' in error.message
    copy = api.create(ctxt, {}, origin, snapshot['volume_size'], details=True)
    done = helpers.settled_volume(copy['id'])
    assert (done['status'], done['size'], done['snapshot_id']) == (
        'available', 1, snapshot['id'])
    assert storage.read(copy['id'], 0, 11) == b'snapshotted'


# ---- delete

def test_delete_removes_the_volume_from_the_storage(api, ctxt, volume, storage):
    api.delete(ctxt, volume)
    assert helpers.settled_volume(volume['id']) is None
    assert storage.objects() == set()


def test_delete_of_an_attached_volume_needs_force(api, ctxt, volume, storage):
    attachment = _attached(api, ctxt, volume)
    in_use = db.volume_get(volume['id'])
    error = _refused(exception.InvalidState, api.delete, ctxt, in_use)
    assert error.code == 409 and '1 attachment(s)' in error.message
    assert db.volume_get(volume['id'])['status'] == 'in-use'

    api.delete(ctxt, in_use, force=True)
    assert helpers.settled_volume(volume['id']) is None
    assert db_attachments.attachment_get_all(volume_id=volume['id']) == []
    _refused(exception.AttachmentNotFound, db_attachments.attachment_get, attachment['id'])
    assert storage.objects() == set()


def test_delete_of_a_volume_with_snapshots_needs_cascade(api, ctxt, volume, storage):
    snapshot = _snapshot(api, ctxt, volume)
    error = _refused(exception.InvalidState, api.delete, ctxt, volume)
    assert error.code == 409 and '1 snapshot(s)' in error.message
    assert db.volume_get(volume['id'])['status'] == 'available'

    api.delete(ctxt, volume, cascade=True)
    assert helpers.settled_volume(volume['id']) is None
    assert db_snapshots.snapshot_get_all(volume_id=volume['id']) == []
    assert 'snapshot-%s' % snapshot['id'] not in storage.objects()


def test_a_volume_still_being_made_cannot_be_deleted(api, ctxt, backend, monkeypatch):
    # The owner has not taken the create yet (its cast is held back).
    monkeypatch.setattr(api.volume_rpcapi, 'create_volume', lambda *args, **kwargs: None)
    creating = api.create(ctxt, {'size': 1}, {}, None, details=True)
    error = _refused(exception.InvalidState, api.delete, ctxt, creating)
    assert error.code == 409 and 'creating' in error.message
    assert db.volume_get(creating['id'])['status'] == 'creating'


def test_a_failed_delete_is_error_deleting_and_can_be_run_again(
        api, ctxt, volume, storage, monkeypatch):
    with monkeypatch.context() as patch:
        _fail(patch, 'delete_volume', 'device busy')
        api.delete(ctxt, volume)
        failed = helpers.settled_volume(volume['id'])
    assert failed['status'] == 'error_deleting' and 'device busy' in failed['status_reason']
    api.delete(ctxt, failed)
    assert helpers.settled_volume(volume['id']) is None
    assert storage.objects() == set()


# ---- extend

def test_extend_grows_the_volume(api, ctxt, volume, storage):
    api.extend(ctxt, volume, 3)
    done = helpers.settled_volume(volume['id'])
    assert (done['status'], done['size']) == ('available', 3)
    assert storage.volume_size(volume['id']) == 3 * GiB


def test_extend_of_an_attached_volume_keeps_it_in_use(api, ctxt, volume, storage):
    _attached(api, ctxt, volume)
    api.extend(ctxt, db.volume_get(volume['id']), 2)
    done = helpers.settled_volume(volume['id'])
    assert (done['status'], done['size']) == ('in-use', 2)


def test_extend_cannot_shrink(api, ctxt, volume):
    for size in (1, 0):
        error = _refused(exception.Invalid, api.extend, ctxt, volume, size)
        assert error.code == 400 and 'cannot shrink' in error.message
    assert db.volume_get(volume['id'])['status'] == 'available'


def test_extend_of_an_attached_volume_needs_online_extend(api, ctxt, monkeypatch, service):
    real = fake_volume.FakeDriver.get_volume_stats
    monkeypatch.setattr(fake_volume.FakeDriver, 'get_volume_stats',
                        lambda self, refresh=False: dict(real(self, refresh),
                                                         online_extend_support=False))
    backend = helpers.add_backend('offline-only')
    volume = helpers.make_volume(api, ctxt, backend)
    _attached(api, ctxt, volume)
    error = _refused(exception.InvalidState, api.extend, ctxt, db.volume_get(volume['id']), 2)
    assert error.code == 409 and 'detach it first' in error.message
    assert (db.volume_get(volume['id'])['status'], db.volume_get(volume['id'])['size']) == (
        'in-use', 1)


def test_a_failed_extend_leaves_the_volume_usable_at_its_size(
        api, ctxt, volume, storage, monkeypatch):
    _fail(monkeypatch, 'extend_volume', 'no space left')
    api.extend(ctxt, volume, 5)
    done = helpers.settled_volume(volume['id'])
    assert (done['status'], done['size']) == ('available', 1)
    assert 'extend failed' in done['status_reason'] and 'no space left' in done['status_reason']
    assert storage.volume_size(volume['id']) == GiB


def test_of_two_racing_extends_one_is_a_409(api, ctxt, volume, storage):
    stale = dict(volume)  # both requests read the volume as available
    api.extend(ctxt, volume, 2)
    error = _refused(exception.InvalidState, api.extend, ctxt, stale, 3)
    assert error.code == 409
    done = helpers.settled_volume(volume['id'])
    assert (done['status'], done['size']) == ('available', 2)
    assert storage.volume_size(volume['id']) == 2 * GiB


# ---- revert

def test_revert_brings_the_snapshot_data_back(api, ctxt, volume, storage):
    storage.write(volume['id'], 0, b'good')
    snapshot = _snapshot(api, ctxt, volume)
    storage.write(volume['id'], 0, b'BAD!')
    api.revert(ctxt, volume, snapshot)
    assert helpers.settled_volume(volume['id'])['status'] == 'available'
    assert storage.read(volume['id'], 0, 4) == b'good'
    assert helpers.settled_snapshot(snapshot['id'])['status'] == 'available'


def test_revert_refusals(api, ctxt, volume, backend):
    snapshot = _snapshot(api, ctxt, volume)
    other = helpers.make_volume(api, ctxt, backend, name='other')
    error = _refused(exception.Invalid, api.revert, ctxt, other, snapshot)
    assert error.code == 400 and 'belongs to volume %s' % volume['id'] in error.message

    _attached(api, ctxt, volume)
    error = _refused(exception.InvalidState, api.revert, ctxt, db.volume_get(volume['id']),
                     snapshot)
    assert error.code == 409 and 'in-use' in error.message
    assert db.volume_get(volume['id'])['status'] == 'in-use'
    assert db_snapshots.snapshot_get(snapshot['id'])['status'] == 'available'


def test_a_failed_revert_is_an_error_and_the_snapshot_stays_usable(
        api, ctxt, volume, monkeypatch):
    snapshot = _snapshot(api, ctxt, volume)
    _fail(monkeypatch, 'revert_to_snapshot', 'chain broken')
    api.revert(ctxt, volume, snapshot)
    failed = helpers.settled_volume(volume['id'])
    assert failed['status'] == 'error' and 'chain broken' in failed['status_reason']
    assert helpers.settled_snapshot(snapshot['id'])['status'] == 'available'


def test_revert_to_a_snapshot_being_deleted_is_a_409_and_changes_nothing(
        api, ctxt, volume, monkeypatch):
    snapshot = _snapshot(api, ctxt, volume)
    # The snapshot delete won the race; its work has not run yet.
    monkeypatch.setattr(api.volume_rpcapi, 'delete_snapshot', lambda *args, **kwargs: None)
    api.delete_snapshot(ctxt, snapshot)
    error = _refused(exception.InvalidState, api.revert, ctxt, volume, snapshot)
    assert error.code == 409
    assert db.volume_get(volume['id'])['status'] == 'available'
    assert db_snapshots.snapshot_get(snapshot['id'])['status'] == 'deleting'


# ---- snapshots

def test_snapshot_of_an_attached_volume_needs_force(api, ctxt, volume, storage):
    _attached(api, ctxt, volume)
    in_use = db.volume_get(volume['id'])
    error = _refused(exception.InvalidState, api.create_snapshot, ctxt, in_use, 's')
    assert error.code == 409 and '"force": true' in error.message
    assert db_snapshots.snapshot_get_all(volume_id=volume['id']) == []
    snapshot = _snapshot(api, ctxt, volume, force=True)
    assert 'snapshot-%s' % snapshot['id'] in storage.objects()
    assert db.volume_get(volume['id'])['status'] == 'in-use'


def test_snapshots_per_volume_are_limited(api, ctxt, volume, gc_conf):
    gc_conf.set_override('max_snapshots_per_volume', 1, group='volume')
    try:
        _snapshot(api, ctxt, volume)
        error = _refused(exception.Conflict, api.create_snapshot, ctxt, volume, 'two')
        assert error.code == 409 and 'limit 1' in error.message
        assert len(db_snapshots.snapshot_get_all(volume_id=volume['id'])) == 1
    finally:
        gc_conf.clear_override('max_snapshots_per_volume', group='volume')


def test_a_failed_snapshot_is_an_error_that_can_be_deleted(api, ctxt, volume, monkeypatch,
                                                         storage):
    _fail(monkeypatch, 'create_snapshot', 'cannot freeze')
    snapshot = api.create_snapshot(ctxt, volume, 's')
    failed = helpers.settled_snapshot(snapshot['id'])
    assert failed['status'] == 'error' and 'cannot freeze' in failed['status_reason']
    assert db.volume_get(volume['id'])['status'] == 'available'
    monkeypatch.undo()
    api.delete_snapshot(ctxt, failed)
    assert helpers.settled_snapshot(snapshot['id']) is None


def test_a_snapshot_being_made_cannot_be_deleted(api, ctxt, volume, monkeypatch):
    monkeypatch.setattr(api.volume_rpcapi, 'create_snapshot', lambda *args, **kwargs: None)
    snapshot = api.create_snapshot(ctxt, volume, 's')
    error = _refused(exception.InvalidState, api.delete_snapshot, ctxt, snapshot)
    assert error.code == 409 and 'creating' in error.message
    # Nor by the compute host's clean-up: creating -> deleting is not a move.
    error = _refused(exception.IllegalTransition, api.delete_snapshot_if_exists, ctxt,
                     snapshot['id'])
    assert error.code == 409
    assert db_snapshots.snapshot_get(snapshot['id'])['status'] == 'creating'


# ---- attachments

def test_attach_and_detach(api, ctxt, volume):
    attachment = api.attach(ctxt, volume, 'attacher', None, 'rw')
    assert (attachment['status'], db.volume_get(volume['id'])['status']) == (
        'attaching', 'attaching')
    info = api.connect(ctxt, attachment, CONNECTOR)
    assert info['driver_volume_type'] == 'fake' and info['data']['volume_id'] == volume['id']
    api.attach_complete(attachment['id'], '/dev/sdx')
    attached = db_attachments.attachment_get(attachment['id'])
    assert (attached['status'], attached['device_path'], attached['connector']) == (
        'attached', '/dev/sdx', CONNECTOR)
    assert db.volume_get(volume['id'])['status'] == 'in-use'

    api.begin_detach(ctxt, attached)
    error = _refused(exception.InvalidState, api.begin_detach, ctxt,
                     db_attachments.attachment_get(attachment['id']))
    assert error.code == 409 and 'detaching' in error.message
    api.detach_complete(ctxt, attachment['id'])
    assert db_attachments.attachment_get_all(volume_id=volume['id']) == []
    assert db.volume_get(volume['id'])['status'] == 'available'


def test_a_volume_attaches_once_unless_multiattach(api, ctxt, volume, backend):
    _attached(api, ctxt, volume)
    error = _refused(exception.InvalidState, api.attach, ctxt, db.volume_get(volume['id']),
                     'second', None, 'rw')
    assert error.code == 409 and 'not a multiattach volume' in error.message
    assert len(db_attachments.attachment_get_all(volume_id=volume['id'])) == 1

    shared = helpers.make_volume(api, ctxt, backend, name='shared', multiattach=True)
    first = _attached(api, ctxt, shared, host='h1')
    second = _attached(api, ctxt, shared, host='h2')
    assert db.volume_get(shared['id'])['status'] == 'in-use'
    for attachment, left in ((first, 'in-use'), (second, 'available')):
        api.begin_detach(ctxt, attachment)
        api.detach_complete(ctxt, attachment['id'])
        assert db.volume_get(shared['id'])['status'] == left


def test_a_failed_attach_is_an_attachment_in_error_and_the_volume_settles(api, ctxt, volume):
    attachment = api.attach(ctxt, volume, 'attacher', None, 'rw')
    api.connect(ctxt, attachment, CONNECTOR)
    api.attach_failed(ctxt, attachment['id'], OSError('no such device'))
    failed = db_attachments.attachment_get(attachment['id'])
    assert failed['status'] == 'error' and 'no such device' in failed['status_reason']
    assert db.volume_get(volume['id'])['status'] == 'available'


def test_only_an_available_volume_attaches(api, ctxt, backend, monkeypatch):
    monkeypatch.setattr(api.volume_rpcapi, 'create_volume', lambda *args, **kwargs: None)
    creating = api.create(ctxt, {'size': 1}, {}, None, details=True)
    error = _refused(exception.InvalidState, api.attach, ctxt, creating, 'h', None, 'rw')
    assert error.code == 409 and 'only available volumes' in error.message
    assert db_attachments.attachment_get_all(volume_id=creating['id']) == []


def test_force_detach_of_an_attachment_still_attaching_is_an_illegal_move(api, ctxt, volume):
    attachment = api.attach(ctxt, volume, 'attacher', None, 'rw')
    error = _refused(exception.IllegalTransition, api.force_detach, ctxt,
                     db.volume_get(volume['id']), attachment['id'])
    assert error.code == 409 and 'attaching to detaching' in error.message
    assert db_attachments.attachment_get(attachment['id'])['status'] == 'attaching'
    error = _refused(exception.AttachmentNotFound, api.force_detach, ctxt,
                     db.volume_get(volume['id']), 'no-such-attachment')
    assert error.code == 404


def test_a_launch_cannot_delete_a_volume_still_being_made(api, ctxt, backend, monkeypatch):
    monkeypatch.setattr(api.volume_rpcapi, 'create_volume', lambda *args, **kwargs: None)
    creating = api.create(ctxt, {'size': 1}, {}, None, details=True)
    error = _refused(exception.IllegalTransition, api.delete_owned_by_server, ctxt,
                     creating['id'])
    assert error.code == 409 and 'creating to deleting' in error.message
    assert db.volume_get(creating['id'])['status'] == 'creating'
