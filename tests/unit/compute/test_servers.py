"""Servers through compute.api on a real compute host (no WSGI): spawn and delete
with a root volume, hot-plugged volumes and their failures, and what a restart
of the host settles."""

import threading
import uuid

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume.drivers import fake as fake_volume
from tests.fixtures.images import store_file
from tests.unit.compute import helpers

ADMIN = context.get_admin_context()


def _attachments(volume_id):
    return [(a['status'], a['instance_uuid'], a['host'])
            for a in db_attachments.attachment_get_all(volume_id=volume_id)]


def _drop(monkeypatch, client, method):
    """The host stops before the cast reaches it: the row stays as the API left it."""
    monkeypatch.setattr(client, method, lambda *args, **kwargs: None)


def _returns(monkeypatch, obj, method):
    """An event set each time ``obj.method`` (host-side work) has returned."""
    done = threading.Event()
    real = getattr(obj, method)

    def wrapper(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        finally:
            done.set()

    monkeypatch.setattr(obj, method, wrapper)
    return done


# ---- spawn and delete

def test_a_server_boots_from_its_volume_and_gives_it_back_when_deleted(
        compute, volumes, ctxt, backend, hypervisor):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    assert db.volume_get(root['id'])['status'] == 'in-use'
    assert _attachments(root['id']) == [('attached', server['id'], helpers.HOST)]
    assert [d.volume_id for d in hypervisor.disks(server['id'])] == [root['id']]

    compute.delete_server(ctxt, server)
    assert helpers.settled_server(server['id']) is None
    assert server['id'] not in hypervisor.list_instances()
    assert db.volume_get(root['id'])['status'] == 'available'
    assert _attachments(root['id']) == []


def test_a_server_boots_only_from_an_available_volume_of_its_project(
        compute, volumes, ctxt, backend):
    root = helpers.make_volume(volumes, ctxt, backend)
    first = helpers.boot(compute, ctxt, root)
    with pytest.raises(exception.InvalidState, match='in-use') as busy:
        compute.create_server(ctxt, {'name': 'second', 'memory_mb': 128,
                                     'volume_id': root['id']})
    assert busy.value.code == 409
    with pytest.raises(exception.VolumeNotFound):
        compute.create_server(helpers.member('other'), {'name': 'x', 'memory_mb': 128,
                                                        'volume_id': root['id']})
    assert [s['id'] for s in db_servers.server_get_all()] == [first['id']]


def test_a_failed_spawn_is_an_error_with_a_fault_and_delete_frees_its_volume(
        compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)

    def spawn(spec):
        raise exception.DriverError(reason='no memory for %s' % spec.name)

    monkeypatch.setattr(hypervisor, 'spawn', spawn)
    server = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128,
                                          'volume_id': root['id']})
    failed = helpers.settled_server(server['id'])
    assert failed['status'] == 'ERROR' and 'no memory for vm' in failed['fault']
    assert server['id'] not in hypervisor.list_instances()

    compute.delete_server(ctxt, failed)
    assert helpers.settled_server(server['id']) is None
    assert helpers.settled_volume(root['id'])['status'] == 'available'
    assert _attachments(root['id']) == []


# ---- hot-plugged volumes

def test_hot_attach_and_detach(service, compute, volumes, ctxt, backend, hypervisor,
                              monkeypatch):
    detached = _returns(monkeypatch, service.manager.servers, 'detach_volume')
    server = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend))
    data = helpers.make_volume(volumes, ctxt, backend, size=2)
    compute.attach_volume(ctxt, server, data['id'], 'ro')
    assert helpers.settled_volume(data['id'])['status'] == 'in-use'
    assert _attachments(data['id']) == [('attached', server['id'], helpers.HOST)]
    assert [(d.volume_id, d.read_only) for d in hypervisor.disks(server['id'])][1:] == [
        (data['id'], True)]

    compute.detach_volume(ctxt, server, data['id'])
    assert detached.wait(20)
    assert _attachments(data['id']) == []
    assert db.volume_get(data['id'])['status'] == 'available'
    assert data['id'] not in [d.volume_id for d in hypervisor.disks(server['id'])]


def test_the_root_volume_cannot_be_detached(compute, volumes, ctxt, backend):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    with pytest.raises(exception.Invalid, match='root disk'):
        compute.detach_volume(ctxt, server, root['id'])
    assert _attachments(root['id']) == [('attached', server['id'], helpers.HOST)]


def _failed_attach(service, compute, ctxt, server, volume, monkeypatch):
    attached = _returns(monkeypatch, service.manager.servers, 'attach_volume')
    attachment = compute.attach_volume(ctxt, server, volume['id'], 'rw')
    assert attached.wait(20)
    return db_attachments.attachment_get(attachment['id'])


def test_a_hypervisor_that_cannot_plug_the_disk_leaves_the_attachment_in_error(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend))
    data = helpers.make_volume(volumes, ctxt, backend)

    def attach_volume(instance_id, disk):
        raise exception.DriverError(reason='no free PCI slot')

    monkeypatch.setattr(hypervisor, 'attach_volume', attach_volume)
    attachment = _failed_attach(service, compute, ctxt, server, data, monkeypatch)
    assert attachment['status'] == 'error' and 'no free PCI slot' in attachment['status_reason']
    assert db.volume_get(data['id'])['status'] == 'available'
    assert data['id'] not in [d.volume_id for d in hypervisor.disks(server['id'])]
    assert helpers.settled_server(server['id'])['status'] == 'ACTIVE'


def test_an_export_that_fails_leaves_the_attachment_in_error(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend))
    data = helpers.make_volume(volumes, ctxt, backend)

    def initialize_connection(self, volume, connector, initiator_data=None):
        raise exception.DriverError(reason='target portal down')

    monkeypatch.setattr(fake_volume.FakeDriver, 'initialize_connection',
                        initialize_connection)
    attachment = _failed_attach(service, compute, ctxt, server, data, monkeypatch)
    assert attachment['status'] == 'error'
    assert 'target portal down' in attachment['status_reason']
    assert db.volume_get(data['id'])['status'] == 'available'
    assert [d.volume_id for d in hypervisor.disks(server['id'])] == [server['volume_id']]


def _failed_detach(service, compute, ctxt, backend, volumes, hypervisor, monkeypatch):
    """A server with a hot-plugged volume the hypervisor once failed to unplug."""
    server = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend))
    data = helpers.make_volume(volumes, ctxt, backend)
    compute.attach_volume(ctxt, server, data['id'], 'rw')
    assert helpers.settled_volume(data['id'])['status'] == 'in-use'
    detached = _returns(monkeypatch, service.manager.servers, 'detach_volume')

    def detach_volume(instance_id, volume_id):
        raise exception.DriverError(reason='the guest holds the disk')

    with monkeypatch.context() as patch:
        patch.setattr(hypervisor, 'detach_volume', detach_volume)
        compute.detach_volume(ctxt, server, data['id'])
        assert detached.wait(20)
    detached.clear()
    [attachment] = db_attachments.attachment_get_all(volume_id=data['id'])
    assert attachment['status'] == 'error'
    assert 'the guest holds the disk' in attachment['status_reason']
    assert data['id'] in [d.volume_id for d in hypervisor.disks(server['id'])]
    return server, data, detached


def test_a_failed_detach_leaves_the_volume_in_use(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server, data, _ = _failed_detach(service, compute, ctxt, backend, volumes, hypervisor,
                                     monkeypatch)
    # The VM still has the disk: the volume is in use, no other server may take it.
    assert db.volume_get(data['id'])['status'] == 'in-use'
    other = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend), name='other')
    with pytest.raises(exception.InvalidState):
        compute.attach_volume(ctxt, other, data['id'], 'rw')


def test_a_failed_detach_can_be_retried(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server, data, detached = _failed_detach(service, compute, ctxt, backend, volumes,
                                            hypervisor, monkeypatch)
    compute.detach_volume(ctxt, db_servers.server_get(server['id']), data['id'])
    assert detached.wait(20)
    assert _attachments(data['id']) == []
    assert db.volume_get(data['id'])['status'] == 'available'
    assert data['id'] not in [d.volume_id for d in hypervisor.disks(server['id'])]


# ---- a restart of the host settles what it cut short

def test_restart_fails_a_build_that_never_reached_the_hypervisor(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    _drop(monkeypatch, compute.rpcapi, 'spawn_server')
    server = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128,
                                          'volume_id': root['id']})
    assert db_servers.server_get(server['id'])['status'] == 'BUILD'

    service.manager.servers.recover_interrupted(ADMIN)
    failed = db_servers.server_get(server['id'])
    assert failed['status'] == 'ERROR' and not failed['task_state']
    assert 'build interrupted by a restart of %s' % helpers.HOST in failed['fault']
    assert db.volume_get(root['id'])['status'] == 'available'


def test_restart_finds_a_build_whose_vm_runs_active(
        service, compute, volumes, ctxt, hypervisor, monkeypatch):
    store_file('vmlinuz', b'kernel')
    _drop(monkeypatch, compute.rpcapi, 'spawn_server')
    server = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128,
                                          'kernel': 'vmlinuz'})
    # The VM started; the host stopped before it wrote ACTIVE.
    hypervisor.spawn(virt.InstanceSpec(id=server['id'], name='vm', memory_mb=128,
                                       mac=server['mac'], vmgenid=server['vmgenid']))

    service.manager.servers.recover_interrupted(ADMIN)
    recovered = db_servers.server_get(server['id'])
    assert (recovered['status'], recovered['task_state']) == ('ACTIVE', None)
    assert hypervisor.get_info(server['id']).state == 'running'


def test_restart_finishes_a_delete(service, compute, volumes, ctxt, backend, hypervisor,
                                   monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    _drop(monkeypatch, compute.rpcapi, 'destroy_server')
    compute.delete_server(ctxt, server)
    assert db_servers.server_get(server['id'])['task_state'] == 'deleting'

    service.manager.servers.recover_interrupted(ADMIN)
    assert helpers.settled_server(server['id']) is None
    assert server['id'] not in hypervisor.list_instances()
    assert db.volume_get(root['id'])['status'] == 'available'
    assert _attachments(root['id']) == []


def test_restart_removes_a_vm_that_no_server_owns(service, hypervisor, gc_db):
    stray = str(uuid.uuid4())
    hypervisor.spawn(virt.InstanceSpec(id=stray, name='stray', memory_mb=64))
    service.manager.servers.recover_interrupted(ADMIN)
    assert stray not in hypervisor.list_instances()


def _interrupted_bless(service, compute, volumes, ctxt, backend, hypervisor, monkeypatch,
                       snapshotted):
    """A bless the host stopped in: the VM paused, ``snapshotted``: its volume's
    snapshot taken (the step before the memory is saved)."""
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    with monkeypatch.context() as patch:
        _drop(patch, compute.rpcapi, 'bless_server')
        image = compute.bless(ctxt, server, 'gold')
    hypervisor.pause(server['id'])
    if snapshotted:
        volumes.create_quiesced_snapshot_and_wait(ctxt, root['id'],
                                                  'live-image-%s' % image['id'])
    assert db_servers.server_get(server['id'])['task_state'] == 'blessing'
    return server, root, image


def test_restart_ends_an_interrupted_bless_in_error_and_resumes_the_source(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server, root, image = _interrupted_bless(service, compute, volumes, ctxt, backend,
                                             hypervisor, monkeypatch, snapshotted=False)
    service.manager.live_images.recover_interrupted(ADMIN)
    failed = db_servers.live_image_get(image['id'])
    assert failed['status'] == 'error'
    assert 'bless interrupted by a restart of %s' % helpers.HOST in failed['status_reason']
    source = db_servers.server_get(server['id'])
    assert (source['status'], source['task_state']) == ('ACTIVE', None)
    assert hypervisor.get_info(server['id']).state == 'running'

    # The failed image can go; the source can be blessed again.
    compute.discard(ctxt, failed)
    assert helpers.settled_live_image(image['id']) is None
    again = compute.bless(ctxt, source, 'gold-2')
    assert helpers.settled_live_image(again['id'])['status'] == 'blessed'


def test_an_interrupted_bless_leaves_no_snapshot_once_discarded(
        service, compute, volumes, ctxt, backend, hypervisor, monkeypatch):
    server, root, image = _interrupted_bless(service, compute, volumes, ctxt, backend,
                                             hypervisor, monkeypatch, snapshotted=True)
    service.manager.live_images.recover_interrupted(ADMIN)
    failed = db_servers.live_image_get(image['id'])
    assert failed['status'] == 'error'
    compute.discard(ctxt, failed)
    assert helpers.settled_live_image(image['id']) is None
    helpers.wait_for(lambda: all(s['status'] != 'deleting'
                                 for s in db_snapshots.snapshot_get_all()),
                     what='snapshot deletes to end')
    assert [(s['name'], s['status'])
            for s in db_snapshots.snapshot_get_all(volume_id=root['id'])] == []


def test_restart_finishes_a_discard(service, compute, volumes, ctxt, backend, hypervisor,
                                    monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    image = compute.bless(ctxt, server, 'gold')
    image = helpers.settled_live_image(image['id'])
    assert image['status'] == 'blessed'
    _drop(monkeypatch, compute.rpcapi, 'discard_live_image')
    compute.discard(ctxt, image)
    assert db_servers.live_image_get(image['id'])['status'] == 'discarding'

    service.manager.live_images.recover_interrupted(ADMIN)
    assert helpers.settled_live_image(image['id']) is None
    helpers.wait_for(lambda: db_snapshots.snapshot_get_all(volume_id=root['id']) == [],
                     what='the live image\'s snapshot to go')
    assert image['id'] not in hypervisor.images


def test_of_two_racing_blesses_exactly_one_starts(service, compute, volumes, ctxt, backend,
                                                  monkeypatch):
    server = helpers.boot(compute, ctxt, helpers.make_volume(volumes, ctxt, backend))
    _drop(monkeypatch, compute.rpcapi, 'bless_server')
    compute.bless(ctxt, server, 'first')
    # The second request read the server before the first one's write.
    with pytest.raises(exception.InvalidState) as err:
        compute.bless(ctxt, server, 'second')
    assert err.value.code == 409
    assert [i['name'] for i in db_servers.live_image_get_all(server_id=server['id'])] == [
        'first']
