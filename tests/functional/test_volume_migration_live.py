"""Live migration end to end: an attached volume of a running server moves to another
backend through the REST API (``{"migrate": {"backend": ...}}``) while its guest runs.

The API and a compute service run in this process (InProcessCloud) with the QEMU virt
driver (TCG here) and two ``file`` backends; the guest is tools/build-test-guest.sh's.
What a user checks: the volume goes ``migrating`` and back to ``in-use`` on the new
backend, the server never stopped (same QEMU process, ``running``, its console still
counting), the disk now is the new backend's file, and the data reads back the same.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import qmp
from tests.fixtures import guest
from tests.fixtures import qemu_cloud as qemu_cloud_fixture
from tests.fixtures.services import InProcessCloud, file_backend, wait_for
from tests.functional.test_volume_lifecycle import create_volume, download, settle, upload

MiB = 1 << 20
pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')


@pytest.fixture
def qemu_cloud(gc_db: Any) -> Iterator[InProcessCloud]:
    with qemu_cloud_fixture.running('gc-hB-') as cloud:
        yield cloud


def pattern(size: int = 3 * MiB) -> bytes:
    return b''.join(b'block %08d ' % i + os.urandom(4080) for i in range(size // 4096))


class Server:
    def __init__(self, cloud: InProcessCloud, state: str, server_id: str) -> None:
        self.cloud, self.id = cloud, server_id
        self.dir = os.path.join(state, 'instances', server_id)

    def qmp(self, name: str) -> Any:
        with qmp.connect(os.path.join(self.dir, 'qmp.sock')) as mon:
            return mon.cmd(name)

    def pid(self) -> int:
        with open(os.path.join(self.dir, 'pid')) as f:
            return int(f.read().split()[0])

    def counter(self) -> int:
        output = self.cloud.request('POST', '/v1/servers/%s/action' % self.id, json={
            'os-getConsoleOutput': {}}).json()['output']
        found = guest.counters(output)
        return found[-1][0] if found else -1

    def volume_file(self) -> str:
        """The file behind the server's one disk, as QEMU has it open."""
        disks = [b['inserted'] for b in self.qmp('query-block') if b.get('inserted')]
        assert len(disks) == 1, disks
        return str(disks[0]['file'])


def boot(cloud: InProcessCloud, state: str) -> Server:
    paths = guest.build()
    server = cloud.request('POST', '/v1/servers', json={'server': {
        'name': 'vm', 'memory_mb': 128, 'kernel': os.path.basename(paths.kernel),
        'initrd': os.path.basename(paths.initrd), 'cmdline': guest.CMDLINE}}).json()['server']
    wait_for(lambda: cloud.request('GET', '/v1/servers/%s' % server['id'])
             .json()['server']['status'] == 'ACTIVE', 120, what='the server ACTIVE')
    running = Server(cloud, state, server['id'])
    wait_for(lambda: running.counter() >= 2, 180, 0.5, 'the guest to count')
    return running


def test_an_attached_volume_moves_while_its_guest_runs(qemu_cloud: InProcessCloud,
                                                       tmp_path: Any) -> None:
    from oslo_config import cfg
    cloud, state = qemu_cloud, cfg.CONF.state_path
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'], name='data')
    data = pattern()
    upload(cloud, volume['id'], data)
    server = boot(cloud, state)
    attached = cloud.request('POST', '/v1/servers/%s/os-volume_attachments' % server.id,
                             json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code == 202, attached.text
    path = '/v1/volumes/%s' % volume['id']
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'in-use', 60)
    assert server.volume_file().startswith(str(tmp_path / 'one'))
    pid, counted = server.pid(), server.counter()

    response = cloud.request('POST', path + '/action',
                             json={'migrate': {'backend': two['name']}})
    assert response.status_code == 202, response.text
    assert cloud.request('GET', path).json()['volume']['status'] in ('migrating', 'in-use')
    moved = settle(cloud, 'volumes', volume['id'], away=('migrating',))
    assert moved['status'] == 'in-use', moved
    assert moved['migration_status'] == 'success' and moved['backend_id'] == two['id']

    # the same QEMU process, never stopped, now on the new backend's file
    assert server.pid() == pid
    assert server.qmp('query-status')['status'] == 'running'
    assert server.volume_file().startswith(str(tmp_path / 'two'))
    wait_for(lambda: server.counter() > counted + 2, 60, 0.5, 'the guest to keep counting')
    assert cloud.request('GET', '/v1/servers/%s' % server.id).json()['server'][
        'status'] == 'ACTIVE'
    wait_for(lambda: not [n for n in os.listdir(tmp_path / 'one')
                          if n.startswith('volume-')], 60, what='the source data deleted')

    # the data: read back once the server is gone and the volume is available again
    assert cloud.request('DELETE', '/v1/servers/%s' % server.id).status_code == 204
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'available',
             60, what='the volume available')
    assert download(cloud, volume['id'], len(data)) == data
