"""File names and atomic file creation shared by both modes of the ``file`` driver.

Every file the driver owns in its directory is ``volume-<id>``, ``snapshot-<id>``
or ``clone-<id>`` with a UUID id, so no id can name a path outside it. A new
file is written as ``<name>.part`` and then given its name (:func:`publish`),
so a name never shows a half-written file.
"""

import errno
import os
import re

from gridcentric_storage.common import exception

__all__ = ['DELETED', 'GiB', 'MODE_FILE', 'NAME_RE', 'PART', 'UUID_RE', 'error', 'publish',
           'unlink']

GiB = 1 << 30
_UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
UUID_RE = re.compile(f'^{_UUID}$', re.IGNORECASE)
NAME_RE = re.compile(f'^(volume|snapshot|clone)-{_UUID}$', re.IGNORECASE)
MODE_FILE, DELETED, PART = '.cow_mode', '.deleted', '.part'


def unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def publish(tmp: str, dst: str, replace: bool = False) -> None:
    """Give a finished ``.part`` file its name; never overwrite unless replace."""
    try:
        if replace:
            os.replace(tmp, dst)
            return
        os.link(tmp, dst)
    except OSError as e:
        unlink(tmp)
        reason = 'already exists' if e.errno == errno.EEXIST else e.strerror
        raise error(f'cannot create {dst}: {reason}') from e
    unlink(tmp)
