"""Our shapes onto Cinder's and back, for the ``cinder`` driver: VolumeRef and
SnapshotRef as unsaved Cinder objects, Cinder's stats in our keys, and an ``rbd``
connection's data as a qemu image spec.
"""

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

_UUID_RE = re.compile('[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', re.I)
#: Cinder stats keys replaced by ours, or dropped (location_info names host paths)
_REPLACED = ('location_info', 'qos_support', 'QoS_support', 'pool_name',
             'volume_backend_name', 'driver_version')


def checked(kind: str, res_id: Any) -> str:
    # fullmatch: '$' would let a trailing newline through
    if not isinstance(res_id, str) or not _UUID_RE.fullmatch(res_id):
        raise exception.DriverError(reason=f'{kind} id {res_id!r} is not a UUID; refusing '
                                    'to give it to the Cinder driver')
    return res_id


def volume(ctxt: Any, ref: VolumeRef, host: str, size: int | None = None) -> Any:
    """An unsaved ``objects.Volume``: no type, no encryption, detached, on ``host``
    (``<host>@<backend>#<pool>``, where drivers with pools read the pool)."""
    from cinder import objects

    return objects.Volume(
        context=ctxt, id=checked('volume', ref.id), _name_id=None,
        size=int(ref.size if size is None else size), display_name=ref.get('name'),
        host=host, cluster_name=None, status='available', attach_status='detached',
        volume_type=None, volume_type_id=None, encryption_key_id=None, use_quota=True,
        multiattach=bool(ref.get('multiattach', False)),
        provider_location=ref.get('provider_location'),
        provider_auth=ref.get('provider_auth'), provider_id=None, metadata={},
        admin_metadata={}, snapshot_id=None, source_volid=None,
        replication_status='disabled', replication_driver_data=None,
        volume_attachment=objects.VolumeAttachmentList(objects=[]),
        consistencygroup=None, group=None, group_id=None)


def snapshot(ctxt: Any, ref: SnapshotRef, host: str) -> Any:
    from cinder import objects

    size = int(ref.get('volume_size') or 1)
    vol = volume(ctxt, VolumeRef({'id': ref.volume_id, 'size': size}), host)
    return objects.Snapshot(
        context=ctxt, id=checked('snapshot', ref.id), volume_id=vol.id, volume=vol,
        volume_size=size, display_name=ref.get('name'), status='available',
        provider_location=ref.get('provider_location'), provider_id=None,
        encryption_key_id=None, use_quota=True, metadata={}, volume_type_id=None,
        group_snapshot_id=None, cgsnapshot_id=None, progress='100%')


def _gb(value: Any) -> float:
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):  # 'unknown', 'infinite'
        return 0.0


def stats(raw: Mapping[str, Any], backend_name: str, version: str, volume_driver: str,
          volume_type: str) -> dict[str, Any]:
    """Cinder's stats in our keys. A driver with pools: its first pool's values
    (``pool_name`` says which). Cinder's other keys stay, as capabilities."""
    pools = raw.get('pools') or [{}]
    merged = {**{k: v for k, v in raw.items() if k != 'pools'}, **pools[0]}
    result = {k: v for k, v in merged.items() if k not in _REPLACED}
    total = _gb(merged.get('total_capacity_gb'))
    result.update({
        'volume_backend_name': backend_name, 'driver_version': version,
        'pool_name': str(merged.get('pool_name') or backend_name),
        'cinder_driver': volume_driver,
        'cinder_driver_version': str(merged.get('driver_version', '')),
        'vendor_name': str(merged.get('vendor_name') or 'Cinder'),
        'storage_protocol': str(merged.get('storage_protocol') or volume_type),
        'total_capacity_gb': total,
        'free_capacity_gb': min(_gb(merged.get('free_capacity_gb')), total),
        'reserved_percentage': int(merged.get('reserved_percentage') or 0),
        'max_over_subscription_ratio': _gb(merged.get('max_over_subscription_ratio')) or 20.0,
        # Cinder's drivers take QoS from volume types in Cinder's database, which
        # this service does not give them: no limits through them (yet)
        'QoS_support': False,
        'cinder_qos_support': bool(merged.get('QoS_support', merged.get('qos_support'))),
        # Cinder's scheduler takes a driver that does not say as supporting it
        'online_extend_support': bool(merged.get('online_extend_support', True)),
    })
    for key in ('thin_provisioning_support', 'thick_provisioning_support', 'multiattach'):
        result[key] = bool(merged.get(key, False))
    if 'provisioned_capacity_gb' in merged:
        result['provisioned_capacity_gb'] = _gb(merged['provisioned_capacity_gb'])
    if isinstance(merged.get('total_capacity_gb'), str):
        result['cinder_total_capacity'] = merged['total_capacity_gb']
    return result


def _escape(value: str) -> str:
    return value.replace('\\', '\\\\').replace(':', '\\:').replace(';', '\\;')


@contextlib.contextmanager
def qemu_rbd(data: Mapping[str, Any]) -> Iterator[str]:
    """qemu's ``rbd:`` spec for an ``rbd`` connection's data, opened as a compute host
    would: its monitors and user, its keyring text in a private temporary file
    (else the host's /etc/ceph keyring); never a key on a command line."""
    mons = ';'.join(f'{host}:{port}'
                    for host, port in zip(data['hosts'], data['ports'], strict=True))
    spec = f"rbd:{_escape(data['name'])}:mon_host={_escape(mons)}"
    if data.get('auth_enabled') and data.get('auth_username'):
        spec += f":id={_escape(data['auth_username'])}"
    with tempfile.TemporaryDirectory(prefix='gc-cinder-') as tmp:
        if data.get('keyring'):
            keyring = os.path.join(tmp, 'keyring')
            fd = os.open(keyring, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as f:
                f.write(data['keyring'])
            spec += f':keyring={_escape(keyring)}'
        yield spec
