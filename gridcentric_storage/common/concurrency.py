"""The one place that decides how concurrent work runs.

Services run on native threads (oslo.messaging's threading executor, a
threaded WSGI server). OpenStack is moving off eventlet, and native threads
let blocking calls into librbd or subprocesses run without ``tpool``; should
eventlet be wanted after all, only this module changes.
"""

import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

_pool: futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _get_pool() -> futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = futures.ThreadPoolExecutor(max_workers=16,
                                               thread_name_prefix='gc-worker')
        return _pool


def spawn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> 'futures.Future[Any]':
    """Run ``fn`` in the background; the future carries its result or error."""
    return _get_pool().submit(fn, *args, **kwargs)


def execute(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking (native) call; with threads it is a plain call."""
    return fn(*args, **kwargs)


class KeyedLocks:
    """A lock per resource id, so work on one volume never waits on another."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


class Periodic:
    """Calls ``fn`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, fn: Callable[[], None], interval: float, name: str) -> None:
        self._fn = fn
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._fn()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._interval + 5)
