"""Faults of a running installation: a second service on one state directory,
bursts of requests, streams cut off mid-way, deleted backends' directories."""

import os
import select
import signal
import socket
import subprocess
import sys
import threading

import pytest
import requests

from gridcentric_storage.common import wsgi_server
from gridcentric_storage.volume import transfer
from tests.fixtures.services import InProcessCloud, file_backend, wait_for

BIN = os.path.dirname(sys.executable)
GiB = 1 << 30
ADMIN = {'X-Auth-Token': 'admin:admin'}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def _config(tmp_path, name: str, port: int):
    path = tmp_path / name
    path.write_text('[DEFAULT]\nstate_path = %s\n[api]\nport = %d\n[compute]\n'
                    'virt_driver = fake\n' % (tmp_path / 'state', port))
    return path


# ---- one service per state directory

def test_second_service_on_one_state_directory_refuses_to_start(tmp_path):
    port = _free_port()
    url = 'http://127.0.0.1:%d' % port
    log = open(tmp_path / 'first.log', 'w')
    first = subprocess.Popen([os.path.join(BIN, 'gridcentric-all-in-one'), '--config-file',
                              str(_config(tmp_path, 'first.conf', port))],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        def up():
            try:
                return requests.get(url + '/v1/backends', timeout=5,
                                    headers=ADMIN).status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, timeout=60, interval=0.2, what='the first all-in-one')
        for command in ('gridcentric-all-in-one', 'gridcentric-compute'):
            second = subprocess.run(
                [os.path.join(BIN, command), '--config-file',
                 str(_config(tmp_path, 'second.conf', _free_port()))],
                capture_output=True, text=True, timeout=60)
            assert second.returncode == 1, (command, second.stdout, second.stderr)
            assert second.stderr.count('\n') == 1, second.stderr
            assert 'is in use by another service (pid %d)' % first.pid in second.stderr
            assert 'Traceback' not in second.stderr
            assert first.poll() is None  # the first one keeps running, untouched
            assert up()
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0, (tmp_path / 'first.log').read_text()
    # The lock dies with its holder: the next start works.
    again = subprocess.Popen([os.path.join(BIN, 'gridcentric-all-in-one'), '--config-file',
                              str(_config(tmp_path, 'again.conf', port))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(up, timeout=60, interval=0.2, what='the restarted all-in-one')
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=30) == 0


# ---- bursts of requests

def listen_drops() -> int:
    """The kernel's count of SYNs dropped because a listen queue was full."""
    with open('/proc/net/netstat') as f:
        lines = [line.split() for line in f if line.startswith('TcpExt:')]
    counters = dict(zip(lines[0][1:], lines[1][1:], strict=True))
    return int(counters['ListenDrops'])


def _burst(port: int, count: int, request: bytes) -> list[bytes]:
    """Open ``count`` connections at once; the first line of each answer."""
    sockets = []
    for _ in range(count):  # one thread, no pause: the SYNs arrive together
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(('127.0.0.1', port))
        sockets.append(sock)
    pending = list(sockets)
    while pending:
        _, writable, _ = select.select([], pending, [], 30)
        assert writable, 'connections still pending after 30 s'
        pending = [s for s in pending if s not in writable]
    answers = []
    for sock in sockets:
        sock.setblocking(True)
        sock.settimeout(60)
        sock.sendall(request)
    for sock in sockets:
        with sock, sock.makefile('rb') as f:
            answers.append(f.readline().strip())
    return answers


def test_a_burst_of_100_requests_is_answered(cloud):
    """With a listen backlog of 5, most of a burst's SYNs were dropped and had
    to be retransmitted (after 1 s, 3 s, 7 s...), so clients timed out or were
    reset; now the kernel queues them all at once and every one is answered."""
    port = int(cloud.url.rsplit(':', 1)[1])
    drops = listen_drops()
    answers = _burst(port, 100, b'GET /v1/backends HTTP/1.0\r\n'
                     b'X-Auth-Token: admin:admin\r\n\r\n')
    assert answers == [b'HTTP/1.0 200 OK'] * 100
    # Not one SYN of the burst was dropped (and retried a second later).
    assert listen_drops() == drops


def test_requests_beyond_the_thread_pool_wait_for_a_free_thread():
    lock = threading.Lock()
    running = [0, 0]  # now, most at once
    gate = threading.Event()

    def app(environ, start_response):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        gate.wait(30)
        with lock:
            running[0] -= 1
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok']

    server = wsgi_server.WSGIService(app, '127.0.0.1', 0, threads=4, backlog=64)
    server.start()
    try:
        results: list = []
        clients = [threading.Thread(target=lambda: results.append(requests.get(
            'http://127.0.0.1:%d/' % server.port, timeout=30).status_code))
            for _ in range(20)]
        for client in clients:
            client.start()
        wait_for(lambda: running[0] == 4, timeout=10, what='4 requests running')
        gate.set()
        for client in clients:
            client.join()
        assert results == [200] * 20
        assert running[1] == 4
    finally:
        gate.set()
        server.stop()


# ---- streams cut off mid-way leave no temporary copy

@pytest.fixture
def qcow2_volume(cloud, tmp_path):
    """A 1 GiB volume on a file backend in qcow2 mode: its streams go through qemu-nbd."""
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'files', 'driver': 'file',
        'options': {'path': str(tmp_path / 'files'), 'cow_mode': 'qcow2'}}})
    assert response.status_code == 201, response.text
    volume = cloud.request('POST', '/v1/volumes',
                           json={'volume': {'size': 1}}).json()['volume']
    wait_for(lambda: _volume(cloud, volume['id'])['status'] == 'available',
             what='the volume')
    return volume['id']


def _volume(cloud, volume_id):
    return cloud.request('GET', '/v1/volumes/%s' % volume_id).json()['volume']


def _start_upload(cloud, volume_id) -> socket.socket:
    """PUT 4 MiB of a 1 GiB body straight to the data server, then stop sending."""
    url = cloud.compute.volumes.transfers.prepare(volume_id, 'write')['url']
    hostport, path = url[len('http://'):].split('/', 1)
    host, port = hostport.rsplit(':', 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(('PUT /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n'
                  % (path, hostport, GiB)).encode())
    sock.sendall(b'x' * (4 << 20))
    return sock


def _scratch(tmp_path) -> list:
    scratch = tmp_path / 'tmp'
    return sorted(os.listdir(scratch)) if scratch.exists() else []


def _failed(cloud, volume_id):
    volume = _volume(cloud, volume_id)
    return volume if volume['status'] == 'error' else None


def test_a_disconnected_upload_removes_its_scratch_files(cloud, qcow2_volume, tmp_path):
    sock = _start_upload(cloud, qcow2_volume)
    wait_for(lambda: _scratch(tmp_path), what="the upload's qemu-nbd socket")
    sock.close()
    volume = wait_for(lambda: _failed(cloud, qcow2_volume), what='the upload to fail')
    assert 'upload failed after' in volume['status_reason']
    assert _scratch(tmp_path) == []


@pytest.fixture
def impatient_cloud(gc_db, monkeypatch):
    """A cloud whose data server gives up on a silent peer after 1 s."""
    monkeypatch.setattr(transfer, 'STALL_TIMEOUT', 1.0)
    instance = InProcessCloud()
    yield instance
    instance.stop()


def test_a_stalled_upload_removes_its_scratch_files(impatient_cloud, tmp_path):
    """A peer that vanishes without closing (host down) sends no FIN: before,
    the worker, its qemu-nbd and the scratch files were held for ever."""
    cloud = impatient_cloud
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'files', 'driver': 'file',
        'options': {'path': str(tmp_path / 'files'), 'cow_mode': 'qcow2'}}})
    assert response.status_code == 201, response.text
    volume_id = cloud.request('POST', '/v1/volumes',
                              json={'volume': {'size': 1}}).json()['volume']['id']
    wait_for(lambda: _volume(cloud, volume_id)['status'] == 'available', what='the volume')
    sock = _start_upload(cloud, volume_id)
    try:
        volume = wait_for(lambda: _failed(cloud, volume_id), what='the upload to time out')
        assert 'upload failed after' in volume['status_reason']
        assert _scratch(tmp_path) == []
    finally:
        sock.close()


def test_leftover_copies_are_removed_at_start(gc_db, tmp_path):
    """What a stop or crash left in <state_path>/tmp is gone before the service serves."""
    (tmp_path / 'tmp' / 'tmpk3j2h1').mkdir(parents=True)
    (tmp_path / 'tmp' / 'tmpk3j2h1' / 'raw').write_bytes(b'\0' * 4096)
    (tmp_path / 'tmp' / 'stray.part').write_bytes(b'x')
    cloud = InProcessCloud()
    try:
        assert _scratch(tmp_path) == []
    finally:
        cloud.stop()


# ---- a deleted backend takes along the directory the service made for it

def _delete_backend(cloud, backend):
    assert cloud.request('DELETE', '/v1/backends/%s' % backend['id']).status_code == 204


def test_deleting_a_backend_removes_the_directory_it_created(cloud, tmp_path):
    made = file_backend(cloud, tmp_path / 'new' / 'made', name='made')
    assert (tmp_path / 'new' / 'made').is_dir()
    _delete_backend(cloud, made)
    assert not (tmp_path / 'new' / 'made').exists()
    assert (tmp_path / 'new').is_dir()  # a parent may be shared: only the leaf is ours


def test_deleting_a_backend_keeps_the_operators_directory(cloud, tmp_path):
    existing = tmp_path / 'srv-fast'
    existing.mkdir()
    (existing / 'notes.txt').write_text('the operator\'s own file\n')
    backend = file_backend(cloud, existing, name='fast')
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()
    wait_for(lambda: _volume(cloud, volume['volume']['id'])['status'] == 'available',
             what='the volume')
    assert cloud.request('DELETE', '/v1/volumes/%s' % volume['volume']['id']
                         ).status_code == 202
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['volume']['id']
                                   ).status_code == 404, what='the volume to go')
    _delete_backend(cloud, backend)
    assert sorted(os.listdir(existing)) == ['notes.txt']


def test_a_default_backend_directory_goes_with_its_backend(cloud, tmp_path):
    """Without a path the file driver uses <state_path>/volumes/<backend id>."""
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'plain', 'driver': 'file'}})
    assert response.status_code == 201, response.text
    backend = response.json()['backend']
    directory = tmp_path / 'volumes' / backend['id']
    assert directory.is_dir()
    _delete_backend(cloud, backend)
    assert not directory.exists()
