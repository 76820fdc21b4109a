"""The lvm2 command layer of the LVM driver: one method per lvm2 command, argv lists only.

Every command goes through an injectable executor (default
:func:`gridcentric_storage.common.processutils.execute`), with
``LVM_SYSTEM_DIR`` set when the backend names a private lvm.conf directory and
``--driverloaded n`` added when activation is off (hosts without
device-mapper). Reports are read as JSON, sizes in bytes::

    lvm = LVM('vg0', execute=processutils.execute)
    lvm.lvs()
    # runs: lvs --reportformat json --units b --nosuffix
    #           -o lv_name,lv_size,lv_attr,lv_tags,origin,pool_lv,data_percent vg0
    # and parses its real output, e.g.
    # {"report": [{"lv": [{"lv_name": "volume-5b2c...", "lv_size": "1073741824",
    #                      "lv_attr": "-wi-a-----", "lv_tags": "gridcentric-storage",
    #                      "origin": "", "pool_lv": "", "data_percent": ""}]}]}
    # into [LogicalVolume(name='volume-5b2c...', size=1073741824, ...)]

:meth:`LVM.data_extent` answers "where on which PV do the bytes of this LV
live" from ``lvs --segments -o seg_pe_ranges`` and ``pe_start``, and
:meth:`LVM.attach_loop` maps them as a loop device (``losetup --offset
--sizelimit``); the driver uses these only where device-mapper is missing (see
``lvm.py``, "data paths").

Shared VGs (lvmlockd, ``vgcreate --shared``; the clustered-LVM set-up of the
OpenNebula gfs2clvm driver, with lvmlockd in place of clvmd): :meth:`LVM.lockstart`
starts the VG's lockspace on this host and ``activate(name, mode)`` takes the
exclusive (``-aey``) or shared (``-asy``) lock that activation needs there.
"""

import dataclasses
import json
import os
import re
from typing import Any

from gridcentric_storage.common import exception, processutils

__all__ = ['LVM', 'LogicalVolume', 'VolumeGroup', 'DataExtent', 'TAG']

#: Tag put on every LV this driver creates (``lvs -o lv_tags``).
TAG = 'gridcentric-storage'
_LV_FIELDS = 'lv_name,lv_size,lv_attr,lv_tags,origin,pool_lv,data_percent'
_VG_FIELDS = 'vg_name,vg_size,vg_free,vg_extent_size,lv_count,vg_lock_type'
# lvm2's rule for VG and LV names; a leading '-' would read as an option.
_NAME_RE = re.compile(r'^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$')
_RESERVED = ('_cdata', '_cmeta', '_corig', '_mimage', '_mlog', '_pmspare', '_rimage',
             '_rmeta', '_tdata', '_tmeta', '_vdata', '_vorigin')
_PE_RANGE_RE = re.compile(r'^(?P<pv>/[^:]+):(?P<first>\d+)-(?P<last>\d+)$')


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def check_name(name: str, what: str = 'LV') -> str:
    """lvm2's naming rules, reserved LV names included (``snapshot*``, ``pvmove*``,
    ``*_tmeta`` ... are refused by lvcreate)."""
    if (not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in ('.', '..') or
            (what == 'LV' and (name.startswith(('snapshot', 'pvmove')) or
                               any(r in name for r in _RESERVED)))):
        raise _error(f'{name!r} is not a valid lvm2 {what} name')
    return name


@dataclasses.dataclass(frozen=True)
class LogicalVolume:
    name: str
    size: int          # bytes
    attr: str          # lv_attr, e.g. '-wi-a-----', 'twi-aotz--', 'Vwi-a-tz--'
    tags: tuple[str, ...]
    origin: str        # snapshot origin, '' if none
    pool_lv: str       # thin pool of a thin volume, '' if none
    data_percent: float | None

    @property
    def is_thin_pool(self) -> bool:
        return self.attr[:1] == 't'

    @property
    def is_cow_snapshot(self) -> bool:
        return self.attr[:1] == 's'

    @property
    def active(self) -> bool:
        return self.attr[4:5] == 'a'


@dataclasses.dataclass(frozen=True)
class VolumeGroup:
    name: str
    size: int
    free: int
    extent_size: int
    lv_count: int
    lock_type: str     # '' (local), 'dlm' or 'sanlock' (shared, lvmlockd)


@dataclasses.dataclass(frozen=True)
class DataExtent:
    """Bytes ``[offset, offset + length)`` of block device ``pv`` hold the LV's data."""

    pv: str
    offset: int
    length: int


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class LVM:
    """lvm2 commands on one volume group."""

    def __init__(self, vg: str, execute: processutils.Executor | None = None,
                 system_dir: str | None = None, activation: bool = True,
                 shared: bool = False) -> None:
        self.vg = check_name(vg, 'VG')
        self._execute = execute or processutils.execute
        self.system_dir = system_dir
        self.activation = activation
        self.shared = shared

    # ---- running
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env['LVM_SUPPRESS_FD_WARNINGS'] = '1'
        if self.system_dir:
            env['LVM_SYSTEM_DIR'] = self.system_dir
        return env

    def run(self, command: str, *args: str) -> str:
        """``<command> [--driverloaded n] args...`` with the VG's environment."""
        argv = [command]
        if not self.activation:
            argv += ['--driverloaded', 'n']
        argv += list(args)
        return self._execute(argv, env=self.env())

    def _report(self, command: str, key: str, fields: str, *args: str) -> list[dict[str, Any]]:
        out = self.run(command, '--reportformat', 'json', '--units', 'b', '--nosuffix',
                       '-o', fields, *args)
        try:
            rows: list[dict[str, Any]] = []
            for report in json.loads(out)['report']:
                rows.extend(report.get(key, []))
            return rows
        except (ValueError, KeyError, TypeError) as e:
            raise _error(f'cannot parse the JSON report of {command}: {e}: {out[:200]!r}')

    def _path(self, name: str) -> str:
        return f'{self.vg}/{check_name(name)}'

    # ---- reports
    def vg_info(self) -> VolumeGroup:
        rows = self._report('vgs', 'vg', _VG_FIELDS, self.vg)
        if not rows:
            raise _error(f'volume group {self.vg} not found')
        r = rows[0]
        return VolumeGroup(name=r['vg_name'], size=int(r['vg_size']), free=int(r['vg_free']),
                           extent_size=int(r['vg_extent_size']),
                           lv_count=int(r.get('lv_count') or 0),
                           lock_type=r.get('vg_lock_type') or '')

    def lvs(self) -> list[LogicalVolume]:
        """Every LV of the VG (hidden ones excluded)."""
        return [LogicalVolume(name=r['lv_name'], size=int(r['lv_size']), attr=r['lv_attr'],
                              tags=tuple(t for t in r.get('lv_tags', '').split(',') if t),
                              origin=r.get('origin') or '', pool_lv=r.get('pool_lv') or '',
                              data_percent=_number(r.get('data_percent')))
                for r in self._report('lvs', 'lv', _LV_FIELDS, self.vg)]

    def lv(self, name: str) -> LogicalVolume | None:
        check_name(name)
        return next((lv for lv in self.lvs() if lv.name == name), None)

    def pe_starts(self) -> dict[str, int]:
        """PV name -> byte offset of its first physical extent (``pe_start``)."""
        rows = self._report('vgs', 'vg', 'vg_name,pv_name,pe_start', self.vg)
        return {r['pv_name']: int(r['pe_start']) for r in rows}

    def data_extent(self, name: str) -> DataExtent:
        """Where the data of a single-segment linear LV lives on its PV:
        ``offset = pe_start + first_pe * extent_size``, ``length = lv_size``.

        Raises DriverError for LVs that are not one run of extents on one PV
        (several segments, thin, snapshots): only device-mapper can present those.
        """
        lv = self.lv(name)
        if lv is None:
            raise _error(f'logical volume {self.vg}/{name} not found')
        if lv.attr[:1] not in ('-', 'o') or lv.pool_lv:
            raise _error(f'{self.vg}/{name} (lv_attr {lv.attr}) is not a linear LV: '
                         'its data can only be reached through device-mapper')
        segs = self._report('lvs', 'seg', 'lv_name,seg_pe_ranges', '--segments',
                            self._path(name))
        ranges = [r['seg_pe_ranges'] for r in segs]
        match = _PE_RANGE_RE.match(ranges[0]) if len(ranges) == 1 else None
        if match is None:
            raise _error(f'{self.vg}/{name} spans {ranges}: without device-mapper only an '
                         'LV made of one run of extents on one PV can be read')
        vg = self.vg_info()
        pe_start = self.pe_starts().get(match['pv'])
        if pe_start is None:
            raise _error(f"PV {match['pv']} of {self.vg}/{name} not found")
        first, last = int(match['first']), int(match['last'])
        length = (last - first + 1) * vg.extent_size
        if length != lv.size:
            raise _error(f'{self.vg}/{name}: extents {first}-{last} hold {length} bytes, '
                         f'the LV has {lv.size}')
        return DataExtent(pv=match['pv'], offset=pe_start + first * vg.extent_size,
                          length=length)

    # ---- loop devices: the data of a linear LV without device-mapper
    def loops_over(self, extent: DataExtent, any_length: bool = False) -> list[str]:
        """Loop devices mapping ``extent`` (only its start when ``any_length``)."""
        out = self._execute(['losetup', '--list', '--json', '-O',
                             'NAME,BACK-FILE,OFFSET,SIZELIMIT'])
        pv = os.path.realpath(extent.pv)
        return [str(d['name']) for d in json.loads(out or '{}').get('loopdevices', [])
                if os.path.realpath(str(d.get('back-file') or '')) == pv
                and int(d.get('offset') or 0) == extent.offset
                and (any_length or int(d.get('sizelimit') or 0) == extent.length)]

    def attach_loop(self, extent: DataExtent) -> str:
        return self._execute(['losetup', '--find', '--show', '--offset', str(extent.offset),
                              '--sizelimit', str(extent.length), extent.pv]).strip()

    def detach_loop(self, device: str) -> None:
        self._execute(['losetup', '-d', device])

    # ---- creating and changing
    def _create_flags(self, contiguous: bool) -> list[str]:
        flags = ['--yes', '--addtag', TAG]
        if contiguous:  # stays one segment: lvextend must then grow it in place
            flags += ['--alloc', 'contiguous']
        if self.shared and self.activation:
            flags += ['-aey']
        return flags

    def create_linear(self, name: str, size_gib: int, contiguous: bool = False) -> None:
        self.run('lvcreate', '-n', check_name(name), '-L', f'{int(size_gib)}g',
                 *self._create_flags(contiguous), self.vg)

    def create_thin_pool(self, name: str, percent_free: int = 95) -> None:
        """Thin pool over ``percent_free`` % of the VG's free space (Cinder: 95 %)."""
        self.run('lvcreate', '-T', '-l', f'{int(percent_free)}%FREE',
                 *self._create_flags(False), self._path(name))

    def create_thin(self, name: str, size_gib: int, pool: str) -> None:
        self.run('lvcreate', '-T', self._path(pool), '-V', f'{int(size_gib)}g',
                 '-n', check_name(name), *self._create_flags(False))

    def create_cow_snapshot(self, name: str, origin: str, size_gib: int) -> None:
        """Classic (thick) snapshot with a COW area as big as the origin."""
        self.run('lvcreate', '-s', '-L', f'{int(size_gib)}g', '-n', check_name(name),
                 *self._create_flags(False), self._path(origin))

    def create_thin_snapshot(self, name: str, origin: str, activatable: bool = False) -> None:
        """Instant thin snapshot (no size). ``activatable`` clears the activation-skip
        flag (``-kn``) that lvm2 sets on thin snapshots, for a snapshot that becomes a
        volume (a clone)."""
        extra = ['-kn'] if activatable else []
        self.run('lvcreate', '-s', '-n', check_name(name), *extra,
                 *self._create_flags(False), self._path(origin))

    def extend(self, name: str, size_gib: int) -> None:
        self.run('lvextend', '-L', f'{int(size_gib)}g', self._path(name))

    def remove(self, name: str) -> None:
        self.run('lvremove', '-f', self._path(name))

    def rename(self, old: str, new: str) -> None:
        self.run('lvrename', self.vg, check_name(old), check_name(new))

    def merge(self, snapshot: str) -> None:
        """Merge a COW snapshot back into its origin (the snapshot disappears)."""
        self.run('lvconvert', '--merge', self._path(snapshot))

    def add_tag(self, name: str, tag: str) -> None:
        self.run('lvchange', '--addtag', tag, self._path(name))

    # ---- activation and locks
    def activate(self, name: str, mode: str = 'y', ignore_skip: bool = False) -> None:
        """``lvchange -a<mode>``: 'y' local, 'ey' exclusive, 'sy' shared, 'n' off.
        ``ignore_skip`` (``-K``) activates thin snapshots that carry the skip flag."""
        if mode not in ('y', 'ey', 'sy', 'n'):
            raise ValueError(f'activation mode {mode!r}')
        extra = ['-K'] if ignore_skip and mode != 'n' else []
        self.run('lvchange', f'-a{mode}', *extra, self._path(name))

    def lockstart(self) -> None:
        """Start the lvmlockd lockspace of a shared VG on this host."""
        self.run('vgchange', '--lockstart', self.vg)

    def device_path(self, name: str) -> str:
        """Where device-mapper shows an active LV: ``/dev/<vg>/<lv>``."""
        return f'/dev/{self.vg}/{check_name(name)}'

    def cow_device_path(self, name: str) -> str:
        """The COW store of an active classic snapshot (dm names double each '-')."""
        return '/dev/mapper/%s-%s-cow' % (self.vg.replace('-', '--'),
                                          check_name(name).replace('-', '--'))

