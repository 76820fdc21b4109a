"""The virt driver contract: run VMs, bless them, launch clones of them.

This module only defines the interface; ``qemu.py`` (QMP, the embedded
default) and ``libvirt.py`` implement it, ``fake.py`` is for tests. Drivers
receive plain dataclasses and return plain dataclasses, so the compute
manager can store them in the DB (``dataclasses.asdict``) and rebuild them
after a restart.

A live image is the frozen state of a running VM: its guest RAM in a file
that is never written again, its device state, and copy-on-write snapshots of
its disks. A clone maps that RAM privately (lazy, copy-on-write), gets
copy-on-write disks, and resumes where the blessed VM stopped.
"""

import abc
import dataclasses
import inspect
import os
from typing import Any

from gridcentric_storage.common import exception


@dataclasses.dataclass
class Disk:
    """A block device of a VM, from an os-brick style connection.

    ``connection_info`` is what a volume driver's initialize_connection
    returned, e.g. ``{'driver_volume_type': 'local', 'data': {'device_path':
    '/var/lib/gridcentric-storage/volumes/<b>/volume-<id>', 'format': 'qcow2'}}``
    or an ``rbd`` / ``iscsi`` one; the driver turns it into a QEMU drive.
    """

    volume_id: str
    connection_info: dict[str, Any]
    read_only: bool = False


@dataclasses.dataclass
class InstanceSpec:
    """What to run. ``kernel``/``initrd`` are paths on the compute host."""

    id: str
    name: str
    memory_mb: int
    vcpus: int = 1
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    disks: list[Disk] = dataclasses.field(default_factory=list)
    mac: str | None = None
    vmgenid: str | None = None


@dataclasses.dataclass
class InstanceInfo:
    """A running VM as the driver knows it; enough to find it again after a restart."""

    id: str
    state: str  # 'running', 'paused', 'stopped', 'crashed'
    pid: int | None = None
    instance_dir: str | None = None
    console_path: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LiveImageArtifacts:
    """Everything a launch needs; files live under ``directory``."""

    live_image_id: str
    directory: str
    memory_path: str
    state_path: str
    memory_mb: int
    vcpus: int
    disks: list[Disk] = dataclasses.field(default_factory=list)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class CloneSpec:
    """A clone to launch: new identity; ``guest`` k=v and user data reach the guest."""

    id: str
    name: str
    mac: str | None = None
    vmgenid: str | None = None
    disks: list[Disk] = dataclasses.field(default_factory=list)
    guest: dict[str, str] = dataclasses.field(default_factory=dict)
    user_data: bytes | None = None


@dataclasses.dataclass
class IncomingSpec:
    """A running VM about to arrive from another host by live migration.

    ``description`` is what the source driver's :meth:`VirtDriver.describe_outgoing`
    gave (opaque here: the same driver reads it); ``disks`` are this host's
    connections of the VM's volumes; ``memory_path`` is, for a clone, this
    host's path of its live image's RAM (the file its memory maps).
    """

    id: str
    description: dict[str, Any]
    disks: list[Disk] = dataclasses.field(default_factory=list)
    memory_path: str | None = None
    listen: str = '127.0.0.1'


def constructor_options(cls: type, conf: Any, group_name: str) -> dict[str, Any]:
    """Keyword arguments for ``cls`` from the option group named like them.

    Paths default under ``state_path``; options left unset keep the
    constructor's own defaults.
    """
    state = getattr(conf, 'state_path', None) or '/var/lib/gridcentric-storage'
    kwargs: dict[str, Any] = {'instances_path': os.path.join(state, 'instances'),
                              'live_images_path': os.path.join(state, 'live-images')}
    group = getattr(conf, group_name, None)
    for name in inspect.signature(cls).parameters:
        value = getattr(group, name, None) if group is not None else None
        if value is not None:
            kwargs[name] = value
    return kwargs


class VirtDriver(abc.ABC):
    """One hypervisor on one compute host."""

    def init_host(self, host: str) -> None:  # noqa: B027 - optional hook
        """Probe the host (e.g. KVM or TCG) before the first call."""

    def cleanup_host(self) -> None:  # noqa: B027 - optional hook
        """At service stop: end what the driver runs besides guests (guests run on)."""

    def cancel_volume_mirrors(self) -> list[str]:
        """At start-up, before the volume manager removes the destinations of
        interrupted volume migrations: cancel the mirrors a stop of this service
        cut short in running guests (they hold those destinations open); the
        volume ids. A driver that cannot mirror has none."""
        return []

    @abc.abstractmethod
    def spawn(self, instance: InstanceSpec) -> InstanceInfo:
        """Boot a VM whose RAM can later be blessed."""

    @abc.abstractmethod
    def destroy(self, instance_id: str) -> None:
        """Stop the VM and remove its runtime files; succeeds if already gone."""

    @abc.abstractmethod
    def get_info(self, instance_id: str) -> InstanceInfo:
        """Current state; ``state='stopped'`` when the VM is not running."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """Ids of the VMs this driver runs on this host (to find leftovers)."""

    @abc.abstractmethod
    def get_console_output(self, instance_id: str, length: int | None = None) -> str:
        """The serial console so far; the last ``length`` lines when given."""

    @abc.abstractmethod
    def bless(self, instance_id: str, live_image_id: str,
              snapshot_disks: list[Disk]) -> LiveImageArtifacts:
        """Freeze a running VM's memory and device state into a live image.

        ``snapshot_disks`` are copy-on-write snapshots of the VM's disks taken by
        the caller while the VM is paused. The source VM keeps running afterwards.
        """

    @abc.abstractmethod
    def launch(self, artifacts: LiveImageArtifacts, clone: CloneSpec) -> InstanceInfo:
        """Start a clone that resumes from the live image."""

    @abc.abstractmethod
    def discard(self, artifacts: LiveImageArtifacts) -> None:
        """Remove every file of a live image; succeeds if already gone."""

    def pause(self, instance_id: str) -> None:
        """Stop the vCPUs (disks are then snapshotted consistently before a bless)."""
        raise NotImplementedError()

    def unpause(self, instance_id: str) -> None:
        """Resume a paused VM (e.g. a source left paused by an interrupted bless)."""
        raise NotImplementedError()

    def attach_volume(self, instance_id: str, disk: Disk) -> None:
        raise NotImplementedError()

    def detach_volume(self, instance_id: str, volume_id: str) -> None:
        raise NotImplementedError()

    def extend_volume(self, instance_id: str, volume_id: str, new_size: int) -> None:
        """Tell the guest that an attached volume now has ``new_size`` bytes (its
        backend grew it first), as Nova's extend_volume does."""
        raise NotImplementedError()

    def set_volume_qos(self, instance_id: str, volume_id: str,
                       limits: dict[str, int]) -> None:
        """Throttle an attached volume to ``limits`` now (``volume.qos`` fixed keys;
        ``{}``: unthrottled). A disk's first limits come with its connection info
        (``data['qos_specs']``), which spawn, launch and attach_volume apply."""
        raise exception.QosNotSupported(driver=type(self).__name__,
                                        reason='this hypervisor driver cannot throttle I/O')

    def migrate_volume(self, instance_id: str, volume_id: str, disk: Disk) -> None:
        """Move an attached volume's disk onto ``disk.connection_info`` (the same
        volume's data on another backend, already exported to this host) while the
        guest runs: copy, then switch over. On failure the guest stays on its source
        disk, untouched, and ``DriverError`` says why; the caller then drops the
        destination. Drivers that override this are advertised as able to
        (``compute.service.capabilities``)."""
        raise exception.LiveMigrationNotSupported(
            driver=type(self).__name__,
            reason='this hypervisor driver cannot mirror a disk of a running guest')

    def export(self, artifacts: LiveImageArtifacts) -> dict[str, Any]:
        raise NotImplementedError()

    def import_(self, data: dict[str, Any]) -> LiveImageArtifacts:
        raise NotImplementedError()

    # ---- live migration of a whole VM to another host (compute.server_migration)
    def describe_outgoing(self, instance_id: str) -> dict[str, Any]:
        """What the destination's driver needs to start the same machine, waiting
        (JSON-able: it travels by RPC). Drivers that override the four migration
        methods are advertised as able to (``compute.service.capabilities``)."""
        raise exception.ServerMigrationRefused(
            id=instance_id, reason='the %s hypervisor driver cannot migrate a running '
            'guest' % type(self).__name__)

    def prepare_incoming(self, incoming: IncomingSpec) -> str:
        """Start the VM paused, waiting for its state; the URI the source sends it to."""
        raise exception.ServerMigrationRefused(
            id=incoming.id, reason='the %s hypervisor driver cannot receive a running '
            'guest' % type(self).__name__)

    def migrate_out(self, instance_id: str, uri: str, timeout: float) -> dict[str, Any]:
        """Send the running VM to ``uri`` and wait until it is all there (the VM is
        then paused here, for good). On failure the VM runs on here, as before, and
        ``DriverError`` says why. Returns figures of the transfer."""
        raise exception.ServerMigrationRefused(
            id=instance_id, reason='the %s hypervisor driver cannot migrate a running '
            'guest' % type(self).__name__)

    def cancel_outgoing(self, instance_id: str) -> None:  # noqa: B027 - nothing to cancel
        """Stop a migration out of this host that a restart of the service left
        running (the hypervisor goes on without it); the VM runs on here, unless
        the migration had completed (then it stays paused)."""

    def finish_incoming(self, instance_id: str) -> InstanceInfo:
        """Run the VM that arrived (idempotent: a running one is left as it is)."""
        raise exception.ServerMigrationRefused(
            id=instance_id, reason='the %s hypervisor driver cannot receive a running '
            'guest' % type(self).__name__)
