"""One loopback hop instead of two for a volume GET served on the API's own host.

A GET of ``/v1/volumes/{id}/data`` normally crosses two TCP connections: the
data server sends the volume to the API, which splices it on to the client.
When the owner host's data server runs on the API's own machine (the
all-in-one, or an API host that is also a compute host), the API instead
hands the client's connected socket to the data server (``SCM_RIGHTS`` over
a unix socket), after writing the response head, and the data server
``sendfile``s the volume straight into it. The API's worker waits for the
data server's verdict, so its request accounting and the connection's close
stay where they were, and the transfer settles the volume exactly as an HTTP
GET does.

Which data server is "on this host" is decided by the filesystem only: the
unix socket path comes from the owner host's ``prepare_transfer`` answer
(never from the request), must be a socket owned by this user with no group
or other permissions, its peer must run as this user, and it must know the
transfer's one-time token; anything else and the API relays over HTTP as
before. The exchange on the unix socket, one line each::

    API -> data server:  <token>
    data server -> API:  OK            (the token is claimed) | NO
    API -> data server:  one byte carrying the client socket's fd
    data server -> API:  DONE | GONE   (the client left) | FAIL
"""

import contextlib
import logging
import os
import socket
import socketserver
import stat
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import Any, Protocol

from gridcentric_storage.common import wsgi_server
from gridcentric_storage.volume import transfer_io

LOG = logging.getLogger(__name__)
#: Seconds either side waits for the other's next line during the exchange
#: (not for the stream, whose stalls the data server's socket timeout bounds).
HANDSHAKE_TIMEOUT = 30.0
#: A unix socket path longer than this does not fit in sockaddr_un.
_SUN_PATH_MAX = 107
_UCRED = struct.Struct('3i')  # pid, uid, gid


class NotLocal(Exception):
    """No data server this process may hand a socket to at that path."""


class Body(Protocol):
    """What the data server streams into a handed-over socket: ``send_to`` settles
    the transfer, ``close`` settles it if ``send_to`` never ran."""

    def send_to(self, sock: socket.socket) -> None: ...

    def close(self) -> None: ...


def socket_path(directory: str, name: str) -> str:
    """Where a data server listens: ``directory/name``, or a fresh owner-only
    directory in the system's temporary directory when that does not fit in
    sockaddr_un."""
    path = os.path.join(directory, name)
    if len(path) <= _SUN_PATH_MAX:
        os.makedirs(directory, exist_ok=True)
        return path
    return os.path.join(tempfile.mkdtemp(prefix='gc-data-'), name)


def _readline(sock: socket.socket, limit: int = 256) -> bytes:
    line = b''
    while not line.endswith(b'\n'):
        got = sock.recv(1)
        if not got or len(line) >= limit:
            return b''
        line += got
    return line[:-1]


class _Server(wsgi_server.PromptShutdown, socketserver.ThreadingMixIn,
              socketserver.UnixStreamServer):
    daemon_threads = True
    opened: Callable[[str], Body | None]
    stall_timeout: float | None

    def server_bind(self) -> None:
        super().server_bind()
        # Before listen(): nobody can connect until only this user may.
        os.chmod(self.server_address, 0o600)  # type: ignore[arg-type]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        conn: socket.socket = self.request
        conn.settimeout(HANDSHAKE_TIMEOUT)
        body = self.server.opened(_readline(conn).decode(errors='replace'))
        if body is None:
            conn.sendall(b'NO\n')
            return
        try:
            conn.sendall(b'OK\n')
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1, 1)
            if not fds:
                return  # the API let go before its client's head was written
            with socket.socket(fileno=fds[0]) as client:
                if self.server.stall_timeout is None:
                    client.settimeout(None)
                else:
                    transfer_io.block_with_timeout(client, self.server.stall_timeout)
                try:
                    body.send_to(client)
                    verdict = b'DONE\n'
                except (BrokenPipeError, ConnectionResetError):
                    verdict = b'GONE\n'
                except Exception:  # noqa: BLE001 - logged and settled by the body
                    verdict = b'FAIL\n'
        finally:
            body.close()
        # settled before the API hears how it ended
        with contextlib.suppress(OSError):
            conn.sendall(verdict)


class Listener:
    """The data server's end: ``opened(token)`` claims a read transfer and returns
    its body, or None for a token it does not hold."""

    def __init__(self, path: str, opened: Callable[[str], Body | None],
                 stall_timeout: float | None) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a crash; the state directory is this service's
        self.path = path
        self._server = _Server(path, _Handler)
        self._server.opened = opened
        self._server.stall_timeout = stall_timeout
        self._thread = threading.Thread(
            target=self._server.serve_forever, name='gc-data-handoff', daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def _owned_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except OSError as e:
        raise NotLocal('%s: %s' % (path, e.strerror)) from e
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise NotLocal('%s is not an owner-only socket of this user' % path)


class LocalDownload:
    """The API's end: a claimed transfer whose bytes the data server on this host
    sends into the client's socket itself (``send_to``)."""

    status = 200

    def __init__(self, path: str, token: str, size: int) -> None:
        _owned_socket(path)
        self.length = size
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(HANDSHAKE_TIMEOUT)
            self.sock.connect(path)
            _pid, uid, _gid = _UCRED.unpack(self.sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
            if uid != os.geteuid():
                raise NotLocal('the server at %s runs as uid %d' % (path, uid))
            self.sock.sendall(token.encode() + b'\n')
            if _readline(self.sock) != b'OK':
                raise NotLocal('the data server at %s does not hold the transfer' % path)
        except BaseException:
            self.sock.close()
            raise

    def send_to(self, client: socket.socket) -> None:
        socket.send_fds(self.sock, [b'F'], [client.fileno()])
        # The stream may take hours: the data server bounds its stalls.
        self.sock.settimeout(None)
        verdict = _readline(self.sock)
        if verdict == b'GONE':
            raise ConnectionResetError('the client went away')
        if verdict != b'DONE':
            raise transfer_io.PeerGone('the data server ended the stream (%s)'
                                       % (verdict.decode(errors='replace') or 'closed'))

    def close(self) -> None:
        self.sock.close()


def open_download(transfer: dict[str, Any], environ: dict[str, Any],
                  timeout: float) -> 'LocalDownload | transfer_io.Download':
    """The GET of a prepared read transfer: handed to a data server on this host
    when there is one and the WSGI server exposes the client's socket
    (``socket_key`` in ``environ``), else relayed over HTTP."""
    path = transfer.get('handoff')
    if (path and environ.get(wsgi_server.SOCKET_KEY) is not None
            and environ.get('wsgi.file_wrapper') is not None):
        try:
            return LocalDownload(path, transfer['url'].rsplit('/', 1)[-1], transfer['size'])
        except (NotLocal, OSError) as e:
            LOG.debug('Relaying the stream: %s', e)
    return transfer_io.Download(transfer['url'], transfer['size'], timeout=timeout)
