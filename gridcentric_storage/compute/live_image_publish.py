"""Publish a blessed live image to the shared Ceph store, and take it back.

The blessing host owns a live image's publish state (``publish_status``:
none -> publishing -> published, or error with ``publish_reason``); it is
written here alone. What is published, in ``[live_image_store] pool``:

* RBD image ``gc-live-<id>``: the RAM file, data extents only (holes stay
  unallocated), with snapshot ``published``, protected. Nothing writes the image
  after that snapshot; hosts map its head through ``rbd-fuse`` (which shows no
  snapshots) and check its size against the recorded ``ram_size``.
* RADOS objects ``gc-live-<id>.state`` and ``gc-live-<id>.layout``: the device
  state and ``layout.json``, small, fetched whole by a launching host and checked
  against the recorded sha256.
* A Nova instance's live image has no layout; its ``domain.xml``, ``nova.json``
  and disk files go as ``nova.store`` says (``publish_location['files']``).

The connection handling (timeouts, errors, the one librados client) is the RBD
volume driver's ``CephClient``.

Discard while a host that maps the image is down: its rbd-fuse (which outlives
the compute service) keeps a watch on the image, which then cannot be removed,
and a dead machine's watch lingers ``osd_client_watch_timeout``. A discard asks
every host that answers to drop its mount first, and no clone of the live image
exists any more (the API refuses the discard otherwise), so a watch still there
serves nothing: :meth:`StoreClient.remove_image` blocklists those clients
(``ceph osd blocklist add``, for :data:`FENCE_SECONDS`, what librbd does to a
dead lock holder; ``profile rbd`` may) and the OSDs drop their watches, so the
discard completes at once. Fencing was chosen over keeping the live image
``discarding`` and retrying: a host whose service is down but whose rbd-fuse
runs would hold the image until that service returns, maybe never. The
blocklist covers one client instance (address and nonce), i.e. that host's
rbd-fuse of this image only. That daemon then answers nothing, so whatever
looks at its mount (``df``) waits: when that host's service starts again it
kills the daemons of live images discarded meanwhile before anything else
(``live_image_mounts``); an operator may kill it sooner.
"""

import hashlib
import json
import logging
import os
import threading
import time
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume.drivers import rbd_client

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

NONE, PUBLISHING, PUBLISHED, ERROR = 'none', 'publishing', 'published', 'error'
#: How long a discard's blocklisting of a stale mount lasts (Ceph's default).
FENCE_SECONDS = 3600
SNAPSHOT = 'published'
CHUNK = 4 << 20
WATCH_TIMEOUT = 30


def enabled() -> bool:
    return bool(CONF.live_image_store.enabled)


def image_name(live_image_id: str) -> str:
    return rbd_client.CephClient._name('gc-live', live_image_id)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str | None:
    """The file's sha256, or None when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            return hashlib.file_digest(f, 'sha256').hexdigest()
    except OSError:
        return None


class StoreClient(rbd_client.CephClient):
    """The RBD driver's connection handling, pointed at ``[live_image_store]``."""

    def __init__(self) -> None:
        conf = CONF.live_image_store
        rbd_client.import_bindings()
        self.backend_name = 'live_image_store'
        self.options = {'keyring': conf.keyring}
        self.pool = conf.pool
        self.conf_path = conf.ceph_conf
        self.user = conf.user
        self.timeout = conf.timeout
        self._client = None
        self._connect_lock = threading.Lock()
        self._ready = True

    # ---- whole objects (state, layout)
    def put_object(self, name: str, data: bytes) -> None:
        def call() -> None:
            with self._ioctx() as ioctx:
                ioctx.write_full(name, data)
        self._run('writing object %s' % name, call)

    def get_object(self, name: str) -> bytes:
        def call() -> bytes:
            with self._ioctx() as ioctx:
                size = ioctx.stat(name)[0]
                return ioctx.read(name, size) if size else b''  # type: ignore[no-any-return]
        return self._run('reading object %s' % name, call)  # type: ignore[no-any-return]

    def remove_object(self, name: str) -> None:
        def call() -> None:
            with self._ioctx() as ioctx:
                try:
                    ioctx.remove_object(name)
                except rbd_client.rados.ObjectNotFound:
                    pass
        self._run('removing object %s' % name, call)

    # ---- the RAM image
    def write_image(self, name: str, path: str) -> int:
        """A new image ``name`` with the data of file ``path``; bytes written."""
        size = os.stat(path).st_size

        def call() -> int:
            written = 0
            with self._ioctx() as ioctx:
                rbd_client.rbd.RBD().create(ioctx, name, size, old_format=False,
                                            features=rbd_client.rbd.RBD_FEATURE_LAYERING)
                with rbd_client.rbd.Image(ioctx, name) as image, open(path, 'rb') as f:
                    for offset, length in _data_extents(f.fileno(), size):
                        end = offset + length
                        while offset < end:
                            data = os.pread(f.fileno(), min(CHUNK, end - offset), offset)
                            if not data:
                                break
                            if data.count(0) != len(data):  # zeros stay holes
                                image.write(data, offset)
                                written += len(data)
                            offset += len(data)
                    image.flush()
                    image.create_snap(SNAPSHOT)
                    image.protect_snap(SNAPSHOT)
            return written
        return self._run('publishing %s' % name, call)  # type: ignore[no-any-return]

    def snapshot_ok(self, name: str) -> bool:
        """The image exists with its protected ``published`` snapshot."""
        def check(image: Any) -> bool:
            names = {s['name'] for s in image.list_snaps()}
            return SNAPSHOT in names and bool(image.is_protected_snap(SNAPSHOT))
        try:
            return self._on_image('checking %s' % name, name, check,  # type: ignore[no-any-return]
                                  read_only=True)
        except exception.DriverError:
            return False

    def remove_image(self, name: str, fence_watchers: bool = False) -> None:
        """The image and its snapshot; gone already is fine. A host that still
        maps it (its rbd-fuse holds a watch) makes this fail: ImageBusy, after
        waiting out the watch of a daemon that was killed (the OSDs drop it
        after ``osd_client_watch_timeout``, 30 s by default). ``fence_watchers``
        (a discard, once every host that answers has dropped its mount):
        blocklist the clients still watching it instead (module doc)."""
        fenced: set[str] = set()

        def call() -> None:
            with self._ioctx() as ioctx:
                try:
                    image = rbd_client.rbd.Image(ioctx, name)
                except rbd_client.rbd.ImageNotFound:
                    return
                with image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap['name']):
                            image.unprotect_snap(snap['name'])
                        image.remove_snap(snap['name'])
                deadline = time.monotonic() + WATCH_TIMEOUT + self.timeout
                while True:
                    try:
                        rbd_client.rbd.RBD().remove(ioctx, name)
                        return
                    except rbd_client.rbd.ImageNotFound:
                        return
                    except rbd_client.rbd.ImageBusy:
                        if fence_watchers and self._fence(ioctx, name, fenced):
                            continue
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(1)
        self._run('removing %s' % name, call)

    def _fence(self, ioctx: Any, name: str, fenced: set[str]) -> bool:
        """Blocklist the clients watching image ``name`` not blocklisted yet (not
        this one); whether there were any. The OSDs then drop their watches."""
        mine = str(self._connect().get_addrs() or '')   # e.g. '[v2:...,v1:...]'
        with rbd_client.rbd.Image(ioctx, name, read_only=True) as image:
            addrs = {w['addr'] for w in image.watchers_list()
                     if w['addr'] not in mine} - fenced
        for addr in sorted(addrs):
            LOG.warning('Blocklisting Ceph client %s: it still maps %s, which is being '
                        'discarded, and its host did not answer', addr, name)
            cmd = json.dumps({'prefix': 'osd blocklist', 'blocklistop': 'add',
                              'addr': addr, 'expire': float(FENCE_SECONDS)})
            ret, _, err = self._connect().mon_command(cmd, b'', timeout=self.timeout)
            if ret != 0:
                raise rbd_client.error('cannot blocklist %s, which still maps %s: %s'
                                       % (addr, name, err or os.strerror(-ret)))
            fenced.add(addr)
        return bool(addrs)


def _data_extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the file's data, holes left out (whole file where
    the filesystem cannot tell)."""
    extents, offset = [], 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, end - start))
            offset = end
    except OSError:
        return [(0, size)]
    return extents


def publish(client: StoreClient, artifacts: virt.LiveImageArtifacts) -> dict[str, Any]:
    """Copy the live image to the store; its location and the checks a host makes."""
    name = image_name(artifacts.live_image_id)
    with open(artifacts.state_path, 'rb') as f:
        state = f.read()
    nova = is_nova(artifacts)
    if not nova:
        with open(os.path.join(artifacts.directory, 'layout.json'), 'rb') as f:
            layout = f.read()
    unpublish(client, artifacts.live_image_id, nova)  # what an interrupted try left
    written = client.write_image(name, artifacts.memory_path)
    client.put_object(name + '.state', state)
    if nova:
        from gridcentric_storage.nova import store as nova_store
        files = nova_store.publish_files(client, artifacts.directory, name)
    else:
        client.put_object(name + '.layout', layout)
        files = {'layout_object': name + '.layout', 'layout_sha256': sha256_of(layout)}
    return {'pool': client.pool, 'image': name, 'snapshot': SNAPSHOT,
            'state_object': name + '.state',
            'ram_size': os.stat(artifacts.memory_path).st_size, 'ram_written': written,
            'state_sha256': sha256_of(state), **files}


def is_nova(artifacts: virt.LiveImageArtifacts) -> bool:
    return (artifacts.extra or {}).get('kind') == 'nova'  # compute.nova_live_images.KIND


def unpublish(client: StoreClient, live_image_id: str, nova: bool = False,
              fence_watchers: bool = False) -> None:
    name = image_name(live_image_id)
    if fence_watchers:
        client.remove_image(name, fence_watchers=True)
    else:
        client.remove_image(name)
    client.remove_object(name + '.state')
    client.remove_object(name + '.layout')
    if nova:
        from gridcentric_storage.nova import store as nova_store
        nova_store.unpublish_files(client, name)


class Publisher:
    """Runs publishes in the background on the blessing host."""

    def __init__(self) -> None:
        self._client: StoreClient | None = None
        self._lock = threading.Lock()

    def client(self) -> StoreClient:
        with self._lock:
            if self._client is None:
                self._client = StoreClient()
            return self._client

    def start(self, live_image_id: str) -> None:
        """After a bless: publish when the store is enabled here."""
        if enabled():
            concurrency.spawn(self.run, live_image_id)

    def recover(self, host: str) -> None:
        """Service start: publish what a stop cut short, and this host's blessed
        live images never published (the store enabled since); failed ones stay
        failed."""
        if not enabled():
            return
        for live_image in db_servers.live_image_get_all(host=host, statuses=('blessed',)):
            if not live_image['artifacts']:
                continue
            if live_image['publish_status'] == PUBLISHING:
                db_servers.live_image_set_publish(
                    live_image['id'], ERROR, expected=(PUBLISHING,),
                    publish_reason='publish interrupted by a restart of %s' % host)
            elif live_image['publish_status'] not in (None, NONE):
                continue
            self.start(live_image['id'])

    def run(self, live_image_id: str) -> None:
        from gridcentric_storage.compute.live_images import artifacts_from_db

        nova = False
        try:
            db_servers.live_image_set_publish(live_image_id, PUBLISHING,
                                              expected=(None, NONE, ERROR),
                                              publish_reason=None, publish_location=None)
            artifacts = artifacts_from_db(db_servers.live_image_get(live_image_id))
            nova = is_nova(artifacts)
            location = publish(self.client(), artifacts)
        except (exception.LiveImageNotFound, exception.InvalidState):
            return  # discarded meanwhile, or published by another run
        except Exception as e:
            LOG.exception('Publishing live image %s failed', live_image_id)
            self._failed(live_image_id, e, nova)
            return
        try:
            db_servers.live_image_set_publish(live_image_id, PUBLISHED,
                                              expected=(PUBLISHING,),
                                              publish_location=location)
        except (exception.LiveImageNotFound, exception.InvalidState):
            # The row went (a discard): the copy must not outlive it.
            self._remove_quietly(live_image_id, nova)
            return
        LOG.info('Published live image %s: %d of %d bytes of RAM', live_image_id,
                 location['ram_written'], location['ram_size'])

    def _failed(self, live_image_id: str, error: Exception, nova: bool = False) -> None:
        self._remove_quietly(live_image_id, nova)
        try:
            db_servers.live_image_set_publish(live_image_id, ERROR,
                                              publish_reason=exception.describe(error))
        except exception.LiveImageNotFound:
            pass

    def _remove_quietly(self, live_image_id: str, nova: bool = False) -> None:
        try:
            unpublish(self.client(), live_image_id, nova)
        except Exception:
            LOG.warning('Could not remove the published copy of %s', live_image_id,
                        exc_info=True)

    def remove(self, live_image_id: str, nova: bool = False) -> None:
        """Take the published copy away (discard), whatever its publish status;
        the mounts of hosts that did not answer are fenced (module doc)."""
        unpublish(self.client(), live_image_id, nova, fence_watchers=True)
