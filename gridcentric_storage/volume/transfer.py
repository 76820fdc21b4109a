"""Whole-volume byte streams, served by the host that owns the backend.

The API checks policy and state, asks the owner host (RPC ``prepare_transfer``)
for a one-time URL on this small data server, and relays the bytes; this
host connects to the volume through os-brick like any consumer would, so the
stream works for every driver whose connection this host can open. A token
unused for ``[compute] transfer_token_ttl`` seconds expires and the volume
goes back to ``available``.

Connections that give a path (``local``) are read as files; ``rbd`` gives a
librbd file-like object; a ``local`` connection with ``format: qcow2`` is
converted through a raw temporary file with ``qemu-img``, since qcow2 is not
a byte stream. Those copies (as big as the volume) live in
``<state_path>/tmp``: a failed or abandoned stream removes its own, a peer
that stops sending or reading for ``STALL_TIMEOUT`` seconds counts as gone,
and the service removes whatever a stop or crash left before it serves again.
"""

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import webob
import webob.dec
from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, processutils, wsgi_server
from gridcentric_storage.compute import brick
from gridcentric_storage.db import api as db
from gridcentric_storage.db.records import Volume
from gridcentric_storage.volume.objects import VolumeRef

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
CHUNK = 1 << 20
GiB = 1 << 30
#: Seconds a stream may make no progress before its peer counts as gone (a
#: vanished host sends no FIN; without this its worker and the volume-sized
#: temporary copy would be held forever).
STALL_TIMEOUT = 300.0


def scratch_dir() -> str:
    """Where temporary raw copies live; nothing else is kept there."""
    return os.path.join(CONF.state_path, 'tmp')


def remove_scratch() -> None:
    """Remove every temporary copy: only safe while no stream runs (at start)."""
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

    @property
    def url(self) -> str:
        return 'http://%s:%d' % (CONF.compute.data_listen, self._server.port)

    def start(self) -> None:
        # Before serving: no stream of this service runs yet, and the state
        # directory's lock keeps any other service off these files.
        remove_scratch()
        self._server.start()
        self._reaper.start()

    def stop(self) -> None:
        self._reaper.stop()
        self._server.stop()

    # ---- RPC side
    def prepare(self, volume_id: str, direction: str) -> dict[str, Any]:
        driver = self.pool.get(db.volume_get(volume_id)['backend_id'])
        brick.check_connectable(type(driver).DRIVER_VOLUME_TYPE)
        volume = self._begin(volume_id, direction)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._transfers[token] = _Transfer(volume_id, direction)
        return {'url': '%s/transfers/%s' % (self.url, token), 'size': volume['size'] * GiB}

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

    @webob.dec.wsgify
    def _app(self, req: webob.Request) -> Any:
        token = req.path_info.rsplit('/', 1)[-1]
        direction = {'GET': 'read', 'PUT': 'write'}.get(req.method)
        transfer = self._claim(token, direction) if direction else None
        if transfer is None:
            return webob.Response(status=404, text='unknown or used transfer\n')
        if direction == 'read':
            response = webob.Response(status=200, content_type='application/octet-stream')
            volume = db.volume_get(transfer.volume_id)
            response.content_length = volume['size'] * GiB
            response.app_iter = self._read(transfer)
            return response
        return self._write(transfer, req)

    def _finish(self, token_transfer: _Transfer, error: str | None) -> None:
        with self._lock:
            for token, transfer in list(self._transfers.items()):
                if transfer is token_transfer:
                    del self._transfers[token]
        self._end(token_transfer.volume_id, error)

    @contextlib.contextmanager
    def _opened(self, volume_id: str, mode: str) -> Iterator[Any]:
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        ref = VolumeRef(volume)
        connector = brick.connector_properties(self.host)
        connection = driver.initialize_connection(ref, connector)
        device = brick.connect(connection)
        try:
            path = device.get('path')
            fmt = connection['data'].get('format', 'raw')
            if isinstance(path, str) and fmt != 'raw':
                with _raw_view(path, fmt, mode) as raw_path, open(raw_path, mode) as f:
                    yield f
            elif isinstance(path, str):
                with open(path, mode) as f:
                    yield f
            else:
                yield path  # librbd file-like object
        finally:
            brick.disconnect(connection, device)
            driver.terminate_connection(ref, connector)

    def _read(self, transfer: _Transfer) -> Iterator[bytes]:
        error = None
        try:
            with self._opened(transfer.volume_id, 'rb') as source:
                while True:
                    chunk = source.read(CHUNK)
                    if not chunk:
                        break
                    yield chunk
        except Exception as e:
            LOG.exception('Reading volume %s failed', transfer.volume_id)
            error = 'download failed: %s' % exception.describe(e)
            raise
        finally:
            # Reading never changes the data: the volume stays usable.
            self._finish(transfer, None if error is None else error)

    def _write(self, transfer: _Transfer, req: webob.Request) -> webob.Response:
        volume = db.volume_get(transfer.volume_id)
        limit = volume['size'] * GiB
        written = 0
        try:
            with self._opened(transfer.volume_id, 'r+b') as target:
                while True:
                    chunk = req.body_file.read(CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > limit:
                        raise exception.Invalid(reason='the stream is longer than the '
                                                'volume (%d bytes)' % limit)
                    target.write(chunk)
                target.flush()
        except Exception as e:
            LOG.exception('Writing volume %s failed after %d bytes', transfer.volume_id,
                          written)
            self._finish(transfer, 'upload failed after %d bytes: %s'
                         % (written, exception.describe(e)))
            code = e.code if isinstance(e, exception.GCException) and e.code < 500 else 500
            return webob.Response(status=code, text=exception.describe(e) + '\n')
        self._finish(transfer, None)
        return webob.Response(status=200, json_body={'bytes': written})


@contextlib.contextmanager
def _raw_view(path: str, fmt: str, mode: str) -> Iterator[str]:
    """A raw temporary copy of a qcow2 volume; written back in write mode."""
    tmpdir = scratch_dir()
    os.makedirs(tmpdir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='transfer-', dir=tmpdir) as scratch:
        raw = os.path.join(scratch, 'raw')
        processutils.execute(['qemu-img', 'convert', '-f', fmt, '-O', 'raw', path, raw])
        yield raw
        if 'w' in mode or '+' in mode:
            processutils.execute(['qemu-img', 'convert', '-n', '-f', 'raw', '-O', fmt,
                                  raw, path])
