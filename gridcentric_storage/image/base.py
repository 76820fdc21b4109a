"""The image source contract: where volumes and servers get images from and where
volume exports go, resolved for the caller (Cinder's ``image_service``).

This module only defines the interface; ``store.py`` (:class:`ImageStore`, the
per-host image store) implements it, and ``fake.py`` is a temporary-directory
implementation for tests.

An image reference names an image, never a file: a NAME (``debian.qcow2``; the
syntax is :func:`gridcentric_storage.image.store.check_reference`'s), looked up
in the caller's project first and then among the public images, or, for
administrators only, an absolute host path the source allows. Every method
takes the caller's context (``project_id``, ``is_admin``), which decides what
it may see; another project's image is simply not found. Errors are the API's:
``Invalid`` (400: malformed or not found), ``Forbidden`` (403: a member naming
a host path, or a path outside what the source allows), ``Conflict`` (409),
``NotFound`` (404, delete only).

An image is self-contained raw or qcow2; its format is decided once, by
:meth:`ImageSource.info`, and every later reader gives it to qemu-img with
``-f``. An export to an image (a project's own) is reserved first so no image
is ever overwritten, written to a hidden work file, then published::

    source.reserve(ctxt, 'backup')
    final, work = source.export_paths(ctxt, 'backup')
    ... qemu-img convert ... work
    source.finish_export(ctxt, 'backup', work)      # or (ctxt, 'backup', None) on failure
"""

import abc
from typing import Any

__all__ = ['ImageSource']


class ImageSource(abc.ABC):
    # ---- resolving references
    @abc.abstractmethod
    def locate(self, ctxt: Any, ref: Any, what: str = 'image') -> str:
        """The local file ``ref`` names for ``ctxt`` (``what`` names it in errors,
        e.g. 'boot file'); Invalid when there is none, Forbidden for a path."""

    @abc.abstractmethod
    def path(self, ctxt: Any, image_id: str) -> str:
        """Cinder's name for :meth:`locate` of an image, as drivers call it."""

    @abc.abstractmethod
    def info(self, ctxt: Any, image_id: str) -> dict[str, Any]:
        """``{'id', 'disk_format' ('raw' or 'qcow2'), 'virtual_size' (bytes), 'size'
        (bytes of the file), 'cache_key'}``; ``cache_key`` changes whenever the file
        is replaced or rewritten. Invalid for an empty file (still being written) or
        one that is not a self-contained raw or qcow2 image."""

    @abc.abstractmethod
    def check_unchanged(self, ctxt: Any, info: dict[str, Any]) -> None:
        """Invalid when the file :meth:`info` described was replaced since: what was
        read from it may not be in the format ``info`` says."""

    # ---- exports
    @abc.abstractmethod
    def reserve(self, ctxt: Any, name: str) -> None:
        """Claim ``name`` in the caller's project; Conflict when it exists or is
        claimed, Invalid when the project cannot own images."""

    @abc.abstractmethod
    def export_paths(self, ctxt: Any, name: str) -> tuple[str, str]:
        """(final path, hidden work path) of a reserved export; Invalid when ``name``
        is not reserved."""

    @abc.abstractmethod
    def finish_export(self, ctxt: Any, name: str, work: str | None) -> None:
        """Publish the written work file as the image, or (``work`` None: the export
        failed) remove every file of it, freeing the name."""

    @abc.abstractmethod
    def remove_incomplete(self) -> list[str]:
        """At start-up, when no export runs: remove the reservations and work files
        exports left; return what was removed."""

    # ---- the caller's project's images (last: ``list`` shadows the builtin here)
    @abc.abstractmethod
    def list(self, ctxt: Any) -> list[dict[str, Any]]:
        """``[{'name', 'size', 'visibility' ('private' or 'public')}]`` by name: the
        caller's project's images and the public ones it does not shadow; images
        still being written are not listed."""

    @abc.abstractmethod
    def delete(self, ctxt: Any, name: str) -> None:
        """Delete one of the caller's project's images: NotFound when it has none of
        that name (public ones are the operator's), Conflict while it is written."""
