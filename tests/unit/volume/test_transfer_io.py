"""The kernel data path of volume streams (sendfile, splice, qemu-img map, qemu-nbd)
against real sockets, files and QEMU images, and through the API with a raw client."""

import os
import socket
import subprocess
import threading

import pytest

from gridcentric_storage.volume import transfer_io
from tests.fixtures.services import file_backend, wait_for

MiB = 1 << 20


def _payload(n: int) -> bytes:
    return os.urandom(n)


def _drain(sock: socket.socket, out: list[bytes]) -> threading.Thread:
    def run() -> None:
        while chunk := sock.recv(MiB):
            out.append(chunk)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_file_goes_to_a_socket_and_a_socket_to_a_file(tmp_path):
    data = _payload(5 * MiB + 123)
    (tmp_path / 'src').write_bytes(data)
    a, b = socket.socketpair()
    got: list[bytes] = []
    reader = _drain(b, got)
    with a, open(tmp_path / 'src', 'rb', buffering=0) as f:
        transfer_io.copy(f, a, len(data))
    reader.join()
    assert b''.join(got) == data

    # back: a prefix already read by someone else, then the rest from the socket
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: (a.sendall(data[100:]), a.close()))
    sender.start()
    progress = transfer_io.Progress()
    with b, open(tmp_path / 'dst', 'wb', buffering=0) as f:
        transfer_io.copy(b, f, len(data), prefix=data[:100], progress=progress)
    sender.join()
    assert (tmp_path / 'dst').read_bytes() == data
    assert progress.done == len(data)


def test_a_peer_that_stops_sending_times_out_and_one_that_leaves_is_reported(tmp_path):
    a, b = socket.socketpair()
    b.settimeout(0.2)
    a.sendall(b'x' * 1000)
    with a, b, open(tmp_path / 'dst', 'wb', buffering=0) as f:
        with pytest.raises(TimeoutError):
            transfer_io.copy(b, f, MiB)
    a, b = socket.socketpair()
    a.sendall(b'y' * 1000)
    a.close()
    with b, open(tmp_path / 'dst', 'wb', buffering=0) as f:
        with pytest.raises(transfer_io.PeerGone):
            transfer_io.copy(b, f, MiB)


def _qemu_io(path, *commands: str) -> None:
    argv = ['qemu-io', '-f', 'qcow2']
    for command in commands:
        argv += ['-c', command]
    subprocess.run([*argv, str(path)], check=True, capture_output=True)


def _raw_of(path) -> bytes:
    out = path.parent / (path.name + '.raw')
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', str(path), str(out)], check=True)
    return out.read_bytes()


def _send_extents(extents, size: int) -> bytes:
    a, b = socket.socketpair()
    got: list[bytes] = []
    reader = _drain(b, got)
    with a:
        transfer_io.send_extents(extents, a, size, transfer_io.Progress())
    reader.join()
    return b''.join(got)


def test_a_qcow2_chain_is_read_in_place_as_qemu_sees_it(tmp_path):
    base, top = tmp_path / 'base.qcow2', tmp_path / 'top.qcow2'
    subprocess.run(['qemu-img', 'create', '-f', 'qcow2', str(base), '64M'], check=True,
                   capture_output=True)
    _qemu_io(base, 'write -P 0x11 0 6M', 'write -P 0x22 40M 1M')
    subprocess.run(['qemu-img', 'create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2',
                    str(top)], check=True, capture_output=True)
    _qemu_io(top, 'write -P 0x33 2M 3M', 'write -z 40M 512k')
    extents = transfer_io.mapped_extents(str(top), 'qcow2')
    assert extents is not None
    assert _send_extents(extents, 64 * MiB) == _raw_of(top)


def test_compressed_clusters_are_left_to_qemu(tmp_path):
    plain, packed = tmp_path / 'plain.qcow2', tmp_path / 'packed.qcow2'
    subprocess.run(['qemu-img', 'create', '-f', 'qcow2', str(plain), '8M'], check=True,
                   capture_output=True)
    _qemu_io(plain, 'write -P 0x44 0 4M')
    subprocess.run(['qemu-img', 'convert', '-c', '-O', 'qcow2', str(plain), str(packed)],
                   check=True)
    assert transfer_io.mapped_extents(str(packed), 'qcow2') is None


# ---- through the API, as a client speaking HTTP on a plain socket

def _volume(cloud, backend) -> str:
    volume_id = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backend['id']}}).json()['volume']['id']
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume_id).json()['volume'][
        'status'] == 'available', what='the volume')
    return volume_id


def _response(sock: socket.socket) -> bytes:
    data = b''
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_expect_100_continue_is_answered_before_the_body_is_sent(cloud, tmp_path):
    """curl asks before a large body and would wait a second for an answer."""
    backend = file_backend(cloud, tmp_path / 'files')
    volume_id = _volume(cloud, backend)
    host, port = cloud.url[len('http://'):].rsplit(':', 1)
    data = _payload(3 * MiB)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(('PUT /v1/volumes/%s/data HTTP/1.1\r\nHost: %s:%s\r\n'
                      'X-Auth-Token: admin:admin\r\nContent-Type: application/octet-stream'
                      '\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n'
                      % (volume_id, host, port, len(data))).encode())
        assert sock.recv(25) == b'HTTP/1.1 100 Continue\r\n\r\n'
        sock.sendall(data)
        answer = _response(sock)
    assert answer.split(b'\r\n', 1)[0].endswith(b'200 OK')
    assert b'"bytes_written": %d' % len(data) in answer
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume_id).json()['volume'][
        'status'] == 'available', what='the volume')
    got = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    with got:
        assert got.status_code == 200
        assert int(got.headers['Content-Length']) == 1 << 30
        assert got.raw.read(len(data)) == data


def test_a_reader_that_leaves_mid_download_leaves_the_volume_as_it_was(cloud, tmp_path):
    backend = file_backend(cloud, tmp_path / 'files')
    volume_id = _volume(cloud, backend)
    response = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    assert response.raw.read(MiB) == bytes(MiB)
    response.close()

    def settled():
        volume = cloud.request('GET', '/v1/volumes/%s' % volume_id).json()['volume']
        return volume if volume['status'] == 'available' else None
    volume = wait_for(settled, what='the download to end')
    assert volume['status_reason'] is None
