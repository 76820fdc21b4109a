"""Live migration of a running server between two compute processes.

Real components: gridcentric-api and two gridcentric-compute processes over
RabbitMQ and PostgreSQL (tests/functional/test_multihost.py's deployment), QEMU
with the test guest, whose console counts every ~0.2 s and re-prints its boot
token: a guest that kept running counts on from where it was with the same
token; a rebooted or restarted one would print a new token from 0. The clone
test adds the shared test Ceph (its live image published, mapped on the
destination through rbd-fuse).
"""

import os
import shutil

import pytest

from tests.conftest import require_service
from tests.fixtures.images import publish
from tests.fixtures.services import gc_api, wait_for
from tests.functional.test_multihost import Deployment, _get_ok, pg_url  # noqa: F401
from tests.functional.test_streamed_launch import (
    _active,
    _blessed_and_published,
    _console,
    _counting_guest,
    _deployed,
    _launch,
    _server,
)


@pytest.fixture
def two_hosts(tmp_path, pg_url):  # noqa: F811
    from tests.fixtures import guest

    reason = guest.missing()
    if reason:
        pytest.skip(reason)
    paths = guest.build_or_skip()
    rabbit_url = require_service('GC_TEST_RABBIT_URL', 'RabbitMQ')
    dep = Deployment(tmp_path, pg_url, rabbit_url)
    synced = dep.run('gridcentric-manage', 'db', 'sync')
    assert synced.returncode == 0, synced.stderr
    dep.start('gridcentric-api')
    dep.start('gridcentric-compute', 'compute-a')
    dep.start('gridcentric-compute', 'compute-b')
    wait_for(lambda: dep.run('gridcentric-manage', 'service', 'list').stdout.count(' up ')
             == 2, timeout=60, interval=0.5)
    wait_for(lambda: _get_ok(dep, '/v1/servers'), timeout=30, interval=0.2)
    dep.kernel, dep.initrd = publish(dep.state, paths.kernel, paths.initrd)
    try:
        yield dep
    finally:
        for server in dep.call('GET', '/v1/servers').json().get('servers', []):
            dep.call('DELETE', '/v1/servers/%s' % server['id'])
        for server in dep.call('GET', '/v1/servers').json().get('servers', []):
            wait_for(lambda s=server: dep.call('GET', '/v1/servers/%s' % s['id'])
                     .status_code == 404, timeout=60)
        dep.stop()


def _migrate(dep, server_id, dest=None):
    return dep.call('POST', '/v2.1/servers/%s/action' % server_id,
                    json={'co_migrate': {'dest': dest} if dest else None})


def _qemu_runs(dep, host, server_id):
    """Whether a QEMU process of ``host``'s instance directory of the server runs."""
    marker = os.path.join(dep.state, host, 'instances', server_id).encode()
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as f:
                if marker in f.read():
                    return True
        except OSError:
            continue
    return False


def _qemu_state(dep, host, server_id):
    """What ``host``'s QEMU of the server says of itself: run state, vCPUs, its log."""
    from gridcentric_storage.virt import qmp

    directory = os.path.join(dep.state, host, 'instances', server_id)
    seen = ['%s: QEMU runs: %s' % (host, _qemu_runs(dep, host, server_id))]
    try:
        with qmp.connect(os.path.join(directory, 'qmp.sock'), timeout=10) as mon:
            seen.append('status %s, migration %s' % (
                mon.cmd('query-status'), mon.cmd('query-migrate').get('status')))
            for command in ('info cpus', 'info registers', 'info irq', 'info pic'):
                seen.append(mon.cmd('human-monitor-command', **{'command-line': command}))
    except Exception as e:  # what we could not ask is part of the answer
        seen.append('QMP: %s' % e)
    try:
        with open(os.path.join(directory, 'qemu.log')) as f:
            seen.append('qemu.log: ' + f.read()[-2000:])
    except OSError as e:
        seen.append('qemu.log: %s' % e)
    return '\n'.join(seen)


def _counts_on(dep, server_id, token, before):
    """The guest counts past ``before`` with its boot token: it ran on, no reboot."""
    from tests.fixtures import guest

    try:
        wait_for(lambda: guest.counters(_console(dep, server_id))[-1][0] >= before + 5,
                 timeout=120, interval=0.5)
    except TimeoutError:
        # what the next look needs: where the guest stopped, and what the services said
        host = _server(dep, server_id)['host']
        raise AssertionError('no counter past %d: %s\n%s\n%s' % (
            before + 4, _console(dep, server_id)[-2000:], _qemu_state(dep, host, server_id),
            dep.logs()[-20000:])) from None
    text = _console(dep, server_id)
    numbers = [n for n, _ in guest.counters(text)]
    # Increasing throughout: no reboot (a line may be torn by a kernel message).
    assert numbers == sorted(set(numbers)) and numbers[-1] > before, numbers
    assert guest.boot_token(text) == token and guest.tokens(text) == {token}
    assert text.count('BOOT-TOKEN') == 1


def _moved(dep, server_id, host):
    server = wait_for(lambda: _active(dep, server_id), timeout=180, interval=0.3)
    assert (server['host'], server.get('fault')) == (host, None), server
    return server


def test_a_running_server_moves_between_hosts_and_counts_on(two_hosts, tmp_path):
    from tests.fixtures import guest

    dep = two_hosts
    server_id = _counting_guest(dep, 'mover')
    text = _console(dep, server_id)
    token, before = guest.boot_token(text), guest.counters(text)[-1][0]
    # Counting where it is right before the move: a guest stalled already would
    # otherwise look like one the move stalled.
    _counts_on(dep, server_id, token, before - 4)
    before = guest.counters(_console(dep, server_id))[-1][0]

    # The scheduler picks the only other host.
    moving = _migrate(dep, server_id)
    assert moving.status_code == 200, moving.text + dep.logs()
    _moved(dep, server_id, 'compute-b')
    _counts_on(dep, server_id, token, before)
    assert _qemu_runs(dep, 'compute-b', server_id)
    assert not _qemu_runs(dep, 'compute-a', server_id)
    assert not os.path.exists(os.path.join(dep.state, 'compute-a', 'instances', server_id))

    # And back, with the operator's client.
    back = gc_api(dep, 'cobalt-migrate', '--dest', 'compute-a', server_id)
    assert back.returncode == 0, back.stderr
    _moved(dep, server_id, 'compute-a')
    _counts_on(dep, server_id, token, guest.counters(_console(dep, server_id))[-1][0])
    assert not _qemu_runs(dep, 'compute-b', server_id)

    # A clone of a live image that is not published maps a file of compute-a only.
    response = dep.call('POST', '/v1/live-images', json={'live_image': {
        'server_id': server_id}})
    assert response.status_code == 202, response.text
    image_id = response.json()['live_image']['id']
    wait_for(lambda: dep.call('GET', '/v1/live-images/%s' % image_id).json()[
        'live_image']['status'] == 'blessed', timeout=120, interval=0.3)
    clone_id = _launch(dep, image_id, 'compute-a')
    wait_for(lambda: _active(dep, clone_id), timeout=120, interval=0.3)
    refused = _migrate(dep, clone_id, 'compute-b')
    assert refused.status_code == 400 and 'not published' in refused.text, refused.text
    assert _server(dep, clone_id)['host'] == 'compute-a'

    # A volume that is a file of compute-a cannot be opened on compute-b.
    backend = dep.call('POST', '/v1/backends', json={'backend': {
        'name': 'files-a', 'driver': 'file', 'host': 'compute-a',
        'options': {'path': str(tmp_path / 'files-a')}}})
    assert backend.status_code == 201, backend.text
    volume = dep.call('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()['volume']
    wait_for(lambda: dep.call('GET', '/v1/volumes/%s' % volume['id']).json()['volume'][
        'status'] == 'available', timeout=60, interval=0.3)
    attached = dep.call('POST', '/v1/servers/%s/os-volume_attachments' % server_id,
                        json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code in (200, 202), attached.text
    wait_for(lambda: dep.call('GET', '/v1/volumes/%s' % volume['id']).json()['volume'][
        'status'] == 'in-use', timeout=60, interval=0.3)
    refused = _migrate(dep, server_id, 'compute-b')
    assert refused.status_code == 400 and 'local file' in refused.text, refused.text
    assert _server(dep, server_id)['host'] == 'compute-a'
    assert _qemu_runs(dep, 'compute-a', server_id)


@pytest.fixture
def stream(tmp_path, pg_url):  # noqa: F811
    conf = require_service('GC_TEST_CEPH_CONF', 'Ceph (tools/ceph.sh start)')
    if not shutil.which('rbd-fuse'):
        pytest.skip('rbd-fuse is not installed')
    with _deployed(tmp_path, pg_url, conf) as dep:
        yield dep


def test_a_clone_of_a_published_live_image_moves_to_a_host_that_maps_it(stream):
    from tests.fixtures import guest

    dep = stream
    image, token, _ = _blessed_and_published(dep)
    clone_id = _launch(dep, image['id'], 'compute-a')   # the blessing host: its own files
    wait_for(lambda: _active(dep, clone_id), timeout=120, interval=0.3)
    wait_for(lambda: len(guest.counters(_console(dep, clone_id))) >= 3, timeout=120,
             interval=0.5)
    before = guest.counters(_console(dep, clone_id))[-1][0]

    moving = _migrate(dep, clone_id, 'compute-b')
    assert moving.status_code == 200, moving.text + dep.logs()
    _moved(dep, clone_id, 'compute-b')
    # The clone's memory is its own, its parent's token, counting on. Every 10th
    # counter re-prints the token; what the guest printed during the move is not
    # in the console, so wait for a token line there rather than a counter.
    wait_for(lambda: (lambda text: guest.tokens(text) and guest.counters(text)[-1][0]
                      >= before + 5)(_console(dep, clone_id)), timeout=120, interval=0.5)
    text = _console(dep, clone_id)
    assert guest.tokens(text) == {token}, text[-3000:]
    assert not _qemu_runs(dep, 'compute-a', clone_id)
    assert _qemu_runs(dep, 'compute-b', clone_id)
