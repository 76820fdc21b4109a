"""qmp.connect against a scripted QMP server on a unix socket (no QEMU needed)."""

import json
import os
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qmp

GREETING = {'QMP': {'version': {'qemu': {'major': 7, 'minor': 2, 'micro': 0},
                                'package': ''}, 'capabilities': []}}


def _serve(listener: socket.socket, garbled: int) -> None:
    """Answer sessions: the first ``garbled`` get a half-written event where the
    greeting belongs (what QEMU left buffered for a client that hung up)."""
    served = 0
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            if served < garbled:
                served += 1
                conn.sendall(b'{"timestamp": {"seconds": 1}, "event": "BLOCK_JOB_READY"}\r\n')
                continue
            conn.sendall(json.dumps(GREETING).encode() + b'\r\n')
            for request in _requests(conn):
                reply = {'return': {'status': 'running'}
                         if request['execute'] == 'query-status' else {}}
                if 'id' in request:
                    reply['id'] = request['id']
                conn.sendall(json.dumps(reply).encode() + b'\r\n')


def _requests(conn: socket.socket) -> Iterator[dict]:
    """The client's commands: JSON objects, not necessarily one per line."""
    decoder, buffered = json.JSONDecoder(), ''
    while data := conn.recv(4096):
        buffered += data.decode()
        while buffered.strip():
            try:
                request, end = decoder.raw_decode(buffered.lstrip())
            except ValueError:
                break
            buffered = buffered.lstrip()[end:]
            yield request


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, 'qmp.sock')
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        threading.Thread(target=_serve, args=(listener, request.param), daemon=True).start()
        yield path
        listener.close()


@pytest.mark.parametrize('server', [2], indirect=True)
def test_a_garbled_greeting_is_retried(server: str) -> None:
    with qmp.connect(server, timeout=5) as mon:
        assert mon.cmd('query-status') == {'status': 'running'}


@pytest.mark.parametrize('server', [100], indirect=True)
def test_greetings_that_stay_garbled_fail_with_the_cause(server: str) -> None:
    with pytest.raises(exception.QmpError, match='cannot reach QMP'):
        with qmp.connect(server, timeout=5):
            pass
