"""QoS specs: which keys they may hold and the limits they give a volume of N GiB.

Pure functions, no I/O: the API validates specs with :func:`validate_specs`,
the volume manager and the compute host turn them into a volume's limits with
:func:`effective_limits` and hand those to a volume driver (``set_qos``) or a
hypervisor (QEMU's or libvirt's I/O throttling).

Keys are Cinder's. Fixed limits (integers, per second)::

    total_iops_sec  read_iops_sec  write_iops_sec
    total_bytes_sec read_bytes_sec write_bytes_sec

each with a burst ``<key>_max`` (at least the limit), and capacity-based ones
``<key>_per_gb`` (limit = per_gb * size, recomputed when the volume grows)
with an optional floor ``<key>_per_gb_min``. A spec names a kind (iops or
bytes) either as a total or as read/write, never both: QEMU, libvirt and RBD
would reject or silently prefer one of them. ``consumer`` says who enforces:
``back-end`` (the storage, Cinder's default), ``front-end`` (the hypervisor
of the server using the volume) or ``both``::

    effective_limits({'total_iops_sec_per_gb': 30, 'total_iops_sec_per_gb_min': 100,
                      'total_bytes_sec': 50 << 20}, size_gb=20)
    # {'total_iops_sec': 600, 'total_bytes_sec': 52428800}
"""

import math
from collections.abc import Mapping
from typing import Any

from gridcentric_storage.common import exception

CONSUMERS = ('back-end', 'front-end', 'both')
DEFAULT_CONSUMER = 'back-end'
KINDS = ('iops', 'bytes')
LIMIT_KEYS = tuple('%s_%s_sec' % (scope, kind) for kind in KINDS
                   for scope in ('total', 'read', 'write'))
BURST_KEYS = tuple(key + '_max' for key in LIMIT_KEYS)
PER_GB_KEYS = tuple(key + '_per_gb' for key in LIMIT_KEYS)
PER_GB_MIN_KEYS = tuple(key + '_per_gb_min' for key in LIMIT_KEYS)
SPEC_KEYS = LIMIT_KEYS + BURST_KEYS + PER_GB_KEYS + PER_GB_MIN_KEYS
#: Limits beyond this are typos (2**53: still exact in JSON numbers).
MAX_VALUE = 1 << 53


def _invalid(reason: str) -> exception.InvalidQosSpecs:
    return exception.InvalidQosSpecs(reason=reason)


def _number(key: str, value: Any) -> int | float:
    """A positive number from a JSON number or a numeric string (Cinder sends strings)."""
    if isinstance(value, bool):
        raise _invalid('%s must be a positive number, not %r' % (key, value))
    if isinstance(value, str):
        try:
            value = float(value) if key.endswith('_per_gb') else int(value)
        except ValueError:
            raise _invalid('%s must be a positive number, not %r' % (key, value)) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid('%s must be a positive number, not %r' % (key, value))
    if not key.endswith('_per_gb') and value != int(value):
        raise _invalid('%s must be a whole number, not %r' % (key, value))
    if value <= 0 or value > MAX_VALUE:
        raise _invalid('%s must be above 0 and at most %d, not %r' % (key, MAX_VALUE, value))
    return value if key.endswith('_per_gb') else int(value)


def _base(key: str) -> str:
    """The limit key a spec key is about (``read_iops_sec_per_gb`` -> ``read_iops_sec``)."""
    for suffix in ('_per_gb_min', '_per_gb', '_max'):
        if key.endswith(suffix):
            return key[:-len(suffix)]
    return key


def validate_specs(specs: Mapping[str, Any]) -> dict[str, int | float]:
    """The specs with numbers normalised; InvalidQosSpecs naming the first problem."""
    unknown = sorted(set(specs) - set(SPEC_KEYS))
    if unknown:
        raise _invalid('unknown key(s) %s; known: %s' % (', '.join(unknown),
                                                        ', '.join(SPEC_KEYS)))
    values = {key: _number(key, value) for key, value in specs.items()}
    limited = {_base(key) for key in values if not key.endswith(('_max', '_per_gb_min'))}
    for key in LIMIT_KEYS:
        if key in values and key + '_per_gb' in values:
            raise _invalid('give %s or %s_per_gb, not both' % (key, key))
        if key + '_per_gb_min' in values and key + '_per_gb' not in values:
            raise _invalid('%s_per_gb_min needs %s_per_gb' % (key, key))
        if key + '_max' in values and key not in limited:
            raise _invalid('%s_max (a burst) needs %s or %s_per_gb' % (key, key, key))
        if key in values and key + '_max' in values and values[key + '_max'] < values[key]:
            raise _invalid('%s_max must be at least %s' % (key, key))
    for kind in KINDS:
        total = 'total_%s_sec' % kind
        split = [k for k in ('read_%s_sec' % kind, 'write_%s_sec' % kind) if k in limited]
        if total in limited and split:
            raise _invalid('limit %s as %s or as %s, not both'
                           % (kind, total, ' and '.join(split)))
    return values


def effective_limits(specs: Mapping[str, Any] | None, size_gb: int) -> dict[str, int]:
    """The fixed limits (and bursts) ``specs`` give a volume of ``size_gb`` GiB."""
    if not specs:
        return {}
    values = validate_specs(specs)
    limits: dict[str, int] = {}
    for key in LIMIT_KEYS:
        if key in values:
            limits[key] = int(values[key])
        elif key + '_per_gb' in values:
            scaled = math.ceil(values[key + '_per_gb'] * size_gb)
            limits[key] = max(scaled, int(values.get(key + '_per_gb_min', 0)), 1)
        if key in limits and key + '_max' in values:
            # a per-GB limit may outgrow a fixed burst: a burst below the limit means none
            burst = int(values[key + '_max'])
            if burst > limits[key]:
                limits[key + '_max'] = burst
    return limits


def consumer_enforces(consumer: str | None, side: str) -> bool:
    """Whether ``side`` ('back-end' or 'front-end') enforces specs of ``consumer``."""
    return (consumer or DEFAULT_CONSUMER) in (side, 'both')


def unsupported(limits: Mapping[str, int], supported: tuple[str, ...]) -> list[str]:
    """The keys of ``limits`` a driver that enforces only ``supported`` would drop."""
    return sorted(set(limits) - set(supported))


def connection_with(info: Mapping[str, Any], limits: Mapping[str, int]) -> dict[str, Any]:
    """Connection info carrying front-end ``limits`` (as Cinder hands them to Nova,
    ``data['qos_specs']``) instead of any it had; a copy."""
    data = dict(info.get('data') or {})
    data.pop('qos_specs', None)
    if limits:
        data['qos_specs'] = dict(limits)
    return dict(info, data=data)


def from_connection(info: Mapping[str, Any]) -> dict[str, int]:
    """The front-end limits a connection info carries ({}: none)."""
    return dict((info.get('data') or {}).get('qos_specs') or {})
