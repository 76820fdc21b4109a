"""The images a project may use (``/v1/images``) and the ``image-*`` commands.

Images are named: the project's own (written by ``volume-upload-to-image``) and
the public ones the operator put into the compute hosts' image stores. A
novaclient extension module: :class:`ImagesManager` is attached to the client
as ``gc_images``::

    [(i.name, i.visibility) for i in gc.gc_images.list()]
    gc.gc_images.delete('backup')       # one of the project's own images

An image as the API shows it (``hosts`` for administrators only)::

    {"name": "debian.qcow2", "size": 412090368, "visibility": "public"}
"""

from __future__ import annotations

import argparse
from typing import Any

from novaclient import base
from novaclient.utils import arg

from gridcentric_storage.client import utils


class Image(base.Resource):
    def __repr__(self) -> str:
        return '<Image %s>' % self._info.get('name')

    def delete(self) -> None:
        self.manager.delete(self)


class ImagesManager(utils.GCManager):
    resource_class = Image
    collection_key = 'images'
    base_url = '/v1/images'

    def list(self) -> list[Image]:
        """The project's images and the public ones, by name."""
        return self._list_paged({})

    def delete(self, image: Any) -> None:
        """Delete one of the project's images (a name or an :class:`Image`)."""
        name = image.name if isinstance(image, Image) else image
        self._delete(self._url(name))


# ---------------------------------------------------------------------------
# gc-api commands


LIST_COLUMNS = [('Name', 'name'), ('Size', 'size'), ('Visibility', 'visibility')]


def do_image_list(gc: Any, args: argparse.Namespace) -> None:
    """List the images you may name (your project's and the public ones)."""
    utils.print_list(gc.gc_images.list(), LIST_COLUMNS, args.json)


@arg('images', metavar='NAME', nargs='+')
def do_image_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete images of your project."""
    utils.for_each(args.images, gc.gc_images.delete, 'Unable to delete image(s)')
