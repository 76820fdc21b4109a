"""Blessing a Nova instance on a compute host, through the compute RPC (no hypervisor).

The API side's part is played here: it creates the live image row (status
``blessing``, ``server_id`` the Nova instance, ``host`` this host) and casts
``bless_nova_instance``. ``nova.bless.bless_domain`` is replaced by a fake
that leaves the files a real bless leaves, or fails like one.
"""

import os
import uuid
from typing import Any

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.common import states as st
from gridcentric_storage.compute import nova_live_images, rpcapi
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.nova import bless as nova_bless
from gridcentric_storage.nova import manifest
from tests.unit.compute import helpers

INSTANCE = '0b1f5c3e-52a4-4c2e-9d53-8c7d3c1a7e10'


class FakeBless:
    """Stands in for nova.bless: records calls, writes files, or raises ``error``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.resumed: list[tuple[str, str]] = []
        self.error: Exception | None = None

    def bless(self, instance_uuid: str, live_image_id: str, project_id: str,
              directory: str, timeout: float, checksum: bool,
              uri: str) -> manifest.NovaLiveImage:
        self.calls.append((instance_uuid, live_image_id, project_id, directory))
        if self.error:
            raise self.error
        os.makedirs(directory)
        files = {name: os.path.join(directory, name)
                 for name in ('ram', 'state', 'vda.qcow2', 'domain.xml')}
        for path in files.values():
            with open(path, 'wb') as f:
                f.write(b'x')
        made = manifest.NovaLiveImage(
            live_image_id=live_image_id, project_id=project_id,
            source_instance=instance_uuid, ram_path=files['ram'], ram_size=256 << 20,
            ram_block=nova_bless.RAM_BLOCK, state_path=files['state'],
            disks={'vda': files['vda.qcow2']}, domain_xml_path=files['domain.xml'],
            ram_sha256='ab' * 32)
        manifest.write(directory, made)
        return made

    def resume(self, instance_uuid: str, directory: str, uri: str) -> bool:
        self.resumed.append((instance_uuid, directory))
        return os.path.exists(os.path.join(directory, nova_bless.PAUSED_MARKER))


@pytest.fixture
def fake(service):
    fake = FakeBless()
    manager = service.manager.nova_live_images
    manager._bless, manager._resume = fake.bless, fake.resume
    return fake


def new_live_image(instance: str = INSTANCE, host: str = helpers.HOST,
                   **values: Any) -> dict[str, Any]:
    """The row the API side makes before it casts the bless."""
    return db_servers.live_image_create(dict({
        'id': str(uuid.uuid4()), 'name': 'gold', 'project_id': 'demo', 'user_id': 'u',
        'server_id': instance, 'host': host, 'status': st.LiveImageStatus.BLESSING,
        'memory_mb': 256, 'vcpus': 1,
        'nova_source': {'flavor_id': '1', 'image_id': 'img'}}, **values))


def cast_bless(live_image: dict[str, Any], instance: str = INSTANCE) -> dict[str, Any]:
    rpcapi.ComputeAPI().bless_nova_instance(helpers.member(), helpers.HOST,
                                            live_image['id'], instance)
    settled = helpers.settled_live_image(live_image['id'])
    assert settled is not None
    return settled


def live_images_dir(service) -> str:
    return service.manager.nova_live_images.root


def test_a_blessed_instance_has_its_files_and_artifacts_on_the_host(service, fake):
    image = cast_bless(new_live_image())

    assert (image['status'], image['status_reason']) == ('blessed', None)
    directory = os.path.join(live_images_dir(service), image['id'])
    assert fake.calls == [(INSTANCE, image['id'], 'demo', directory)]
    read = manifest.read(live_images_dir(service), image['id'])
    assert (read.source_instance, read.project_id) == (INSTANCE, 'demo')
    artifacts = image['artifacts']
    assert artifacts['directory'] == directory
    assert artifacts['extra']['kind'] == 'nova'
    assert artifacts['extra']['disks'] == {'vda': os.path.join(directory, 'vda.qcow2')}
    assert artifacts['memory_mb'] == 256


def test_the_live_images_root_is_the_virt_drivers_or_under_state_path(service, gc_conf):
    assert live_images_dir(service) == os.path.join(gc_conf.state_path, 'live-images')

    class Driver:
        live_images_path = '/srv/li'
    assert nova_live_images.live_images_root(Driver()) == '/srv/li'  # type: ignore[arg-type]


def test_a_refused_bless_ends_in_error_with_the_users_reason(service, fake):
    fake.error = exception.FileBackedMemoryRequired(id=INSTANCE)
    image = cast_bless(new_live_image())
    assert image['status'] == 'error'
    assert 'file_backed_memory' in image['status_reason']
    assert image['artifacts'] is None


def test_a_failure_names_no_host_path(service, fake):
    fake.error = OSError(28, 'No space left on device', '/var/lib/gc/live-images/x/ram')
    image = cast_bless(new_live_image())
    assert image['status'] == 'error'
    assert 'No space left on device' in image['status_reason']
    assert '/var/lib' not in image['status_reason']

    fake.error = RuntimeError('boom at /var/lib/libvirt/qemu/ram/1-x/pc.ram')
    image = cast_bless(new_live_image())
    assert image['status'] == 'error'
    assert '/var/lib' not in image['status_reason'] and 'RuntimeError' in image['status_reason']

    # libvirt's own words, quoted in our error, keep everything but the path
    fake.error = exception.DriverError(reason="libvirt: Cannot access storage file "
                                       "'/var/lib/nova/instances/x/disk': No such file")
    image = cast_bless(new_live_image())
    assert image['status_reason'] == ("Backend driver error: libvirt: Cannot access storage "
                                      "file '<path>': No such file")


def test_a_cast_for_another_instance_than_the_rows_is_refused(service, fake):
    image = cast_bless(new_live_image(), instance=str(uuid.uuid4()))
    assert image['status'] == 'error'
    assert 'another instance' in image['status_reason']
    assert fake.calls == []


def test_a_live_image_of_another_host_is_left_alone(service, fake):
    image = new_live_image(host='other-host')
    service.manager.nova_live_images.bless(helpers.member(), image['id'], INSTANCE)
    assert db_servers.live_image_get(image['id'])['status'] == 'blessing'
    assert fake.calls == []


def test_discard_removes_a_nova_live_images_directory(service, fake):
    image = cast_bless(new_live_image())
    directory = image['artifacts']['directory']
    assert os.path.isdir(directory)

    set_live_image(image['id'], st.LiveImageStatus.DISCARDING, st.LiveImageStatus.BLESSED)
    rpcapi.ComputeAPI().discard_live_image(helpers.member(), helpers.HOST, image['id'])
    assert helpers.settled_live_image(image['id']) is None
    assert not os.path.exists(directory)


def test_a_directory_outside_the_live_images_path_is_never_removed(tmp_path):
    outside = tmp_path / 'elsewhere' / 'li-1'
    outside.mkdir(parents=True)
    artifacts = nova_live_images.virt.LiveImageArtifacts(
        live_image_id='li-1', directory=str(outside), memory_path='', state_path='',
        memory_mb=1, vcpus=1)
    with pytest.raises(exception.DriverError):
        nova_live_images.remove_directory(str(tmp_path / 'live-images'), artifacts)
    assert outside.is_dir()


# ---- restart

def test_a_bless_cut_short_ends_in_error_and_resumes_the_instance_it_paused(service, fake):
    paused = new_live_image()
    untouched = new_live_image(instance=str(uuid.uuid4()))
    for image, marker in ((paused, True), (untouched, False)):
        directory = os.path.join(live_images_dir(service), image['id'])
        os.makedirs(directory)
        if marker:
            with open(os.path.join(directory, nova_bless.PAUSED_MARKER), 'w') as f:
                f.write(INSTANCE)

    service.manager.nova_live_images.recover_interrupted(context.get_admin_context())

    for image in (paused, untouched):
        row = db_servers.live_image_get(image['id'])
        assert row['status'] == 'error'
        assert row['status_reason'] == ('bless interrupted by a restart of the compute '
                                        'service')
        assert helpers.HOST not in row['status_reason']
        assert not os.path.exists(os.path.join(live_images_dir(service), image['id']))
    assert sorted(uuid for uuid, _ in fake.resumed) == sorted([INSTANCE,
                                                              untouched['server_id']])


def test_recovery_leaves_a_standalone_bless_to_its_own_manager(service, fake, compute, ctxt,
                                                              volumes, backend):
    root = helpers.make_volume(volumes, ctxt, backend, size=1, name='root')
    server = compute.create_server(ctxt, {'name': 'src', 'memory_mb': 256,
                                          'volume_id': root['id']})
    server = helpers.settled_server(server['id'])
    standalone = new_live_image(instance=server['id'], nova_source=None)

    service.manager.nova_live_images.recover_interrupted(context.get_admin_context())

    assert db_servers.live_image_get(standalone['id'])['status'] == 'blessing'
    assert fake.resumed == []


def test_a_restarted_compute_service_settles_an_interrupted_nova_bless(service):
    image = new_live_image(nova_source=None)      # told apart by its missing server row
    directory = os.path.join(live_images_dir(service), image['id'])
    os.makedirs(directory)
    service.stop()
    restarted = helpers.start_service()
    try:
        row = db_servers.live_image_get(image['id'])
        assert row['status'] == 'error'
        assert not os.path.exists(directory)
    finally:
        restarted.stop()
