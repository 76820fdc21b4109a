"""Live migration of a running server between two compute hosts in this process
(fake virt driver, fake:// RPC): the guest ends on the destination with its
volumes connected there, a failure leaves it running where it was, what cannot
work is refused before anything starts, and a restart settles a move it cut short."""

import dataclasses

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.virt import base as virt
from tests.fixtures.images import store_file
from tests.unit.compute import helpers

ADMIN = context.get_admin_context()
OTHER = 'host-b'


@pytest.fixture
def other(service):
    running = helpers.start_service(OTHER)
    yield running
    running.stop()


def _attachments(volume_id):
    return sorted((a['status'], a['host'])
                  for a in db_attachments.attachment_get_all(volume_id=volume_id))


def _drop(monkeypatch, client, method):
    monkeypatch.setattr(client, method, lambda *args, **kwargs: None)


def test_a_server_moves_to_the_other_host_and_runs_on_there(
        service, compute, volumes, ctxt, backend, hypervisor):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)       # before host-b is up: on test-host
    assert server['host'] == helpers.HOST
    before = hypervisor.get_console_output(server['id'])
    other = helpers.start_service(OTHER)
    try:
        assert compute.migrate(ADMIN, server, None) == OTHER   # the only other host
        moved = helpers.settled_server(server['id'])
        assert moved is not None
        assert (moved['status'], moved['host'], moved['fault']) == ('ACTIVE', OTHER, None)
        destination = other.manager.servers.driver
        assert server['id'] not in hypervisor.list_instances()
        assert destination.get_info(server['id']).state == 'running'
        # The guest is the same one: what it printed is there, then its arrival.
        assert destination.get_console_output(server['id']) == \
            before + 'arrived by live migration\n'
        assert [d.volume_id for d in destination.disks(server['id'])] == [root['id']]
        assert _attachments(root['id']) == [('attached', OTHER)]
        assert db.volume_get(root['id'])['status'] == 'in-use'
        # It works as any server of that host: console, delete.
        assert 'arrived' in compute.console_output(ctxt, moved, None)
        compute.delete_server(ctxt, moved)
        assert helpers.settled_server(server['id']) is None
        assert server['id'] not in destination.list_instances()
        assert db.volume_get(root['id'])['status'] == 'available'
    finally:
        other.stop()


def test_a_failed_migration_leaves_the_guest_running_on_its_host_with_a_note(
        service, other, compute, volumes, ctxt, backend, hypervisor):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    source = db_servers.server_get(server['id'])['host']
    hosts = {helpers.HOST: service, OTHER: other}
    dest = OTHER if source == helpers.HOST else helpers.HOST
    hosts[source].manager.servers.driver.fail_migrations = 'the link went down'

    compute.migrate(ADMIN, server, dest)
    after = helpers.settled_server(server['id'])
    assert after is not None
    assert (after['status'], after['host']) == ('ACTIVE', source)
    assert 'migration failed' in after['fault'] and 'the link went down' in after['fault']
    assert hosts[source].manager.servers.driver.get_info(server['id']).state == 'running'
    assert server['id'] not in hosts[dest].manager.servers.driver.list_instances()
    assert _attachments(root['id']) == [('attached', source)]
    assert 'migration' not in after['extra']
    # Nothing is stuck: it can be asked again, and then it moves.
    hosts[source].manager.servers.driver.fail_migrations = None
    compute.migrate(ADMIN, after, dest)
    assert helpers.settled_server(server['id'])['host'] == dest


def test_a_clone_of_an_unpublished_live_image_stays_on_the_blessing_host(
        service, other, compute, ctxt, hypervisor):
    store_file('vmlinuz', b'kernel')
    vm = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128, 'kernel': 'vmlinuz',
                                      'availability_zone': 'nova:' + helpers.HOST})
    vm = helpers.settled_server(vm['id'])
    image = compute.bless(ctxt, vm, 'gold')
    image = helpers.settled_live_image(image['id'])
    clone = compute.launch(ctxt, image, {})[0]
    clone = helpers.settled_server(clone['id'])
    assert clone['host'] == helpers.HOST

    with pytest.raises(exception.ServerMigrationRefused, match='not published') as refused:
        compute.migrate(ADMIN, clone, OTHER)
    assert refused.value.code == 400
    # Unforced, no other host can map its memory.
    with pytest.raises(exception.NoComputeService):
        compute.migrate(ADMIN, clone, None)
    after = db_servers.server_get(clone['id'])
    assert (after['task_state'], after['host']) == (None, helpers.HOST)
    assert hypervisor.get_info(clone['id']).state == 'running'
    assert clone['id'] not in other.manager.servers.driver.list_instances()


def test_a_clone_of_a_published_live_image_maps_its_memory_on_the_destination(
        service, other, compute, ctxt, hypervisor, monkeypatch):
    store_file('vmlinuz', b'kernel')
    vm = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128, 'kernel': 'vmlinuz',
                                      'availability_zone': 'nova:' + helpers.HOST})
    vm = helpers.settled_server(vm['id'])
    image = helpers.settled_live_image(compute.bless(ctxt, vm, 'gold')['id'])
    clone = helpers.settled_server(compute.launch(ctxt, image, {
        'availability_zone': 'nova:' + helpers.HOST})[0]['id'])
    # Published, and host-b has the store: it maps the published RAM (here: a path
    # standing for the rbd-fuse mount compute.live_image_mounts makes).
    db_servers.live_image_update(image['id'], {'publish_status': 'published'})
    db.service_heartbeat(OTHER, 'gridcentric', 'gridcentric-compute', capabilities=dict(
        db.service_get_all('gridcentric', up_only=True)[0]['capabilities'],
        live_image_store=True))
    mapped = []

    def mounted(live_image):
        mapped.append(live_image['id'])
        return dataclasses.replace(virt.LiveImageArtifacts(
            live_image_id=live_image['id'], directory='/mnt', memory_path='/mnt/ram',
            state_path='/mnt/state', memory_mb=128, vcpus=1))

    monkeypatch.setattr(other.manager.live_images, 'remote_artifacts', mounted)
    assert compute.migrate(ADMIN, clone, None) == OTHER
    moved = helpers.settled_server(clone['id'])
    assert (moved['host'], moved['fault']) == (OTHER, None)
    assert mapped == [image['id']]
    assert other.manager.servers.driver.get_info(clone['id']).state == 'running'
    assert clone['id'] not in hypervisor.list_instances()


def test_a_local_file_volume_of_the_source_refuses_the_move(
        service, other, compute, volumes, ctxt, hypervisor, tmp_path):
    files = helpers.add_backend('files', driver='file', path=str(tmp_path / 'files'))
    root = helpers.make_volume(volumes, ctxt, files)
    server = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128,
                                          'volume_id': root['id'],
                                          'availability_zone': 'nova:' + helpers.HOST})
    server = helpers.settled_server(server['id'])
    assert server['status'] == 'ACTIVE', server
    with pytest.raises(exception.ServerMigrationRefused,
                       match='local file of host %s' % helpers.HOST) as refused:
        compute.migrate(ADMIN, server, OTHER)
    assert refused.value.code == 400
    after = db_servers.server_get(server['id'])
    assert (after['task_state'], after['host']) == (None, helpers.HOST)
    assert _attachments(root['id']) == [('attached', helpers.HOST)]


def test_what_cannot_start_is_refused_before_anything_changes(
        service, other, compute, volumes, ctxt, backend, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    with pytest.raises(exception.Invalid, match='runs on host .* already'):
        compute.migrate(ADMIN, server, server['host'])
    with pytest.raises(exception.Invalid, match='no compute service is up on host nowhere'):
        compute.migrate(ADMIN, server, 'nowhere')
    _drop(monkeypatch, compute.rpcapi, 'migrate_server')
    compute.migrate(ADMIN, server, None)
    busy = db_servers.server_get(server['id'])
    assert busy['task_state'] == 'migrating'
    with pytest.raises(exception.InvalidState) as twice:
        compute.migrate(ADMIN, busy, None)
    assert twice.value.code == 409


def test_restart_of_the_source_cancels_a_move_it_cut_short(
        service, other, compute, volumes, ctxt, backend, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    hosts = {helpers.HOST: service, OTHER: other}
    source = hosts[server['host']]
    _drop(monkeypatch, compute.rpcapi, 'migrate_server')
    compute.migrate(ADMIN, server, None)

    source.manager.migrations.recover_interrupted(ADMIN)
    after = db_servers.server_get(server['id'])
    assert (after['status'], after['task_state'], after['host']) == (
        'ACTIVE', None, server['host'])
    assert 'interrupted by a restart' in after['fault']
    assert source.manager.servers.driver.get_info(server['id']).state == 'running'
    assert _attachments(root['id']) == [('attached', server['host'])]


def _moved_but_not_recorded(compute, server, source, dest, monkeypatch):
    """The guest went over and (``run``) runs on ``dest``; the source stopped
    before it recorded anything."""
    _drop(monkeypatch, compute.rpcapi, 'migrate_server')
    compute.migrate(ADMIN, server, dest.host)
    described = source.manager.servers.driver.describe_outgoing(server['id'])
    uri = dest.manager.migrations.prepare_incoming(ADMIN, server['id'], described)
    source.manager.servers.driver.migrate_out(server['id'], uri, 10)


def test_restart_of_the_destination_adopts_a_guest_that_runs_there(
        service, other, compute, volumes, ctxt, backend, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    hosts = {helpers.HOST: service, OTHER: other}
    source = hosts[server['host']]
    dest = other if source is service else service
    _moved_but_not_recorded(compute, server, source, dest, monkeypatch)
    dest.manager.servers.driver.finish_incoming(server['id'])

    dest.manager.servers.recover_interrupted(ADMIN)     # not an orphan there
    dest.manager.migrations.recover_interrupted(ADMIN)
    after = db_servers.server_get(server['id'])
    assert (after['task_state'], after['host']) == (None, dest.host)
    source.manager.servers.recover_interrupted(ADMIN)   # the paused source: an orphan now
    running = [h for h in (service, other)
               if server['id'] in h.manager.servers.driver.list_instances()]
    assert running == [dest]


def test_restart_of_the_source_after_the_transfer_finishes_on_the_destination(
        service, other, compute, volumes, ctxt, backend, monkeypatch):
    root = helpers.make_volume(volumes, ctxt, backend)
    server = helpers.boot(compute, ctxt, root)
    hosts = {helpers.HOST: service, OTHER: other}
    source = hosts[server['host']]
    dest = other if source is service else service
    _moved_but_not_recorded(compute, server, source, dest, monkeypatch)

    source.manager.migrations.recover_interrupted(ADMIN)
    after = db_servers.server_get(server['id'])
    assert (after['task_state'], after['host']) == (None, dest.host)
    assert dest.manager.servers.driver.get_info(server['id']).state == 'running'
    assert server['id'] not in source.manager.servers.driver.list_instances()
    assert _attachments(root['id']) == [('attached', dest.host)]


def test_the_qemu_destination_gets_the_vmgenid_and_guest_files_the_guest_saw(tmp_path):
    """What the QEMU driver reads back from a running QEMU's command line (the
    destination must present the same machine, or the guest sees a new generation)."""
    from gridcentric_storage.virt import qemu_cmdline, qemu_migrate

    layout = qemu_cmdline.Layout(id='vm', name='vm', memory_mb=64, vcpus=1, accel='tcg')
    files = {'instance': str(tmp_path / 'fw-instance'),
             'user_data': str(tmp_path / 'a,b' / 'fw-user-data')}
    argv = qemu_cmdline.build_argv('qemu', layout, ram_path='/r', share=False,
                                   qmp_path='/q', console_path='/c', incoming=True,
                                   vmgenid='5c6f3b0e-1f6b-4a53-9d4a-0d4c8e6f7a10',
                                   fw_cfg_files=files)
    assert qemu_migrate._machine_files(argv) == (
        '5c6f3b0e-1f6b-4a53-9d4a-0d4c8e6f7a10',
        {'instance': 'fw-instance', 'user_data': 'fw-user-data'})
    assert qemu_migrate._tcp_uri('::1', 4444) == 'tcp:[::1]:4444'
