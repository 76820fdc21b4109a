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


def _serve(listener: socket.socket, garbled: int, cont: str = 'answer',
           release: threading.Event | None = None) -> None:
    """Answer sessions: the first ``garbled`` get a half-written event where the
    greeting belongs (what QEMU left buffered for a client that hung up).
    ``cont``: 'answer' it at once; 'resume' sends RESUME, then the answer only
    once ``release`` is set (a QEMU whose resumed guest holds its main loop);
    'refuse' answers with an error and no event."""
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
                reply: dict = {'return': {'status': 'running'}
                               if request['execute'] == 'query-status' else {}}
                if request['execute'] == 'cont' and cont == 'resume' and release:
                    conn.sendall(b'{"timestamp": {"seconds": 1, "microseconds": 0},'
                                 b' "event": "RESUME"}\r\n')
                    release.wait(30)
                elif request['execute'] == 'cont' and cont == 'refuse':
                    reply = {'error': {'class': 'GenericError',
                                       'desc': 'migration is not completed'}}
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


RELEASE = threading.Event()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A scripted QMP server; its param: how many garbled greetings, or
    ``(garbled, cont)`` (see :func:`_serve`)."""
    garbled, cont = request.param if isinstance(request.param, tuple) else (request.param,
                                                                            'answer')
    RELEASE.clear()
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, 'qmp.sock')
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        threading.Thread(target=_serve, args=(listener, garbled, cont, RELEASE),
                         daemon=True).start()
        yield path
        RELEASE.set()
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


@pytest.mark.parametrize('server', [(0, 'resume')], indirect=True)
def test_resume_returns_when_qemu_announces_the_vm_runs(server: str) -> None:
    """The server holds cont's answer until released: resume() must not wait for it."""
    with qmp.connect(server, timeout=5) as mon:
        mon.resume()()
        assert not RELEASE.is_set()
        RELEASE.set()
        assert mon.cmd('query-status') == {'status': 'running'}   # the session goes on


@pytest.mark.parametrize('server', [(0, 'refuse')], indirect=True)
def test_a_refused_resume_is_a_qmp_error(server: str) -> None:
    with qmp.connect(server, timeout=5) as mon:
        with pytest.raises(exception.QmpError, match='cont failed: migration is not completed'):
            mon.resume()()


@pytest.mark.parametrize('server', [0], indirect=True)
def test_a_command_sent_ahead_is_answered_when_asked(server: str) -> None:
    with qmp.connect(server, timeout=5) as mon:
        answer = mon.send('query-status')
        assert answer() == {'status': 'running'}
