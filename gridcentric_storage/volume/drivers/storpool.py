"""Volumes on a StorPool cluster (``storpool``), the way Cinder's StorPool driver keeps them.

The StorPool API is reached through the client os-brick ships
(``os_brick.initiator.storpool_utils``, os-brick >= 6.10), the one Cinder's
driver and os-brick's ``StorPoolConnector`` use, configured as they are: from
``/etc/storpool.conf`` (+ ``.d/``, ``[<hostname>]`` sections, ``SP_*``
environment overrides). Options, all optional, e.g. ``{"template": "ssd"}``:

* ``template``: the StorPool template new volumes are made in; its
  ``replication``, placement groups and ``iops``/``bw`` limits are reported as
  the backend's capabilities (``storpool_*``), so placement rules can read them.
  Without it: ``replication`` (default 3) and ``placeall``/``placetail``/
  ``placehead`` placement groups.
* ``iops``, ``bw``: QoS limits given to every new volume (StorPool's ``iops``
  and ``bw``, overriding the template's); :meth:`StorPoolDriver.update_qos`
  changes one volume's.
* ``api_host``, ``api_port``, ``auth_token`` (secret): override
  ``SP_API_HTTP_HOST``/``SP_API_HTTP_PORT``/``SP_AUTH_TOKEN`` (a cluster other than
  the host's own); ``api_timeout`` seconds per call.

Names are Cinder's (``<SP_OPENSTACK_VOLUME_PREFIX>--volume-<id>``, snapshots
``<pfx>--snap--none--snapshot-<id>``), so os-brick's connector finds the volume
from its id, and volumes Cinder made read the same. Clones are ``baseOn`` (StorPool's
own copy-on-write), volumes from snapshots ``parent``; a snapshot deleted while
volumes are based on it is kept by StorPool until they go. Delete detaches from
every client first (``VolumesReassign`` ``detach: all``), as Cinder does.

``initialize_connection`` returns what os-brick's StorPoolConnector takes, as
Cinder's driver does::

    {'driver_volume_type': 'storpool',
     'data': {'client_id': 3, 'volume': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e',
              'access_mode': 'rw', 'volume_id': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e'}}

``client_id`` is the connecting host's ``SP_OURID`` (its ``[<host>]`` section of
storpool.conf); the connector attaches the volume to its own host and opens
``/dev/storpool-byid/<globalId>``. Image copies attach the volume to this host the
same way (this host must be a StorPool client, like a cinder-volume host).
"""

import contextlib
import os
import platform
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, processutils
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

try:
    from os_brick.initiator import storpool_utils
except ImportError:  # os-brick < 6.10 (Debian 12 ships 6.1.0)
    storpool_utils = None

__all__ = ['StorPoolDriver', 'MIN_OS_BRICK']

CONF = cfg.CONF
GiB = 1 << 30
AG_SIZE = 512 << 20       # a StorPool allocation group
# what a disk keeps of an allocation group for data (the rest is its checksums),
# the ratio Cinder's driver reports free space with
_DATA_RATIO = 4096 / (4096 + 128)
MIN_OS_BRICK = '6.10'
_UUID_RE = re.compile('^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
                      re.IGNORECASE)
_SP_NAME = {'type': 'string', 'pattern': '^[A-Za-z0-9_.:-]+$', 'maxLength': 128}


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def require_client() -> Any:
    """os-brick's StorPool module, or a DriverError naming the version needed."""
    if storpool_utils is None:
        raise _error(f'StorPool needs os-brick >= {MIN_OS_BRICK} (its StorPool API client, '
                     'os_brick.initiator.storpool_utils); this host has an older one')
    return storpool_utils


class StorPoolDriver(base.VolumeDriver):
    DRIVER_VOLUME_TYPE: ClassVar[str] = 'storpool'
    LOCATION_OPTIONS: ClassVar[frozenset[str]] = frozenset({'api_host', 'api_port'})
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset({'auth_token'})
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object',
        'properties': {
            'template': _SP_NAME,
            'replication': {'type': 'integer', 'minimum': 1, 'maximum': 3},
            'placeall': _SP_NAME, 'placetail': _SP_NAME, 'placehead': _SP_NAME,
            'iops': {'type': 'integer', 'minimum': 1},
            'bw': {'type': 'integer', 'minimum': 1},
            'api_host': {'type': 'string', 'pattern': r'^[A-Za-z0-9.:\[\]-]+$'},
            'api_port': {'type': 'integer', 'minimum': 1, 'maximum': 65535},
            'auth_token': {'type': 'string', 'minLength': 1, 'pattern': r'^\S+$'},
            'api_timeout': {'type': 'integer', 'minimum': 1, 'maximum': 3600},
        },
        'additionalProperties': False,
    }
    VERSION: ClassVar[str] = '1.0'

    def __init__(self, backend_id: str, backend_name: str, options: Mapping[str, Any],
                 execute: processutils.Executor | None = None) -> None:
        super().__init__(backend_id, backend_name, options)
        both = sorted({'replication', 'placeall', 'placetail', 'placehead'} & set(self.options))
        if 'template' in self.options and both:
            raise exception.InvalidDriverOptions(
                driver='storpool', reason=f'a template decides {", ".join(both)}: give '
                'either the template or these')
        self._execute = execute or processutils.execute
        self._api: Any = None
        self.prefix = 'os'
        # (API host, port) of this backend's cluster and of the host's own one
        self._cluster: tuple[str, str] | None = None
        self._host_cluster: tuple[str, str] | None = None
        self._stats: dict[str, Any] | None = None

    # ---- set-up and stats
    def do_setup(self, context: Any) -> None:
        sp = require_client()
        try:
            conf = sp.get_conf()
            missing = ''
        except Exception as e:  # no /etc/storpool.conf: the options must say it all
            conf, missing = dict(sp.STORPOOL_CONF_DEFAULTS), f' ({e})'
        # The host's own cluster: a backend without api_host/api_port is on it.
        self._host_cluster = (str(conf.get('SP_API_HTTP_HOST')),
                              str(conf.get('SP_API_HTTP_PORT')))
        for option, key in (('api_host', 'SP_API_HTTP_HOST'), ('api_port', 'SP_API_HTTP_PORT'),
                            ('auth_token', 'SP_AUTH_TOKEN')):
            if option in self.options:
                conf[key] = str(self.options[option])
        if not conf.get('SP_AUTH_TOKEN'):
            raise _error('no StorPool API token: give the backend an auth_token or set '
                         f'SP_AUTH_TOKEN in /etc/storpool.conf{missing}')
        self.prefix = conf.get('SP_OPENSTACK_VOLUME_PREFIX', 'os')
        self._cluster = (str(conf['SP_API_HTTP_HOST']), str(conf['SP_API_HTTP_PORT']))
        self._api = sp.StorPoolAPI(conf['SP_API_HTTP_HOST'], conf['SP_API_HTTP_PORT'],
                                   conf['SP_AUTH_TOKEN'],
                                   timeout=int(self.options.get('api_timeout', 60)))

    def check_for_setup_error(self) -> None:
        templates = self._call('cannot reach the StorPool API', 'volume_templates_list')
        template = self.options.get('template')
        if template is not None and template not in {t['name'] for t in templates}:
            raise _error(f'StorPool template {template} does not exist')

    def _call(self, what: str, method: str, *args: Any, missing_ok: bool = False) -> Any:
        """One API call through os-brick's client; its errors become DriverErrors."""
        if self._api is None:
            raise _error(f'do_setup has not run for backend {self.backend_name}')
        sp = require_client()
        try:
            return concurrency.execute(getattr(self._api, method), *args)
        except sp.StorPoolAPIError as e:
            if missing_ok and e.name == 'objectDoesNotExist':
                return None
            if e.name == 'objectExists':
                raise _error(f'{what}: it already exists') from e
            raise _error(f'{what}: {e.name}: {e.desc}') from e
        except OSError as e:    # refused, reset, timed out: after os-brick's retries
            raise _error(f'{what}: the StorPool API does not answer ({e})') from e

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Cinder's keys: total and free from ``DisksList`` (live disks' allocation
        groups, divided by the replication), provisioned = the sizes of this
        prefix's volumes, plus the template's attributes as ``storpool_*``."""
        if self._stats is None or refresh:
            self._stats = self._read_stats()
        return dict(self._stats)

    def _read_stats(self) -> dict[str, Any]:
        what = 'cannot read the StorPool cluster\'s usage'
        disks = self._call(what, 'disks_list').values()
        templates = {t['name']: t for t in self._call(what, 'volume_templates_list')}
        volumes = self._call(what, 'volumes_list')
        attrs = self._placement()
        template = templates.get(self.options.get('template', ''), {})
        replication = int(template.get('replication') or attrs.get('replication') or 3)
        live = [d for d in disks if d.get('generationLeft') == -1]
        total = sum(d['agCount'] for d in live) * AG_SIZE * _DATA_RATIO / replication
        free = sum(d['agFree'] for d in live) * AG_SIZE * _DATA_RATIO / replication
        mine = storpool_utils.os_to_sp_volume_name(self.prefix, '')
        provisioned = sum(v['size'] for v in volumes if v['name'].startswith(mine))
        capabilities = {f'storpool_{k.lower()}': template.get(k, attrs.get(k)) for k in
                        ('placeAll', 'placeTail', 'placeHead', 'iops', 'bw')}
        return {'volume_backend_name': self.backend_name, 'vendor_name': 'StorPool',
                'driver_version': self.VERSION, 'storage_protocol': 'storpool',
                'total_capacity_gb': round(total / GiB, 2),
                'free_capacity_gb': round(min(free, total) / GiB, 2),
                'provisioned_capacity_gb': round(provisioned / GiB, 2),
                'reserved_percentage': 0, 'thin_provisioning_support': True,
                'thick_provisioning_support': False, 'max_over_subscription_ratio': 20.0,
                'multiattach': True, 'QoS_support': True, 'online_extend_support': True,
                'copy_on_write': 'storpool', 'storpool_template': self.options.get('template'),
                'storpool_replication': replication, 'storpool_templates': sorted(templates),
                **capabilities}

    # ---- names and attributes
    def _checked(self, kind: str, res_id: Any) -> str:
        # fullmatch: '$' would let a trailing newline through
        if not isinstance(res_id, str) or not _UUID_RE.fullmatch(res_id):
            raise _error(f'{kind} id {res_id!r} is not a UUID; refusing to build a '
                         'StorPool name from it')
        return res_id

    def _vol(self, volume_id: Any) -> str:
        return storpool_utils.os_to_sp_volume_name(self.prefix,  # type: ignore[no-any-return]
                                                   self._checked('volume', volume_id))

    def _snap(self, snapshot_id: Any) -> str:
        return storpool_utils.os_to_sp_snapshot_name(  # type: ignore[no-any-return]
            self.prefix, 'snap', self._checked('snapshot', snapshot_id))

    def _placement(self) -> dict[str, Any]:
        """Where a new volume goes and its limits, in VolumeCreate's keys."""
        opts = self.options
        if 'template' in opts:
            attrs: dict[str, Any] = {'template': opts['template']}
        else:
            attrs = {'replication': opts.get('replication', 3)}
            attrs.update({key: opts[key.lower()] for key in ('placeAll', 'placeTail',
                                                             'placeHead')
                          if key.lower() in opts})
        attrs.update({k: opts[k] for k in ('iops', 'bw') if k in opts})
        return attrs

    def _size_of(self, name: str, what: str) -> int:
        return int(self._call(what, 'volume', name)[0]['size'])

    # ---- volumes
    def _create(self, volume: VolumeRef, **source: str) -> None:
        name = self._vol(volume.id)
        body = {'name': name, 'size': int(volume.size) * GiB, **self._placement(), **source}
        self._call(f'cannot create volume {volume.id}', 'volume_create', body)

    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        self._create(volume)
        return None

    def migrate_volume(self, context: Any, volume: VolumeRef,
                       host: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """A StorPool backend on the same cluster (API endpoint): the volume stays
        where it is and takes the destination's template or placement
        (``VolumeUpdate``; StorPool moves the data). Another cluster: False."""
        options = host.get('options') or {}
        if host.get('driver') != 'storpool' or self._host_cluster is None:
            return False, None
        cluster = (str(options.get('api_host', self._host_cluster[0])),
                   str(options.get('api_port', self._host_cluster[1])))
        if cluster != self._cluster:
            return False, None
        placement = StorPoolDriver(host.get('backend_id', ''), host.get('backend_name', ''),
                                   options)._placement()
        # VolumeUpdate takes either a template or the placement itself.
        self._call(f'cannot move volume {volume.id} to backend {host.get("backend_name")}',
                   'volume_update', self._vol(volume.id), placement)
        return True, None

    def delete_volume(self, volume: VolumeRef) -> None:
        name = self._vol(volume.id)
        what = f'cannot delete volume {volume.id}'
        self._call(what, 'volumes_reassign', [{'volume': name, 'detach': 'all'}],
                   missing_ok=True)
        self._call(what, 'volume_delete', name, missing_ok=True)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        name, what = self._vol(volume.id), f'cannot extend volume {volume.id}'
        if int(new_size) * GiB < self._size_of(name, what):
            raise _error(f'cannot shrink volume {volume.id} to {new_size} GiB')
        self._call(what, 'volume_update', name, {'size': int(new_size) * GiB})

    def update_qos(self, volume: VolumeRef, iops: int | str | None = None,
                   bw: int | str | None = None) -> None:
        """Set one volume's StorPool limits (those given; ``'-'`` removes one), attached
        or not: StorPool applies them at once."""
        update = {k: v if v == '-' else int(v) for k, v in (('iops', iops), ('bw', bw))
                  if v is not None}
        if update:
            self._call(f'cannot set the QoS of volume {volume.id}', 'volume_update',
                       self._vol(volume.id), update)

    def set_qos(self, volume: VolumeRef, limits: Mapping[str, int]) -> None:
        """StorPool limits a volume's total IOPS (``iops``) and bandwidth (``bw``, in
        KB/s as its API takes it); without one, the backend's own option (or
        ``-``, unlimited) comes back. Read/write limits and bursts it cannot
        enforce: the totals are set, then QosNotSupported names the rest."""
        iops, bw = limits.get('total_iops_sec'), limits.get('total_bytes_sec')
        self.update_qos(volume, iops=iops if iops is not None else self.options.get('iops', '-'),
                        bw=-(-bw // 1024) if bw is not None else self.options.get('bw', '-'))
        rest = sorted(set(limits) - {'total_iops_sec', 'total_bytes_sec'})
        if rest:
            raise exception.QosNotSupported(driver='storpool', reason='StorPool limits only '
                                            'total IOPS and bandwidth, not %s' % ', '.join(rest))

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        name, snap = self._vol(snapshot.volume_id), self._snap(snapshot.id)
        self._call(f'cannot snapshot volume {snapshot.volume_id}', 'snapshot_create', name,
                   {'name': snap})
        return None

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        snap, what = self._snap(snapshot.id), f'cannot delete snapshot {snapshot.id}'
        self._call(what, 'volumes_reassign', [{'snapshot': snap, 'detach': 'all'}],
                   missing_ok=True)
        self._call(what, 'snapshot_delete', snap, missing_ok=True)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        self._create(volume, parent=self._snap(snapshot.id))
        return None

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        self._create(volume, baseOn=self._vol(src_vref.id))
        return None

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        """StorPool's VolumeRevert (the volume takes the snapshot's size), then the
        volume grows back to its size."""
        name, snap = self._vol(volume.id), self._snap(snapshot.id)
        what = f'cannot revert volume {volume.id} to snapshot {snapshot.id}'
        self._call(what, 'volume_revert', name, {'toSnapshot': snap})
        if self._size_of(name, what) < int(volume.size) * GiB:
            self._call(what, 'volume_update', name, {'size': int(volume.size) * GiB})

    # ---- attach
    def _client_id(self, host: str | None) -> int:
        """The connecting host's SP_OURID, from its section of storpool.conf."""
        if not host or host == CONF.host:
            host = platform.node()
        try:
            conf = require_client().get_conf(section=host)
            return int(conf['SP_OURID'])
        except Exception:   # the host's name stays out of the message: users read it
            raise _error('storpool.conf gives no SP_OURID for the connecting host') from None

    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        name = self._vol(volume.id)
        self._call(f'cannot connect volume {volume.id}', 'volume_get_info', name)
        return {'driver_volume_type': 'storpool',
                'data': {'client_id': self._client_id((connector or {}).get('host')),
                         'volume': volume.id, 'access_mode': 'rw', 'volume_id': volume.id}}

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        """With a connector, nothing: that host's os-brick detached its client, and
        only it knows whether another attachment there still uses the volume (as
        Cinder's driver). Without one (every access ends), detach every client."""
        name = self._vol(volume.id)
        if connector is None:
            self._call(f'cannot disconnect volume {volume.id}', 'volumes_reassign',
                       [{'volume': name, 'detach': 'all'}], missing_ok=True)

    @contextlib.contextmanager
    def _attached(self, volume_id: str, mode: str) -> Iterator[str]:
        """The volume attached to this host by os-brick's connector: its device path."""
        from gridcentric_storage.compute import brick

        info = {'driver_volume_type': 'storpool',
                'data': {'client_id': self._client_id(None), 'volume': volume_id,
                         'access_mode': mode}}
        try:
            device = concurrency.execute(brick.connect, info)
        except Exception as e:
            raise _error(f'cannot attach volume {volume_id} to this host: {e}') from e
        try:
            yield str(device['path'])
        finally:
            concurrency.execute(brick.disconnect, info, device)

    def _qemu_img(self, argv: list[str], size: int) -> None:
        # a slow but alive copy may take a while
        timeout = max(processutils.DEFAULT_TIMEOUT, size / (10 << 20))
        self._execute(['qemu-img', *argv], timeout=timeout)

    # ---- images
    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        name = self._vol(volume.id)
        info = image_service.info(context, image_id)
        size = self._size_of(name, f'cannot write image {image_id} to volume {volume.id}')
        if int(info['virtual_size']) > size:
            raise _error(f"image {image_id} ({info['virtual_size']} bytes) does not fit in "
                         f'volume {volume.id} ({size} bytes)')
        src = image_service.path(context, image_id)
        with self._attached(volume.id, 'rw') as dst:
            # -n: the device exists; qemu-img then writes the image's zeros too
            self._qemu_img(['convert', '-q', '-n', '-f', info['disk_format'], '-O', 'raw',
                            *(['-S', '0'] if disable_sparse else []), src, dst],
                           int(info['virtual_size']))

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        name = self._vol(volume.id)
        fmt, path = image_meta.get('disk_format', 'raw'), image_meta['path']
        if fmt not in ('raw', 'qcow2'):
            raise _error(f'disk_format {fmt!r}: only raw and qcow2 are supported')
        size = self._size_of(name, f'cannot read volume {volume.id}')
        part = path + '.part'
        try:
            with self._attached(volume.id, 'ro') as src:
                self._qemu_img(['convert', '-q', '-f', 'raw', '-O', fmt, src, part], size)
            os.replace(part, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
