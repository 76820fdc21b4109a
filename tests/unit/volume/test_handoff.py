"""A GET on the data server's own host: the API hands the client's socket to the data
server (one hop), and relays over HTTP whenever that server is not provably its own."""

import os
import socket

import pytest

from gridcentric_storage.volume import handoff, transfer_io
from tests.fixtures.services import file_backend, wait_for

MiB = 1 << 20
GiB = 1 << 30


def _volume(cloud, backend) -> str:
    volume_id = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backend['id']}}).json()['volume']['id']
    _settled(cloud, volume_id)
    return volume_id


def _settled(cloud, volume_id: str) -> dict:
    def settled():
        volume = cloud.request('GET', '/v1/volumes/%s' % volume_id).json()['volume']
        return volume if volume['status'] == 'available' else None
    return wait_for(settled, what='volume %s to be available' % volume_id)


def _filled(cloud, tmp_path) -> tuple[str, bytes]:
    volume_id = _volume(cloud, file_backend(cloud, tmp_path / 'files'))
    data = os.urandom(5 * MiB + 123)
    put = cloud.request('PUT', '/v1/volumes/%s/data' % volume_id, data=data,
                        headers={'Content-Type': 'application/octet-stream'})
    assert put.status_code == 200, put.text
    _settled(cloud, volume_id)
    return volume_id, data


def _download(cloud, volume_id: str) -> bytes:
    """The whole volume as a client on a plain socket reads it."""
    host, port = cloud.url[len('http://'):].rsplit(':', 1)
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(('GET /v1/volumes/%s/data HTTP/1.1\r\nHost: %s\r\n'
                      'X-Auth-Token: admin:admin\r\n\r\n' % (volume_id, host)).encode())
        reader = sock.makefile('rb')
        head = b''
        while not head.endswith(b'\r\n\r\n'):
            head += reader.readline()
        assert head.split(b'\r\n', 1)[0].endswith(b'200 OK'), head
        body = reader.read()
    assert b'Content-Length: %d' % GiB in head
    return body


def _no_relay(monkeypatch) -> None:
    def refused(*args, **kwargs):
        raise AssertionError('the stream was relayed over HTTP')
    monkeypatch.setattr(transfer_io, 'Download', refused)


def test_a_download_on_the_data_servers_host_is_handed_over_and_is_the_volume(
        cloud, tmp_path, monkeypatch):
    volume_id, data = _filled(cloud, tmp_path)
    _no_relay(monkeypatch)
    body = _download(cloud, volume_id)
    assert len(body) == GiB
    assert body[:len(data)] == data
    assert body[len(data):].count(0) == GiB - len(data)
    volume = _settled(cloud, volume_id)
    assert volume['status_reason'] is None


def test_a_client_that_hangs_up_mid_handover_leaves_the_volume_available(
        cloud, tmp_path, monkeypatch):
    volume_id, data = _filled(cloud, tmp_path)
    _no_relay(monkeypatch)
    response = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    assert response.raw.read(MiB) == data[:MiB]
    response.close()
    volume = _settled(cloud, volume_id)
    assert volume['status_reason'] is None
    transfers = cloud.compute.volumes.transfers
    wait_for(lambda: not transfers._transfers, what='the transfer to be dropped')
    # and the volume streams again
    again = cloud.request('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    with again:
        assert again.raw.read(len(data)) == data


def test_a_data_server_on_another_host_is_relayed_over_http(cloud, tmp_path, monkeypatch):
    """The owner's socket path names nothing here (another machine's state
    directory): the API relays, and the client sees the same bytes."""
    volume_id, data = _filled(cloud, tmp_path)
    transfers = cloud.compute.volumes.transfers
    monkeypatch.setattr(transfers._handoff, 'path', str(tmp_path / 'elsewhere.sock'))
    body = _download(cloud, volume_id)
    assert body[:len(data)] == data and len(body) == GiB
    assert _settled(cloud, volume_id)['status_reason'] is None


def test_a_socket_others_may_open_is_not_handed_a_client(tmp_path):
    path = str(tmp_path / 'open.sock')
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        os.chmod(path, 0o666)
        server.listen()
        with pytest.raises(handoff.NotLocal):
            handoff.LocalDownload(path, 'token', GiB)


def test_a_data_server_without_the_transfer_is_not_handed_a_client(tmp_path):
    """Another data server on this machine (the same path shape) does not hold
    the token: it says so and keeps nothing."""
    opened: list[str] = []

    def unknown(token: str):
        opened.append(token)
        return None
    listener = handoff.Listener(str(tmp_path / 'd.sock'), unknown, 5)
    listener.start()
    try:
        assert os.stat(listener.path).st_mode & 0o777 == 0o600
        with pytest.raises(handoff.NotLocal):
            handoff.LocalDownload(listener.path, 'not-its-token', GiB)
    finally:
        listener.stop()
    assert opened == ['not-its-token']
    assert not os.path.exists(listener.path)


def test_a_client_that_stops_reading_is_given_up_after_the_stall_timeout(tmp_path):
    """The handed-over socket blocks in the kernel (one sendfile per 16 MiB), so its
    stall bound is the kernel's send timeout: it must still fire."""
    source = tmp_path / 'data'
    source.write_bytes(os.urandom(32 * MiB))  # far more than the socket buffers hold
    settled: list[bool] = []

    class Body:
        def send_to(self, sock: socket.socket) -> None:
            with open(source, 'rb') as f:
                transfer_io.copy(f, sock, 32 * MiB)

        def close(self) -> None:
            settled.append(True)

    listener = handoff.Listener(str(tmp_path / 'd.sock'), lambda token: Body(), 0.5)
    listener.start()
    reader, handed = socket.socketpair()
    try:
        download = handoff.LocalDownload(listener.path, 'token', 32 * MiB)
        with reader, handed, pytest.raises(transfer_io.PeerGone, match='FAIL'):
            download.send_to(handed)  # nobody reads `reader`
        download.close()
    finally:
        listener.stop()
    assert settled == [True]
