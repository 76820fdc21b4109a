"""The compute half of a live volume migration, over RPC on a real compute host with the
fake virt driver: ``compute.rpcapi.migrate_server_volume`` answers once the server's
disk is on the destination's connection, raises (the disk untouched) when it cannot
be, and the host advertises that it can (``volume_mirror``)."""

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.compute import rpcapi
from gridcentric_storage.compute.service import capabilities
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.virt import base as virt
from gridcentric_storage.virt.fake import FakeVirtDriver
from gridcentric_storage.virt.qemu import QemuDriver
from tests.unit.compute import helpers

ADMIN = context.get_admin_context()
DESTINATION = {'driver_volume_type': 'local',
               'data': {'device_path': '/volumes/b2/volume-dest', 'format': 'qcow2'}}


@pytest.fixture
def attached(service, compute, volumes, ctxt, backend):
    """(server, data volume, its attachment) with the volume attached, throttled."""
    root = helpers.make_volume(volumes, ctxt, backend)
    server = compute.create_server(ctxt, {'name': 'vm', 'memory_mb': 128,
                                          'volume_id': root['id']})
    server = helpers.settled_server(server['id'])
    data = helpers.make_volume(volumes, ctxt, backend, size=3)
    compute.attach_volume(ctxt, server, data['id'], 'rw')
    assert helpers.settled_volume(data['id'])['status'] == 'in-use'
    [attachment] = db_attachments.attachment_get_all(volume_id=data['id'])
    service.manager.servers.driver.set_volume_qos(server['id'], data['id'],
                                                  {'total_iops_sec': 100})
    return server, data, attachment


def disk_of(hypervisor, server_id, volume_id):
    return next(d for d in hypervisor.disks(server_id) if d.volume_id == volume_id)


def test_the_disk_moves_onto_the_destination_and_keeps_its_limits(attached, hypervisor):
    server, data, attachment = attached
    rpcapi.ComputeAPI().migrate_server_volume(ADMIN, helpers.HOST, server['id'],
                                              attachment['id'], DESTINATION, size_gb=3)
    disk = disk_of(hypervisor, server['id'], data['id'])
    assert disk.connection_info['data']['device_path'] == '/volumes/b2/volume-dest'
    assert disk.connection_info['data']['qos_specs'] == {'total_iops_sec': 100}
    assert 'volume %s migrated live' % data['id'] in hypervisor.get_console_output(
        server['id'])


def test_a_destination_no_host_can_open_is_refused_and_the_disk_stays(attached,
                                                                       hypervisor):
    server, data, attachment = attached
    before = disk_of(hypervisor, server['id'], data['id']).connection_info
    with pytest.raises(exception.NotConnectable):
        rpcapi.ComputeAPI().migrate_server_volume(
            ADMIN, helpers.HOST, server['id'], attachment['id'],
            {'driver_volume_type': 'nfs', 'data': {}}, size_gb=3)
    assert disk_of(hypervisor, server['id'], data['id']).connection_info == before


def test_a_hypervisor_failure_reaches_the_caller_and_the_disk_stays(
        attached, hypervisor, monkeypatch):
    server, data, attachment = attached
    before = disk_of(hypervisor, server['id'], data['id']).connection_info

    def migrate_volume(instance_id: str, volume_id: str, disk: virt.Disk) -> None:
        raise exception.DriverError(reason='QEMU mirror failed: Input/output error')

    monkeypatch.setattr(hypervisor, 'migrate_volume', migrate_volume)
    with pytest.raises(exception.DriverError) as failed:
        rpcapi.ComputeAPI().migrate_server_volume(ADMIN, helpers.HOST, server['id'],
                                                  attachment['id'], DESTINATION)
    assert 'Input/output error' in failed.value.message
    assert disk_of(hypervisor, server['id'], data['id']).connection_info == before


def test_an_attachment_of_another_server_is_refused(attached, compute, ctxt, volumes,
                                                    backend):
    server, data, attachment = attached
    with pytest.raises(exception.Invalid):
        rpcapi.ComputeAPI().migrate_server_volume(ADMIN, helpers.HOST, 'other-server',
                                                  attachment['id'], DESTINATION)


def test_hosts_say_whether_their_hypervisor_can_mirror(service, tmp_path):
    [row] = [s for s in db.service_get_all() if s['host'] == helpers.HOST]
    assert row['capabilities']['volume_mirror'] is True          # the fake driver can
    qemu = QemuDriver(instances_path=str(tmp_path / 'i'), live_images_path=str(tmp_path / 'l'),
                      qemu_binary='gc-no-such-qemu')
    assert 'volume_mirror' not in capabilities(qemu)             # no hypervisor here

    class NoMirror(FakeVirtDriver):                  # a hypervisor that cannot mirror
        migrate_volume = virt.VirtDriver.migrate_volume

    assert 'volume_mirror' not in capabilities(NoMirror())
    with pytest.raises(exception.LiveMigrationNotSupported) as refused:
        NoMirror().migrate_volume('vm', 'vol', virt.Disk('vol', DESTINATION))
    assert refused.value.code == 409


def test_the_wait_grows_with_the_volume():
    assert rpcapi.mirror_timeout(1) < rpcapi.mirror_timeout(100)
    assert rpcapi.mirror_timeout(100) >= 100 * 1024 / 4        # 4 MiB/s
    assert rpcapi.mirror_timeout(None) >= rpcapi.mirror_timeout(50)
