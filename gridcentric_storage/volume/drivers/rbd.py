"""Volumes as RBD images in one Ceph pool (``rbd``), the way Cinder's RBD driver does it.

Options, e.g. ``{"pool": "volumes", "ceph_conf": "/etc/ceph/ceph.conf", "user":
"cinder", "keyring": "/etc/ceph/ceph.client.cinder.keyring", "secret_uuid": "<libvirt
secret>", "max_clone_depth": 5}``; ``key`` (base64 cephx key, secret) may replace the
keyring. librados calls (and qemu-img's) are bounded by ``connect_timeout`` seconds
(``client_mount_timeout``, ``rados_osd_op_timeout``, ``rados_mon_op_timeout``): a
cluster that goes away gives a DriverError, never a hung thread.

* ``volume-<id>``: an image with layering and deep-flatten (multi-attachable);
  ``exclusive_lock: true`` adds exclusive-lock, object-map and fast-diff (fast
  delete and diff of big sparse images, no multiattach). Snapshots
  ``snapshot-<id>``, protected.
* A volume from a snapshot is a COW clone of it; a cloned volume, a clone of a new
  protected snapshot ``volume-<dest id>.clone_snap`` of the source. A new volume
  with more than ``max_clone_depth`` ancestors (any, with ``flatten_on_clone``) is
  flattened, and its ``.clone_snap`` removed.
* What a clone reads is never removed: deleting a snapshot with clones renames it
  ``snapshot-<id>.deleted``, deleting a volume whose hidden snapshots have clones
  renames it ``volume-<id>.deleted``; both are reaped, walking up the chain, when
  their last clone is deleted or flattened (deleting never copies data). A volume
  with snapshots is not deleted. New images read zeros: no volume sees old data.

``initialize_connection`` gives what os-brick's RBDConnector and libvirt take::

    {'driver_volume_type': 'rbd',
     'data': {'name': 'rbd/volume-5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e',
              'hosts': ['127.0.0.1'], 'ports': ['6789'], 'cluster_name': 'ceph',
              'auth_enabled': True, 'auth_username': 'admin', 'secret_type': 'ceph',
              'secret_uuid': None, 'volume_id': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e',
              'discard': True}}

os-brick then reads ``/etc/ceph/ceph.client.<user>.keyring``; its ``keyring`` is a
keyring's *text*, written into a temporary ceph.conf. Cinder stopped sending keys
(OSSN-0085: connection_info is stored and shown), so ``keyring_in_connection_info``
(default false) adds ``'keyring': '[client.admin]\\n\\tkey = AQ...==\\n'`` only for
hosts without /etc/ceph (all-in-one, tests). The rados/rbd bindings (python3-rados,
python3-rbd; in a venv: tools/link-ceph-bindings.sh) are imported by ``do_setup``.
"""

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.drivers import base, rbd_client
from gridcentric_storage.volume.drivers.rbd_client import CephClient
from gridcentric_storage.volume.drivers.rbd_migrate import MigrationMixin
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

__all__ = ['RBDDriver']
LOG = logging.getLogger(__name__)

GiB = 1 << 30
_CLONE_SNAP, _DELETED = '.clone_snap', '.deleted'
_error = rbd_client.error
Parent = tuple[str, str, str]  # pool, image, snapshot


#: volume.qos limit keys -> librbd options; a burst (``_max``) is the same
#: direction's ``_burst``, IOPS to IOPS and bytes to bytes.
_RBD_QOS = {f'{scope}_{kind}_sec{suffix}': f'rbd_qos_{prefix}{rbd}_{what}'
            for scope, prefix in (('total', ''), ('read', 'read_'), ('write', 'write_'))
            for kind, rbd in (('iops', 'iops'), ('bytes', 'bps'))
            for suffix, what in (('', 'limit'), ('_max', 'burst'))}


def _hidden(snap: str) -> bool:
    return snap.endswith((_CLONE_SNAP, _DELETED))


class RBDDriver(MigrationMixin, CephClient, base.VolumeDriver):
    # CephClient (rbd_client.py): the connection, _run, _ioctx, _on_image, _name, ...;
    # MigrationMixin (rbd_migrate.py): migrate_volume within the cluster
    DRIVER_VOLUME_TYPE: ClassVar[str] = 'rbd'
    LOCATION_OPTIONS: ClassVar[frozenset[str]] = frozenset({'pool', 'ceph_conf'})
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object',
        'properties': {
            'pool': {'type': 'string', 'pattern': '^[A-Za-z0-9_.-]+$', 'maxLength': 128},
            'ceph_conf': {'type': 'string', 'pattern': '^/'},
            'user': {'type': 'string', 'pattern': '^[A-Za-z0-9_.-]+$', 'maxLength': 128},
            'keyring': {'type': 'string', 'pattern': '^/'},
            'key': {'type': 'string', 'pattern': '^[A-Za-z0-9+/]+={0,2}$'},
            'secret_uuid': {'type': 'string', 'pattern': rbd_client.UUID_RE.pattern},
            'max_clone_depth': {'type': 'integer', 'minimum': 0, 'maximum': 100},
            'flatten_on_clone': {'type': 'boolean'},
            'connect_timeout': {'type': 'integer', 'minimum': 1, 'maximum': 3600},
            'keyring_in_connection_info': {'type': 'boolean'},
            'exclusive_lock': {'type': 'boolean'},
        },
        'required': ['pool'],
        'additionalProperties': False,
    }
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset({'key'})
    DEFAULTS: ClassVar[dict[str, Any]] = {
        'ceph_conf': '/etc/ceph/ceph.conf', 'user': 'admin', 'max_clone_depth': 5,
        'flatten_on_clone': False, 'connect_timeout': 10}

    def __init__(self, backend_id: str, backend_name: str, options: Mapping[str, Any],
                 execute: processutils.Executor | None = None) -> None:
        super().__init__(backend_id, backend_name, options)
        opts = {**self.DEFAULTS, **self.options}
        self.pool: str = opts['pool']
        self.conf_path: str = opts['ceph_conf']
        self.user: str = opts['user']
        self.timeout = int(opts['connect_timeout'])
        self.max_depth = int(opts['max_clone_depth'])
        self.flatten = bool(opts['flatten_on_clone'])
        self.exclusive = bool(opts.get('exclusive_lock'))
        self._execute = execute or processutils.execute
        self._qemu_img_path = shutil.which('qemu-img') or '/usr/bin/qemu-img'
        self._client: Any = None
        self._connect_lock = threading.Lock()
        self._lock = threading.Lock()  # the clone graph: snapshots, renames, reaping
        self._stats: dict[str, Any] | None = None
        self._ready = False  # do_setup imported the bindings

    @classmethod
    def default_options(cls, backend_id: str, state_path: str) -> dict[str, Any]:
        return dict(cls.DEFAULTS)

    def _features(self, exclusive: bool | None = None) -> int:
        lib = rbd_client.rbd
        features = lib.RBD_FEATURE_LAYERING | lib.RBD_FEATURE_DEEP_FLATTEN
        if self.exclusive if exclusive is None else exclusive:
            features |= (lib.RBD_FEATURE_EXCLUSIVE_LOCK | lib.RBD_FEATURE_OBJECT_MAP |
                         lib.RBD_FEATURE_FAST_DIFF)
        return int(features)

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        rbd_client.import_bindings()
        self._ready = True
        self._run('cannot set up', self._connect)

    def check_for_setup_error(self) -> None:
        def check() -> None:
            with self._ioctx() as ioctx:
                rbd_client.rbd.RBD().list(ioctx)
        self._run(f'cannot use pool {self.pool}', check)

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Cinder's keys: total = the pool's ``stored`` + ``max_avail`` and free =
        ``max_avail`` (``ceph df``), capped by a pool quota; provisioned = the sum of
        image sizes; plus ``'copy_on_write': 'rbd-layering'``."""
        if self._stats is None or refresh:
            self._stats = self._run(f'cannot read the usage of pool {self.pool}',
                                    self._read_stats)
        return dict(self._stats)

    def _read_stats(self) -> dict[str, Any]:
        pools = [p for p in self._mon('df')['pools'] if p['name'] == self.pool]
        if not pools:
            raise _error(f'pool {self.pool} does not exist in the Ceph cluster')
        stats = pools[0]['stats']
        stored, free = int(stats.get('stored', stats['bytes_used'])), int(stats['max_avail'])
        total = stored + free
        quota = int(self._mon('osd pool get-quota', pool=self.pool).get('quota_max_bytes') or 0)
        if quota:
            total, free = quota, max(min(free, quota - stored), 0)
        with self._ioctx() as ioctx:
            usage = rbd_client.rbd.RBD().pool_stats_get(ioctx)
        provisioned = usage['image_max_provisioned_bytes'] + usage['trash_max_provisioned_bytes']
        return {'volume_backend_name': self.backend_name, 'vendor_name': 'Open Source',
                'driver_version': self.VERSION, 'storage_protocol': 'ceph',
                'total_capacity_gb': round(total / GiB, 2),
                'free_capacity_gb': round(free / GiB, 2),
                'provisioned_capacity_gb': round(provisioned / GiB, 2),
                'reserved_percentage': 0, 'thin_provisioning_support': True,
                'thick_provisioning_support': False, 'max_over_subscription_ratio': 20.0,
                'multiattach': not self.exclusive, 'QoS_support': True,
                'online_extend_support': True, 'copy_on_write': 'rbd-layering'}

    # ---- the clone graph
    @staticmethod
    def _parent(image: Any) -> Parent | None:
        try:
            spec = image.get_parent_image_spec()
        except rbd_client.rbd.ImageNotFound:
            return None
        return spec['pool_name'], spec['image_name'], spec['snap_name']

    def _depth(self, image: Any) -> int:
        """How many ancestors ``image`` (opened at HEAD or a snapshot) has."""
        depth, parent = 0, self._parent(image)
        while parent is not None and depth <= self.max_depth:
            depth += 1
            pool, name, snap = parent
            with self._ioctx(pool) as ioctx, rbd_client.rbd.Image(
                    ioctx, name, snapshot=snap, read_only=True) as img:
                parent = self._parent(img)
        return depth

    def _children(self, ioctx: Any, name: str, snap: str) -> list[str]:
        with rbd_client.rbd.Image(ioctx, name, snapshot=snap, read_only=True) as img:
            return ['%s/%s' % (c['pool'], c['image']) for c in img.list_children2()]

    @staticmethod
    def _remove_snap(image: Any, snap: str) -> None:
        if image.is_protected_snap(snap):
            image.unprotect_snap(snap)
        image.remove_snap(snap)

    def _reap(self, pool: str, name: str, snap: str) -> None:
        """Remove hidden snapshot ``snap`` of ``name`` if no clone uses it, then the
        image if it is hidden and has no snapshots left; walk up. Hold self._lock."""
        while _hidden(snap):
            with self._ioctx(pool) as ioctx:
                try:
                    if self._children(ioctx, name, snap):
                        return
                    with rbd_client.rbd.Image(ioctx, name) as img:
                        self._remove_snap(img, snap)
                        if not name.endswith(_DELETED) or list(img.list_snaps()):
                            return
                        parent = self._parent(img)
                    rbd_client.rbd.RBD().remove(ioctx, name)
                except rbd_client.rbd.ImageNotFound:  # already gone
                    return
            if parent is None:
                return
            pool, name, snap = parent

    def _clone(self, volume: VolumeRef, src: str, snap: str, hidden_snap: bool) -> None:
        """Clone ``src@snap`` as the volume; grow it, flatten it past max_clone_depth."""
        dst = self._name('volume', volume.id)
        with self._lock, self._ioctx() as ioctx:
            with rbd_client.rbd.Image(ioctx, src) as img:
                if hidden_snap:
                    img.create_snap(snap)
                    img.protect_snap(snap)
                elif not img.is_protected_snap(snap):
                    img.protect_snap(snap)
                img.set_snap(snap)
                depth = self._depth(img) + 1
            try:
                rbd_client.rbd.RBD().clone(ioctx, src, snap, ioctx, dst, features=self._features())
            except Exception:
                self._reap(self.pool, src, snap)
                raise
        try:
            with self._ioctx() as ioctx, rbd_client.rbd.Image(ioctx, dst) as img:
                if img.size() < int(volume.size) * GiB:
                    img.resize(int(volume.size) * GiB)
                if self.flatten or depth > self.max_depth:
                    img.flatten()  # outside the lock: may copy a lot
        except Exception:
            try:
                with self._lock:
                    self._delete(dst)
            except Exception:  # the first error is the one to report
                LOG.warning('could not delete %s after a failed clone', dst, exc_info=True)
            raise
        with self._lock:
            self._reap(self.pool, src, snap)

    def _delete(self, name: str) -> None:
        """Delete image ``name`` or hide it while clones need it. Hold self._lock."""
        with self._ioctx() as ioctx:
            try:
                img = rbd_client.rbd.Image(ioctx, name)
            except rbd_client.rbd.ImageNotFound:
                return
            with img:
                snaps = [s['name'] for s in img.list_snaps()]
                visible = [s for s in snaps if not _hidden(s)]
                if visible:
                    raise _error(f'{name} has snapshots ({", ".join(visible)}); delete '
                                 'them first')
                parent = self._parent(img)
                busy = False
                for snap in snaps:
                    if self._children(ioctx, name, snap):
                        busy = True
                    else:
                        self._remove_snap(img, snap)
            if busy:  # clones still read it: hide it, _reap removes it later
                rbd_client.rbd.RBD().rename(ioctx, name, name + _DELETED)
                return
            rbd_client.rbd.RBD().remove(ioctx, name)
        if parent is not None:
            self._reap(*parent)

    # ---- volumes
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        name, size = self._name('volume', volume.id), int(volume.size) * GiB

        def create() -> None:
            with self._ioctx() as ioctx:
                rbd_client.rbd.RBD().create(ioctx, name, size, old_format=False,
                                            features=self._features())
        self._run(f'cannot create {name} in pool {self.pool}', create)
        return None

    def delete_volume(self, volume: VolumeRef) -> None:
        name = self._name('volume', volume.id)
        self._run(f'cannot delete {name}', self._locked, self._delete, name)

    def _locked(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        name, size = self._name('volume', volume.id), int(new_size) * GiB

        def extend(img: Any) -> None:
            if size < img.size():
                raise _error(f'cannot shrink {name} to {new_size} GiB')
            img.resize(size)
        self._on_image(f'cannot extend {name}', name, extend)

    def set_qos(self, volume: VolumeRef, limits: Mapping[str, int]) -> None:
        """librbd's own per-image throttle: ``conf_rbd_qos_*`` image metadata (what
        ``rbd config image set`` writes), read by every librbd client that opens the
        image, QEMU's included; keys it no longer has are removed."""
        name = self._name('volume', volume.id)
        wanted = {'conf_' + _RBD_QOS[key]: str(value) for key, value in limits.items()}

        def apply(img: Any) -> None:
            for key, _ in list(img.metadata_list()):
                if key.startswith('conf_rbd_qos_') and key not in wanted:
                    img.metadata_remove(key)
            for key, value in sorted(wanted.items()):
                img.metadata_set(key, value)
        self._on_image(f'cannot set the QoS of {name}', name, apply)

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        name = self._name('volume', snapshot.volume_id)
        snap = self._name('snapshot', snapshot.id)

        def create(img: Any) -> None:
            img.create_snap(snap)
            img.protect_snap(snap)
        self._on_image(f'cannot snapshot {name}', name, create)
        return None

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        """Hide the snapshot (``.deleted``); it goes now, or with its last clone."""
        name = self._name('volume', snapshot.volume_id)
        snap = self._name('snapshot', snapshot.id)

        def delete() -> None:
            with self._lock, self._ioctx() as ioctx:
                for image in (name, name + _DELETED):
                    try:
                        with rbd_client.rbd.Image(ioctx, image) as img:
                            if snap in {s['name'] for s in img.list_snaps()}:
                                img.rename_snap(snap, snap + _DELETED)
                    except rbd_client.rbd.ImageNotFound:
                        continue
                    self._reap(self.pool, image, snap + _DELETED)
        self._run(f'cannot delete {snap} of {name}', delete)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        src = self._name('volume', snapshot.volume_id)
        snap = self._name('snapshot', snapshot.id)
        self._run(f'cannot clone {src}@{snap} as volume {volume.id}',
                  self._clone, volume, src, snap, False)
        return None

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        src = self._name('volume', src_vref.id)
        snap = self._name('volume', volume.id) + _CLONE_SNAP
        self._run(f'cannot clone {src} as volume {volume.id}',
                  self._clone, volume, src, snap, True)
        return None

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """rollback_to_snap (copies back every object: slow on big images), keeping
        the volume's size; the volume must not be attached."""
        name, snap = self._name('volume', volume.id), self._name('snapshot', snapshot.id)

        def revert(img: Any) -> None:
            size = max(img.size(), int(volume.size) * GiB)
            img.rollback_to_snap(snap)
            if img.size() < size:
                img.resize(size)
        self._on_image(f'cannot revert {name} to {snap}', name, revert)

    # ---- attach (monitor addresses and keys: rbd_client.CephClient)
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        """Connection data for os-brick's RBDConnector and libvirt (module doc)."""
        name = self._name('volume', volume.id)

        def connection(img: Any) -> dict[str, Any]:
            hosts, ports = self._mon_addrs()
            data = {'name': f'{self.pool}/{name}', 'hosts': hosts, 'ports': ports,
                    'cluster_name': 'ceph', 'auth_enabled': True,
                    'auth_username': self.user, 'secret_type': 'ceph',
                    'secret_uuid': self.options.get('secret_uuid'),
                    'volume_id': volume.id, 'discard': True}
            if self.options.get('keyring_in_connection_info'):
                data['keyring'] = self._keyring_text()
            return {'driver_volume_type': 'rbd', 'data': data}
        return self._on_image(f'cannot connect {name}', name, connection, read_only=True)

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        """Nothing to tear down: nothing was exported or mapped."""

    # ---- images (qemu-img talks to librbd itself, with the same timeouts)
    def _convert(self, argv: list[str], size: int) -> None:
        # a slow but alive copy may take a while; librados timeouts catch a dead one
        timeout = max(processutils.DEFAULT_TIMEOUT, size / (10 << 20))
        try:
            self._execute([self._qemu_img_path, *argv], timeout=timeout)
        except exception.DriverError as e:
            if "Unknown protocol 'rbd'" in str(e):
                raise _error('qemu-img has no rbd support (Debian: apt-get install '
                             'qemu-block-extra)') from e
            raise

    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        """qemu-img converts the image straight into the (new) image; zero areas
        become discards (sparse) unless ``disable_sparse``."""
        name = self._name('volume', volume.id)
        info = image_service.info(context, image_id)
        path = image_service.path(context, image_id)
        size = self._on_image(f'cannot open {name}', name, lambda i: i.size(), True)
        if info['virtual_size'] > size:
            raise _error(f"image {image_id} ({info['virtual_size']} bytes) does not fit "
                         f'in {name} ({size} bytes)')
        argv = ['convert', '-f', info['disk_format'], '-O', 'raw', '-n', '-t', 'none']
        if disable_sparse:
            argv += ['-S', '0']
        with self._qemu_target(name) as target:
            self._convert([*argv, path, target], info['virtual_size'])

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        name = self._name('volume', volume.id)
        fmt, path = image_meta.get('disk_format', 'raw'), image_meta['path']
        if fmt not in ('raw', 'qcow2'):
            raise _error(f'cannot write a {fmt} image; raw and qcow2 are supported')
        size = self._on_image(f'cannot open {name}', name, lambda i: i.size(), True)
        part = path + '.part'
        try:
            with self._qemu_target(name) as source:
                self._convert(['convert', '-f', 'raw', '-O', fmt, source, part], size)
            os.replace(part, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
