"""qcow2 (and any format QEMU reads) as a raw byte range, through ``qemu-nbd``.

``qemu-nbd`` (QEMU's own qcow2 code) exports the image as raw NBD on a unix
socket in the scratch directory, and a small client of the NBD protocol's
fixed-newstyle handshake and simple replies (the subset ``qemu-nbd`` always
speaks) reads or writes it in 32 MiB requests whose payload is spliced
(``transfer_io``). Nothing as big as the volume is ever written to the
scratch directory.
"""

import contextlib
import os
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.volume.transfer_io import Pipe, Progress, splice

#: qemu-nbd refuses requests above 32 MiB (NBD_MAX_BUFFER_SIZE).
NBD_REQUEST = 32 << 20
#: Writes in flight to qemu-nbd, so it is never idle waiting for the next one.
NBD_WINDOW = 4
#: A unix socket path longer than this does not fit in sockaddr_un.
_SUN_PATH_MAX = 107


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise exception.NBDError(reason='qemu-nbd closed the connection')
        data += chunk
    return bytes(data)


class NBDClient:
    """The client end of one NBD connection to ``qemu-nbd`` (fixed newstyle)."""

    _REQUEST = struct.Struct('>IHHQQI')
    _REPLY = struct.Struct('>IIQ')
    READ, WRITE, DISC, FLUSH = 0, 1, 2, 3

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        magic, opt_magic, _flags = struct.unpack('>8s8sH', _recv_exact(sock, 18))
        if magic != b'NBDMAGIC' or opt_magic != b'IHAVEOPT':
            raise exception.NBDError(reason='not an NBD server')
        # fixed newstyle, no zero padding; the default export (name "")
        sock.sendall(struct.pack('>I', 1 | 2) + b'IHAVEOPT' + struct.pack('>II', 1, 0))
        self.size, _tflags = struct.unpack('>QH', _recv_exact(sock, 10))
        self._cookie = 0
        self._pending: set[int] = set()
        self.progress = Progress()
        self.server_pid = 0
        #: a request's payload broke off: the connection can only be dropped
        self.broken = False

    def _request(self, kind: int, offset: int, length: int) -> int:
        self._cookie += 1
        self.sock.sendall(self._REQUEST.pack(0x25609513, 0, kind, self._cookie, offset,
                                             length))
        return self._cookie

    def _reply(self) -> int:
        magic, error, cookie = self._REPLY.unpack(_recv_exact(self.sock, 16))
        if magic != 0x67446698:
            raise exception.NBDError(reason='unexpected NBD reply')
        if error:
            raise exception.NBDError(reason='qemu-nbd: %s' % os.strerror(error))
        return int(cookie)

    def read_to(self, dst: Any, offset: int, length: int) -> None:
        """Replies may come out of order: one read at a time keeps the stream's order."""
        pipe = Pipe()
        self.broken = True
        try:
            while length:
                n = min(length, NBD_REQUEST)
                self._request(self.READ, offset, n)
                self._reply()
                self._splice_from_server(dst, n, pipe)
                offset += n
                length -= n
        finally:
            pipe.close()
        self.broken = False

    def read_bytes(self, offset: int, length: int) -> bytes:
        self._request(self.READ, offset, length)
        self._reply()
        return _recv_exact(self.sock, length)

    def write_bytes(self, offset: int, data: bytes) -> None:
        self._await(0)
        self._request(self.WRITE, offset, len(data))
        self.sock.sendall(data)
        self._reply()

    def _splice_from_server(self, dst: Any, n: int, pipe: Pipe) -> None:
        timeouts = {dst.fileno(): dst.gettimeout()} if isinstance(dst, socket.socket) else {}
        splice(self.sock.fileno(), dst.fileno(), n, timeouts, pipe, self.progress)

    def write_from(self, src: Any, offset: int, length: int, prefix: bytes = b'') -> None:
        """Write ``length`` bytes taken from ``prefix`` then from ``src`` at ``offset``."""
        timeouts = {src.fileno(): src.gettimeout()} if isinstance(src, socket.socket) else {}
        pipe = Pipe()
        self.broken = True
        try:
            if prefix:
                self._await(0)
                self._pending.add(self._request(self.WRITE, offset, len(prefix)))
                self.sock.sendall(prefix)
                self.progress.done += len(prefix)
                offset += len(prefix)
                length -= len(prefix)
            while length > 0:
                n = min(length, NBD_REQUEST)
                self._await(NBD_WINDOW - 1)
                self._pending.add(self._request(self.WRITE, offset, n))
                splice(src.fileno(), self.sock.fileno(), n, timeouts, pipe, self.progress)
                offset += n
                length -= n
        finally:
            pipe.close()
        self.broken = False
        self._await(0)

    def _await(self, left: int) -> None:
        while len(self._pending) > left:
            self._pending.discard(self._reply())

    def flush(self) -> None:
        self._request(self.FLUSH, 0, 0)
        self._reply()

    def close(self) -> None:
        if not self.broken:
            with contextlib.suppress(OSError):
                self._request(self.DISC, 0, 0)
        self.sock.close()


def _socket_dir(scratch: str) -> str:
    # A deep state_path leaves no room for the name in sockaddr_un.
    if len(os.path.join(scratch, 'nbd-XXXXXXXX', 'sock')) <= _SUN_PATH_MAX:
        return tempfile.mkdtemp(prefix='nbd-', dir=scratch)
    return tempfile.mkdtemp(prefix='gc-nbd-')


@contextlib.contextmanager
def nbd_export(path: str, fmt: str, writable: bool, scratch: str,
               start_timeout: float = 30) -> Iterator[NBDClient]:
    """``qemu-nbd`` serving the image ``path`` as raw, and a client connected to it.

    The server takes only this one connection and exits when it closes, so
    an interrupted stream leaves no server behind.
    """
    os.makedirs(scratch, exist_ok=True)
    sockdir = _socket_dir(scratch)
    sock_path = os.path.join(sockdir, 'sock')
    argv = ['qemu-nbd', '--format', fmt, '--socket', sock_path, '--cache', 'writeback',
            *([] if writable else ['--read-only']), path]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    client = None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                sock.connect(sock_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                # qemu-nbd binds once the image is open; that takes milliseconds.
                if proc.poll() is not None or time.monotonic() > deadline:
                    sock.close()
                    raise exception.NBDError(reason='qemu-nbd did not start: %s' % _stderr(proc))
                time.sleep(0.01)
        client = NBDClient(sock)
        client.server_pid = proc.pid
        yield client
        if writable:
            client.flush()
    finally:
        if client is not None:
            client.close()
        try:
            proc.wait(timeout=start_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock_path)
        with contextlib.suppress(OSError):
            os.rmdir(sockdir)


def _stderr(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors='replace').strip()[-500:]
