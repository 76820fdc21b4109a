"""Published live images on a host that did not bless them: mounts and checks.

Per live image this host launches clones of, one ``rbd-fuse -o kernel_cache``
daemon (restricted to that image with ``-r``) mounts its RAM image at
``<mount_root>/mnt/<id>/gc-live-<id>``; QEMU maps that file ``share=off``, so
pages come over on first touch and later clones share them through the page
cache (``kernel_cache`` keeps a new open from dropping them). State and layout
are fetched into ``<mount_root>/cache/<id>/`` and checked against the sha256
recorded at publish time.

Supervision: the daemon runs in the foreground as this service's child (in its
own session, so it outlives a crash of the service); a thread waits on it.
When it dies, the clones that map its file would die of SIGBUS on their next
uncached page, so they are failed now (ERROR with the
reason) through ``on_death``, the dead mount is detached and a new daemon is
started. A mount is dropped (daemon stopped, cache removed) when the live image
is discarded; the RBD image can only be removed once no daemon holds it open.
At service stop the mounts no QEMU maps are unmounted; those that running
clones still map stay, and the next start adopts them (watched by pid) with
any daemon a crash left, except those of live images discarded meanwhile.

Before QEMU starts, the file must be on a FUSE filesystem (statfs magic) with
the recorded size: a missing mount would otherwise let QEMU create an empty file
and start the guest from zeros.

A Nova instance's live image (:meth:`MountManager.nova_directory`, for
nova-compute's driver) is mounted the same way, with ``allow_other``: libvirt
runs its QEMU as its own user. Its other files are ``nova.store``'s to fetch.
"""

import atexit
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import exception, states
from gridcentric_storage.compute import live_image_publish as publish
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage
from gridcentric_storage.virt import base as virt

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

FUSE_SUPER_MAGIC = 0x65735546
_libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)


class _Statfs(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type comes first; the rest is padding here.
    _fields_ = [('f_type', ctypes.c_long), ('rest', ctypes.c_byte * 120)]


def fs_type(path: str) -> int:
    buf = _Statfs()
    if _libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(buf.f_type) & 0xffffffff


def check_ram_file(live_image_id: str, path: str, ram_size: int) -> None:
    """Refuse a RAM file that is not the published one as a FUSE file."""
    def refuse(reason: str) -> exception.LiveImageFilesMissing:
        return exception.LiveImageFilesMissing(id=live_image_id, reason=reason)
    try:
        kind = fs_type(path)
        size = os.stat(path).st_size
    except OSError as e:
        raise refuse('its published RAM is not mounted on this host (%s)'
                     % e.strerror) from None
    if kind != FUSE_SUPER_MAGIC:
        raise refuse('its published RAM file is on filesystem 0x%x, not the FUSE mount'
                     % kind)
    if size != ram_size:
        raise refuse('its published RAM file has %d bytes, not the %d published'
                     % (size, ram_size))


def root() -> str:
    return CONF.live_image_store.mount_root or os.path.join(
        CONF.state_path or '/var/lib/gridcentric-storage', 'live-image-store')


class _Adopted:
    """A daemon an earlier run of this service started, watched by its pid
    (the Popen methods this module uses)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not _alive(self.pid):
            self.returncode = -1  # not our child: its status is not ours to read
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired('rbd-fuse', timeout or 0)
            time.sleep(0.2)
        return code

    def send_signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def _processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    argv = [a.decode('utf-8', 'replace') for a in f.read().split(b'\0') if a]
            except OSError:
                continue
            found.append((int(entry), argv))
    return found


class Mount:
    def __init__(self, live_image_id: str, image: str, directory: str) -> None:
        self.live_image_id = live_image_id
        self.image = image
        self.directory = directory
        self.path = os.path.join(directory, image)
        self.proc: subprocess.Popen[bytes] | _Adopted | None = None
        self.stopping = False
        self.restarts = 0
        #: readable by other users (a QEMU libvirt runs as its own user)
        self.allow_other = False


class MountManager:
    """This host's mounts of published live images (see the module's doc)."""

    def __init__(self, on_death: Callable[[str, str], None] | None = None) -> None:
        self.on_death = on_death or (lambda live_image_id, reason: None)
        self._mounts: dict[str, Mount] = {}
        self._lock = threading.Lock()
        self._id_locks: dict[str, threading.Lock] = {}
        atexit.register(self.stop)

    def _id_lock(self, live_image_id: str) -> threading.Lock:
        with self._lock:
            return self._id_locks.setdefault(live_image_id, threading.Lock())

    def mounts(self) -> dict[str, Mount]:
        with self._lock:
            return dict(self._mounts)

    # ---- launch side
    def artifacts(self, live_image: LiveImage) -> virt.LiveImageArtifacts:
        """Artifacts whose RAM is the mounted published file, checked."""
        live_image_id = live_image['id']
        location = _location(live_image)
        with self._id_lock(live_image_id):
            cache = self._fetch(live_image_id, location)
            mount = self._ensure(live_image_id, location['image'])
        check_ram_file(live_image_id, mount.path, int(location['ram_size']))
        data = dict(live_image['artifacts'] or {})
        data['disks'] = [virt.Disk(**d) for d in data.get('disks', [])]
        data.update(directory=cache, memory_path=mount.path,
                    state_path=os.path.join(cache, 'state'))
        return virt.LiveImageArtifacts(**data)

    def nova_directory(self, live_image: LiveImage) -> str:
        """A Nova live image blessed elsewhere, ready here: its RAM mounted and
        checked, its other files fetched into this host's cache and checked, under
        a ``nova.json`` naming them (``nova.store``); that directory."""
        from gridcentric_storage.nova import store as nova_store

        live_image_id = live_image['id']
        location = _location(live_image)
        fresh = live_image_id not in self.mounts()
        try:
            with self._id_lock(live_image_id):
                mount = self._ensure(live_image_id, location['image'], allow_other=True)
                check_ram_file(live_image_id, mount.path, int(location['ram_size']))
                client = publish.StoreClient()
                try:
                    return nova_store.fetch(client, live_image_id, location,
                                            os.path.join(root(), 'cache', live_image_id),
                                            mount.path)
                finally:
                    client.close()
        except BaseException:
            if fresh:  # nothing of a refused first launch stays; later ones share it
                self.drop(live_image_id)
            raise

    def _fetch(self, live_image_id: str, location: dict[str, str]) -> str:
        """State and layout in this host's cache dir, matching the recorded sha256."""
        cache = os.path.join(root(), 'cache', live_image_id)
        wanted = {'state': (location['state_object'], location['state_sha256']),
                  'layout.json': (location['layout_object'], location['layout_sha256'])}
        if all(publish.sha256_file(os.path.join(cache, name)) == digest
               for name, (_, digest) in wanted.items()):
            return cache
        client = publish.StoreClient()
        try:
            os.makedirs(cache, exist_ok=True)
            for name, (obj, digest) in wanted.items():
                data = client.get_object(obj)
                if publish.sha256_of(data) != digest:
                    raise exception.LiveImageFilesMissing(
                        id=live_image_id, reason='its published %s does not match the '
                        'sha256 recorded at publish time' % name)
                tmp = os.path.join(cache, name + '.tmp')
                with open(tmp, 'wb') as f:
                    f.write(data)
                os.replace(tmp, os.path.join(cache, name))
        finally:
            client.close()
        return cache

    def _ensure(self, live_image_id: str, image: str, allow_other: bool = False) -> Mount:
        with self._lock:
            mount = self._mounts.get(live_image_id)
        if mount is not None and mount.proc is not None and mount.proc.poll() is None:
            return mount
        mount = Mount(live_image_id, image, os.path.join(root(), 'mnt', live_image_id))
        mount.allow_other = allow_other
        self._start(mount)
        with self._lock:
            self._mounts[live_image_id] = mount
        return mount

    def _argv(self, mount: Mount) -> list[str]:
        conf = CONF.live_image_store
        argv = [conf.rbd_fuse, '-f', '-c', conf.ceph_conf, '--id', conf.user]
        if conf.keyring:
            argv += ['--keyring', conf.keyring]
        return argv + ['-p', conf.pool, '-r', mount.image, mount.directory,
                       '-o', 'kernel_cache,allow_other' if mount.allow_other
                       else 'kernel_cache']

    def _start(self, mount: Mount) -> None:
        _detach(mount.directory)  # a mount a dead daemon left
        os.makedirs(mount.directory, exist_ok=True)
        log = open(mount.directory + '.log', 'ab')
        try:
            mount.proc = subprocess.Popen(self._argv(mount), stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=log, start_new_session=True)
        except OSError as e:
            raise exception.LiveImageFilesMissing(
                id=mount.live_image_id, reason='rbd-fuse cannot run: %s' % e) from None
        finally:
            log.close()
        deadline = time.monotonic() + CONF.live_image_store.timeout
        while True:
            if mount.proc.poll() is not None:
                raise exception.LiveImageFilesMissing(
                    id=mount.live_image_id, reason='rbd-fuse exited with %s: %s'
                    % (mount.proc.returncode, _tail(mount.directory + '.log')))
            try:
                if fs_type(mount.directory) == FUSE_SUPER_MAGIC and os.path.exists(
                        mount.path):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self._stop(mount)
                raise exception.LiveImageFilesMissing(
                    id=mount.live_image_id, reason='rbd-fuse did not mount %s within %d s'
                    % (mount.image, CONF.live_image_store.timeout))
            time.sleep(0.05)
        threading.Thread(target=self._watch, args=(mount, mount.proc), daemon=True,
                         name='gc-mount-%s' % mount.live_image_id[:8]).start()
        LOG.info('Mounted published live image %s (rbd-fuse pid %d)',
                 mount.live_image_id, mount.proc.pid)

    def _watch(self, mount: Mount, proc: 'subprocess.Popen[bytes] | _Adopted') -> None:
        code = proc.wait()
        if mount.stopping:
            return
        reason = ('the rbd-fuse daemon that mapped its RAM exited with %s' % code)
        LOG.error('Live image %s: %s; failing its clones here and mounting again',
                  mount.live_image_id, reason)
        _detach(mount.directory)
        try:
            self.on_death(mount.live_image_id, reason)
        except Exception:
            LOG.exception('Failing the clones of live image %s', mount.live_image_id)
        with self._id_lock(mount.live_image_id):
            if mount.stopping:
                return
            mount.restarts += 1
            try:
                self._start(mount)
            except Exception:
                LOG.exception('Mounting live image %s again failed; the next launch '
                              'tries again', mount.live_image_id)

    # ---- teardown
    def _stop(self, mount: Mount) -> None:
        mount.stopping = True
        proc = mount.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # libfuse unmounts on TERM
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _detach(mount.directory)

    def drop(self, live_image_id: str) -> None:
        """Stop the mount and remove the cached state and layout (a discard)."""
        with self._id_lock(live_image_id):
            with self._lock:
                mount = self._mounts.pop(live_image_id, None)
            if mount is not None:
                self._stop(mount)
            for path in (os.path.join(root(), 'mnt', live_image_id),
                         os.path.join(root(), 'cache', live_image_id)):
                _detach(path)
                shutil.rmtree(path, ignore_errors=True)
            try:
                os.unlink(os.path.join(root(), 'mnt', live_image_id) + '.log')
            except FileNotFoundError:
                pass

    def stop(self) -> None:
        """Service stop: unmount what no QEMU maps (the rest is adopted at the
        next start); cached files stay."""
        mapped = {arg for _, argv in _processes() for arg in argv}
        for mount in self.mounts().values():
            if any(mount.path in arg for arg in mapped):
                LOG.info('Leaving the mount of live image %s: clones map it',
                         mount.live_image_id)
                mount.stopping = True  # not ours to restart any more
                continue
            try:
                self._stop(mount)
            except Exception:
                LOG.warning('Unmounting %s failed', mount.directory, exc_info=True)
        with self._lock:
            self._mounts.clear()

    def adopt(self) -> None:
        """Service start: take over the daemons an earlier run left mounted under
        this host's root (clones map them); stop those whose mount is gone."""
        base = os.path.join(root(), 'mnt') + os.sep
        for pid, argv in _processes():
            if not argv or os.path.basename(argv[0]) != 'rbd-fuse' or '-r' not in argv:
                continue
            directory = next((a for a in argv if a.startswith(base)), None)
            if directory is None or argv.index('-r') + 1 >= len(argv):
                continue
            live_image_id = os.path.basename(directory)
            mount = Mount(live_image_id, argv[argv.index('-r') + 1], directory)
            mount.proc = _Adopted(pid)
            mount.allow_other = any('allow_other' in a for a in argv)  # a Nova one's
            if live_image_id not in self.mounts() and _discarded(live_image_id):
                # Its discard fenced this daemon (live_image_publish), which then
                # answers nothing: any look at its mount would hang, so it goes first.
                LOG.info('Live image %s was discarded while this service was away; '
                         'unmounting it', live_image_id)
                with self._lock:
                    self._mounts[live_image_id] = mount
                self.drop(live_image_id)
                continue
            try:
                mounted = fs_type(directory) == FUSE_SUPER_MAGIC
            except OSError:
                mounted = False
            if not mounted or live_image_id in self.mounts():
                self._stop(mount)
                continue
            with self._lock:
                self._mounts[live_image_id] = mount
            threading.Thread(target=self._watch, args=(mount, mount.proc), daemon=True,
                             name='gc-mount-%s' % live_image_id[:8]).start()
            LOG.info('Adopted the mount of live image %s (rbd-fuse pid %d)',
                     live_image_id, pid)


def _discarded(live_image_id: str) -> bool:
    """The live image is gone, or going: no clone may map it any more."""
    try:
        status = db_servers.live_image_get(live_image_id)['status']
    except exception.LiveImageNotFound:
        return True
    except Exception:                   # the database away: adopted as before
        LOG.warning('Cannot tell whether live image %s still exists', live_image_id,
                    exc_info=True)
        return False
    return bool(status == states.LiveImageStatus.DISCARDING)


def _location(live_image: LiveImage) -> dict[str, Any]:
    """Where the live image is published; LiveImageFilesMissing when nowhere this
    host can read."""
    location = live_image.get('publish_location') or {}
    if live_image.get('publish_status') != publish.PUBLISHED or not location:
        raise exception.LiveImageFilesMissing(
            id=live_image['id'], reason='it is not on this host and not published')
    if not publish.enabled():
        raise exception.LiveImageFilesMissing(
            id=live_image['id'], reason='this host has no access to the live image store')
    return location  # type: ignore[no-any-return]


def _detach(directory: str) -> None:
    """Lazily unmount whatever FUSE mount is at ``directory`` (none: nothing)."""
    try:
        if fs_type(directory) != FUSE_SUPER_MAGIC:
            return
    except OSError as e:
        if e.errno != 107:  # ENOTCONN: a dead daemon's mount
            return
    subprocess.run(['fusermount', '-u', '-z', directory], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _tail(path: str) -> str:
    try:
        with open(path, 'rb') as f:
            return f.read()[-400:].decode('utf-8', 'replace').strip()
    except OSError:
        return ''
