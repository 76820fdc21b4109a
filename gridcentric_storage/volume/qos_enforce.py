"""Where a volume's QoS limits are enforced: its backend's driver and its servers' hypervisor.

``volume.qos`` computes limits from specs; this module reads the specs that
govern a volume (its own, else its backend's) and says what each side
enforces. The back-end side is the volume driver's ``set_qos`` on the owner
host; the front-end side travels to the attacher inside the connection info,
as Cinder hands it to Nova (``data['qos_specs']``: the fixed limits, per-GB
keys already scaled to the volume's size).
"""

import logging
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import qos as db_qos
from gridcentric_storage.db.records import Volume
from gridcentric_storage.volume import qos
from gridcentric_storage.volume.objects import VolumeRef

LOG = logging.getLogger(__name__)


def limits_for(volume: Volume, side: str) -> dict[str, int]:
    """The limits ``side`` ('back-end' or 'front-end') enforces on ``volume`` ({}: none)."""
    specs = db_qos.governing_specs(volume)
    if specs is None or not qos.consumer_enforces(specs['consumer'], side):
        return {}
    return qos.effective_limits(specs['specs'], volume['size'])


def view(volume: Volume) -> dict[str, Any] | None:
    """What a volume's owner may read of its QoS: who enforces which limits."""
    specs = db_qos.governing_specs(volume)
    if specs is None:
        return None
    return {'consumer': specs['consumer'],
            'limits': qos.effective_limits(specs['specs'], volume['size'])}


def apply_on_backend(driver: Any, volume: Volume, new: bool = False) -> str | None:
    """Give the volume's back-end limits to its driver (none: clear them); what went
    wrong, if anything. ``new``: a volume just made, with nothing to clear."""
    try:
        limits = limits_for(volume, 'back-end')
        if new and not limits:
            return None
        driver.set_qos(VolumeRef(volume), limits)
    except exception.GCException as e:
        LOG.warning('QoS of volume %s not applied on its backend: %s', volume['id'],
                    e.message)
        return 'QoS not applied: %s' % e.message
    return None


def add_to_connection(info: dict[str, Any], volume: Volume) -> dict[str, Any]:
    """``info`` with the volume's front-end limits for the hypervisor (Cinder's key)."""
    return qos.connection_with(info, limits_for(volume, 'front-end'))

