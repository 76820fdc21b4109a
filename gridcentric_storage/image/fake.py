"""Image source for tests: an in-memory index of image files in a temporary
directory, with no configuration and no ``qemu-img``.

Tests put images in with :meth:`FakeImageSource.add` (public, or one project's
own); drivers get real files from ``path``/``export_paths``, as they do from the
image store. It keeps the :class:`~.base.ImageSource` contract the way
:class:`~.store.ImageStore` does (``tests/unit/image/test_source_contract.py``
runs the same tests on both), except:

* the format is read from the header in Python: qcow2 by its magic (refused,
  as by the store, when it names a backing file or an external data file),
  anything else is raw;
* administrators may name by host path only the files of this source (the
  store also takes ``[image] allowed_paths``).
"""

import dataclasses
import hashlib
import os
import re
import struct
import threading
import uuid
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.image import base, probe, store

__all__ = ['FakeImageSource']

_NAME = re.compile(store.NAME_PATTERN)
_PUBLIC = ''  # the owner key of public images (no project id is empty)


def _owner(ctxt: Any) -> str | None:
    """The caller's project id, None when it cannot own images."""
    project = getattr(ctxt, 'project_id', None)
    return project if isinstance(project, str) and _NAME.fullmatch(project) else None


def _identity(path: str) -> str:
    st = os.stat(path)
    return hashlib.sha256(('%s:%d:%d:%d' % (path, st.st_ino, st.st_size,
                                            st.st_mtime_ns)).encode()).hexdigest()


@dataclasses.dataclass
class _Image:
    path: str
    work: str | None = None  # set while an export reserved the name


class FakeImageSource(base.ImageSource):
    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)
        os.makedirs(self.root, exist_ok=True)
        self._images: dict[tuple[str, str], _Image] = {}
        self._lock = threading.Lock()

    def add(self, name: str, data: bytes = b'\0' * 4096, project: str | None = None) -> str:
        """Put (or replace, as a new file) image ``name``; return its path."""
        store.check_name(name)
        path = os.path.join(self.root, uuid.uuid4().hex)
        with open(path, 'wb') as f:
            f.write(data)
        with self._lock:
            old = self._images.get((project or _PUBLIC, name))
            self._images[(project or _PUBLIC, name)] = _Image(path)
        if old is not None:
            os.unlink(old.path)
        return path

    # ---- resolving references
    def locate(self, ctxt: Any, ref: Any, what: str = 'image') -> str:
        store.check_reference(ctxt, ref, what)
        with self._lock:
            if store.is_host_path(ref):
                real = os.path.realpath(ref)
                if not any(i.path == real for i in self._images.values()):
                    raise exception.Forbidden('%s %s is not a file of the image source'
                                              % (what, ref))
                return real
            for owner in (_owner(ctxt), _PUBLIC):
                image = self._images.get((owner, ref)) if owner is not None else None
                if image is not None:  # a reserved one too: info says it is empty
                    return image.path
        raise exception.Invalid(reason='%s %s was not found' % (what, ref))

    def path(self, ctxt: Any, image_id: str) -> str:
        return self.locate(ctxt, image_id)

    def info(self, ctxt: Any, image_id: str) -> dict[str, Any]:
        path = self.locate(ctxt, image_id)
        size = os.stat(path).st_size
        if size == 0:
            raise exception.Invalid(reason='image %s is empty (still being written?)'
                                    % image_id)
        probe.check_header(path, image_id)
        with open(path, 'rb') as f:
            head = f.read(32)
        if head.startswith(probe.QCOW2_MAGIC) and len(head) == 32:
            disk_format, virtual_size = 'qcow2', struct.unpack_from('>Q', head, 24)[0]
        else:
            disk_format, virtual_size = 'raw', size
        return {'id': image_id, 'disk_format': disk_format, 'virtual_size': virtual_size,
                'size': size, 'cache_key': _identity(path)}

    def check_unchanged(self, ctxt: Any, info: dict[str, Any]) -> None:
        if _identity(self.locate(ctxt, info['id'])) != info['cache_key']:
            raise exception.Invalid(reason='image %s changed while it was read; try again'
                                    % info['id'])

    # ---- exports
    def _key(self, ctxt: Any, name: str) -> tuple[str, str]:
        store.check_name(name)
        owner = _owner(ctxt)
        if owner is None:
            raise exception.Invalid(reason='project id %r cannot own images'
                                    % getattr(ctxt, 'project_id', None))
        return owner, name

    def reserve(self, ctxt: Any, name: str) -> None:
        key = self._key(ctxt, name)
        with self._lock:
            if key in self._images:
                raise exception.Conflict(reason='project %s already has an image named %s'
                                         % key)
            path = os.path.join(self.root, uuid.uuid4().hex)
            open(path, 'xb').close()  # as the store's: the name is taken, by an empty file
            self._images[key] = _Image(path, work=os.path.join(self.root, '.%s.export'
                                                                % uuid.uuid4().hex))

    def export_paths(self, ctxt: Any, name: str) -> tuple[str, str]:
        key = self._key(ctxt, name)
        with self._lock:
            image = self._images.get(key)
            if image is None or image.work is None:
                raise exception.Invalid(reason='image name %s was not reserved' % name)
            return image.path, image.work

    def finish_export(self, ctxt: Any, name: str, work: str | None) -> None:
        path, hidden = self.export_paths(ctxt, name)
        key = self._key(ctxt, name)
        with self._lock:
            if work is not None:
                os.replace(work, path)
                self._images[key].work = None
                return
            del self._images[key]
        for leftover in (hidden, hidden + '.part', path):
            _unlink(leftover)

    def remove_incomplete(self) -> list[str]:
        removed = []
        with self._lock:
            for key, image in list(self._images.items()):
                if image.work is None:
                    continue
                del self._images[key]
                for leftover in (image.work, image.work + '.part', image.path):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
                        removed.append(leftover)
        return removed

    # ---- listing and deleting
    def list(self, ctxt: Any) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for visibility, owner in (('private', _owner(ctxt)), ('public', _PUBLIC)):
                for (key_owner, name), image in sorted(self._images.items()):
                    if owner is None or key_owner != owner or name in found or image.work:
                        continue
                    size = os.stat(image.path).st_size
                    if size:
                        found[name] = {'name': name, 'size': size, 'visibility': visibility}
        return sorted(found.values(), key=lambda i: i['name'])

    def delete(self, ctxt: Any, name: str) -> None:
        key = self._key(ctxt, name)
        with self._lock:
            image = self._images.get(key)
            if image is None:
                raise exception.NotFound('Project %s has no image named %s' % key)
            if image.work is not None:
                raise exception.Conflict(reason='image %s is still being written' % name)
            del self._images[key]
        os.unlink(image.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
