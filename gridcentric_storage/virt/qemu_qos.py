"""Front-end QoS for QEMU: a disk's I/O limits as QEMU's block throttling.

``block_set_io_throttle`` puts the disk's block backend in a throttle group
of its own (named after the disk) with the limits given; QEMU then reports
them in ``query-block`` (``inserted.iops``, ``bps_rd``, ...), and the same
call changes them on a running guest. libvirt's ``<iotune>`` is this very
mechanism, so both virt drivers throttle alike. All six limits are always
sent: 0 means unlimited, so limits left out of a change are lifted.
"""

from typing import Any

from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qmp
from gridcentric_storage.volume import qos

#: volume.qos limit keys -> block_set_io_throttle arguments
_QMP_KEYS = {f'{scope}_{kind}_sec': qemu + suffix
             for scope, suffix in (('total', ''), ('read', '_rd'), ('write', '_wr'))
             for kind, qemu in (('iops', 'iops'), ('bytes', 'bps'))}


def throttle_arguments(device_id: str, limits: dict[str, int]) -> dict[str, Any]:
    """The arguments of ``block_set_io_throttle`` for ``limits`` on ``device_id``."""
    # the block backend is the virtio-blk-pci proxy's child device, not the proxy
    arguments: dict[str, Any] = {'id': '/machine/peripheral/%s/virtio-backend' % device_id,
                                 'group': 'throttle-' + device_id}
    for key, qemu in _QMP_KEYS.items():
        arguments[qemu] = int(limits.get(key, 0))
        burst = limits.get(key + '_max')
        if burst and arguments[qemu]:
            arguments[qemu + '_max'] = int(burst)
    return arguments


def apply(mon: qmp.Monitor, disk: cmdline.DiskSlot, limits: dict[str, int] | None = None,
          always: bool = False) -> None:
    """Throttle ``disk`` to ``limits`` (default: those of its connection info); with
    no limits, nothing is sent unless ``always`` (a change that lifts them)."""
    if limits is None:
        limits = qos.from_connection(disk.connection_info)
    if limits or always:
        mon.cmd('block_set_io_throttle', **throttle_arguments(disk.device_id, limits))

