"""What every console script does first, and how long-running ones wait."""

import signal
import sys
import threading
from typing import Any

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
