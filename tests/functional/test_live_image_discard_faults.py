"""Discard of a published live image while a host that maps it is down.

Real components, as tests/functional/test_streamed_launch.py has them: gridcentric-api
and two gridcentric-compute processes over RabbitMQ and PostgreSQL, the shared test
Ceph, rbd-fuse and QEMU with the test guest. A clone ran on host B, so host B
keeps the live image's RAM mounted (its rbd-fuse holds a watch on the RBD image);
then host B's service is SIGKILLed (its rbd-fuse, in a session of its own, lives
on) and the live image is discarded. What an operator checks: the discard completes
(the live image is gone, never ``error``), its RBD image is removed from Ceph, and
when host B starts again it unmounts the live image that no longer exists.
"""

import contextlib
import os
import re
import signal
import subprocess

import pytest

from tests.conftest import require_service
from tests.fixtures.ceph import rbd_cli, remove_published
from tests.fixtures.services import wait_for
from tests.functional.test_multihost import Deployment, pg_url  # noqa: F401
from tests.functional.test_streamed_launch import _skip_reason

HOST_A, HOST_B = 'gc-hr-a', 'gc-hr-b'
#: Seconds after its last heartbeat a service counts as down (the default is 60).
DOWN_TIME = 15


@pytest.fixture
def two_hosts(tmp_path, pg_url):  # noqa: F811
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.fixtures import guest
    from tests.fixtures.images import publish

    ceph_conf = require_service('GC_TEST_CEPH_CONF', 'Ceph (tools/ceph.sh start)')
    paths = guest.build_or_skip()
    dep = Deployment(tmp_path, pg_url, require_service('GC_TEST_RABBIT_URL', 'RabbitMQ'))
    dep.ceph_conf = ceph_conf
    text = dep.common.read_text().replace(
        '[compute]\n', '[compute]\nservice_down_time = %d\n' % DOWN_TIME, 1)
    dep.common.write_text(text + '[live_image_store]\nenabled = true\nceph_conf = %s\n'
                          'pool = rbd\ntimeout = 20\n' % ceph_conf)
    synced = dep.run('gridcentric-manage', 'db', 'sync')
    assert synced.returncode == 0, synced.stderr
    try:
        # host names of this test's own: RabbitMQ queues are named after the host,
        # so another deployment's compute-a would share (and eat) this one's casts
        dep.start('gridcentric-api')
        for host in (HOST_A, HOST_B):
            dep.start('gridcentric-compute', host)
        wait_for(lambda: _up_hosts(dep) == 2, timeout=180, interval=0.5,
                 what='both hosts up')
        dep.kernel, dep.initrd = publish(dep.state, paths.kernel, paths.initrd)
        yield dep
    finally:
        images = []
        with contextlib.suppress(Exception):   # the API may not have come up
            images = dep.call('GET', '/v1/live-images').json().get('live_images', [])
            for server in dep.call('GET', '/v1/servers').json().get('servers', []):
                dep.call('DELETE', '/v1/servers/%s' % server['id'])
        logs = dep.logs()
        print(logs[-20000:])               # shown when the test failed
        # a fenced daemon left running would hang the removal of its mount point
        found = subprocess.run(['pgrep', '-f', '--', 'rbd-fuse .*%s/' % dep.state],
                               capture_output=True, text=True)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        dep.stop()
        for image in images:  # what a failed test left in the shared Ceph
            remove_published(dep.ceph_conf, 'gc-live-%s' % image['id'])
        # the shared cluster: lift what the discard blocklisted
        for addr in set(re.findall(r'Blocklisting Ceph client (\S+):', logs)):
            subprocess.run(['ceph', '--conf', ceph_conf, 'osd', 'blocklist', 'rm', addr],
                           capture_output=True, timeout=60)


def _rbd(dep, *args):
    return rbd_cli(dep.ceph_conf, *args)


def _fuse_pids(image_name):
    out = subprocess.run(['pgrep', '-f', '--', '-r %s ' % image_name], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def _server(dep, server_id):
    server = dep.call('GET', '/v1/servers/%s' % server_id).json()['server']
    assert server['status'] != 'ERROR', server
    return server


def _active(dep, server_id):
    server = _server(dep, server_id)
    return server if server['status'] == 'ACTIVE' and not server['task_state'] else None


def _console(dep, server_id):
    return dep.call('POST', '/v1/servers/%s/action' % server_id,
                    json={'os-getConsoleOutput': {}}).json().get('output', '')


def _boot_and_publish(dep):
    """A guest on HOST_A, blessed and published, then deleted: (live image, token)."""
    from tests.fixtures import guest

    response = dep.call('POST', '/v1/servers', json={'server': {
        'name': 'template', 'memory_mb': 256, 'kernel': dep.kernel, 'initrd': dep.initrd,
        'cmdline': guest.CMDLINE, 'availability_zone': 'nova:%s' % HOST_A}})
    assert response.status_code == 202, response.text
    source_id = response.json()['server']['id']
    wait_for(lambda: _active(dep, source_id), timeout=180, what='the source ACTIVE')
    wait_for(lambda: len(guest.counters(_console(dep, source_id))) >= 3, timeout=180,
             interval=0.5, what='the source to count')
    token = guest.boot_token(_console(dep, source_id))
    response = dep.call('POST', '/v1/live-images',
                        json={'live_image': {'server_id': source_id}})
    assert response.status_code == 202, response.text
    image_id = response.json()['live_image']['id']

    def published():
        image = dep.call('GET', '/v1/live-images/%s' % image_id).json()['live_image']
        assert image['status'] != 'error' and image['publish_status'] != 'error', image
        return image if image['status'] == 'blessed' and image[
            'publish_status'] == 'published' else None
    image = wait_for(published, timeout=240, interval=0.5, what='the live image published')
    assert dep.call('DELETE', '/v1/servers/%s' % source_id).status_code == 204
    wait_for(lambda: dep.call('GET', '/v1/servers/%s' % source_id).status_code == 404,
             timeout=60, what='the source deleted')
    return image, token


def _up_hosts(dep: Deployment) -> int:
    return dep.run('gridcentric-manage', 'service', 'list').stdout.count(' up ')


def test_discard_completes_while_a_host_that_maps_it_is_down(two_hosts):
    from tests.fixtures import guest

    dep = two_hosts
    image, token = _boot_and_publish(dep)
    name = 'gc-live-%s' % image['id']
    response = dep.call('POST', '/v1/live-images/%s/action' % image['id'],
                        json={'launch': {'availability_zone': 'nova:%s' % HOST_B}})
    assert response.status_code == 202, response.text
    clone_id = response.json()['servers'][0]['id']
    wait_for(lambda: _active(dep, clone_id), timeout=180, what='the clone ACTIVE')
    wait_for(lambda: token in guest.tokens(_console(dep, clone_id)), timeout=120,
             interval=0.5, what='the clone resumed')
    dep.call('DELETE', '/v1/servers/%s' % clone_id)
    wait_for(lambda: dep.call('GET', '/v1/servers').json()['servers'] == [], timeout=60)
    [fuse] = _fuse_pids(name)          # host B keeps the image mapped

    compute_b = dep.procs[2]           # api, HOST_A, HOST_B
    compute_b.send_signal(signal.SIGKILL)
    compute_b.wait(timeout=30)
    assert _fuse_pids(name) == [fuse]  # the daemon outlives its service
    wait_for(lambda: _up_hosts(dep) == 1, timeout=DOWN_TIME + 30, interval=0.5,
             what='HOST_B seen down')

    assert dep.call('DELETE', '/v1/live-images/%s' % image['id']).status_code == 202

    def gone() -> bool:
        response = dep.call('GET', '/v1/live-images/%s' % image['id'])
        if response.status_code == 404:
            return True
        live_image = response.json()['live_image']
        assert live_image['status'] == 'discarding', live_image
        return False
    wait_for(gone, timeout=60, interval=0.3, what='the live image discarded')
    assert _rbd(dep, 'info', 'rbd/%s' % name).returncode != 0

    # host B comes back: the mount of a live image that is gone goes
    dep.start('gridcentric-compute', HOST_B)
    wait_for(lambda: _up_hosts(dep) == 2, timeout=180, interval=0.5, what='HOST_B up')
    wait_for(lambda: _fuse_pids(name) == [], timeout=60, interval=0.3,
             what='the rbd-fuse of the discarded live image stopped')
    store_b = os.path.join(dep.state, HOST_B, 'live-image-store')
    wait_for(lambda: not os.path.exists(os.path.join(store_b, 'mnt', image['id'])),
             timeout=30, interval=0.3, what='its mount point removed')
