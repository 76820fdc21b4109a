"""Moving a volume stream's bytes in the kernel: sendfile, splice, qemu-nbd.

A whole-volume stream crosses two HTTP hops (client -> API -> owner host's
data server) and, for qcow2, a format layer. Copying it through Python
buffers one MiB at a time ran at a few percent of ``dd``; here the bytes go
file -> socket with ``sendfile`` and socket -> socket / socket -> file
through a pipe with ``splice``, so Python only issues a few system calls per
MiB and never touches the data.

qcow2 is not a byte stream: ``qemu-nbd`` (QEMU's own qcow2 code) exports
the image as raw NBD on a unix socket in the scratch directory, and a small
client of the NBD protocol's fixed-newstyle handshake and simple replies
(the subset ``qemu-nbd`` always speaks) reads or writes it in 32 MiB
requests whose payload is spliced too. Nothing as big as the volume is
ever written to the scratch directory.

Sockets given here may carry a timeout (Python then keeps them
non-blocking): a peer that neither sends nor reads for that long raises
``TimeoutError``, as a plain ``recv``/``send`` would.
"""

import contextlib
import fcntl
import http.client
import json
import os
import select
import socket
import stat
import struct
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

from gridcentric_storage.common import exception, processutils

#: The largest pipe an unprivileged process may ask for by default
#: (/proc/sys/fs/pipe-max-size); a bigger pipe means fewer splice calls.
PIPE_SIZE = 1 << 20
#: qemu-nbd refuses requests above 32 MiB (NBD_MAX_BUFFER_SIZE).
NBD_REQUEST = 32 << 20
#: Writes in flight to qemu-nbd, so it is never idle waiting for the next one.
NBD_WINDOW = 4
#: A unix socket path longer than this does not fit in sockaddr_un.
_SUN_PATH_MAX = 107


class PeerGone(ConnectionError):
    """The other end closed before the promised number of bytes."""


class Progress:
    """Bytes moved so far, for the message of a stream that broke off."""

    def __init__(self) -> None:
        self.done = 0


def _wait(fd: int, events: int, timeout: float | None) -> None:
    poller = select.poll()
    poller.register(fd, events)
    if not poller.poll(None if timeout is None else int(timeout * 1000)):
        raise TimeoutError('no progress for %s s' % timeout)


def _is_seekable_file(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISREG(mode) or stat.S_ISBLK(mode)


def _sendfile(src: int, dst: int, count: int, timeout: float | None,
              progress: Progress, offset: int | None = None) -> None:
    """``offset``: where in ``src`` to start (None: its position, which moves)."""
    while count:
        try:
            sent = os.sendfile(dst, src, offset, min(count, 1 << 30))
        except BlockingIOError:
            _wait(dst, select.POLLOUT, timeout)
            continue
        if sent == 0:
            raise PeerGone('the source ended %d bytes early' % count)
        count -= sent
        progress.done += sent
        if offset is not None:
            offset += sent


class _Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # a smaller pipe only costs calls
            fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self.size = fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


def _splice(src: int, dst: int, count: int, timeouts: dict[int, float | None],
            pipe: _Pipe, progress: Progress) -> None:
    """Move ``count`` bytes from ``src`` to ``dst`` through ``pipe`` (left empty)."""
    while count:
        try:
            got = os.splice(src, pipe.w, min(count, pipe.size), flags=os.SPLICE_F_MOVE)
        except BlockingIOError:
            _wait(src, select.POLLIN, timeouts.get(src))
            continue
        if got == 0:
            raise PeerGone('the peer closed the stream %d bytes early' % count)
        count -= got
        while got:
            try:
                out = os.splice(pipe.r, dst, got, flags=os.SPLICE_F_MOVE)
            except BlockingIOError:
                _wait(dst, select.POLLOUT, timeouts.get(dst))
                continue
            got -= out
            progress.done += out


def copy(src: Any, dst: Any, count: int, prefix: bytes = b'',
         progress: Progress | None = None) -> None:
    """Move ``prefix`` then ``count - len(prefix)`` bytes from ``src`` to ``dst``.

    Both are objects with ``fileno()`` (files, block devices, sockets) at the
    position to read or write from; a socket's own timeout bounds each wait.
    """
    progress = Progress() if progress is None else progress
    timeouts = {f.fileno(): f.gettimeout() for f in (src, dst)
                if isinstance(f, socket.socket)}
    if prefix:
        _write_all(dst, prefix)
        count -= len(prefix)
        progress.done += len(prefix)
    if count <= 0:
        return
    if _is_seekable_file(src.fileno()) and isinstance(dst, socket.socket):
        _sendfile(src.fileno(), dst.fileno(), count, timeouts.get(dst.fileno()), progress)
        return
    pipe = _Pipe()
    try:
        _splice(src.fileno(), dst.fileno(), count, timeouts, pipe, progress)
    finally:
        pipe.close()


def _write_all(dst: Any, data: bytes) -> None:
    if isinstance(dst, socket.socket):
        dst.sendall(data)
    else:
        view = memoryview(data)
        while view:
            view = view[os.write(dst.fileno(), view):]


# ---- qcow2 and other formats: read in place, or through qemu-nbd

#: Bytes of the shared zero source: holes are sent from it, this much a call.
ZERO_SPAN = 8 << 20
Extent = tuple[int, int, str | None, int]  # start, length, file (None: zeros), offset


def mapped_extents(path: str, fmt: str) -> list[Extent] | None:
    """Where each byte of the image's raw view lives: a plain range of one
    file of its backing chain, or zeros (``qemu-img map``). None when some
    data is not stored plainly (compressed, encrypted, an external data
    file): then only QEMU can read it."""
    chain = json.loads(processutils.execute(
        ['qemu-img', 'info', '--backing-chain', '--output=json', '-f', fmt, path]))
    files = [path] + [layer.get('full-backing-filename') for layer in chain[:-1]]
    for layer in chain:
        specific = (layer.get('format-specific') or {}).get('data') or {}
        if layer.get('encrypted') or 'data-file' in specific:
            return None
    extents: list[Extent] = []
    for e in json.loads(processutils.execute(
            ['qemu-img', 'map', '--output=json', '-f', fmt, path])):
        if e.get('zero') and not e.get('data'):
            extents.append((e['start'], e['length'], None, 0))
        elif e.get('data') and 'offset' in e and files[e['depth']]:
            extents.append((e['start'], e['length'], files[e['depth']], e['offset']))
        else:
            return None
    return extents


def send_extents(extents: list[Extent], sock: socket.socket, size: int,
                 progress: Progress) -> None:
    """Send the first ``size`` bytes the extents describe with sendfile: data
    from the files' page cache, holes from one sparse in-memory file."""
    timeout = sock.gettimeout()
    fds: dict[str, int] = {}
    zeros = os.memfd_create('gc-zeros', os.MFD_CLOEXEC)
    try:
        os.ftruncate(zeros, ZERO_SPAN)
        for start, length, name, offset in extents:
            length = min(length, size - start)
            if length <= 0:
                break
            if name is None:
                while length:
                    n = min(length, ZERO_SPAN)
                    _sendfile(zeros, sock.fileno(), n, timeout, progress, 0)
                    length -= n
                continue
            if name not in fds:
                fds[name] = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            _sendfile(fds[name], sock.fileno(), length, timeout, progress, offset)
    finally:
        os.close(zeros)
        for fd in fds.values():
            os.close(fd)


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
        pipe = _Pipe()
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

    def _splice_from_server(self, dst: Any, n: int, pipe: _Pipe) -> None:
        timeouts = {dst.fileno(): dst.gettimeout()} if isinstance(dst, socket.socket) else {}
        _splice(self.sock.fileno(), dst.fileno(), n, timeouts, pipe, self.progress)

    def write_from(self, src: Any, offset: int, length: int, prefix: bytes = b'') -> None:
        """Write ``length`` bytes taken from ``prefix`` then from ``src`` at ``offset``."""
        timeouts = {src.fileno(): src.gettimeout()} if isinstance(src, socket.socket) else {}
        pipe = _Pipe()
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
                _splice(src.fileno(), self.sock.fileno(), n, timeouts, pipe, self.progress)
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


# ---- HTTP hop helpers


class Unbuffered:
    """A socket as ``http.client.HTTPResponse`` sees it, read without a buffer.

    The response head is then read a byte at a time (a few hundred bytes)
    and none of the body is pulled into a Python buffer: it stays in the
    socket for ``copy``.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> Any:
        return self.sock.makefile('rb', buffering=0)


def take_buffered(reader: Any, count: int) -> bytes:
    """The body bytes a BufferedReader over a socket has already read ahead of
    the request or response head (at most ``count``): the rest is then taken
    from the socket itself. Blocks only if nothing is held yet and the peer
    has not sent any body."""
    if count <= 0 or not hasattr(reader, 'peek'):
        return b''
    held = reader.peek(1)[:count]
    return bytes(reader.read(len(held)))


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != 'http' or parts.hostname is None:
        raise ValueError('not a data server URL: %r' % url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout), parts.path


class Download:
    """A GET on a data server, whose body is moved on with ``send_to`` (splice)
    or read in chunks; as a ``wsgi.file_wrapper`` object, it relays a volume."""

    def __init__(self, url: str, size: int, timeout: float) -> None:
        """``size``: the bytes to relay, when the server does not say."""
        self.conn, path = _connection(url, timeout)
        try:
            self.conn.request('GET', path)
            assert self.conn.sock is not None
            self.sock: socket.socket = self.conn.sock
            # No read-ahead buffer: the body stays in the socket for splice.
            self.response = http.client.HTTPResponse(
                Unbuffered(self.sock), method='GET')  # type: ignore[arg-type]
            self.response.begin()
        except Exception:
            self.conn.close()
            raise
        self.status = self.response.status
        self.length = int(self.response.getheader('Content-Length') or size)

    def send_to(self, sock: socket.socket) -> None:
        copy(self.sock, sock, self.length)

    def read(self, size: int = 1 << 20) -> bytes:
        return self.response.read(size)

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def upload(url: str, length: int, source: socket.socket | None, body: Any,
           timeout: float, expect_continue: bool = False) -> tuple[int, str]:
    """PUT ``length`` bytes of a request body to a data server: spliced from the
    client's socket ``source`` (first what ``body``, its buffered reader, read
    ahead), or read from ``body`` when the WSGI server gives no socket.
    Returns the data server's status and body text."""
    if source is not None and expect_continue:
        # curl sends "Expect: 100-continue" and holds the body back a second
        # for an answer wsgiref never gives: give it.
        source.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')
    conn, path = _connection(url, timeout)
    with contextlib.closing(conn):
        conn.putrequest('PUT', path)
        conn.putheader('Content-Length', str(length))
        conn.putheader('Content-Type', 'application/octet-stream')
        conn.endheaders()
        assert conn.sock is not None
        try:
            if source is None:
                left = length
                while left:
                    chunk = body.read(min(left, 1 << 20))
                    if not chunk:
                        raise PeerGone('the client ended the upload %d bytes early' % left)
                    conn.sock.sendall(chunk)
                    left -= len(chunk)
            else:
                copy(source, conn.sock, length, take_buffered(body, length))
        except OSError:
            # Either end may have gone: tell the data server no more is coming,
            # so it fails the upload and answers why, if it still can.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
        response = conn.getresponse()
        return response.status, response.read().decode(errors='replace')
