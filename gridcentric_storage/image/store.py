"""The image store: images a caller may use are entries of it, never host paths.

Like Glance for Nova, an image reference names an image, not a file. Each
compute host keeps its store under ``[image] store_path``::

    <store>/public/<name>                  every project's (the operator puts them there)
    <store>/projects/<project id>/<name>   one project's own (its exports)

A reference is either a NAME (``debian.qcow2``: letters, digits, ``.``, ``_``,
``-``, not starting with ``.``, at most 255), looked up in the caller's
project first and then in ``public``, or, for administrators only, an
absolute host path whose real path (symlinks resolved) lies under
``[image] allowed_paths`` or the store. Anything else is a 400 (malformed or
not found: another project's image is simply not found) or a 403 (a member
naming a host path). The resolution runs on the host that has the file, with
the caller's context from the RPC message::

    store = ImageStore()
    store.info(ctxt, 'debian.qcow2')
    == {'id': 'debian.qcow2', 'disk_format': 'qcow2', 'virtual_size': 2147483648,
        'size': 412090368, 'cache_key': 'sha256 of path, inode, size and mtime'}

Drivers receive the store as Cinder's ``image_service`` (``info`` and ``path``
with the same context; the contract is :class:`~.base.ImageSource`). Exports
reserve their name with ``O_EXCL`` first, so an image is never overwritten,
and are written under a hidden name (a leading ``.``, which no image name
has) until complete.
"""

import errno
import hashlib
import os
import re
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.image import base, probe

__all__ = ['NAME_PATTERN', 'ImageStore', 'check_name', 'check_reference', 'is_host_path']

CONF = cfg.CONF
#: What an image name (and a project id used as a directory) must look like.
NAME_PATTERN = r'[A-Za-z0-9][A-Za-z0-9._-]{0,254}'
_NAME = re.compile(NAME_PATTERN)


def is_host_path(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith('/')


def _is_name(value: Any) -> bool:
    # fullmatch: '$' would accept a trailing newline
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def check_name(name: Any, what: str = 'image') -> None:
    if not _is_name(name):
        raise exception.Invalid(reason='%s name %r must be 1 to 255 letters, digits, '
                                '".", "_" or "-", not starting with "." or "-"'
                                % (what, name))


def check_reference(ctxt: Any, ref: Any, what: str = 'image') -> None:
    """Syntax, and who may name host paths; no file is looked at (the API runs it)."""
    if is_host_path(ref):
        if not getattr(ctxt, 'is_admin', False):
            raise exception.Forbidden('%s %s: only administrators may name host files; '
                                      'name an image of the image store instead'
                                      % (what, ref))
        if '\0' in ref:
            raise exception.Invalid(reason='%s path contains a NUL byte' % what)
        return
    if not _is_name(ref):
        raise exception.Invalid(reason='%s %r is not an image name (1 to 255 letters, '
                                'digits, ".", "_" or "-", not starting with "." or "-")'
                                % (what, ref))


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip('/') + '/')


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class ImageStore(base.ImageSource):
    """The :class:`~.base.ImageSource` of a compute host. ``root``/``allowed_paths``
    default to ``[image]`` options (read at each use)."""

    def __init__(self, root: str | None = None, allowed_paths: list[str] | None = None,
                 execute: processutils.Executor = processutils.execute) -> None:
        self._root = root
        self._allowed = allowed_paths
        self._execute = execute

    # ---- layout
    @property
    def root(self) -> str:
        return os.path.realpath(self._root or CONF.image.store_path)

    def allowed_roots(self) -> list[str]:
        allowed = CONF.image.allowed_paths if self._allowed is None else self._allowed
        return [os.path.realpath(p) for p in allowed if p] + [self.root]

    def project_dir(self, project_id: Any) -> str | None:
        """The project's directory; None for an id that is no safe directory name."""
        if not _is_name(project_id):
            return None
        return os.path.join(self.root, 'projects', project_id)

    @property
    def public_dir(self) -> str:
        return os.path.join(self.root, 'public')

    # ---- resolution
    def locate(self, ctxt: Any, ref: Any, what: str = 'image') -> str:
        """Real path of the file ``ref`` names for ``ctxt``, or a 4xx error."""
        check_reference(ctxt, ref, what)
        if is_host_path(ref):
            real = os.path.realpath(ref)
            if not any(_within(real, root) for root in self.allowed_roots()):
                raise exception.Forbidden('%s %s is not under a directory of [image] '
                                          'allowed_paths or the image store' % (what, ref))
            candidates = [(real, self.allowed_roots())]
        else:
            candidates = []
            own = self.project_dir(getattr(ctxt, 'project_id', None))
            if own is not None:
                candidates.append((os.path.join(own, ref), [own]))
            # The operator may link public entries to files of allowed directories.
            candidates.append((os.path.join(self.public_dir, ref), self.allowed_roots()))
        for path, roots in candidates:
            real = os.path.realpath(path)
            if os.path.isfile(real) and any(_within(real, root) for root in roots):
                return real
        raise exception.Invalid(reason='%s %s was not found' % (what, ref))

    def path(self, ctxt: Any, image_id: str) -> str:
        return self.locate(ctxt, image_id)

    def info(self, ctxt: Any, image_id: str) -> dict[str, Any]:
        path = self.locate(ctxt, image_id)
        stat = os.stat(path)
        if stat.st_size == 0:
            raise exception.Invalid(reason='image %s is empty (still being written?)'
                                    % image_id)
        details = probe.probe(path, image_id, execute=self._execute)
        return dict(details, id=image_id, size=stat.st_size, cache_key=_identity(path))

    def check_unchanged(self, ctxt: Any, info: dict[str, Any]) -> None:
        """Fail if the file ``info`` described was replaced since it was probed: its
        format, given to qemu-img with ``-f``, would no longer be the probed one."""
        if _identity(self.locate(ctxt, info['id'])) != info['cache_key']:
            raise exception.Invalid(reason='image %s changed while it was read; try again'
                                    % info['id'])

    # ---- exports
    def reserve(self, ctxt: Any, name: str) -> None:
        """Claim ``name`` in the caller's project (O_EXCL: never an existing image)."""
        path = self._export_path(ctxt, name)
        os.makedirs(os.path.dirname(path), mode=0o750, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o640)
        except FileExistsError:
            raise exception.Conflict(reason='project %s already has an image named %s'
                                     % (ctxt.project_id, name)) from None
        os.close(fd)

    def export_paths(self, ctxt: Any, name: str) -> tuple[str, str]:
        """(final path, hidden work path) of a reserved export."""
        path = self._export_path(ctxt, name)
        if not os.path.isfile(path) or os.path.getsize(path):
            raise exception.Invalid(reason='image name %s was not reserved' % name)
        return path, os.path.join(os.path.dirname(path), '.%s.export' % name)

    def finish_export(self, ctxt: Any, name: str, work: str | None) -> None:
        """Publish the written image, or (``work`` None: it failed) drop every file."""
        path, hidden = self.export_paths(ctxt, name)
        if work is not None:
            os.replace(work, path)
            return
        for leftover in (hidden, hidden + '.part', path):
            _unlink(leftover)

    def remove_incomplete(self) -> list[str]:
        """At start-up, no export runs: drop reservations and half-written files."""
        removed = []
        base = os.path.join(self.root, 'projects')
        for project in os.listdir(base) if os.path.isdir(base) else ():
            directory = os.path.join(base, project)
            for entry in os.scandir(directory):
                if entry.is_file(follow_symlinks=False) and (
                        entry.name.startswith('.') or entry.stat().st_size == 0):
                    _unlink(entry.path)
                    removed.append(entry.path)
        return removed

    def _export_path(self, ctxt: Any, name: str) -> str:
        check_name(name)
        directory = self.project_dir(getattr(ctxt, 'project_id', None))
        if directory is None:
            raise exception.Invalid(reason='project id %r cannot own images'
                                    % getattr(ctxt, 'project_id', None))
        return os.path.join(directory, name)

    # ---- listing and deleting (the caller's and the public images)
    def list(self, ctxt: Any) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        own = self.project_dir(getattr(ctxt, 'project_id', None))
        for visibility, directory in (('private', own), ('public', self.public_dir)):
            if directory is None or not os.path.isdir(directory):
                continue
            for entry in sorted(os.scandir(directory), key=lambda e: e.name):
                if not _is_name(entry.name) or entry.name in found:
                    continue  # hidden work files; a project's own image shadows a public one
                try:
                    size = os.stat(entry.path).st_size
                except OSError:
                    continue
                if size and os.path.isfile(entry.path):
                    found[entry.name] = {'name': entry.name, 'size': size,
                                         'visibility': visibility}
        return sorted(found.values(), key=lambda i: i['name'])

    def delete(self, ctxt: Any, name: str) -> None:
        """Delete one of the caller's project's images (public ones are the operator's)."""
        path = self._export_path(ctxt, name)
        try:
            if os.path.getsize(path) == 0:
                raise exception.Conflict(reason='image %s is still being written' % name)
            os.unlink(path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            raise exception.NotFound('Project %s has no image named %s'
                                     % (ctxt.project_id, name)) from None


def _identity(path: str) -> str:
    stat = os.stat(path)
    return hashlib.sha256(('%s:%d:%d:%d' % (path, stat.st_ino, stat.st_size,
                                            stat.st_mtime_ns)).encode()).hexdigest()
