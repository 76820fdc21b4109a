"""The QEMU driver's multi-step QMP sequences and the files of live images.

Kept apart from ``qemu.py`` (process and instance bookkeeping) because these
are the steps whose timing is the product: the blessed VM is paused only for
:func:`save_state`, and a clone resumes after :func:`restore_state`; disk
hot-plug (:func:`plug_disk`, :func:`unplug_disk`) lives here too.

The live image RAM must never change after bless, yet the blessed VM keeps
running on its own RAM file. So while the VM is paused, :func:`freeze_copy`
clones that file into the live image: a ``FICLONE`` reflink where the file
system shares extents (XFS, btrfs: instant, no extra space), else a sparse
copy (only the pages the guest ever touched, ``SEEK_DATA``/``SEEK_HOLE`` +
``copy_file_range``). The result is made read-only (:func:`frozen_ram_mode`)
and its sha256 recorded, so anyone can check it never changed.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qmp
from gridcentric_storage.virt import qemu_cmdline as cmdline

__all__ = ['GUEST_FILE_NAMES', 'IGNORE_SHARED', 'freeze_copy', 'guest_file_contents',
           'guest_files', 'image_layout', 'write_guest_files', 'write_secrets',
           'plug_disk', 'restore_state', 'save_state', 'sha256', 'tail_lines', 'timed_save',
           'unplug_disk', 'write_file']

FICLONE = 0x40049409          # _IOW(0x94, 9, int) from linux/fs.h
_CHUNK = 64 << 20
IGNORE_SHARED = [{'capability': 'x-ignore-shared', 'state': True}]


def image_layout(artifacts: base.LiveImageArtifacts) -> cmdline.Layout:
    """The blessed VM's :class:`Layout`; exception.LiveImageFilesMissing when files are missing."""
    if not os.path.isdir(artifacts.directory):
        raise exception.LiveImageFilesMissing(id=artifacts.live_image_id,
                                reason='%s is gone (discarded?)' % artifacts.directory)
    try:
        with open(os.path.join(artifacts.directory, 'layout.json')) as f:
            layout = cmdline.Layout.from_json(json.load(f)['layout'])
    except (OSError, ValueError, KeyError) as e:
        raise exception.LiveImageFilesMissing(id=artifacts.live_image_id,
                                reason='no layout in %s (%s)' % (artifacts.directory, e))
    for path in (artifacts.memory_path, artifacts.state_path):
        if not os.path.isfile(path):
            raise exception.LiveImageFilesMissing(id=artifacts.live_image_id,
                                    reason='%s is missing (discarded?)' % path)
    return layout


def frozen_ram_mode() -> int:
    """The mode of a live image's RAM file: read-only for everyone but its owner
    when that owner is this unprivileged service, whose clones' QEMU 7.2 opens
    ``memory-backend-file`` O_RDWR even with ``share=off`` (no ``rom=off`` yet:
    MAP_PRIVATE never writes the file back). Root opens it whatever the mode."""
    return 0o444 if os.geteuid() == 0 else 0o644


def freeze_copy(src: str, dst: str) -> str:
    """Copy ``src`` to a new ``dst``; 'reflink' or 'sparse-copy' says how."""
    with open(src, 'rb') as fin, open(dst, 'xb') as fout:
        try:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
            return 'reflink'
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY,
                               errno.EPERM):
                raise
        size = os.fstat(fin.fileno()).st_size
        offset, kernel_copy = 0, True
        while offset < size:
            try:
                start = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:      # only a hole is left
                    break
                raise
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            kernel_copy = _copy_range(fin.fileno(), fout.fileno(), start, end, kernel_copy)
            offset = end
        fout.truncate(size)
    return 'sparse-copy'


def _copy_range(fin: int, fout: int, pos: int, end: int, kernel_copy: bool) -> bool:
    """Copy bytes [pos, end): ``copy_file_range``, or ``sendfile`` once that failed (EXDEV)."""
    while pos < end:
        if kernel_copy:
            try:
                n = os.copy_file_range(fin, fout, min(_CHUNK, end - pos), pos, pos)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                kernel_copy = False
                continue
        else:                                      # in-kernel too, across file systems
            os.lseek(fout, pos, os.SEEK_SET)
            n = os.sendfile(fout, fin, pos, min(_CHUNK, end - pos))
        if n == 0:
            raise OSError(errno.EIO, 'short copy at offset %d' % pos)
        pos += n
    return kernel_copy


def sha256(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def tail_lines(path: str, length: int | None) -> str:
    """The file's text, or its last ``length`` lines (read from the end)."""
    with open(path, 'rb') as f:
        if length is None:
            return f.read().decode(errors='replace')
        if length <= 0:
            return ''
        end = f.seek(0, os.SEEK_END)
        pos, data = end, b''
        while pos > 0 and data.count(b'\n') <= length:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    lines = data.decode(errors='replace').splitlines(keepends=True)
    return ''.join(lines[-length:])


def save_state(mon: qmp.Monitor, ram: str, work: str, timeout: float) -> dict[str, Any]:
    """Pause, save device state and freeze RAM into ``work``, restore the run state."""
    def pause() -> bool:
        was_running = mon.cmd('query-status')['status'] == 'running'
        mon.cmd('stop')
        return bool(was_running)

    def save_device_state(state: str) -> None:
        mon.cmd('migrate-set-capabilities', capabilities=IGNORE_SHARED)
        mon.migrate_file('migrate', state)
        qmp.wait_for_migration(mon, timeout)

    return timed_save(ram, work, pause, lambda: mon.cmd('cont'), save_device_state)


def timed_save(ram: str, work: str, pause: Callable[[], bool], resume: Callable[[], Any],
               save_device_state: Callable[[str], None]) -> dict[str, Any]:
    """The bless sequence of both virt drivers, timed: ``pause`` (true if the VM was
    running), ``save_device_state`` into ``work/state``, freeze a copy of the RAM into
    ``work/ram``, ``resume`` if it was running."""
    state = os.path.join(work, 'state')
    start = time.monotonic()
    was_running = pause()
    paused = time.monotonic()
    try:
        save_device_state(state)
        saved = time.monotonic()
        method = freeze_copy(ram, os.path.join(work, 'ram'))
        copied = time.monotonic()
    finally:
        if was_running:
            resume()
    resumed = time.monotonic()
    return {'ram_copy': method, 'state_seconds': round(saved - paused, 4),
            'ram_copy_seconds': round(copied - saved, 4),
            'paused_seconds': round(resumed - paused, 4),
            'bless_seconds': round(resumed - start, 4),
            'state_size': os.stat(state).st_size, 'resumed': was_running}


def restore_state(mon: qmp.Monitor, state: str, timeout: float) -> float:
    """Load ``state`` into a QEMU started with ``-incoming defer -S``, then run it.

    Returns the monotonic time the state was loaded (before ``cont``).
    """
    mon.cmd('migrate-set-capabilities', capabilities=IGNORE_SHARED)
    mon.migrate_file('migrate-incoming', state)
    qmp.wait_for_migration(mon, timeout)
    loaded = time.monotonic()
    mon.resume()()
    return loaded


def write_file(path: str, data: bytes | str, mode: int = 0o644) -> None:
    """Write ``path`` atomically (tmp + rename), created with ``mode``."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path + '.tmp'
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, 'wb') as f:
        f.write(raw)
    os.replace(tmp, path)


def plug_disk(mon: qmp.Monitor, disk: cmdline.DiskSlot) -> None:
    """Hot-plug ``disk`` into a running VM: secrets, ``blockdev-add``, ``device_add``."""
    options, secrets = cmdline.blockdev_options(disk.connection_info, disk.node, disk.read_only)
    for secret_id, value in secrets.items():
        mon.cmd('object-add', **{'qom-type': 'secret', 'id': secret_id, 'data': value})
    mon.cmd('blockdev-add', **options)
    try:
        mon.cmd('device_add', **cmdline.disk_device(disk))
    except exception.QmpError:
        mon.cmd('blockdev-del', **{'node-name': disk.node})
        for secret_id in secrets:
            mon.cmd('object-del', id=secret_id)
        raise


def _peripherals(mon: qmp.Monitor) -> set[str]:
    return {child['name'] for child in mon.cmd('qom-list', path='/machine/peripheral')}


def unplug_disk(mon: qmp.Monitor, disk: cmdline.DiskSlot, timeout: float) -> None:
    """Ask the guest to release ``disk`` (ACPI hot-unplug), then drop its nodes."""
    if disk.device_id in _peripherals(mon):
        mon.cmd('device_del', id=disk.device_id)
    deadline = time.monotonic() + timeout
    while disk.device_id in _peripherals(mon):
        if time.monotonic() > deadline:
            raise exception.DriverError(reason='the guest did not release %s within %.0f s'
                                        % (disk.volume_id, timeout))
        time.sleep(0.05)
    # The device leaves the QOM tree before it lets go of its drive (finalized
    # after an RCU grace period): retry while the node is still "in use".
    while True:
        try:
            mon.cmd('blockdev-del', **{'node-name': disk.node})
            break
        except exception.QmpError as e:
            if 'in use' not in e.message or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    _, secrets = cmdline.blockdev_options(disk.connection_info, disk.node)
    for secret_id in secrets:
        mon.cmd('object-del', id=secret_id)


#: fw_cfg name -> file name of a clone's guest files in its directory.
GUEST_FILE_NAMES = {'instance': 'fw-instance', 'guest': 'fw-guest',
                    'user_data': 'fw-user-data'}


def guest_file_contents(clone: base.CloneSpec, mac: str | None) -> dict[str, bytes]:
    """A clone's guest files (fw_cfg name -> content): ``instance``, ``guest``,
    ``user_data``; what fw_cfg and the identity port (``qemu_identity.py``) carry.

    ``guest`` holds ``k=v`` lines (what a guest agent parses), ``instance`` the
    clone's own ``id``/``name``/``mac`` (a clone keeps the blessed NIC's MAC
    until its agent sets the new one). Each line is one record, so no field
    may hold a line break or any other control character (a value may hold a
    tab): the API refuses them first, this is the last guard before a guest
    would read an injected line.
    """
    def refuse_controls(what: str, text: str, allowed: str = '') -> None:
        if any((ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in '\u2028\u2029')
               and c not in allowed for c in text):
            raise exception.Invalid(reason='%s %r holds a control character or line break'
                                    % (what, text))

    lines = []
    for key, value in sorted(clone.guest.items()):
        if not key or '=' in key:
            raise exception.Invalid(reason='guest parameter %r: keys must be non-empty '
                                    'and cannot hold "="' % key)
        refuse_controls('guest parameter', key)
        refuse_controls('guest parameter %s' % key, value, allowed='\t')
        lines.append('%s=%s\n' % (key, value))
    for what, field in (('clone id', clone.id), ('clone name', clone.name),
                        ('clone MAC', mac or '')):
        refuse_controls(what, field)
    identity = 'id=%s\nname=%s\n' % (clone.id, clone.name) + ('mac=%s\n' % mac if mac else '')
    contents = {'instance': identity.encode()}
    if lines:
        contents['guest'] = ''.join(lines).encode()
    if clone.user_data is not None:
        contents['user_data'] = clone.user_data
    return contents


def write_guest_files(directory: str, contents: dict[str, bytes]) -> dict[str, str]:
    """Write :func:`guest_file_contents` into ``directory``; fw_cfg name -> path
    (user data readable by its owner only)."""
    files = {}
    for name, content in contents.items():
        files[name] = os.path.join(directory, GUEST_FILE_NAMES[name])
        write_file(files[name], content, 0o600 if name == 'user_data' else 0o644)
    return files


def write_secrets(directory: str, layout: cmdline.Layout) -> dict[str, str]:
    """The secrets the disks' nodes name, each in a 0600 file of ``directory``;
    secret id -> path (QEMU reads them, no secret in its command line)."""
    files = {}
    for disk in layout.disks:
        _, secrets = cmdline.blockdev_options(disk.connection_info, disk.node, disk.read_only)
        for secret_id, value in secrets.items():
            files[secret_id] = os.path.join(directory, secret_id + '.secret')
            write_file(files[secret_id], value, 0o600)
    return files


def guest_files(directory: str, clone: base.CloneSpec, mac: str | None) -> dict[str, str]:
    """The clone's guest files written into ``directory``; fw_cfg name -> path."""
    return write_guest_files(directory, guest_file_contents(clone, mac))


def remove_live_image(live_images_path: str, artifacts: Any) -> None:
    """Remove a live image's directory (and a half-made one); only under the root."""
    paths = {os.path.join(live_images_path, artifacts.live_image_id)}
    if artifacts.directory:
        paths.add(os.path.abspath(artifacts.directory))
    for path in paths:
        if os.path.dirname(path) == live_images_path:
            shutil.rmtree(path, ignore_errors=True)
            shutil.rmtree(path + '.blessing', ignore_errors=True)
