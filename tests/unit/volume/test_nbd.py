"""qemu-nbd exports of qcow2 images and the NBD client that reads and writes them,
against real qemu-nbd processes and sockets."""

import os
import socket
import subprocess
import threading

import pytest

from gridcentric_storage.volume import nbd, transfer_io
from tests.unit.volume.test_transfer_io import _drain

MiB = 1 << 20


def _raw_of(path) -> bytes:
    out = path.parent / (path.name + '.raw')
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', str(path), str(out)], check=True)
    return out.read_bytes()


def test_qemu_nbd_writes_and_reads_a_qcow2_and_leaves_nothing(tmp_path):
    image = tmp_path / 'v.qcow2'
    subprocess.run(['qemu-img', 'create', '-f', 'qcow2', str(image), '80M'], check=True,
                   capture_output=True)
    data = os.urandom(70 * MiB + 4096)  # more than two NBD requests
    scratch = tmp_path / 'scratch'
    a, b = socket.socketpair()
    sender = threading.Thread(target=lambda: a.sendall(data[10:]))
    sender.start()
    with a, b, nbd.nbd_export(str(image), 'qcow2', True, str(scratch)) as client:
        assert client.size == 80 * MiB
        client.write_from(b, 0, len(data), prefix=data[:10])
    sender.join()
    assert _raw_of(image)[:len(data)] == data

    a, b = socket.socketpair()
    got: list[bytes] = []
    reader = _drain(b, got)
    with a, nbd.nbd_export(str(image), 'qcow2', False, str(scratch)) as client:
        client.read_to(a, 0, len(data))
        server = client.server_pid
    reader.join()
    assert b''.join(got) == data
    assert os.listdir(scratch) == []
    assert not os.path.exists('/proc/%d' % server)  # exited and reaped


def test_a_broken_upload_into_qemu_nbd_fails_cleanly(tmp_path):
    image = tmp_path / 'v.qcow2'
    subprocess.run(['qemu-img', 'create', '-f', 'qcow2', str(image), '8M'], check=True,
                   capture_output=True)
    a, b = socket.socketpair()
    a.sendall(b'z' * 4096)
    a.close()
    with b, pytest.raises(transfer_io.PeerGone):
        with nbd.nbd_export(str(image), 'qcow2', True, str(tmp_path / 's')) as client:
            client.write_from(b, 0, MiB)
    assert os.listdir(tmp_path / 's') == []
