"""Volumes (``/v1/volumes``, per project) and their ``volume-*`` commands.

A novaclient extension module: :class:`VolumeManager` is attached to the client as
``gc_volumes`` (novaclient's own ``volumes`` attribute is Nova's volume proxy).
Creation, deletion and the actions are asynchronous (HTTP 202);
:meth:`~gridcentric_storage.client.utils.GCManager.wait` polls until the work is done::

    vol = gc.gc_volumes.create(size=1, name='v1', tags=['ssd'])   # status 'creating'
    vol = gc.gc_volumes.wait(vol, timeout=300)                     # 'available'
    clone = gc.gc_volumes.create(source_volid=vol.id)              # size of the source
    gc.gc_volumes.extend(vol, 2)                                   # 'extending'
    with open('disk.raw', 'rb') as f:
        gc.gc_volumes.upload(vol, f, os.path.getsize('disk.raw'))
    gc.gc_volumes.delete(vol, cascade=True)                        # and its snapshots
    gc.gc_volumes.wait(vol, deleted=True)                          # gone (None)

A volume as the API shows it::

    {"id": "0b5e...", "name": "v1", "size": 1, "status": "available",
     "status_reason": null, "backend_id": "6f0c...", "project_id": "...",
     "user_id": "...", "tags": ["ssd"], "source_volid": null, "snapshot_id": null,
     "image_id": null, "multiattach": false, "attachments": [], "created_at": "...",
     "updated_at": "..."}
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from novaclient import base, exceptions
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils

FILTERS = ('name', 'status', 'backend_id')
CREATE_FIELDS = ('name', 'backend_id', 'tags', 'role', 'availability_zone', 'capabilities',
                 'requirements', 'rank', 'source_volid', 'snapshot_id', 'imageRef',
                 'multiattach')
TRANSITIONAL = frozenset({'creating', 'deleting', 'extending', 'reverting', 'migrating',
                          'attaching', 'detaching', 'downloading', 'uploading'})
DISK_FORMATS = ('raw', 'qcow2')
GiB = 1 << 30
CHUNK = 1 << 20
#: Bytes per read of a stream's file and per socket write or read: the HTTP
#: libraries' own 8-16 KiB blocks cost a system call and a Python round each.
STREAM_BLOCK = 4 << 20


class Volume(base.Resource):
    def __repr__(self) -> str:
        return '<Volume %s>' % (self._info.get('name') or self._info.get('id'))

    def delete(self, cascade: bool = False, force: bool = False) -> None:
        self.manager.delete(self, cascade=cascade, force=force)


class VolumeManager(utils.GCManager):
    resource_class = Volume
    collection_key = 'volumes'
    resource_key = 'volume'
    base_url = '/v1/volumes'
    transitional = TRANSITIONAL

    def list(self, limit: int | None = None, marker: str | None = None,
             all_tenants: bool = False, search_opts: dict[str, Any] | None = None,
             **filters: Any) -> list[Volume]:
        """Volumes matching ``filters`` (any of :data:`FILTERS`); every page unless
        ``limit`` is given; ``all_tenants`` (admin) lists every project's.
        ``search_opts`` are more filters, under the name ``ManagerWithFind.findall``
        passes its name filter to the API."""
        filters.update(search_opts or {})
        unknown = set(filters) - set(FILTERS)
        if unknown:
            raise TypeError('unknown volume filters: {}'.format(', '.join(sorted(unknown))))
        params = dict(filters, all_tenants=1 if all_tenants else None)
        return self._list_paged(params, limit=limit, marker=marker)

    def create(self, size: int | None = None, **fields: Any) -> Volume:
        """Ask for a ``size`` GiB volume; ``fields`` are any of :data:`CREATE_FIELDS`.

        With a source (``source_volid``, ``snapshot_id`` or ``imageRef``, an absolute
        path of a raw or qcow2 file on the backend's host) ``size`` defaults to the
        source's. Returns at once with status ``creating``; see ``wait``.
        """
        unknown = set(fields) - set(CREATE_FIELDS)
        if unknown:
            raise TypeError('unknown volume fields: {}'.format(', '.join(sorted(unknown))))
        body = {k: v for k, v in dict(fields, size=size).items() if v is not None}
        return self._post(self.base_url, {'volume': body})

    def delete(self, volume: Any, cascade: bool = False, force: bool = False) -> None:
        """Start deleting a volume (status ``deleting``, then it disappears);
        ``cascade`` deletes its snapshots too, ``force`` (admin) ends its attachments."""
        query = utils._query({'cascade': 'true' if cascade else None,
                              'force': 'true' if force else None})
        self._delete(self._url(volume) + query)

    def _action(self, volume: Any, name: str, args: dict[str, Any]) -> Any:
        resp, body = self.api.client.post(self._url(volume, '/action'), body={name: args})
        return body

    def extend(self, volume: Any, new_size: int) -> None:
        """Grow to ``new_size`` GiB (status ``extending``; on failure the volume keeps
        its size and says why in ``status_reason``)."""
        self._action(volume, 'os-extend', {'new_size': new_size})

    def revert(self, volume: Any, snapshot: Any) -> None:
        """Put back the data of one of the volume's snapshots (status ``reverting``)."""
        self._action(volume, 'revert', {'snapshot_id': base.getid(snapshot)})

    def migrate(self, volume: Any, backend: Any = None, force_host_copy: bool = False,
                **placement: Any) -> None:
        """Move to another backend, keeping the ID (admin; status ``migrating``):
        ``backend`` (ID or name), or placement fields (``tags``, ``role``,
        ``requirements``...) for the scheduler's pick. Admins read
        ``migration_status`` and ``migration_progress`` meanwhile."""
        args = {k: v for k, v in placement.items() if v is not None}
        if backend is not None:
            args['backend'] = base.getid(backend)
        if force_host_copy:
            args['force_host_copy'] = True
        self._action(volume, 'migrate', args)

    def force_detach(self, volume: Any, attachment: Any = None) -> None:
        """End one attachment (or all of them) whatever the attacher does (admin)."""
        args = {'attachment_id': base.getid(attachment)} if attachment is not None else {}
        self._action(volume, 'os-force_detach', args)

    def upload_to_image(self, volume: Any, image_name: str,
                        disk_format: str = 'raw') -> dict[str, Any]:
        """Write the volume out as an image (status ``uploading``). Returns the API's
        answer; its ``image_id`` is the image's name in the caller's project."""
        body = self._action(volume, 'os-volume_upload_image',
                            {'image_name': image_name, 'disk_format': disk_format})
        return dict(body['os-volume_upload_image'])

    def download(self, volume: Any, out: IO[bytes],
                 progress: Callable[[int], None] | None = None) -> int:
        """Write the whole volume (``size`` GiB) to the binary file ``out``; returns
        the byte count. ``progress(count)`` is called after every chunk."""
        resp = self._raw('GET', self._url(volume, '/data'), stream=True,
                         headers={'Accept': 'application/octet-stream'})
        with contextlib.closing(resp):
            total = int(resp.headers.get('Content-Length') or -1)
            count = 0
            for chunk in resp.iter_content(STREAM_BLOCK):
                out.write(chunk)
                count += len(chunk)
                if progress is not None:
                    progress(count)
        if total >= 0 and count != total:
            raise utils.ClientError(f'The download ended after {count} of {total} bytes.')
        return count

    def upload(self, volume: Any, data: bytes | IO[bytes], length: int | None = None,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Write ``data`` (bytes, or ``length`` bytes of a binary file: the API needs the
        length up front) to the volume from its first byte. Returns ``{"id",
        "bytes_written"}``."""
        if isinstance(data, bytes):
            length = len(data) if length is None else length
            data = io.BytesIO(data)
        if length is None:
            raise TypeError('upload() needs the length of a file object')
        resp = self._raw('PUT', self._url(volume, '/data'),
                         data=_BigBlocks(data, length, progress),
                         headers={'Content-Type': 'application/octet-stream',
                                  'Content-Length': str(length),
                                  'Accept': 'application/json'})
        with contextlib.closing(resp):
            return dict(resp.json()['volume'])


class _BigBlocks(utils.ProgressReader):
    """An upload body read ``STREAM_BLOCK`` bytes at a time whatever block the
    HTTP library asks for (it sends whatever ``read`` returns)."""

    def read(self, size: int = -1) -> bytes:
        return super().read(size if size is None or size < 0 else max(size, STREAM_BLOCK))


# ---------------------------------------------------------------------------
# gc-api commands


LIST_COLUMNS = [
    ('ID', 'id'), ('Name', 'name'), ('Status', 'status'), ('Size', 'size'),
    ('Backend', 'backend_id'), ('Tags', 'tags'),
]


def _wait(gc: Any, volume: Any, timeout: float, action: str = 'creating',
          deleted: bool = False) -> Any:
    return utils.wait_for(gc.gc_volumes, volume, timeout, action, deleted)


@arg('--size', type=utils.positive_int, metavar='GIB',
     help='Size in GiB (default with a source: the size of the source).')
@arg('--name')
@arg('--snapshot', metavar='ID|NAME', help='Create from this snapshot.')
@arg('--source-volume', metavar='ID|NAME', help='Create as a clone of this volume.')
@arg('--image', metavar='NAME',
     help="Create from this image of the image store (yours or a public one); "
          "administrators may also give an absolute path under [image] "
          "allowed_paths.")
@arg('--multiattach', action='store_true',
     help='Allow attaching to several hosts at once (where the backend can).')
@arg('--backend', metavar='ID|NAME', help='Place on this backend (admin).')
@arg('--tag', action='append', dest='tags', metavar='TAG',
     help='Required backend tag (repeatable).')
@arg('--role', choices=('san', 'repository'))
@arg('--availability-zone', metavar='AZ')
@arg('--requirements', metavar='EXPR', help='Backend filter expression.')
@arg('--rank', metavar='EXPR',
     help='Backend ranking expression (higher wins); write --rank=EXPR when EXPR '
          'starts with "-".')
@utils.wait_args
def do_volume_create(gc: Any, args: argparse.Namespace) -> None:
    """Create a volume: blank, or from a snapshot, a volume or an image."""
    sources = [opt for opt, value in (('--snapshot', args.snapshot),
                                      ('--source-volume', args.source_volume),
                                      ('--image', args.image)) if value]
    if len(sources) > 1:
        raise exceptions.CommandError('Give at most one of --snapshot, --source-volume and '
                                 f'--image, not {" and ".join(sources)}.')
    if not sources and args.size is None:
        raise exceptions.CommandError('--size is required unless --snapshot, --source-volume '
                                 'or --image is given.')
    volume = gc.gc_volumes.create(
        args.size, name=args.name, backend_id=utils.backend_id(gc, args.backend),
        tags=args.tags, role=args.role, availability_zone=args.availability_zone,
        requirements=args.requirements, rank=args.rank, imageRef=args.image,
        snapshot_id=args.snapshot and find_resource(gc.gc_snapshots, args.snapshot).id,
        source_volid=args.source_volume and find_resource(gc.gc_volumes, args.source_volume).id,
        multiattach=args.multiattach or None)
    if args.wait:
        volume = _wait(gc, volume, args.timeout)
    utils.print_dict(volume, args.json)


@arg('--name', help='Exact volume name.')
@arg('--status')
@arg('--backend', metavar='ID|NAME')
@arg('--all-tenants', action='store_true', help='Every project (admin).')
@arg('--limit', type=utils.positive_int, help='At most this many volumes.')
@arg('--marker', metavar='ID', help='Start after this volume ID.')
def do_volume_list(gc: Any, args: argparse.Namespace) -> None:
    """List volumes."""
    volumes = gc.gc_volumes.list(limit=args.limit, marker=args.marker,
                                 all_tenants=args.all_tenants, name=args.name,
                                 status=args.status,
                                 backend_id=utils.backend_id(gc, args.backend))
    columns = LIST_COLUMNS + ([('Project', 'project_id')] if args.all_tenants else [])
    utils.print_list(volumes, columns, args.json)


@arg('volume', metavar='ID|NAME')
def do_volume_show(gc: Any, args: argparse.Namespace) -> None:
    """Show a volume."""
    utils.print_dict(find_resource(gc.gc_volumes, args.volume), args.json)


@arg('volumes', metavar='ID|NAME', nargs='+')
@arg('--cascade', action='store_true', help='Delete its snapshots too.')
@arg('--force', action='store_true', help='End its attachments first (admin).')
@utils.wait_args
def do_volume_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete volumes."""
    def delete(name_or_id: str) -> Volume:
        volume = find_resource(gc.gc_volumes, name_or_id)
        gc.gc_volumes.delete(volume, cascade=args.cascade, force=args.force)
        return volume

    def wait(volume: Volume) -> None:
        _wait(gc, volume, args.timeout, 'deleting', deleted=True)

    utils.for_each(args.volumes, delete, 'Unable to delete volume(s)',
                   wait if args.wait else None)


def _settled(gc: Any, volume: Any, args: argparse.Namespace, action: str) -> Any:
    """After an action: the volume once settled (with --wait), failures raised."""
    if not args.wait:
        return gc.gc_volumes.get(volume)
    current = _wait(gc, volume, args.timeout, action)
    reason = current.to_dict().get('status_reason')
    if reason:   # extend and upload-to-image fail back to the previous status
        raise utils.ResourceInErrorState(current, f'Volume {utils.label(current)}: {reason}')
    return current


@arg('volume', metavar='ID|NAME')
@arg('new_size', metavar='NEW_SIZE', type=utils.positive_int, help='New size in GiB.')
@utils.wait_args
def do_volume_extend(gc: Any, args: argparse.Namespace) -> None:
    """Grow a volume (also while attached, where the backend can)."""
    volume = find_resource(gc.gc_volumes, args.volume)
    gc.gc_volumes.extend(volume, args.new_size)
    utils.print_dict(_settled(gc, volume, args, 'extending'), args.json)


@arg('volume', metavar='ID|NAME')
@arg('backend', metavar='BACKEND', nargs='?',
     help='ID or name of the destination backend; without it the scheduler picks '
          'another backend matching --tag/--role/--requirements.')
@arg('--tag', action='append', dest='tags', metavar='TAG',
     help='Required backend tag (repeatable), without BACKEND.')
@arg('--role', choices=('san', 'repository'))
@arg('--requirements', metavar='EXPR', help='Backend filter expression, without BACKEND.')
@arg('--force-host-copy', action='store_true',
     help='Copy through the owner host even where the backends could move the data '
          'themselves.')
@utils.wait_args
def do_volume_migrate(gc: Any, args: argparse.Namespace) -> None:
    """Move a volume to another backend (admin); it keeps its ID, and an attached
    volume of a running server moves live."""
    volume = find_resource(gc.gc_volumes, args.volume)
    gc.gc_volumes.migrate(volume, args.backend, args.force_host_copy, tags=args.tags,
                          role=args.role, requirements=args.requirements)
    if not args.wait:
        utils.print_dict(gc.gc_volumes.get(volume), args.json)
        return
    progress = utils.Progress(f'migrating volume {utils.label(volume)}')

    def show(current: Any, _elapsed: float) -> None:
        percent = current.to_dict().get('migration_progress')
        progress.update(current.status if percent is None
                        else f'{current.status} {percent}%')
    try:
        current = gc.gc_volumes.wait(volume, timeout=args.timeout or None, progress=show)
    finally:
        progress.done()
    info = current.to_dict()
    if info.get('migration_status') == 'error':
        raise utils.ResourceInErrorState(
            current, f'Volume {utils.label(current)} did not migrate: '
                     f'{info.get("status_reason") or "no reason given"}')
    utils.print_dict(current, args.json)


@arg('volume', metavar='ID|NAME')
@arg('snapshot', metavar='SNAPSHOT', help='ID or name of one of its snapshots.')
@utils.wait_args
def do_volume_revert(gc: Any, args: argparse.Namespace) -> None:
    """Put back the data a volume had when a snapshot of it was taken."""
    volume = find_resource(gc.gc_volumes, args.volume)
    gc.gc_volumes.revert(volume, find_resource(gc.gc_snapshots, args.snapshot))
    utils.print_dict(_settled(gc, volume, args, 'reverting'), args.json)


@arg('volume', metavar='ID|NAME')
@arg('--attachment', metavar='ID', help='Only this attachment (default: all).')
def do_volume_force_detach(gc: Any, args: argparse.Namespace) -> None:
    """End a volume's attachments whatever the attached hosts do (admin)."""
    gc.gc_volumes.force_detach(find_resource(gc.gc_volumes, args.volume), args.attachment)


@arg('volume', metavar='ID|NAME')
@arg('image_name', metavar='IMAGE_NAME',
     help="Name of the new image in your project's image store.")
@arg('--disk-format', choices=DISK_FORMATS, default='raw')
@utils.wait_args
def do_volume_upload_to_image(gc: Any, args: argparse.Namespace) -> None:
    """Write a volume out as a new image of your project (image_id is its name)."""
    volume = find_resource(gc.gc_volumes, args.volume)
    image = gc.gc_volumes.upload_to_image(volume, args.image_name, args.disk_format)
    if args.wait:
        image['status'] = _settled(gc, volume, args, 'uploading').status
    utils.print_dict(image, args.json)


@arg('volume', metavar='ID|NAME')
@arg('--file', metavar='FILE', help='Write here (default: stdout, not a terminal).')
def do_volume_download(gc: Any, args: argparse.Namespace) -> None:
    """Read a whole volume into a file or stdout.

    gc-api volume-download VOLUME > disk.raw (a progress bar is drawn when stderr is
    a terminal).
    """
    if args.file is None and sys.stdout.isatty():
        raise exceptions.CommandError('Refusing to write binary data to a terminal; redirect '
                                 'stdout or use --file FILE.')
    volume = find_resource(gc.gc_volumes, args.volume)
    progress = utils.TransferProgress(f'downloading {utils.label(volume)}',
                                      volume.size * GiB)
    created = args.file is not None and not os.path.exists(args.file)
    try:
        if args.file is None:
            sys.stdout.flush()
            gc.gc_volumes.download(volume, sys.stdout.buffer, progress)
            sys.stdout.buffer.flush()
        else:
            with open(args.file, 'wb') as out:
                gc.gc_volumes.download(volume, out, progress)
    except BaseException:
        if created and os.path.isfile(args.file):   # no half-written new files
            os.unlink(args.file)
        raise
    finally:
        progress.done()
    # The data server marks the volume available again just after the last byte.
    with contextlib.suppress(utils.WaitTimeout):
        gc.gc_volumes.wait(volume, timeout=30, poll_interval=0.1)


def _regular_size(stream: IO[bytes]) -> int | None:
    """Bytes left in a regular file or block device, None for pipes and terminals."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
        if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
            position = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(position)
            return end - position
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _spool(stream: IO[bytes], spool: IO[bytes], limit: int, name: str) -> int:
    progress = utils.TransferProgress(f'reading {name}')
    length = 0
    try:
        while chunk := stream.read(CHUNK):
            length += len(chunk)
            if length > limit:
                raise exceptions.CommandError(f'The input is larger than the volume '
                                         f'({limit // GiB} GiB).')
            spool.write(chunk)
            progress(length)
    finally:
        progress.done()
    spool.seek(0)
    return length


@contextlib.contextmanager
def _input(path: str | None, limit: int) -> Iterator[tuple[IO[bytes], int]]:
    """The input and its length; a pipe is spooled to a temporary file first (the API
    needs the length up front)."""
    if path is None and (sys.stdin is None or sys.stdin.isatty()):
        raise exceptions.CommandError('Give --file FILE, or redirect stdin from a file or a pipe.')
    with contextlib.ExitStack() as stack:
        try:
            stream = sys.stdin.buffer if path is None else stack.enter_context(open(path, 'rb'))
        except OSError as exc:
            raise exceptions.CommandError(f'Cannot read {path}: {exc.strerror}') from None
        length = _regular_size(stream)
        if length is None:
            spool = stack.enter_context(tempfile.TemporaryFile(prefix='gc-api-upload-'))
            length = _spool(stream, spool, limit, path or 'stdin')
            stream = spool
        elif length > limit:
            raise exceptions.CommandError(f'The input ({length} bytes) is larger than the volume '
                                     f'({limit // GiB} GiB).')
        yield stream, length


@arg('volume', metavar='ID|NAME')
@arg('--file', metavar='FILE', help='Read this (default: stdin; a pipe is spooled '
                                     'to a temporary file in $TMPDIR first).')
def do_volume_upload(gc: Any, args: argparse.Namespace) -> None:
    """Write a volume from its first byte, from a file or stdin.

    gc-api volume-upload VOLUME < disk.raw (a progress bar is drawn when stderr is a
    terminal).
    """
    volume = find_resource(gc.gc_volumes, args.volume)
    with _input(args.file, volume.size * GiB) as (stream, length):
        progress = utils.TransferProgress(f'uploading to {utils.label(volume)}', length)
        try:
            result = gc.gc_volumes.upload(volume, stream, length, progress)
        finally:
            progress.done()
    utils.print_dict(result, args.json)
