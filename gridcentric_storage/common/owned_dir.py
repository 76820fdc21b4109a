"""Directories the service creates for a resource, and removes with it.

Deleting a resource must remove what the service made for it, and never a
directory an operator named that existed before (``path=/srv/fast`` may be a
mount point or hold other data). So the creator records the fact in a marker
file inside the directory at creation, and removal checks that marker::

    from gridcentric_storage.common import owned_dir

    owned_dir.make('/var/lib/gridcentric-storage/volumes/<id>')   # True: created now
    owned_dir.remove('/var/lib/gridcentric-storage/volumes/<id>')  # True: removed
"""

import logging
import os
import shutil

LOG = logging.getLogger(__name__)

__all__ = ['MARKER', 'created_here', 'make', 'remove']

MARKER = '.gridcentric-created'


def make(path: str, mode: int = 0o750) -> bool:
    """Make ``path`` (and parents); True when this call created the directory.

    Only the last component is recorded as ours: parents may be shared.
    """
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return False
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), mode=mode, exist_ok=True)
        return make(path, mode)
    # mkdir succeeded, so nobody else made it: the marker is the record of
    # that, written before anything else goes in.
    with open(os.path.join(path, MARKER), 'w') as f:
        f.write('created by gridcentric-storage; removed with its resource\n')
    return True


def created_here(path: str) -> bool:
    return os.path.isfile(os.path.join(path, MARKER))


def remove(path: str) -> bool:
    """Remove ``path`` and its content if :func:`make` created it; True if removed."""
    if not created_here(path):
        LOG.info('Leaving %s: it existed before the service used it', path)
        return False
    shutil.rmtree(path)
    LOG.info('Removed %s', path)
    return True
