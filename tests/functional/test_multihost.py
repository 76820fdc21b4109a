"""gridcentric-api and two gridcentric-compute processes over RabbitMQ and PostgreSQL.

Every component is the real one: the console scripts an operator runs, a
RabbitMQ broker and a PostgreSQL server started by tools/ (see .ci/run).
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid

import pytest
import requests
import sqlalchemy as sa

from gridcentric_storage.db import migration
from tests.conftest import require_service
from tests.fixtures.images import publish
from tests.fixtures.services import wait_for

BIN = os.path.dirname(sys.executable)


def _mounts_under(root: str) -> list[str]:
    """Mount points below ``root``, deepest first (/proc/self/mountinfo escapes
    blanks and the like as octal)."""
    with open('/proc/self/mountinfo') as f:
        points = [re.sub(r'\\([0-7]{3})', lambda m: chr(int(m.group(1), 8)),
                         line.split()[4]) for line in f]
    return sorted((p for p in points if p.startswith(root + os.sep)), reverse=True)


def _unmount_and_kill_under(root: str) -> None:
    """Lazily unmount every mount below ``root``, then SIGKILL every process whose
    command line names a path below it (rbd-fuse daemons, QEMUs)."""
    for point in _mounts_under(root):
        if subprocess.run(['fusermount', '-u', '-z', point], capture_output=True,
                          check=False).returncode:
            subprocess.run(['umount', '-l', point], capture_output=True, check=False)

    def stragglers() -> list[int]:
        pids = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            try:
                with open('/proc/%s/cmdline' % pid, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if int(pid) != os.getpid() and any(
                    (root + os.sep).encode() in arg for arg in argv):
                pids.append(int(pid))
        return pids
    for pid in stragglers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not stragglers(), timeout=30, interval=0.1,
             what='the processes of %s to end' % root)
    assert not _mounts_under(root), _mounts_under(root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_url():
    url = require_service('GC_TEST_PG_URL', 'PostgreSQL')
    name = 'gc_func_%s' % uuid.uuid4().hex[:8]
    admin = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    with admin.connect() as conn:
        conn.execute(sa.text('CREATE DATABASE %s' % name))
    yield url.rsplit('/', 1)[0] + '/' + name
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name))
    admin.dispose()


class Deployment:
    def __init__(self, tmp_path, pg_url: str, rabbit_url: str) -> None:
        self.tmp = tmp_path
        self.port = _free_port()
        self.procs: list[subprocess.Popen] = []
        self.common = tmp_path / 'gridcentric-storage.conf'
        # QMP sockets live under state_path: keep it short (108-byte unix paths).
        self.state = tempfile.mkdtemp(prefix='gc-', dir='/tmp')
        self.common.write_text(
            '[DEFAULT]\nstate_path = %s\ntransport_url = %s\n'
            'control_exchange = gc-%s\n'
            '[database]\nconnection = %s\n'
            '[api]\nauth_strategy = noauth\nlisten = 127.0.0.1\nport = %d\n'
            '[compute]\nreport_interval = 1\n'
            # one image store for all hosts, as an operator shares it (NFS...)
            '[image]\nstore_path = %s/images\n'
            % (self.state, rabbit_url, uuid.uuid4().hex[:8], pg_url, self.port, self.state))
        self.url = 'http://127.0.0.1:%d' % self.port

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([os.path.join(BIN, name), '--config-file', str(self.common),
                               *args], capture_output=True, text=True, timeout=120)

    def start(self, name: str, host: str | None = None) -> subprocess.Popen:
        args = [os.path.join(BIN, name), '--config-file', str(self.common)]
        if host:
            host_conf = self.tmp / ('%s.conf' % host)
            # Each host its own state directory, as on separate machines (a
            # second service on one state directory refuses to start).
            host_conf.write_text('[DEFAULT]\nhost = %s\nstate_path = %s/%s\n'
                                 % (host, self.state, host))
            args += ['--config-file', str(host_conf)]
        log = open(self.tmp / ('%s-%s.log' % (name, host or 'api')), 'w')
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start_two_hosts(self) -> None:
        """gridcentric-api, and gridcentric-compute on hosts compute-a and
        compute-b; returns when both computes are up and the API answers."""
        self.start('gridcentric-api')
        for host in ('compute-a', 'compute-b'):
            self.start('gridcentric-compute', host)
        wait_for(lambda: self.run('gridcentric-manage', 'service', 'list').stdout.count(' up ')
                 == 2, timeout=60, interval=0.5)
        wait_for(lambda: _get_ok(self, '/v1/backends'), timeout=30, interval=0.2)

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        # An rbd-fuse daemon outlives its service by design (a restart adopts it):
        # what the hosts mounted or started under their state goes with them, so a
        # failed run leaves no mount whose dead daemon hangs a later lsof or df.
        _unmount_and_kill_under(self.state)
        shutil.rmtree(self.state, ignore_errors=True)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop('headers', {})
        headers.setdefault('X-Auth-Token', 'admin:admin')
        return requests.request(method, self.url + path, timeout=30, headers=headers,
                                **kwargs)

    def logs(self) -> str:
        return '\n'.join('%s:\n%s' % (p.name, p.read_text()) for p in self.tmp.glob('*.log'))


@pytest.fixture
def deployment(tmp_path, pg_url):
    rabbit_url = require_service('GC_TEST_RABBIT_URL', 'RabbitMQ')
    dep = Deployment(tmp_path, pg_url, rabbit_url)
    synced = dep.run('gridcentric-manage', 'db', 'sync')
    assert synced.returncode == 0, synced.stderr
    assert dep.run('gridcentric-manage', 'db', 'version').stdout.strip() == migration.HEAD
    yield dep
    dep.stop()


def test_backends_on_two_hosts_are_used(deployment, tmp_path):
    dep = deployment
    dep.start_two_hosts()

    ids = {}
    for host in ('compute-a', 'compute-b'):
        path = tmp_path / ('store-' + host)
        response = dep.call('POST', '/v1/backends', json={'backend': {
            'name': 'file-' + host, 'driver': 'file', 'host': host,
            'options': {'path': str(path)}, 'tags': [host]}})
        assert response.status_code == 201, response.text + dep.logs()
        backend = response.json()['backend']
        assert backend['host'] == host and backend['status'] == 'up'
        ids[host] = backend['id']

    volumes = {}
    for host in ('compute-a', 'compute-b'):
        response = dep.call('POST', '/v1/volumes', json={'volume': {
            'size': 1, 'name': 'on-' + host, 'tags': [host]}})
        assert response.status_code == 202, response.text
        volumes[host] = response.json()['volume']['id']

    for host, volume_id in volumes.items():
        volume = wait_for(lambda v=volume_id: _status(dep, v, 'available'), timeout=60)
        assert volume['backend_id'] == ids[host]
        # each compute process wrote to its own backend's directory
        assert (tmp_path / ('store-' + host) / ('volume-' + volume_id)).exists()
        backend = dep.call('GET', '/v1/backends/%s' % ids[host]).json()['backend']
        assert backend['volume_count'] == 1 and backend['provisioned_capacity_gb'] == 1

    # a busy backend cannot be removed, an emptied one can
    busy = dep.call('DELETE', '/v1/backends/%s' % ids['compute-a'])
    assert busy.status_code == 409 and '1 volume' in busy.text
    assert dep.call('DELETE', '/v1/volumes/%s' % volumes['compute-a']).status_code == 202
    wait_for(lambda: dep.call('GET', '/v1/volumes/%s' % volumes['compute-a'])
             .status_code == 404, timeout=60)
    assert not (tmp_path / 'store-compute-a' / ('volume-' + volumes['compute-a'])).exists()
    assert dep.call('DELETE', '/v1/backends/%s' % ids['compute-a']).status_code == 204


def _get_ok(dep: Deployment, path: str) -> bool:
    try:
        return dep.call('GET', path).status_code == 200
    except requests.ConnectionError:
        return False


def _status(dep: Deployment, volume_id: str, wanted: str):
    volume = dep.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']
    assert volume['status'] in ('creating', wanted), volume
    return volume if volume['status'] == wanted else None


def test_interrupted_create_finished_at_restart(deployment, tmp_path):
    """A volume left 'creating' by a dead compute service is finished at its restart."""
    dep = deployment
    dep.start('gridcentric-api')
    compute = dep.start('gridcentric-compute', 'compute-a')
    wait_for(lambda: _get_ok(dep, '/v1/backends'), timeout=30, interval=0.2)
    wait_for(lambda: ' up ' in dep.run('gridcentric-manage', 'service', 'list').stdout,
             timeout=60, interval=0.5)
    response = dep.call('POST', '/v1/backends', json={'backend': {
        'name': 'slow', 'driver': 'file', 'options': {'path': str(tmp_path / 's')}}})
    assert response.status_code == 201, response.text
    compute.send_signal(signal.SIGKILL)
    compute.wait()
    volume = dep.call('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()['volume']
    assert dep.call('GET', '/v1/volumes/%s' % volume['id']).json()['volume'][
        'status'] == 'creating'
    dep.start('gridcentric-compute', 'compute-a')
    settled = wait_for(lambda: _settled(dep, volume['id']), timeout=60, interval=0.2)
    assert settled['status'] == 'available', settled
    assert (tmp_path / 's' / ('volume-' + volume['id'])).exists()


def _settled(dep: Deployment, volume_id: str):
    volume = dep.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']
    return volume if volume['status'] != 'creating' else None


def test_live_images_across_two_compute_services(deployment):
    """Bless and launch on compute-b, driven through the API over RabbitMQ."""
    from tests.fixtures import guest

    if guest.missing():
        pytest.skip(guest.missing())
    paths = guest.build_or_skip()
    dep = deployment
    dep.start_two_hosts()
    kernel, initrd = publish(dep.state, paths.kernel, paths.initrd)
    response = dep.call('POST', '/v1/servers', json={'server': {
        'name': 'template', 'memory_mb': 256, 'kernel': kernel,
        'initrd': initrd, 'cmdline': guest.CMDLINE,
        'availability_zone': 'nova:compute-b'}})
    assert response.status_code == 202, response.text
    source_id = response.json()['server']['id']

    def console(server_id):
        return dep.call('POST', '/v1/servers/%s/action' % server_id,
                        json={'os-getConsoleOutput': {}}).json().get('output', '')

    def active(server_id):
        server = dep.call('GET', '/v1/servers/%s' % server_id).json()['server']
        assert server['status'] != 'ERROR', server
        return server if server['status'] == 'ACTIVE' and not server['task_state'] else None

    assert wait_for(lambda: active(source_id), timeout=120)['host'] == 'compute-b'
    wait_for(lambda: len(guest.counters(console(source_id))) >= 3, timeout=180, interval=0.5)
    token = guest.boot_token(console(source_id))
    image = dep.call('POST', '/v2.1/servers/%s/action' % source_id,
                     json={'co_bless': {}}).json()[0]
    wait_for(lambda: dep.call('GET', '/v1/live-images/%s' % image['id'])
             .json()['live_image']['status'] == 'blessed', timeout=60)
    clone = dep.call('POST', '/v2.1/servers/%s/action' % image['id'],
                     json={'co_launch': {'num_instances': 2}}).json()[0]
    assert wait_for(lambda: active(clone['id']), timeout=120)['host'] == 'compute-b'
    wait_for(lambda: token in guest.tokens(console(clone['id'])), timeout=120, interval=0.5)
    for server in dep.call('GET', '/v1/servers').json()['servers']:
        dep.call('DELETE', '/v1/servers/%s' % server['id'])
    wait_for(lambda: dep.call('GET', '/v1/servers').json()['servers'] == [], timeout=60)
