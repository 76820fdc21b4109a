"""A small synchronous face for ``qemu.qmp`` (QEMU's maintained QMP library).

``qemu.qmp`` is asyncio-only; the compute service calls the driver from plain
(native) threads, several at once (eight clones launched in parallel). Its own
legacy sync shim binds an event loop to the calling thread, so this module
runs one private event loop on a daemon thread instead and hands each call to
it with ``run_coroutine_threadsafe``: any thread may hold a :class:`Monitor`,
and no thread's own loop is touched. Every QMP failure becomes a
``DriverError`` that quotes QEMU's message::

    from gridcentric_storage.virt import qmp

    with qmp.connect('/var/lib/gridcentric-storage/instances/<id>/qmp.sock') as mon:
        mon.cmd('stop')
        mon.cmd('query-status')        # {'status': 'paused', 'running': False, ...}

Install: ``pip install qemu.qmp`` (Debian 12 does not package it; use a
``--system-site-packages`` virtualenv there).
"""

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent import futures
from typing import Any, TypeVar

from qemu.qmp import ConnectError, EventListener, ExecuteError, QMPClient, QMPError

from gridcentric_storage.common import exception

__all__ = ['Monitor', 'connect', 'wait_for_migration']

T = TypeVar('T')
#: Greetings :func:`connect` lets come garbled before it gives up.
_GARBLED_RETRIES = 5
#: The name a migration's file descriptor has in QEMU (``getfd``).
_MIGRATION_FD = 'gc-migration'


class _LoopThread:
    """The one event loop all QMP sessions of this process run on."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name='gc-qmp-loop',
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return self.result(self.submit(coro), timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> 'futures.Future[T]':
        return asyncio.run_coroutine_threadsafe(coro, self._get())

    @staticmethod
    def result(future: 'futures.Future[T]', timeout: float | None) -> T:
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise


_LOOP = _LoopThread()


async def _getfd(client: QMPClient, fd: int, name: str) -> None:
    client.send_fd_scm(fd)            # attached to the next command: getfd
    await client.execute('getfd', {'fdname': name})


async def _until(client: QMPClient, call: Coroutine[Any, Any, Any], event: str) -> Any:
    """``call``'s answer, or None as soon as ``event`` comes (the answer is then
    left to arrive unread: QEMU sends no error after the event it announces)."""
    listener = EventListener(event)
    client.register_listener(listener)
    answer = asyncio.ensure_future(call)
    heard = asyncio.ensure_future(listener.get())
    try:
        await asyncio.wait({answer, heard}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        return None
    finally:
        client.remove_listener(listener)
        heard.cancel()
        if not answer.done():    # still read by the client; its result is not wanted
            answer.add_done_callback(lambda done: done.cancelled() or done.exception())


class Monitor:
    """One connected QMP session; methods block the calling thread only."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._client: QMPClient | None = None

    async def _connect(self) -> None:
        client = QMPClient(os.path.basename(os.path.dirname(self.path)) or 'gc')
        await client.connect(self.path)
        self._client = client

    def _connect_once(self) -> None:
        _LOOP.run(self._connect(), self.timeout)

    def cmd(self, name: str, **arguments: Any) -> Any:
        """Execute ``name``; return its ``return`` value or raise exception.QmpError."""
        return self.send(name, **arguments)()

    def resume(self) -> Callable[[], Any]:
        """``cont``, sent now; calling what is returned waits until QEMU announces
        the VM runs (its RESUME event) or refuses. QEMU sends RESUME as the vCPUs
        start, but answers ``cont`` only once its main loop gets the big lock back
        from them: a guest busy on I/O (fw_cfg, the identity port) as it resumes
        holds that answer back by tens of milliseconds under TCG."""
        return self.send('cont', until='RESUME')

    def send(self, name: str, until: str | None = None, **arguments: Any) -> Callable[[], Any]:
        """Start executing ``name`` and return at once; calling what is returned
        waits for the answer as :meth:`cmd` does (so the caller works meanwhile),
        or for the event ``until`` if it comes first (then it returns None)."""
        if self._client is None:
            raise exception.QmpError(reason='QMP session to %s is closed' % self.path)
        call = self._client.execute(name, arguments or None)
        future = _LOOP.submit(call if until is None else _until(self._client, call, until))

        def answer() -> Any:
            try:
                return _LOOP.result(future, self.timeout)
            except ExecuteError as e:
                raise exception.QmpError(reason='QMP %s failed: %s' % (name, e),
                                         error_class=e.error_class)
            except TimeoutError:
                raise exception.QmpError(reason='QMP %s got no answer within %.0f s'
                                         % (name, self.timeout))
            except (QMPError, OSError, EOFError) as e:
                raise exception.QmpError(reason='QMP %s failed: %s'
                                         % (name, e or type(e).__name__))
        return answer

    def migrate_file(self, command: str, path: str) -> None:
        """``migrate`` into (or ``migrate-incoming`` from) the file ``path`` through a
        descriptor QEMU is handed (``getfd``, URI ``fd:``): no shell, no ``cat``."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC if command == 'migrate' else os.O_RDONLY
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            self.run(lambda client: _getfd(client, fd, _MIGRATION_FD), self.timeout)
        except (QMPError, OSError, TimeoutError) as e:
            raise exception.QmpError(reason='QMP getfd failed: %s' % (e or type(e).__name__))
        finally:
            os.close(fd)              # QEMU holds its own copy
        self.cmd(command, uri='fd:' + _MIGRATION_FD)

    def run(self, work: Callable[[QMPClient], Coroutine[Any, Any, T]],
            timeout: float | None) -> T:
        """Run ``work(client)`` on the QMP loop: for callers that pipeline commands,
        pass descriptors or wait for events on this session (qemu_pool_slots)."""
        if self._client is None:
            raise exception.QmpError(reason='QMP session to %s is closed' % self.path)
        return _LOOP.run(work(self._client), timeout)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                _LOOP.run(client.disconnect(), self.timeout)


@contextlib.contextmanager
def connect(path: str, timeout: float = 30.0, wait: float = 0.0,
            alive: Callable[[], bool] | None = None) -> Iterator[Monitor]:
    """A session to the QMP socket ``path``.

    ``wait`` > 0 retries for that many seconds while the socket is not there
    yet (a QEMU that is still starting); ``alive`` says whether that QEMU
    still runs, so a crash fails fast instead of waiting out ``wait``.

    A garbled greeting is retried whatever ``wait`` says: QEMU serves one
    session at a time and may hand the next client output it had buffered
    for one that just hung up (an event of a running block job).
    """
    monitor = Monitor(path, timeout)
    deadline = time.monotonic() + wait
    delay = 0.002
    garbled = 0
    while True:
        try:
            if wait and not os.path.exists(path) and time.monotonic() < deadline:
                raise FileNotFoundError(path)     # not listening yet: spare qemu.qmp's log
            monitor._connect_once()
            break
        except (ConnectError, OSError, TimeoutError) as e:
            cause = getattr(e, 'exc', None) or e
            if 'Greeting' in '%s %s' % (type(cause).__name__, cause) \
                    and garbled < _GARBLED_RETRIES:
                garbled += 1
                time.sleep(0.01 * garbled)
                continue
            if time.monotonic() >= deadline or (alive is not None and not alive()):
                raise exception.QmpError(reason='cannot reach QMP at %s: %s' % (path, cause))
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
    try:
        yield monitor
    finally:
        monitor.close()


def wait_for_migration(monitor: Monitor, timeout: float, poll: float = 0.001) -> dict[str, Any]:
    """Poll ``query-migrate`` until ``completed``; exception.QmpError on failure or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        info = monitor.cmd('query-migrate')
        status = info.get('status')
        if status == 'completed':
            return info
        if status in ('failed', 'cancelled'):
            raise exception.QmpError(reason='migration %s: %s'
                                     % (status, info.get('error-desc', 'no details')))
        if time.monotonic() > deadline:
            raise exception.QmpError(reason='migration still %s after %.0f s' % (status, timeout))
        time.sleep(poll)
        poll = min(poll * 1.5, 0.01)
