"""What every console script does first, and how long-running ones wait."""

import errno
import fcntl
import os
import signal
import sys
import threading
from typing import IO, Any

from oslo_config import cfg

from gridcentric_storage import conf


def setup(argv: list[str] | None = None, defaults: dict[tuple[str | None, str], Any] | None = None
          ) -> None:
    """Parse options; ``defaults`` {(group, name): value} apply before parsing."""
    conf.register_all()
    for (group, name), value in (defaults or {}).items():
        cfg.CONF.set_default(name, value, group=group)
    conf.parse_args(sys.argv[1:] if argv is None else argv)


def wait_for_signal() -> None:
    """Block until SIGTERM or SIGINT, the way systemd and Ctrl-C stop a service."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(3600):
        pass


LOCK_FILE = 'gridcentric.lock'


class StatePathBusy(Exception):
    """Another service holds the lock of this state directory."""


def lock_state_path(state_path: str) -> IO[str]:
    """Take the state directory's lock for the life of the process.

    Restart recovery moves work this host left mid-way to ``error`` and
    removes its leftovers; run by a second service on the same directory it
    would do that to the first one's live work. So a service takes an
    exclusive ``flock`` on ``<state_path>/gridcentric.lock`` before any
    recovery and keeps the file open until it exits (the kernel releases the
    lock when the process dies, however it dies). The holder's pid is written
    into the file so the refusal can name it. Raises :class:`StatePathBusy`.
    """
    os.makedirs(state_path, mode=0o750, exist_ok=True)
    path = os.path.join(state_path, LOCK_FILE)
    # 'a+' neither truncates the holder's pid before we own the lock nor
    # fails when the file is new.
    lock = open(path, 'a+')
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            lock.close()
            raise
        lock.seek(0)
        holder = lock.read().strip()
        lock.close()
        raise StatePathBusy('state directory %s is in use by another service (%s); '
                            'refusing to start' % (state_path, 'pid %s' % holder if holder
                                                   else 'pid unknown')) from None
    lock.seek(0)
    lock.truncate()
    lock.write('%d\n' % os.getpid())
    lock.flush()
    return lock
