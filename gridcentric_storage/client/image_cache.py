"""The per-backend image template cache (``/v1/image-cache``, admin only) and its
``image-cache-*`` commands.

A volume created from an image (``imageRef``) is a copy-on-write clone of a cached
copy of that image on its backend; the first volume fills the cache entry, later
ones count as ``hits``. A novaclient extension module: :class:`ImageCacheManager` is
attached to the client as ``gc_image_cache``::

    [(e.image_id, e.hits) for e in gc.gc_image_cache.list(backend_id=backend.id)]
    gc.gc_image_cache.delete(entry)             # one entry
    gc.gc_image_cache.purge()                   # every entry; returns how many

An entry as the API shows it::

    {"id": "...", "backend_id": "...", "host": "node1", "image_id": "/srv/img.qcow2",
     "image_key": "...", "size": 1, "status": "available", "hits": 2,
     "last_used_at": "...", "created_at": "...", "updated_at": "..."}

Volumes made from a purged entry keep their data.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from novaclient import base
from novaclient.utils import arg

from gridcentric_storage.client import utils


class ImageCacheEntry(base.Resource):
    def __repr__(self) -> str:
        return '<ImageCacheEntry %s>' % (self._info.get('image_id') or self._info.get('id'))

    def delete(self) -> None:
        self.manager.delete(self)


class ImageCacheManager(utils.GCManager):
    resource_class = ImageCacheEntry
    collection_key = 'image_cache'
    base_url = '/v1/image-cache'

    def list(self, backend_id: Any = None) -> list[ImageCacheEntry]:
        """Entries, least recently used first (of one backend when ``backend_id``, an
        ID or a backend, is given)."""
        backend = base.getid(backend_id) if backend_id is not None else None
        return self._list_paged({'backend_id': backend})

    def delete(self, entry: Any) -> None:
        """Purge one entry."""
        self._delete(self._url(entry))

    def purge(self, backend_id: Any = None) -> int:
        """Purge every entry (of one backend when ``backend_id`` is given); returns
        how many were purged."""
        args = {'backend_id': base.getid(backend_id)} if backend_id is not None else {}
        resp, body = self.api.client.post(self._url(suffix='/action'), body={'purge': args})
        return int(body['purged'])


# ---------------------------------------------------------------------------
# gc-api commands


LIST_COLUMNS = [
    ('ID', 'id'), ('Image', 'image_id'), ('Backend', 'backend_id'), ('Host', 'host'),
    ('Size', 'size'), ('Status', 'status'), ('Hits', 'hits'), ('Last used', 'last_used_at'),
]


@arg('--backend', metavar='ID|NAME', help='Only the entries of this backend.')
def do_image_cache_list(gc: Any, args: argparse.Namespace) -> None:
    """List the image cache (admin)."""
    entries = gc.gc_image_cache.list(backend_id=utils.backend_id(gc, args.backend))
    utils.print_list(entries, LIST_COLUMNS, args.json)


@arg('entries', metavar='ENTRY_ID', nargs='+')
def do_image_cache_delete(gc: Any, args: argparse.Namespace) -> None:
    """Purge image cache entries (admin)."""
    utils.for_each(args.entries, gc.gc_image_cache.delete,
                   'Unable to purge image cache entries')


@arg('--backend', metavar='ID|NAME', help='Only the entries of this backend.')
def do_image_cache_purge(gc: Any, args: argparse.Namespace) -> None:
    """Purge the whole image cache, or a backend's part of it (admin)."""
    purged = gc.gc_image_cache.purge(utils.backend_id(gc, args.backend))
    if args.json:
        utils.print_json({'purged': purged})
    else:
        sys.stdout.write(f'Purged {purged} image cache entr{"y" if purged == 1 else "ies"}.\n')
