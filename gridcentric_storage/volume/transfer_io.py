"""Moving a volume stream's bytes in the kernel: sendfile and splice.

A whole-volume stream crosses one or two HTTP hops (client -> API -> owner
host's data server; one when the API hands the client's socket to a data
server on its own host, ``handoff``) and, for qcow2, a format layer
(``qemu-img map`` here, ``qemu-nbd`` in ``nbd``). Copying it through Python
buffers one MiB at a time ran at a few percent of ``dd``; here the bytes go
file -> socket with ``sendfile`` and socket -> socket / socket -> file
through a pipe with ``splice``, so Python only issues a few system calls per
pipe-full and never touches the data.

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
import urllib.parse
from typing import Any

from gridcentric_storage.common import processutils

#: A bigger pipe means fewer splice calls; above /proc/sys/fs/pipe-max-size
#: (1 MiB by default) only a privileged process gets it, others get that size.
PIPE_SIZES = (8 << 20, 1 << 20)


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
    """``offset``: where in ``src`` to start (None: its position, which moves).

    The kernel's own readahead serves cold files best here: asking ahead with
    POSIX_FADV_WILLNEED (32 MiB to all of it) made cold reads 2-3x slower."""
    while count:
        try:
            sent = os.sendfile(dst, src, offset, min(count, 1 << 30))
        except BlockingIOError:
            if timeout is None:  # a blocking socket's SO_SNDTIMEO ran out
                raise TimeoutError('no progress for the socket\'s send timeout') from None
            _wait(dst, select.POLLOUT, timeout)
            continue
        if sent == 0:
            raise PeerGone('the source ended %d bytes early' % count)
        count -= sent
        progress.done += sent
        if offset is not None:
            offset += sent


def block_with_timeout(sock: socket.socket, timeout: float) -> None:
    """Make ``sock`` blocking, its sends bounded by the kernel (``SO_SNDTIMEO``):
    one sendfile then moves the whole stream without waking this process at
    every free socket buffer (a Python timeout keeps the socket non-blocking,
    and each wakeup waits for the GIL of a busy service)."""
    sock.settimeout(None)
    seconds = int(timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack('ll', seconds, int((timeout - seconds) * 1e6)))


class Pipe:
    def __init__(self) -> None:
        self.r, self.w = os.pipe2(os.O_CLOEXEC)
        for size in PIPE_SIZES:
            try:
                fcntl.fcntl(self.w, fcntl.F_SETPIPE_SZ, size)
                break
            except OSError:  # a smaller pipe only costs calls
                continue
        self.size = fcntl.fcntl(self.w, fcntl.F_GETPIPE_SZ)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


def _blocked(fd: int, events: int, timeouts: dict[int, float | None]) -> None:
    """Wait until ``fd`` is ready again; a blocking socket (timeout None) only
    stops short when its kernel timeout (``SO_SNDTIMEO``/``SO_RCVTIMEO``) ran out."""
    if fd in timeouts and timeouts[fd] is None:
        raise TimeoutError('no progress for the socket\'s kernel timeout')
    _wait(fd, events, timeouts.get(fd))


def splice(src: int, dst: int, count: int, timeouts: dict[int, float | None],
            pipe: Pipe, progress: Progress) -> None:
    """Move ``count`` bytes from ``src`` to ``dst`` through ``pipe`` (left empty)."""
    while count:
        try:
            got = os.splice(src, pipe.w, min(count, pipe.size), flags=os.SPLICE_F_MOVE)
        except BlockingIOError:
            _blocked(src, select.POLLIN, timeouts)
            continue
        if got == 0:
            raise PeerGone('the peer closed the stream %d bytes early' % count)
        count -= got
        while got:
            try:
                out = os.splice(pipe.r, dst, got, flags=os.SPLICE_F_MOVE)
            except BlockingIOError:
                _blocked(dst, select.POLLOUT, timeouts)
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
    pipe = Pipe()
    try:
        splice(src.fileno(), dst.fileno(), count, timeouts, pipe, progress)
    finally:
        pipe.close()


def _write_all(dst: Any, data: bytes) -> None:
    if isinstance(dst, socket.socket):
        dst.sendall(data)
    else:
        view = memoryview(data)
        while view:
            view = view[os.write(dst.fileno(), view):]


# ---- qcow2 and other formats: read in place

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
