"""A compute service killed in the middle of a live volume migration (the guest's
disk being mirrored onto another backend), then started again.

`gridcentric-all-in-one` runs a real QEMU (TCG here) guest with a ``file`` volume
attached; the migration to a second backend is asked through the API and the
service is SIGKILLed while QEMU's mirror job copies (the test holds the guest's
QMP socket meanwhile, so the copy cannot be completed before the kill). QEMU
outlives the service, its job still running. What a user checks after the
restart: the volume is back ``in-use`` on its first backend with the migration
``error`` ("interrupted"), the same guest still runs and counts on its source
disk, QEMU runs no mirror job any more and holds nothing of the destination,
whose data is deleted.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import qemu_mirror, qmp
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.test_live_images_qemu import AllInOne

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

MiB = 1 << 20


@pytest.fixture
def aio(tmp_path: Any) -> Iterator[AllInOne]:
    deployment = AllInOne(tmp_path)
    deployment.start()
    try:
        yield deployment
        for server in deployment.call('GET', '/v1/servers').json().get('servers', []):
            deployment.call('DELETE', '/v1/servers/%s' % server['id'])
        wait_for(lambda: deployment.call('GET', '/v1/servers').json()['servers'] == [],
                 timeout=60, interval=0.5)
    finally:
        deployment.stop()


def backend(aio: AllInOne, path: Any, name: str) -> dict[str, Any]:
    response = aio.call('POST', '/v1/backends', json={'backend': {
        'name': name, 'driver': 'file', 'options': {'path': str(path)}}})
    assert response.status_code == 201, response.text
    return response.json()['backend']  # type: ignore[no-any-return]


def volume_of(aio: AllInOne, volume_id: str) -> dict[str, Any]:
    return aio.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']  # type: ignore


class Guest:
    def __init__(self, aio: AllInOne, server_id: str) -> None:
        self.aio, self.id = aio, server_id
        self.dir = os.path.join(aio.state, 'instances', server_id)

    def session(self) -> Any:
        return qemu_mirror.session(lambda: qmp.connect(os.path.join(self.dir, 'qmp.sock')))

    def cmd(self, name: str) -> Any:
        with self.session() as mon:
            return mon.cmd(name)

    def pid(self) -> int:
        with open(os.path.join(self.dir, 'pid')) as f:
            return int(f.read().split()[0])

    def open_files(self) -> list[str]:
        fds = '/proc/%d/fd' % self.pid()
        found = []
        for fd in os.listdir(fds):
            try:
                found.append(os.readlink(os.path.join(fds, fd)))
            except FileNotFoundError:
                continue
        return found

    def counter(self) -> int:
        found = guest.counters(self.aio.console(self.id))
        return found[-1][0] if found else -1


def test_a_mirror_cut_short_by_a_sigkill_is_cancelled_at_restart(aio: AllInOne,
                                                                  tmp_path: Any) -> None:
    one = backend(aio, tmp_path / 'one', 'one')
    two = backend(aio, tmp_path / 'two', 'two')
    volume = aio.call('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': one['id']}}).json()['volume']
    wait_for(lambda: volume_of(aio, volume['id'])['status'] == 'available', timeout=60)
    # real data, so that the copy takes a while
    uploaded = aio.call('PUT', '/v1/volumes/%s/data' % volume['id'],
                        data=os.urandom(64 * MiB))
    assert uploaded.status_code == 200, uploaded.text
    wait_for(lambda: volume_of(aio, volume['id'])['status'] == 'available', timeout=60)
    server = Guest(aio, aio.boot()['id'])
    attached = aio.call('POST', '/v1/servers/%s/os-volume_attachments' % server.id,
                        json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code == 202, attached.text
    wait_for(lambda: volume_of(aio, volume['id'])['status'] == 'in-use', timeout=60)
    pid = server.pid()

    moving = aio.call('POST', '/v1/volumes/%s/action' % volume['id'],
                      json={'migrate': {'backend': two['name']}})
    assert moving.status_code == 202, moving.text
    job = qemu_mirror.job_id(volume['id'])

    def kill_mid_copy() -> bool:
        # While this session is open the service cannot reach QEMU: no pivot.
        with server.session() as mon:
            jobs = [j for j in mon.cmd('query-jobs') if j['id'] == job]
            if jobs and jobs[0]['status'] in ('running', 'ready'):
                aio.kill()
                return True
        assert volume_of(aio, volume['id'])['status'] == 'migrating', \
            'the migration ended before the service could be killed mid-copy'
        return False
    wait_for(kill_mid_copy, timeout=60, interval=0.01, what='the mirror job')
    # QEMU outlives the service; its job goes on, onto the destination
    assert [j['id'] for j in server.cmd('query-jobs')] == [job]
    assert any(f.startswith(str(tmp_path / 'two')) for f in server.open_files())

    aio.start()
    settled = wait_for(lambda: volume_of(aio, volume['id'])['status'] != 'migrating'
                       and volume_of(aio, volume['id']), timeout=90)
    assert (settled['status'], settled['migration_status']) == ('in-use', 'error'), settled
    assert settled['backend_id'] == one['id']
    assert 'interrupted' in settled['status_reason']

    # the same guest, still running on its source, without the mirror
    assert server.pid() == pid
    assert server.cmd('query-status')['status'] == 'running'
    assert server.cmd('query-jobs') == []
    disks = [b['inserted'] for b in server.cmd('query-block') if b.get('inserted')]
    assert len(disks) == 1 and disks[0]['file'].startswith(str(tmp_path / 'one')), disks
    assert not [f for f in server.open_files() if f.startswith(str(tmp_path / 'two'))]
    wait_for(lambda: not [n for n in os.listdir(tmp_path / 'two')
                          if n.startswith('volume-')], 60, what='the destination deleted')
    counted = server.counter()
    wait_for(lambda: server.counter() > counted + 2, 60, 0.5, 'the guest to keep counting')
