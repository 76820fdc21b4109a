"""Whole-volume byte streams, served by the host that owns the backend.

The API checks policy and state, asks the owner host (RPC ``prepare_transfer``)
for a one-time URL on this small data server, and relays the bytes; this
host connects to the volume through os-brick like any consumer would, so the
stream works for every driver whose connection this host can open. A token
unused for ``[compute] transfer_token_ttl`` seconds expires and the volume
goes back to ``available``.

Connections that give a path (``local``) are files or block devices whose
bytes go to the socket with ``sendfile`` and come from it with ``splice``
(``transfer_io``), and a 200 to a write means they were fsynced. A ``local``
connection with a ``format`` (qcow2) is read in place, from the data ranges
and holes ``qemu-img map`` gives for its backing chain, and written through
``qemu-nbd`` (so is a chain whose data is compressed or encrypted); ``rbd``
gives a librbd file-like object, read and written in 8 MiB requests.
qemu-nbd's socket lives in ``<state_path>/tmp``: a failed or abandoned stream
removes its own, a peer that stops sending or reading for ``STALL_TIMEOUT``
seconds counts as gone, and the service removes whatever a stop or crash
left before it serves again.
"""

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import webob
import webob.dec
from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, wsgi_server
from gridcentric_storage.compute import brick
from gridcentric_storage.db import api as db
from gridcentric_storage.db.records import Volume
from gridcentric_storage.volume import handoff, nbd, transfer_io
from gridcentric_storage.volume.objects import VolumeRef

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
CHUNK = 1 << 20
#: librbd reads and writes: large requests keep its per-call cost small.
OBJECT_CHUNK = 8 << 20
GiB = 1 << 30
#: Seconds a stream may make no progress before its peer counts as gone (a
#: vanished host sends no FIN; without this its worker and the volume-sized
#: qemu-nbd would be held forever).
STALL_TIMEOUT = 300.0
#: Seconds this host's os-brick connector properties are reused: asking
#: os-brick (initiator names, NVMe host NQN, multipath...) takes 0.1-0.4 s,
#: a fixed cost every stream paid.
CONNECTOR_TTL = 60.0


def scratch_dir() -> str:
    """Where streams keep their scratch files (qemu-nbd sockets); nothing else."""
    return os.path.join(CONF.state_path, 'tmp')


def remove_scratch() -> None:
    """Remove every scratch file: only safe while no stream runs (at start)."""
    try:
        names = os.listdir(scratch_dir())
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(scratch_dir(), name)
        LOG.info('Removing %s, left by a stream a stop or crash cut short', path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


class _Transfer:
    def __init__(self, volume_id: str, direction: str) -> None:
        self.volume_id = volume_id
        self.direction = direction  # 'read' or 'write'
        self.expires = time.monotonic() + CONF.compute.transfer_token_ttl
        self.claimed = False


class TransferServer:
    """The data server; the volume manager that owns it moves the volumes' status.

    ``begin(volume_id, direction)`` moves the volume to its streaming state
    (or raises) and returns it; ``end(volume_id, error)`` settles it.
    """

    def __init__(self, host: str, pool: Any,
                 begin: Callable[[str, str], Volume],
                 end: Callable[[str, str | None], None]) -> None:
        self.host = host
        self.pool = pool
        self._begin = begin
        self._end = end
        self._transfers: dict[str, _Transfer] = {}
        self._lock = threading.Lock()
        self._server = wsgi_server.WSGIService(self._app, CONF.compute.data_listen,
                                               CONF.compute.data_port,
                                               timeout=STALL_TIMEOUT)
        self._reaper = concurrency.Periodic(self._expire, 5, name='gc-transfer-reaper')
        self._connector: tuple[float, dict[str, Any]] | None = None
        self._handoff: handoff.Listener | None = None

    def _connector_properties(self) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            if self._connector is not None and now - self._connector[0] < CONNECTOR_TTL:
                return self._connector[1]
        props = brick.connector_properties(self.host)
        with self._lock:
            self._connector = (now, props)
        return props

    @property
    def url(self) -> str:
        return 'http://%s:%d' % (CONF.compute.data_listen, self._server.port)

    def start(self) -> None:
        # Before serving: no stream of this service runs yet, and the state
        # directory's lock keeps any other service off these files.
        remove_scratch()
        self._server.start()
        # Named by the TCP port, unique on this machine: data servers of other
        # hosts sharing a state_path do not take each other's socket. Not in
        # the scratch directory: it lives as long as the service, not a stream.
        self._handoff = handoff.Listener(
            handoff.socket_path(os.path.join(CONF.state_path, 'run'),
                                'data-%d.sock' % self._server.port),
            self._handed_over, STALL_TIMEOUT)
        self._handoff.start()
        self._reaper.start()

    def stop(self) -> None:
        self._reaper.stop()
        if self._handoff is not None:
            self._handoff.stop()
        self._server.stop()

    # ---- RPC side
    def prepare(self, volume_id: str, direction: str) -> dict[str, Any]:
        driver = self.pool.get(db.volume_get(volume_id)['backend_id'])
        brick.check_connectable(type(driver).DRIVER_VOLUME_TYPE)
        volume = self._begin(volume_id, direction)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._transfers[token] = _Transfer(volume_id, direction)
        prepared = {'url': '%s/transfers/%s' % (self.url, token), 'size': volume['size'] * GiB}
        if self._handoff is not None and direction == 'read':
            prepared['handoff'] = self._handoff.path
        return prepared

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [t for t, x in self._transfers.items()
                     if not x.claimed and x.expires < now]
            expired = [self._transfers.pop(t) for t in stale]
        for transfer in expired:
            LOG.info('Transfer of volume %s was never used; releasing it', transfer.volume_id)
            self._end(transfer.volume_id, None)

    # ---- HTTP side
    def _claim(self, token: str, direction: str) -> _Transfer | None:
        with self._lock:
            transfer = self._transfers.get(token)
            if transfer is None or transfer.claimed or transfer.direction != direction:
                return None
            transfer.claimed = True
            return transfer

    def _handed_over(self, token: str) -> '_Download | None':
        """A read transfer whose client socket the API on this host hands over."""
        transfer = self._claim(token, 'read')
        if transfer is None:
            return None
        return _Download(self, transfer, db.volume_get(transfer.volume_id)['size'] * GiB)

    @webob.dec.wsgify
    def _app(self, req: webob.Request) -> Any:
        token = req.path_info.rsplit('/', 1)[-1]
        direction = {'GET': 'read', 'PUT': 'write'}.get(req.method)
        transfer = self._claim(token, direction) if direction else None
        if transfer is None:
            return webob.Response(status=404, text='unknown or used transfer\n')
        if direction == 'read':
            response = webob.Response(status=200, content_type='application/octet-stream')
            size = db.volume_get(transfer.volume_id)['size'] * GiB
            body = _Download(self, transfer, size)
            wrapper = req.environ.get('wsgi.file_wrapper')
            response.app_iter = wrapper(body, CHUNK) if wrapper else body.chunks()
            response.content_length = size  # after app_iter, whose setter clears it
            return response
        return self._write(transfer, req)

    def _finish(self, token_transfer: _Transfer, error: str | None) -> None:
        with self._lock:
            for token, transfer in list(self._transfers.items()):
                if transfer is token_transfer:
                    del self._transfers[token]
        self._end(token_transfer.volume_id, error)

    @contextlib.contextmanager
    def opened(self, volume_id: str, mode: str) -> Iterator['_View']:
        """The volume's data, connected on this host with os-brick (streams and a
        migration's host copy read and write through it); disconnected on exit."""
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        ref = VolumeRef(volume)
        connector = self._connector_properties()
        connection = driver.initialize_connection(ref, connector)
        device = brick.connect(connection)
        try:
            path = device.get('path')
            fmt = connection['data'].get('format', 'raw')
            extents = (transfer_io.mapped_extents(path, fmt)
                       if isinstance(path, str) and fmt != 'raw' and mode == 'rb' else None)
            if extents is not None:
                yield _MappedView(extents)
            elif isinstance(path, str) and fmt != 'raw':
                with nbd.nbd_export(path, fmt, mode != 'rb', scratch_dir()) as client:
                    yield _NBDView(client)
            elif isinstance(path, str):
                with open(path, mode, buffering=0) as f:
                    yield _FileView(f)
            else:
                yield _ObjectView(path)  # librbd file-like object
        finally:
            brick.disconnect(connection, device)
            driver.terminate_connection(ref, connector)

    def _write(self, transfer: _Transfer, req: webob.Request) -> webob.Response:
        volume = db.volume_get(transfer.volume_id)
        limit = volume['size'] * GiB
        length = req.content_length
        progress = transfer_io.Progress()
        try:
            if length is None:
                raise exception.LengthRequired()
            if length > limit:
                raise exception.Invalid(reason='the stream is longer than the volume (%d '
                                        'bytes)' % limit)
            source = req.environ.get(wsgi_server.SOCKET_KEY)
            body = req.environ['wsgi.input']
            with self.opened(transfer.volume_id, 'r+b') as target:
                progress = target.progress
                if source is None:  # another WSGI server: no socket to splice from
                    target.write_from_file(body, length)
                else:
                    target.write_from(source, length,
                                      transfer_io.take_buffered(body, length))
        except Exception as e:
            LOG.exception('Writing volume %s failed after %d bytes', transfer.volume_id,
                          progress.done)
            self._finish(transfer, 'upload failed after %d bytes: %s'
                         % (progress.done, exception.describe(e)))
            code = e.code if isinstance(e, exception.GCException) and e.code < 500 else 500
            return webob.Response(status=code, text=exception.describe(e) + '\n')
        self._finish(transfer, None)
        return webob.Response(status=200, json_body={'bytes': length})


class _Download:
    """The body of a GET: moves the volume to the socket itself (``send_to``,
    through the WSGI server's file-wrapper hook), or yields it in chunks."""

    def __init__(self, server: TransferServer, transfer: _Transfer, size: int) -> None:
        self.server = server
        self.transfer = transfer
        self.size = size
        self._chunks: Iterator[bytes] | None = None
        self._done = False

    @contextlib.contextmanager
    def _settling(self) -> Iterator[None]:
        error = None
        try:
            yield
        except (BrokenPipeError, ConnectionResetError):
            # The reader left: the volume is as it was, nothing to report on it.
            LOG.info('The reader of volume %s went away', self.transfer.volume_id)
            raise
        except Exception as e:
            LOG.exception('Reading volume %s failed', self.transfer.volume_id)
            error = 'download failed: %s' % exception.describe(e)
            raise
        finally:
            # Reading never changes the data: the volume stays usable.
            self._done = True
            self.server._finish(self.transfer, error)

    def send_to(self, sock: Any) -> None:
        timeout = sock.gettimeout()
        if timeout is not None:  # the same bound, kept by the kernel (see transfer_io)
            transfer_io.block_with_timeout(sock, timeout)
        with self._settling(), self.server.opened(self.transfer.volume_id, 'rb') as view:
            view.read_to(sock, self.size)

    def chunks(self) -> Iterator[bytes]:
        with self._settling(), self.server.opened(self.transfer.volume_id, 'rb') as view:
            yield from view.chunks(self.size)

    def read(self, size: int = CHUNK) -> bytes:
        if self._chunks is None:
            self._chunks = self.chunks()
        return next(self._chunks, b'')

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()  # type: ignore[attr-defined]
        elif not self._done:  # the client left before a byte was sent
            self._done = True
            self.server._finish(self.transfer, None)


class _View:
    """One opened volume, read or written from its first byte."""

    def __init__(self) -> None:
        self.progress = transfer_io.Progress()

    def read_to(self, sock: Any, size: int) -> None:
        for chunk in self.chunks(size):
            sock.sendall(chunk)

    def chunks(self, size: int) -> Iterator[bytes]:
        raise NotImplementedError

    def write_from(self, sock: Any, length: int, prefix: bytes) -> None:
        raise NotImplementedError

    def write_from_file(self, body: Any, length: int, prefix: bytes = b'') -> None:
        raise NotImplementedError


class _FileView(_View):
    def __init__(self, f: Any) -> None:
        super().__init__()
        self.f = f

    def read_to(self, sock: Any, size: int) -> None:
        transfer_io.copy(self.f, sock, size, progress=self.progress)

    def chunks(self, size: int) -> Iterator[bytes]:
        while chunk := self.f.read(CHUNK):
            yield chunk

    def write_from(self, sock: Any, length: int, prefix: bytes) -> None:
        transfer_io.copy(sock, self.f, length, prefix, progress=self.progress)
        # A 200 says the bytes are stored, as the qcow2 path's NBD flush does.
        os.fsync(self.f.fileno())

    def write_from_file(self, body: Any, length: int, prefix: bytes = b'') -> None:
        _copy_chunks(body, self.f.write, length, prefix, self.progress)
        os.fsync(self.f.fileno())


class _MappedView(_View):
    """A qcow2 chain read in place: its data ranges and holes, sent with sendfile."""

    def __init__(self, extents: list[transfer_io.Extent]) -> None:
        super().__init__()
        self.extents = extents

    def read_to(self, sock: Any, size: int) -> None:
        transfer_io.send_extents(self.extents, sock, size, self.progress)

    def chunks(self, size: int) -> Iterator[bytes]:
        for start, length, name, offset in self.extents:
            length = min(length, size - start)
            if length <= 0:
                break
            if name is None:
                for done in range(0, length, CHUNK):
                    yield bytes(min(CHUNK, length - done))
                continue
            with open(name, 'rb', buffering=0) as f:
                f.seek(offset)
                for done in range(0, length, CHUNK):
                    yield f.read(min(CHUNK, length - done))


class _NBDView(_View):
    def __init__(self, client: nbd.NBDClient) -> None:
        super().__init__()
        self.nbd = client
        self.progress = client.progress

    def read_to(self, sock: Any, size: int) -> None:
        self.nbd.read_to(sock, 0, size)

    def write_from(self, sock: Any, length: int, prefix: bytes) -> None:
        self.nbd.write_from(sock, 0, length, prefix)

    def chunks(self, size: int) -> Iterator[bytes]:
        for offset in range(0, size, CHUNK):
            chunk = self.nbd.read_bytes(offset, min(CHUNK, size - offset))
            self.progress.done += len(chunk)
            yield chunk

    def write_from_file(self, body: Any, length: int, prefix: bytes = b'') -> None:
        _copy_chunks(body, lambda chunk: self.nbd.write_bytes(self.progress.done, chunk),
                     length, prefix, self.progress)


class _ObjectView(_View):
    """librbd's file-like image: bytes pass through Python, in big requests."""

    def __init__(self, image: Any) -> None:
        super().__init__()
        self.image = image

    def chunks(self, size: int) -> Iterator[bytes]:
        while chunk := self.image.read(OBJECT_CHUNK):
            self.progress.done += len(chunk)
            yield chunk

    def write_from(self, sock: Any, length: int, prefix: bytes) -> None:
        buf = bytearray(OBJECT_CHUNK)
        view = memoryview(buf)
        if prefix:
            self.image.write(prefix)
            self.progress.done += len(prefix)
        left = length - len(prefix)
        while left:
            filled = 0
            want = min(OBJECT_CHUNK, left)
            while filled < want:
                got = sock.recv_into(view[filled:want])
                if not got:
                    raise transfer_io.PeerGone('the stream ended early')
                filled += got
            self.image.write(bytes(view[:filled]))
            self.progress.done += filled
            left -= filled
        self.image.flush()

    def write_from_file(self, body: Any, length: int, prefix: bytes = b'') -> None:
        _copy_chunks(body, self.image.write, length, prefix, self.progress)
        self.image.flush()


def _copy_chunks(body: Any, write: Callable[[bytes], Any], length: int, prefix: bytes,
                 progress: transfer_io.Progress) -> None:
    if prefix:
        write(prefix)
        progress.done += len(prefix)
    left = length - len(prefix)
    while left:
        chunk = body.read(min(CHUNK, left))
        if not chunk:
            raise transfer_io.PeerGone('the stream ended %d bytes early' % left)
        write(chunk)
        progress.done += len(chunk)
        left -= len(chunk)

