"""Any Cinder volume driver as a backend (``cinder``), run in this process.

Options, e.g. for Cinder's own RBD driver::

    {"volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
     "driver_options": {"rbd_pool": "volumes", "rbd_user": "cinder",
                        "rbd_ceph_conf": "/etc/ceph/ceph.conf",
                        "rbd_exclusive_cinder_pool": false},
     "driver_secrets": {"rbd_secret_uuid": "..."}}

* ``volume_driver``: a Cinder driver class under ``cinder.volume.drivers``.
* ``driver_options``: what a cinder.conf backend section would hold for it,
  checked against the driver's own oslo options (its ``get_driver_options()``
  and Cinder's common backend options) and their types when the backend is set
  up; an option marked secret there is refused here.
* ``driver_secrets``: the same, for secrets (passwords, tokens): never returned
  by the API.
* ``driver_volume_type``: the ``driver_volume_type`` its ``initialize_connection``
  returns; known for Cinder's RBD (``rbd``), StorPool (``storpool``) and LVM
  (``iscsi``) drivers, required for others (hosts refuse what they cannot open
  before connecting).

The driver is built on the owning host as cinder-volume builds it, with a
Cinder ``Configuration`` made from these options (cinder_config.py says what it
shares with this service's configuration), set up with ``do_setup``,
``check_for_setup_error`` and ``set_initialized``. Our VolumeRef and SnapshotRef
become unsaved Cinder ``objects.Volume``/``Snapshot`` (no volume type, no
encryption, ``host`` ``<host>@<backend id>#<pool>``, the first pool the
driver reports), and each call maps onto the Cinder method of the same name.
Its stats feed the pool with our keys (``'unknown'``/``'infinite'`` capacities
as 0 with the original in ``cinder_total_capacity``; ``location_info`` is
dropped: it names host paths). ``QoS_support`` is false: Cinder's drivers read
QoS from volume types in Cinder's database, which they do not have here (what
the driver said is in ``cinder_qos_support``).

What Cinder's managers add around a driver is done here: ``extend_volume``
refuses to shrink (the size from the driver's ``manage_existing_get_size``),
``revert_to_snapshot`` grows the volume back to its size, deleting what is
already gone succeeds; cinder_fixups.py works around bugs measured in Cinder's
own drivers (its RBD driver leaks a clone's parent snapshot). Image copies
attach the volume to this host with the driver's own connection info
(``rbd``: qemu's librbd, with the info's keyring; others: os-brick) and run
``qemu-img``; Cinder's image methods talk to Glance, which this service does
not use.

Runs where ``pip install cinder`` (>= 29) can: Debian 12's oslo libraries are
older than Cinder 29 needs. As root, Cinder's privsep context runs in-process.
"""

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, processutils
from gridcentric_storage.volume.drivers import base, cinder_config, cinder_fixups, cinder_maps
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

__all__ = ['CinderDriver']
LOG = logging.getLogger(__name__)
CONF = cfg.CONF
GiB = 1 << 30
#: what Cinder's own drivers return from initialize_connection
KNOWN_TYPES = {'cinder.volume.drivers.rbd.RBDDriver': 'rbd',
               'cinder.volume.drivers.storpool.StorPoolDriver': 'storpool',
               'cinder.volume.drivers.lvm.LVMVolumeDriver': 'iscsi'}
_VALUE = {'anyOf': [{'type': ['string', 'number', 'boolean']},
                    {'type': 'array', 'items': {'type': ['string', 'number']}},
                    {'type': 'object', 'additionalProperties': {'type': 'string'}}]}
_VALUES = {'type': 'object', 'propertyNames': {'pattern': '^[a-z][a-z0-9_]{0,99}$'},
           'additionalProperties': _VALUE}
_MISSING = ('VolumeNotFound', 'SnapshotNotFound', 'NotFound', 'ImageNotFound')


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


class CinderDriver(base.VolumeDriver):
    #: per backend: each instance's class is a subclass naming its connection type
    DRIVER_VOLUME_TYPE: ClassVar[str] = 'cinder'
    LOCATION_OPTIONS: ClassVar[frozenset[str]] = frozenset({'volume_driver',
                                                            'driver_options'})
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset({'driver_secrets'})
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object',
        'properties': {
            'volume_driver': {'type': 'string', 'maxLength': 200,
                              'pattern': r'^cinder\.volume\.drivers(\.[A-Za-z_][A-Za-z0-9_]*)+$'},
            'driver_options': _VALUES,
            'driver_secrets': _VALUES,
            'driver_volume_type': {'type': 'string', 'pattern': '^[a-z][a-z0-9_]{0,31}$'},
        },
        'required': ['volume_driver'],
        'additionalProperties': False,
    }
    _typed: ClassVar[dict[str, type['CinderDriver']]] = {}

    def __init__(self, backend_id: str, backend_name: str, options: Mapping[str, Any],
                 execute: processutils.Executor | None = None) -> None:
        super().__init__(backend_id, backend_name, options)
        self.volume_driver: str = self.options['volume_driver']
        kind = self.options.get('driver_volume_type') or KNOWN_TYPES.get(self.volume_driver)
        if kind is None:
            raise exception.InvalidDriverOptions(
                driver='cinder', reason=f'give driver_volume_type: the connection type '
                f'{self.volume_driver} returns is not known here')
        self.__class__ = self._typed.setdefault(kind, type(
            f'CinderDriver[{kind}]', (CinderDriver,), {'DRIVER_VOLUME_TYPE': kind}))
        self._execute = execute or processutils.execute
        self._cinder: Any = None
        self._ctxt: Any = None
        self._pool = backend_name
        self._stats: dict[str, Any] | None = None
        self._fixup = cinder_fixups.for_driver(self.volume_driver)

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        cls = cinder_config.import_cinder(self.volume_driver)
        values = dict(self.options.get('driver_options', {}))
        secrets = dict(self.options.get('driver_secrets', {}))
        opts = cinder_config.driver_opts(self.volume_driver, cls)
        cinder_config.check_options(opts, values, secrets)
        conf = cinder_config.configuration(
            self.backend_id, CONF.state_path, opts,
            {'volume_backend_name': self.backend_name, **values, **secrets})
        from cinder import context as cinder_context
        from cinder import privsep

        if os.geteuid() == 0:  # root already: no sudo, no helper daemon
            privsep.sys_admin_pctxt.set_client_mode(False)
        self._ctxt = cinder_context.get_admin_context()
        self._cinder = self._call('cannot load the Cinder driver', cls, configuration=conf,
                                  host=f'{CONF.host}@{self.backend_id}', cluster_name=None)
        self._call('cannot set up the Cinder driver', self._cinder.do_setup, self._ctxt)

    def check_for_setup_error(self) -> None:
        self._call('the Cinder driver is not usable', self._driver().check_for_setup_error)
        self._cinder.set_initialized()

    def delete_backend(self) -> None:
        cinder_config.forget(self.backend_id)

    def _driver(self) -> Any:
        if self._cinder is None:
            raise _error(f'do_setup has not run for backend {self.backend_name}')
        return self._cinder

    def _call(self, what: str, fn: Callable[..., Any], *args: Any,
              missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call into Cinder; its exceptions become DriverErrors with its message."""
        try:
            return concurrency.execute(fn, *args, **kwargs)
        except exception.DriverError:
            raise
        except NotImplementedError:
            raise _error(f'{what}: {self.volume_driver} does not support it') from None
        except Exception as e:
            if missing_ok and type(e).__name__ in _MISSING:
                return None
            LOG.debug('%s', what, exc_info=True)
            text = str(getattr(e, 'msg', None) or e) or type(e).__name__
            raise _error(f'{what}: {text[:400]}') from e

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """The Cinder driver's stats in our keys (module doc)."""
        if self._stats is None or refresh:
            raw = self._call('cannot read the Cinder driver\'s stats',
                             self._driver().get_volume_stats, refresh=True)
            self._stats = cinder_maps.stats(raw, self.backend_name, self.VERSION,
                                            self.volume_driver, self.DRIVER_VOLUME_TYPE)
            self._pool = self._stats.pop('pool_name')
        return dict(self._stats)

    # ---- Cinder objects
    def _volume(self, ref: VolumeRef, size: int | None = None) -> Any:
        return cinder_maps.volume(self._ctxt, ref, self._host(), size)

    def _snapshot(self, ref: SnapshotRef) -> Any:
        return cinder_maps.snapshot(self._ctxt, ref, self._host())

    def _host(self) -> str:
        # the backend's id, not its name: Cinder splits hosts at '@' and '#'
        return f'{CONF.host}@{self.backend_id}#{self._pool}'

    def _size(self, volume: Any) -> int | None:
        """The volume's size in GiB as the backend has it, if the driver can say."""
        try:
            return int(self._driver().manage_existing_get_size(
                volume, {'source-name': volume.name}))
        except Exception:
            return None

    # ---- volumes
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        return self._update(self._call(f'cannot create volume {volume.id}',
                                       self._driver().create_volume, self._volume(volume)))

    @staticmethod
    def _update(update: Any) -> dict[str, Any] | None:
        return dict(update) if update else None

    def delete_volume(self, volume: VolumeRef) -> None:
        cvol, what = self._volume(volume), f'cannot delete volume {volume.id}'
        noted = self._call(what, self._fixup.before_delete, self._driver(), cvol)
        self._call(what, self._cinder.delete_volume, cvol, missing_ok=True)
        self._fixup.after_delete(self._cinder, cvol, noted)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        cvol = self._volume(volume)
        actual = self._size(cvol)
        if int(new_size) < max(int(volume.size), actual or 0):
            raise _error(f'cannot shrink volume {volume.id} to {new_size} GiB')
        if actual is not None:
            cvol.size = actual
        self._call(f'cannot extend volume {volume.id}', self._driver().extend_volume,
                   cvol, int(new_size))

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        return self._update(self._call(f'cannot snapshot volume {snapshot.volume_id}',
                                       self._driver().create_snapshot,
                                       self._snapshot(snapshot)))

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        self._call(f'cannot delete snapshot {snapshot.id}', self._driver().delete_snapshot,
                   self._snapshot(snapshot), missing_ok=True)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        return self._update(self._call(
            f'cannot create volume {volume.id} from snapshot {snapshot.id}',
            self._driver().create_volume_from_snapshot, self._volume(volume),
            self._snapshot(snapshot)))

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        return self._update(self._call(
            f'cannot clone volume {src_vref.id}', self._driver().create_cloned_volume,
            self._volume(volume), self._volume(src_vref)))

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """The driver's revert, then the volume grows back to its size (Cinder's
        drivers leave it at the snapshot's)."""
        cvol, csnap = self._volume(volume), self._snapshot(snapshot)
        what = f'cannot revert volume {volume.id} to snapshot {snapshot.id}'
        self._call(what, self._driver().revert_to_snapshot, self._ctxt, cvol, csnap)
        actual = self._size(cvol)
        if actual is None and int(volume.size) > csnap.volume_size:
            actual = csnap.volume_size
        if actual is not None and actual < int(volume.size):
            cvol.size = actual
            self._call(what, self._driver().extend_volume, cvol, int(volume.size))

    # ---- export and attach
    def create_export(self, context: Any, volume: VolumeRef,
                      connector: dict[str, Any]) -> dict[str, Any] | None:
        return self._update(self._call(f'cannot export volume {volume.id}',
                                       self._driver().create_export, self._ctxt,
                                       self._volume(volume), connector))

    def ensure_export(self, context: Any, volume: VolumeRef) -> dict[str, Any] | None:
        return self._update(self._call(f'cannot export volume {volume.id}',
                                       self._driver().ensure_export, self._ctxt,
                                       self._volume(volume)))

    def remove_export(self, context: Any, volume: VolumeRef) -> None:
        self._call(f'cannot end the export of volume {volume.id}',
                   self._driver().remove_export, self._ctxt, self._volume(volume),
                   missing_ok=True)

    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        return self._connect(self._volume(volume), connector)

    def _connect(self, cvol: Any, connector: dict[str, Any]) -> dict[str, Any]:
        info = dict(self._call(f'cannot connect volume {cvol.id}',
                               self._driver().initialize_connection, cvol, connector))
        if info.get('driver_volume_type') != self.DRIVER_VOLUME_TYPE:
            raise _error(f"the Cinder driver returned a {info.get('driver_volume_type')} "
                         f'connection; the backend says {self.DRIVER_VOLUME_TYPE}')
        info['data'] = {**info.get('data', {}), 'volume_id': cvol.id}
        return info

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        self._call(f'cannot disconnect volume {volume.id}',
                   self._driver().terminate_connection, self._volume(volume), connector,
                   force=connector is None, missing_ok=True)

    # ---- images (the volume attached to this host: module doc)
    @contextlib.contextmanager
    def _attached(self, volume: VolumeRef) -> Iterator[str]:
        from gridcentric_storage.compute import brick

        cvol = self._volume(volume)
        kind = self.DRIVER_VOLUME_TYPE
        connector = ({'host': CONF.host} if kind == 'rbd'
                     else brick.connector_properties(CONF.host))
        update = self._call(f'cannot export volume {volume.id}',
                            self._driver().create_export, self._ctxt, cvol, connector)
        for key, value in (update or {}).items():
            setattr(cvol, key, value)
        try:
            info = self._connect(cvol, connector)
            try:
                if kind == 'rbd':
                    with cinder_maps.qemu_rbd(info['data']) as spec:
                        yield spec
                else:
                    device = concurrency.execute(brick.connect, info)
                    try:
                        yield str(device['path'])
                    finally:
                        concurrency.execute(brick.disconnect, info, device)
            finally:
                self._call(f'cannot disconnect volume {volume.id}',
                           self._driver().terminate_connection, cvol, connector)
        finally:
            self._call(f'cannot end the export of volume {volume.id}',
                       self._driver().remove_export, self._ctxt, cvol)

    def _qemu_img(self, argv: list[str], size: int) -> None:
        timeout = max(processutils.DEFAULT_TIMEOUT, size / (10 << 20))
        self._execute(['qemu-img', *argv], timeout=timeout)

    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        size = (self._size(self._volume(volume)) or int(volume.size)) * GiB
        info = image_service.info(context, image_id)
        if int(info['virtual_size']) > size:
            raise _error(f"image {image_id} ({info['virtual_size']} bytes) does not fit in "
                         f'volume {volume.id} ({size} bytes)')
        src = image_service.path(context, image_id)
        with self._attached(volume) as dst:
            # -n: the volume exists; qemu-img then writes the image's zeros too
            self._qemu_img(['convert', '-q', '-n', '-f', info['disk_format'], '-O', 'raw',
                            *(['-S', '0'] if disable_sparse else []), src, dst],
                           int(info['virtual_size']))

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        fmt, path = image_meta.get('disk_format', 'raw'), image_meta['path']
        if fmt not in ('raw', 'qcow2'):
            raise _error(f'disk_format {fmt!r}: only raw and qcow2 are supported')
        part = path + '.part'
        try:
            with self._attached(volume) as src:
                self._qemu_img(['convert', '-q', '-f', 'raw', '-O', fmt, src, part],
                               int(volume.size) * GiB)
            os.replace(part, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)

