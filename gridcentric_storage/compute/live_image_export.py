"""Live images as one file of the image store: Cobalt's co_export and import.

An export is a tar in the exporting project's image store area
(``live-image-<id>.tar``)::

    manifest.json      format, memory_mb, vcpus, the artifacts' extra, the files
    files/<name>       every regular file of the live image's directory

Both the tar and the files unpacked from it are written sparse (all-zero
chunks become holes), so a mostly untouched guest RAM costs little disk.
Its sha256 goes into the export document, and the import checks it before
reading a single member.

Packing and unpacking are generic over the directory (regular files, one
level of subdirectories: a Nova instance's live image goes the same way).
What an import accepts is narrower, because the files are the caller's input
and the clone's QEMU reads them as root: by default (:func:`check_qemu_files`)
only the standalone QEMU driver's layout (``ram``, ``state``,
``layout.json``), with ``layout.json`` checked field by field (its strings
reach QEMU's argv), and no volumes; another kind passes its own ``check``.
A hostile tar (links, devices, absolute names, ``..``, unknown members) is
refused with nothing left behind.
"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from typing import IO, Any

from gridcentric_storage.common import exception
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.virt import base as virt
from gridcentric_storage.virt import qemu_live

__all__ = ['FORMAT', 'Checker', 'check_qemu_files', 'export', 'image_name', 'import_',
           'pack', 'unpack']

FORMAT = 'gridcentric-live-image/1'
MANIFEST = 'manifest.json'
FILES = 'files/'
#: What an import accepts in a live image directory (the QEMU driver's bless).
IMPORTABLE = frozenset({'ram', 'state', 'layout.json'})
_CHUNK = 1 << 20
_HOLE = 64 << 10              # holes are made in runs of whole 64 KiB zero chunks
_ZEROS = bytes(_HOLE)
_MAX_MEMBERS = 64
_MAX_JSON = 1 << 20
_FILE_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,127}')
_TOKEN = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]{0,63}')    # no ',' or '=': one QEMU value
_MAC = re.compile(r'[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}')
_SHA256 = re.compile(r'[0-9a-f]{64}')


def image_name(live_image_id: str) -> str:
    return 'live-image-%s.tar' % live_image_id


def _refuse(reason: str) -> exception.Invalid:
    return exception.Invalid(reason='not an importable live image export: %s' % reason)


class _SparseWriter:
    """A write-only file for tarfile: hashes every byte (with ``digest``), seeks
    over zero chunks instead of writing them (the result is sparse)."""

    def __init__(self, f: IO[bytes], digest: bool = True) -> None:
        self.f = f
        self.sha = hashlib.sha256() if digest else None
        self.size = 0
        self._pending = 0

    def write(self, data: bytes | bytearray) -> int:
        if self.sha is not None:
            self.sha.update(data)
        for start in range(0, len(data), _HOLE):
            piece = data[start:start + _HOLE]
            if piece == _ZEROS:
                self._pending += _HOLE
                continue
            if self._pending:
                self.f.seek(self._pending, os.SEEK_CUR)
                self._pending = 0
            self.f.write(piece)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def finish(self) -> None:
        if self._pending:
            self.f.seek(self._pending, os.SEEK_CUR)
            self._pending = 0
        self.f.truncate(self.size)     # a trailing hole still counts in the size


def _directory_files(directory: str) -> list[str]:
    """Every regular file of the directory, relative, sorted (symlinks refused)."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            if os.path.islink(path) or not os.path.isfile(path):
                raise exception.Invalid(reason='live image files must be regular files; '
                                        '%s is not' % os.path.relpath(path, directory))
            found.append(os.path.relpath(path, directory))
    return sorted(found)


def pack(artifacts: virt.LiveImageArtifacts, out: str, files: list[str] | None = None,
         replaced: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Write the export tar to the new file ``out``; its sha256 and size.

    ``files`` narrows what of the directory goes in (default: every file);
    ``replaced`` gives some of them other contents (what a member may not see
    of the original, a host path, is left out that way).
    """
    if artifacts.disks:
        raise exception.Invalid(reason='live image %s has %d volume snapshot(s); exporting '
                                'live images with volumes is not supported'
                                % (artifacts.live_image_id, len(artifacts.disks)))
    directory = artifacts.directory
    if not os.path.isdir(directory):
        raise exception.LiveImageFilesMissing(id=artifacts.live_image_id,
                                              reason='its files are not on this host')
    present = _directory_files(directory)
    files = present if files is None else sorted(set(files) & set(present))
    replaced = replaced or {}
    manifest = {'format': FORMAT, 'live_image_id': artifacts.live_image_id,
                'memory_mb': artifacts.memory_mb, 'vcpus': artifacts.vcpus,
                'memory_file': os.path.relpath(artifacts.memory_path, directory),
                'state_file': os.path.relpath(artifacts.state_path, directory),
                'extra': artifacts.extra, 'files': files}
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with open(out, 'xb') as f:
        writer = _SparseWriter(f)
        with tarfile.open(fileobj=writer, mode='w', copybufsize=_CHUNK,  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, _BytesReader(body))
            for name in files:
                if name in replaced:
                    info = tarfile.TarInfo(FILES + name)
                    info.size, info.mode = len(replaced[name]), 0o644
                    tar.addfile(info, _BytesReader(replaced[name]))
                    continue
                path = os.path.join(directory, name)
                with open(path, 'rb') as member:
                    stat = os.fstat(member.fileno())
                    info = tarfile.TarInfo(FILES + name)
                    info.size, info.mode, info.mtime = stat.st_size, 0o644, int(stat.st_mtime)
                    tar.addfile(info, member)
        writer.finish()
    assert writer.sha is not None
    return {'sha256': writer.sha.hexdigest(), 'size': writer.size}


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return chunk


def export(ctxt: Any, store: ImageStore, artifacts: virt.LiveImageArtifacts,
           files: list[str] | None = None, replaced: dict[str, bytes] | None = None
           ) -> dict[str, Any]:
    """Pack the live image (as :func:`pack`) into the caller's project's image store;
    the image's name, sha256 and size. The name is reserved first: an existing
    image is a 409."""
    name = image_name(artifacts.live_image_id)
    store.reserve(ctxt, name)
    work = None
    try:
        _final, work = store.export_paths(ctxt, name)
        result = pack(artifacts, work, files, replaced)
    except BaseException:
        store.finish_export(ctxt, name, None)
        raise
    store.finish_export(ctxt, name, work)
    return dict(result, image=name)


# ---- import

def _check_layout(data: Any, memory_mb: int, vcpus: int) -> None:
    """The QEMU driver's layout.json: its strings become QEMU arguments of a clone."""
    layout = data.get('layout') if isinstance(data, dict) else None
    if not isinstance(layout, dict):
        raise _refuse('layout.json has no layout')
    if layout.get('memory_mb') != memory_mb or layout.get('vcpus') != vcpus:
        raise _refuse('layout.json and the manifest disagree on the size')
    if layout.get('accel') not in ('kvm', 'tcg'):
        raise _refuse('accel must be kvm or tcg')
    for key in ('machine', 'cpu'):
        value = layout.get(key)
        if value is not None and not (isinstance(value, str) and _TOKEN.fullmatch(value)):
            raise _refuse('layout %s %r is not a plain name' % (key, value))
    if layout.get('netdev', 'user') != 'user':
        raise _refuse('only the user network backend is importable')
    mac = layout.get('mac')
    if mac is not None and not (isinstance(mac, str) and _MAC.fullmatch(mac)):
        raise _refuse('layout mac %r is not a MAC address' % (mac,))
    if layout.get('disks') or any(layout.get(k) for k in ('kernel', 'initrd', 'cmdline',
                                                          'live_image_id')):
        raise _refuse('layout names disks, boot files or another live image')


def check_qemu_files(read_json: Callable[[str], Any], files: set[str], memory_mb: int,
                     vcpus: int) -> None:
    """What an import accepts by default: the QEMU driver's bless, nothing else (a
    libvirt domain.xml would be defined as root, a Nova live image is Nova's)."""
    if files != IMPORTABLE:
        raise _refuse('its files must be exactly %s' % ', '.join(sorted(IMPORTABLE)))
    _check_layout(read_json('layout.json'), memory_mb, vcpus)


#: ``check(read_json, files, memory_mb, vcpus)``: refuse (``_refuse``) a directory
#: its kind of live image cannot launch safely; ``read_json(name)`` parses a file.
Checker = Callable[[Callable[[str], Any], set[str], int, int], None]


def _read_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    if member.size > _MAX_JSON:
        raise _refuse('%s is larger than %d bytes' % (member.name, _MAX_JSON))
    f = tar.extractfile(member)
    try:
        return json.loads(f.read() if f else b'')
    except ValueError as e:
        raise _refuse('%s is not JSON (%s)' % (member.name, e)) from None


def _members(tar: tarfile.TarFile) -> tuple[tarfile.TarInfo, dict[str, tarfile.TarInfo]]:
    """The manifest and the files; anything but regular files of plain names is refused."""
    manifest, files = None, {}
    for count, member in enumerate(tar, 1):
        if count > _MAX_MEMBERS:
            raise _refuse('more than %d members' % _MAX_MEMBERS)
        if not member.isreg():
            raise _refuse('member %r is not a regular file' % member.name)
        if member.name == MANIFEST and manifest is None:
            manifest = member
            continue
        name = member.name[len(FILES):] if member.name.startswith(FILES) else ''
        parts = name.split('/')
        if (len(parts) > 2 or name in files
                or not all(_FILE_NAME.fullmatch(part) for part in parts)):
            raise _refuse('member name %r is not allowed' % member.name)
        files[name] = member
    if manifest is None:
        raise _refuse('it has no %s' % MANIFEST)
    return manifest, files


def _check_manifest(manifest: Any, files: dict[str, tarfile.TarInfo]) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise _refuse('its format is not %s' % FORMAT)
    for key in ('memory_mb', 'vcpus'):
        if not isinstance(manifest.get(key), int) or not 0 < manifest[key] <= 1 << 22:
            raise _refuse('%s must be a positive integer' % key)
    if manifest.get('files') != sorted(files):
        raise _refuse('its manifest does not list its files')
    if (manifest.get('memory_file'), manifest.get('state_file')) != ('ram', 'state'):
        raise _refuse('its memory and state files must be ram and state')
    extra = manifest.get('extra')
    if not isinstance(extra, dict):
        raise _refuse('extra must be an object')
    # Only scalars survive: sizes, timings, checksums; nothing a driver takes as a path.
    kept = {k: v for k, v in extra.items() if isinstance(k, str) and len(k) <= 64
            and isinstance(v, (str, int, float, bool)) and len(str(v)) <= 256
            and k not in ('source_instance', 'ram_mode')}
    if 'ram_sha256' in kept and not _SHA256.fullmatch(str(kept['ram_sha256'])):
        raise _refuse('ram_sha256 is not a sha256')
    return {'memory_mb': manifest['memory_mb'], 'vcpus': manifest['vcpus'], 'extra': kept}


def _copy_sparse(src: IO[bytes], dst: str, size: int, digest: bool) -> str | None:
    """Write ``src`` to the new file ``dst`` with holes for zero chunks; its sha256
    if ``digest``."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, 'wb') as out:
        writer = _SparseWriter(out, digest)
        left = size
        while left:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise _refuse('%s is truncated' % os.path.basename(dst))
            writer.write(chunk)
            left -= len(chunk)
        writer.finish()
    return writer.sha.hexdigest() if writer.sha is not None else None


def unpack(path: str, sha256: str, directory: str, live_image_id: str,
           memory_mb: int, vcpus: int, check: Checker = check_qemu_files
           ) -> virt.LiveImageArtifacts:
    """Check and unpack the export at ``path`` into the new ``directory``.

    Refusals are 400s (``exception.Invalid``) and leave no directory behind.
    """
    with open(path, 'rb') as f:
        digest = hashlib.sha256()
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise _refuse('its sha256 is %s, not %s' % (digest.hexdigest(), sha256))
        f.seek(0)
        # Same open file as hashed: a replaced image cannot slip in between.
        os.mkdir(directory, 0o750)
        try:
            return _unpack_checked(f, directory, live_image_id, memory_mb, vcpus, check)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise


def _unpack_checked(f: IO[bytes], directory: str, live_image_id: str, memory_mb: int,
                    vcpus: int, check: Checker) -> virt.LiveImageArtifacts:
    try:
        with tarfile.open(fileobj=f, mode='r:') as tar:
            manifest_member, members = _members(tar)
            checked = _check_manifest(_read_json(tar, manifest_member), members)
            if (checked['memory_mb'], checked['vcpus']) != (memory_mb, vcpus):
                raise _refuse('the document and the manifest disagree on the size')
            check(lambda name: _read_json(tar, members[name]), set(members), memory_mb,
                  vcpus)
            for name, member in sorted(members.items()):
                if '/' in name:
                    os.makedirs(os.path.join(directory, os.path.dirname(name)), 0o755,
                                exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None      # regular files only (_members)
                recorded = checked['extra'].get('ram_sha256') if name == 'ram' else None
                digest = _copy_sparse(src, os.path.join(directory, name), member.size,
                                      recorded is not None)
                if digest != recorded:
                    raise _refuse('ram does not match its recorded sha256')
    except tarfile.TarError as e:
        raise _refuse('the tar cannot be read (%s)' % e) from None
    ram_mode = qemu_live.frozen_ram_mode()
    for name in members:
        # The RAM as bless leaves it: never written again (clones map it privately).
        os.chmod(os.path.join(directory, name), ram_mode if name == 'ram' else 0o644)
    os.chmod(directory, 0o755)
    return virt.LiveImageArtifacts(
        live_image_id=live_image_id, directory=directory,
        memory_path=os.path.join(directory, 'ram'),
        state_path=os.path.join(directory, 'state'), memory_mb=memory_mb, vcpus=vcpus,
        disks=[], extra=dict(checked['extra'], ram_mode='%04o' % ram_mode))


def import_(ctxt: Any, store: ImageStore, driver: virt.VirtDriver, root: str,
            image: str, sha256: str, live_image_id: str, memory_mb: int, vcpus: int,
            check: Checker = check_qemu_files) -> virt.LiveImageArtifacts:
    """Unpack the caller's (or a public) image into ``<root>/<live_image_id>`` and
    hand it to the driver; a driver without ``import_`` launches from the files."""
    path = store.locate(ctxt, image, 'export image')
    os.makedirs(root, exist_ok=True)
    directory = os.path.join(root, live_image_id)
    if os.path.lexists(directory):
        raise exception.Conflict(reason='live image %s already exists' % live_image_id)
    artifacts = unpack(path, sha256, directory, live_image_id, memory_mb, vcpus, check)
    try:
        return driver.import_({'artifacts': dataclasses.asdict(artifacts)})
    except NotImplementedError:
        return artifacts
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
