"""Streamed launch: bless on one compute host, launch its clones on another.

Real components: gridcentric-api and two gridcentric-compute processes over
RabbitMQ and PostgreSQL (tests/functional/test_multihost.py's deployment), the
shared test Ceph (GC_TEST_CEPH_CONF), rbd-fuse and QEMU with the test guest.
The clone on the second host maps the published RAM through rbd-fuse; what it
fetched is read from the FUSE file's page-cache residency (util-linux fincore)
and printed, not asserted.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess

import pytest
import sqlalchemy as sa

from tests.conftest import require_service
from tests.fixtures import all_in_one
from tests.fixtures.ceph import rbd_cli, remove_published
from tests.fixtures.images import publish
from tests.fixtures.services import fresh_database, wait_for
from tests.functional.test_multihost import Deployment, _get_ok, pg_url  # noqa: F401

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _skip_reason() -> str | None:
    from tests.fixtures import guest

    if not shutil.which('rbd-fuse'):
        return 'rbd-fuse is not installed (apt-get install rbd-fuse)'
    if not os.path.exists('/dev/fuse'):
        return 'no /dev/fuse on this machine'
    return guest.missing()


@contextlib.contextmanager
def _deployed(tmp_path, db_url, ceph_conf):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.fixtures import guest

    paths = guest.build_or_skip()
    rabbit_url = require_service('GC_TEST_RABBIT_URL', 'RabbitMQ')
    dep = Deployment(tmp_path, db_url, rabbit_url)
    dep.ceph_conf = ceph_conf
    with open(dep.common, 'a') as f:
        f.write('[live_image_store]\nenabled = true\nceph_conf = %s\npool = rbd\n'
                'timeout = 20\n' % ceph_conf)
    synced = dep.run('gridcentric-manage', 'db', 'sync')
    assert synced.returncode == 0, synced.stderr
    dep.start_two_hosts()
    dep.kernel, dep.initrd = publish(dep.state, paths.kernel, paths.initrd)
    dep.pg_url = db_url
    try:
        yield dep
    finally:
        images = dep.call('GET', '/v1/live-images').json().get('live_images', [])
        for server in dep.call('GET', '/v1/servers').json().get('servers', []):
            dep.call('DELETE', '/v1/servers/%s' % server['id'])
        dep.stop()
        for image in images:  # what a failed test left in the shared Ceph
            remove_published(dep.ceph_conf, 'gc-live-%s' % image['id'])


@pytest.fixture(scope='module')
def deployment(tmp_path_factory):
    """One deployment for the module's tests (building one takes ~20 s). Each test
    leaves it empty (see ``stream``); the fault tests run last and check that
    the service recovered from what they broke."""
    conf = require_service('GC_TEST_CEPH_CONF', 'Ceph (tools/ceph.sh start)')
    server = require_service('GC_TEST_PG_URL', 'PostgreSQL')
    with fresh_database(server) as db_url, \
            _deployed(tmp_path_factory.mktemp('stream'), db_url, conf) as dep:
        yield dep


@pytest.fixture
def stream(deployment):
    """The shared deployment, emptied after the test (also when it failed)."""
    yield deployment
    all_in_one.empty(deployment)


def _console(dep, server_id):
    return dep.call('POST', '/v1/servers/%s/action' % server_id,
                    json={'os-getConsoleOutput': {}}).json().get('output', '')


def _server(dep, server_id):
    return dep.call('GET', '/v1/servers/%s' % server_id).json()['server']


def _active(dep, server_id):
    server = _server(dep, server_id)
    assert server['status'] != 'ERROR', server
    return server if server['status'] == 'ACTIVE' and not server['task_state'] else None


def _live_image(dep, live_image_id):
    return dep.call('GET', '/v1/live-images/%s' % live_image_id).json()['live_image']


def _counting_guest(dep, name):
    """The id of a test guest booted on compute-a, ACTIVE and counting."""
    from tests.fixtures import guest

    response = dep.call('POST', '/v1/servers', json={'server': {
        'name': name, 'memory_mb': 256, 'kernel': dep.kernel, 'initrd': dep.initrd,
        'cmdline': guest.CMDLINE, 'availability_zone': 'nova:compute-a'}})
    assert response.status_code == 202, response.text
    server_id = response.json()['server']['id']
    assert wait_for(lambda: _active(dep, server_id), timeout=120)['host'] == 'compute-a'
    wait_for(lambda: len(guest.counters(_console(dep, server_id))) >= 3, timeout=180,
             interval=0.5)
    return server_id


def _blessed_and_published(dep):
    """A guest on compute-a, blessed; returns (live image, boot token, counter at bless)."""
    from tests.fixtures import guest

    source_id = _counting_guest(dep, 'template')
    text = _console(dep, source_id)
    token, before = guest.boot_token(text), guest.counters(text)[-1][0]
    response = dep.call('POST', '/v1/live-images',
                        json={'live_image': {'server_id': source_id}})
    assert response.status_code == 202, response.text
    image_id = response.json()['live_image']['id']
    image = wait_for(lambda: (lambda i: i if i['status'] == 'blessed' and i[
        'publish_status'] in ('published', 'error') else None)(_live_image(dep, image_id)),
        timeout=120, interval=0.3)
    assert image['publish_status'] == 'published', image
    assert image['launch_anywhere'] is True
    dep.call('DELETE', '/v1/servers/%s' % source_id)
    wait_for(lambda: dep.call('GET', '/v1/servers/%s' % source_id).status_code == 404,
             timeout=60)
    return image, token, before


def _launch(dep, image_id, host):
    response = dep.call('POST', '/v1/live-images/%s/action' % image_id,
                        json={'launch': {'availability_zone': 'nova:%s' % host}})
    assert response.status_code == 202, response.text
    return response.json()['servers'][0]['id']


def _rbd(dep, *args):
    return rbd_cli(dep.ceph_conf, *args)


def _resident(path):
    """Bytes of ``path`` in the page cache (what the FUSE daemon fetched so far)."""
    out = subprocess.run(['fincore', '--bytes', '--noheadings', '--output', 'RES', path],
                         capture_output=True, text=True, timeout=30)
    return int(out.stdout.strip() or 0) if out.returncode == 0 else -1


def _fuse_pids(image_name):
    out = subprocess.run(['pgrep', '-f', '--', '-r %s ' % image_name], capture_output=True,
                         text=True)
    return [int(p) for p in out.stdout.split()]


def _qemu_running(server_id):
    return subprocess.run(['pgrep', '-f', server_id], capture_output=True).returncode == 0


def test_clone_on_another_host_maps_published_ram(stream):
    from tests.fixtures import guest

    dep = stream
    image, token, before = _blessed_and_published(dep)
    name = 'gc-live-%s' % image['id']
    info = _rbd(dep, 'snap', 'ls', 'rbd/%s' % name)
    assert info.returncode == 0 and 'published' in info.stdout, info.stderr

    clone_id = _launch(dep, image['id'], 'compute-b')
    assert wait_for(lambda: _active(dep, clone_id), timeout=120)['host'] == 'compute-b'
    # The clone's memory is the source's: its boot token, its counter going on.
    wait_for(lambda: token in guest.tokens(_console(dep, clone_id)), timeout=120,
             interval=0.5)
    # The counter goes on from where the source was, not from a fresh boot.
    first_counter = guest.counters(_console(dep, clone_id))[0][0]
    assert first_counter >= before
    wait_for(lambda: guest.counters(_console(dep, clone_id))[-1][0] > first_counter,
             timeout=60, interval=0.5)
    ram = os.path.join(dep.state, 'compute-b', 'live-image-store', 'mnt', image['id'], name)
    ram_size = os.stat(ram).st_size
    first = _resident(ram)
    print('\nremote clone 1: %d of %d bytes of guest RAM fetched (%.1f%%)'
          % (first, ram_size, 100.0 * first / ram_size))
    assert 0 < first < ram_size  # pages came on demand, not the whole RAM

    second_id = _launch(dep, image['id'], 'compute-b')
    wait_for(lambda: _active(dep, second_id), timeout=120)
    wait_for(lambda: token in guest.tokens(_console(dep, second_id)), timeout=120,
             interval=0.5)
    print('remote clone 2: %d more bytes fetched' % (_resident(ram) - first))
    assert len(_fuse_pids(name)) == 1  # one mount per host and live image

    # A published file of another size than recorded is refused before QEMU starts.
    engine = sa.create_engine(dep.pg_url)
    with engine.begin() as conn:
        location = conn.execute(sa.text('SELECT publish_location FROM live_images '
                                        'WHERE id = :id'), {'id': image['id']}).scalar()
        wrong = dict(location, ram_size=location['ram_size'] + 4096)
        conn.execute(sa.text('UPDATE live_images SET publish_location = '
                             'CAST(:loc AS JSON) WHERE id = :id'),
                     {'loc': json.dumps(wrong),
                      'id': image['id']})
    refused_id = _launch(dep, image['id'], 'compute-b')
    refused = wait_for(lambda: (lambda s: s if s['status'] == 'ERROR' else None)(
        _server(dep, refused_id)), timeout=60)
    assert 'not the %d published' % wrong['ram_size'] in refused['fault'], refused
    assert not _qemu_running(refused_id)
    with engine.begin() as conn:
        conn.execute(sa.text('UPDATE live_images SET publish_location = '
                             'CAST(:loc AS JSON) WHERE id = :id'),
                     {'loc': json.dumps(location), 'id': image['id']})
    engine.dispose()

    for server_id in (clone_id, second_id, refused_id):
        dep.call('DELETE', '/v1/servers/%s' % server_id)
    wait_for(lambda: dep.call('GET', '/v1/servers').json()['servers'] == [], timeout=60)
    assert dep.call('DELETE', '/v1/live-images/%s' % image['id']).status_code == 202
    wait_for(lambda: dep.call('GET', '/v1/live-images/%s' % image['id']).status_code == 404,
             timeout=60, interval=0.3)
    # Gone from Ceph and from host b: its mount, its daemon and its cache.
    assert _rbd(dep, 'info', 'rbd/%s' % name).returncode != 0
    assert _fuse_pids(name) == []
    store_b = os.path.join(dep.state, 'compute-b', 'live-image-store')
    assert not os.path.exists(os.path.join(store_b, 'mnt', image['id']))
    assert not os.path.exists(os.path.join(store_b, 'cache', image['id']))


def test_killed_fuse_daemon_fails_its_clones_and_mounts_again(stream):
    from tests.fixtures import guest

    dep = stream
    image, token, _ = _blessed_and_published(dep)
    name = 'gc-live-%s' % image['id']
    clone_id = _launch(dep, image['id'], 'compute-b')
    wait_for(lambda: _active(dep, clone_id), timeout=120)
    wait_for(lambda: token in guest.tokens(_console(dep, clone_id)), timeout=120,
             interval=0.5)
    [pid] = _fuse_pids(name)
    os.kill(pid, signal.SIGKILL)

    failed = wait_for(lambda: (lambda s: s if s['status'] == 'ERROR' else None)(
        _server(dep, clone_id)), timeout=60, interval=0.3)
    print('\nclone after its rbd-fuse was killed: %s: %s' % (failed['status'],
                                                            failed['fault']))
    assert 'rbd-fuse' in failed['fault']
    assert not _qemu_running(clone_id)  # nothing left behind
    # The service mounted again: a new clone there runs the source's memory.
    wait_for(lambda: [p for p in _fuse_pids(name) if p != pid], timeout=60, interval=0.3)
    again_id = _launch(dep, image['id'], 'compute-b')
    wait_for(lambda: _active(dep, again_id), timeout=120)
    wait_for(lambda: token in guest.tokens(_console(dep, again_id)), timeout=120,
             interval=0.5)

    for server_id in (clone_id, again_id):
        dep.call('DELETE', '/v1/servers/%s' % server_id)
    wait_for(lambda: dep.call('GET', '/v1/servers').json()['servers'] == [], timeout=60)
    dep.call('DELETE', '/v1/live-images/%s' % image['id'])
    wait_for(lambda: dep.call('GET', '/v1/live-images/%s' % image['id']).status_code == 404,
             timeout=60, interval=0.3)
    assert _fuse_pids(name) == []


def test_osd_stopped_during_remote_clone(request, tmp_path):
    """The guest freezes on an uncached page while the OSD is away and goes on
    after it returns. The OSD of the test Ceph stops for a while (as in
    test_rbd_driver), on the module's deployment; GC_TEST_CEPH_DIR names a
    private cluster instead (and a deployment of its own that uses it), for a
    machine where others use the test Ceph at the same time."""
    private = os.environ.get('GC_TEST_CEPH_DIR')
    if not private:
        dep = request.getfixturevalue('stream')
        _osd_stop_and_start(dep, os.path.dirname(dep.ceph_conf))
        return
    db_url = request.getfixturevalue('pg_url')
    with _deployed(tmp_path, db_url, os.path.join(private, 'ceph.conf')) as dep:
        _osd_stop_and_start(dep, private)


def _osd_stop_and_start(dep, ceph_dir):
    from tests.fixtures import guest

    image, token, _ = _blessed_and_published(dep)
    clone_id = _launch(dep, image['id'], 'compute-b')
    wait_for(lambda: _active(dep, clone_id), timeout=120)
    env = dict(os.environ, GC_CEPH_DIR=ceph_dir)
    tool = os.path.join(ROOT, 'tools', 'ceph.sh')
    subprocess.run([tool, 'stop-osd'], env=env, check=True, timeout=120)
    try:
        seen = len(guest.counters(_console(dep, clone_id)))
        # Cached pages keep it going; an uncached one waits for the OSD.
        try:
            wait_for(lambda: len(guest.counters(_console(dep, clone_id))) > seen + 10,
                     timeout=10, interval=0.5)
            print('\nwith the OSD away the clone went on counting (its pages were cached)')
        except TimeoutError:
            print('\nwith the OSD away the clone stalled after %d more counters'
                  % (len(guest.counters(_console(dep, clone_id))) - seen))
        print('clone with the OSD away: %s' % _server(dep, clone_id)['status'])
    finally:
        subprocess.run([tool, 'start-osd'], env=env, check=True, timeout=300)
    wait_for(lambda: len(guest.counters(_console(dep, clone_id))) > seen + 5, timeout=120,
             interval=0.5)
    server = _server(dep, clone_id)
    print('\nclone after the OSD came back: %s' % server['status'])
    assert server['status'] == 'ACTIVE'
    dep.call('DELETE', '/v1/servers/%s' % clone_id)
    wait_for(lambda: dep.call('GET', '/v1/servers').json()['servers'] == [], timeout=60)
    dep.call('DELETE', '/v1/live-images/%s' % image['id'])
