"""A fake virt driver for tests: VMs and live images kept in memory, nothing run.

The compute manager and the API are tested against it, so it keeps the
contract of :class:`base.VirtDriver` the way the real drivers do (the virt
conformance suite, tests/functional/virt/test_conformance.py, runs it beside
them): ids must name a file, a second VM or live image of the same id is a
conflict, a clone cannot be blessed, a launch from a discarded live image
fails with ``LiveImageFilesMissing``, a bless leaves the source in the run
state it found, and destroy, discard, attach and detach are idempotent.

What a test may read: the console (one line per thing that happened to the
VM, e.g. ``resumed from live image li-1``), ``volume_sizes``, the size in
bytes each guest was last told a volume has (``extend_volume``), and
:meth:`FakeVirtDriver.disks` (the connection a live migration left a disk on).
"""

import dataclasses
import os
import threading
import uuid
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base
from gridcentric_storage.virt.qemu_process import check_id
from gridcentric_storage.volume import qos

__all__ = ['FakeVirtDriver']


@dataclasses.dataclass
class _VM:
    info: base.InstanceInfo
    memory_mb: int
    vcpus: int
    disks: list[base.Disk]
    live_image_id: str | None = None
    console: list[str] = dataclasses.field(default_factory=list)


#: Incoming migrations of every fake driver of this process: URI -> (driver, VM id).
#: Two compute services in one test process reach each other through it, as two
#: QEMU processes do over TCP.
_INCOMING: dict[str, tuple['FakeVirtDriver', str]] = {}


class FakeVirtDriver(base.VirtDriver):
    """In memory; every VM reports this process's pid.

    ``fail_migrations``: a test sets a reason, and every live migration out of
    this host fails with it (the guest stays, as QEMU's would on a broken link).
    """

    def __init__(self) -> None:
        self.vms: dict[str, _VM] = {}
        self.images: dict[str, base.LiveImageArtifacts] = {}
        self.volume_sizes: dict[str, int] = {}
        self.fail_migrations: str | None = None
        self._lock = threading.Lock()

    def _vm(self, instance_id: str) -> _VM:
        vm = self.vms.get(instance_id)
        if vm is None:
            raise exception.NotFound('Instance %s is not on this host.' % instance_id)
        return vm

    def _running(self, instance_id: str) -> _VM:
        vm = self.vms.get(instance_id)
        if vm is None:
            raise exception.InvalidState(resource='Instance', id=instance_id, state='stopped',
                                         reason='it is not running on this host')
        return vm

    def _add(self, vm: _VM) -> base.InstanceInfo:
        if vm.info.id in self.vms:
            raise exception.Conflict(reason='instance %s already exists on this host'
                                     % vm.info.id)
        self.vms[vm.info.id] = vm
        return dataclasses.replace(vm.info, extra=dict(vm.info.extra))

    # ---- instances

    def spawn(self, instance: base.InstanceSpec) -> base.InstanceInfo:
        check_id('instance', instance.id)
        info = base.InstanceInfo(id=instance.id, state='running', pid=os.getpid(),
                                 extra={'accel': 'fake'})
        with self._lock:
            return self._add(_VM(info, instance.memory_mb, instance.vcpus,
                                 list(instance.disks), console=[
                                     'booted %s (%s): %d MiB, %d vCPU\n' % (
                                         instance.id, instance.name, instance.memory_mb,
                                         instance.vcpus)]))

    def destroy(self, instance_id: str) -> None:
        with self._lock:
            self.vms.pop(instance_id, None)

    def get_info(self, instance_id: str) -> base.InstanceInfo:
        with self._lock:
            vm = self.vms.get(instance_id)
            if vm is None:
                return base.InstanceInfo(id=instance_id, state='stopped')
            return dataclasses.replace(vm.info, extra=dict(vm.info.extra))

    def list_instances(self) -> list[str]:
        with self._lock:
            return sorted(self.vms)

    def get_console_output(self, instance_id: str, length: int | None = None) -> str:
        with self._lock:
            lines = list(self._vm(instance_id).console)
        if length is not None:
            lines = lines[-length:] if length > 0 else []
        return ''.join(lines)

    def _set_state(self, instance_id: str, state: str) -> None:
        with self._lock:
            vm = self._running(instance_id)
            vm.info.state = state
            vm.console.append('%s\n' % state)

    def pause(self, instance_id: str) -> None:
        self._set_state(instance_id, 'paused')

    def unpause(self, instance_id: str) -> None:
        self._set_state(instance_id, 'running')

    # ---- live images

    def bless(self, instance_id: str, live_image_id: str,
              snapshot_disks: list[base.Disk]) -> base.LiveImageArtifacts:
        check_id('live image', live_image_id)
        with self._lock:
            vm = self._running(instance_id)
            if vm.live_image_id:
                raise exception.DriverError(
                    reason='instance %s is a clone of live image %s: its RAM is a private '
                    'copy-on-write mapping and cannot be blessed' % (instance_id,
                                                                     vm.live_image_id))
            if len(snapshot_disks) != len(vm.disks):
                raise exception.DriverError(
                    reason='instance %s has %d disk(s) but %d snapshot(s) were given'
                    % (instance_id, len(vm.disks), len(snapshot_disks)))
            if live_image_id in self.images:
                raise exception.Conflict(reason='live image %s already exists' % live_image_id)
            directory = '/fake/%s' % live_image_id
            artifacts = base.LiveImageArtifacts(
                live_image_id=live_image_id, directory=directory,
                memory_path=directory + '/ram', state_path=directory + '/state',
                memory_mb=vm.memory_mb, vcpus=vm.vcpus, disks=list(snapshot_disks),
                extra={'source_instance': instance_id,
                       'resumed': vm.info.state == 'running'})
            self.images[live_image_id] = artifacts
            vm.console.append('blessed into live image %s\n' % live_image_id)
        return artifacts

    def launch(self, artifacts: base.LiveImageArtifacts,
               clone: base.CloneSpec) -> base.InstanceInfo:
        check_id('instance', clone.id)
        with self._lock:
            image = self.images.get(artifacts.live_image_id)
            if image is None:
                raise exception.LiveImageFilesMissing(
                    id=artifacts.live_image_id,
                    reason='%s is gone (discarded?)' % artifacts.directory)
            if len(clone.disks) != len(image.disks):
                raise exception.DriverError(
                    reason='live image %s has %d disk(s); the clone needs as many '
                    'copy-on-write disks, got %d' % (artifacts.live_image_id,
                                                     len(image.disks), len(clone.disks)))
            info = base.InstanceInfo(id=clone.id, state='running', pid=os.getpid(),
                                     extra={'accel': 'fake',
                                            'live_image_id': artifacts.live_image_id})
            return self._add(_VM(info, image.memory_mb, image.vcpus, list(clone.disks),
                                 artifacts.live_image_id,
                                 ['%s (%s) resumed from live image %s\n' % (
                                     clone.id, clone.name, artifacts.live_image_id)]))

    def discard(self, artifacts: base.LiveImageArtifacts) -> None:
        with self._lock:
            self.images.pop(artifacts.live_image_id, None)

    # ---- volumes

    def attach_volume(self, instance_id: str, disk: base.Disk) -> None:
        with self._lock:
            vm = self._vm(instance_id)
            if all(d.volume_id != disk.volume_id for d in vm.disks):
                vm.disks.append(disk)

    def detach_volume(self, instance_id: str, volume_id: str) -> None:
        with self._lock:
            vm = self._vm(instance_id)
            vm.disks = [d for d in vm.disks if d.volume_id != volume_id]

    def extend_volume(self, instance_id: str, volume_id: str, new_size: int) -> None:
        with self._lock:
            if all(d.volume_id != volume_id for d in self._vm(instance_id).disks):
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            self.volume_sizes[volume_id] = new_size

    def set_volume_qos(self, instance_id: str, volume_id: str,
                       limits: dict[str, int]) -> None:
        with self._lock:
            vm = self._vm(instance_id)
            for disk in vm.disks:
                if disk.volume_id == volume_id:
                    disk.connection_info = qos.connection_with(disk.connection_info,
                                                                       limits)
                    return
            raise exception.DriverError(reason='volume %s is not attached to %s'
                                        % (volume_id, instance_id))

    def migrate_volume(self, instance_id: str, volume_id: str, disk: base.Disk) -> None:
        """The disk takes the destination's connection (keeping its front-end limits
        when the destination brings none); a connection type no host can open fails,
        as QEMU's ``blockdev-add`` would, and leaves the disk as it was."""
        kind = disk.connection_info.get('driver_volume_type')
        with self._lock:
            vm = self._running(instance_id)
            current = next((d for d in vm.disks if d.volume_id == volume_id), None)
            if current is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            if kind not in ('local', 'rbd', 'iscsi'):
                raise exception.DriverError(
                    reason='live migration of volume %s failed; the guest stays on its '
                    'source disk: cannot open a %s connection' % (volume_id, kind))
            info = dict(disk.connection_info)
            if not qos.from_connection(info):
                info = qos.connection_with(info, qos.from_connection(current.connection_info))
            current.connection_info = info
            vm.console.append('volume %s migrated live\n' % volume_id)

    # ---- live migration

    def describe_outgoing(self, instance_id: str) -> dict[str, Any]:
        with self._lock:
            vm = self._running(instance_id)
            return {'memory_mb': vm.memory_mb, 'vcpus': vm.vcpus,
                    'live_image_id': vm.live_image_id,
                    'volume_ids': [d.volume_id for d in vm.disks]}

    def prepare_incoming(self, incoming: base.IncomingSpec) -> str:
        check_id('instance', incoming.id)
        described = incoming.description
        if described.get('live_image_id') and not incoming.memory_path:
            raise exception.DriverError(reason='clone %s needs the RAM of live image %s '
                                        'on this host' % (incoming.id,
                                                          described['live_image_id']))
        if sorted(d.volume_id for d in incoming.disks) != sorted(described['volume_ids']):
            raise exception.DriverError(reason='instance %s needs its volumes %s here'
                                        % (incoming.id, described['volume_ids']))
        by_id = {d.volume_id: d for d in incoming.disks}
        info = base.InstanceInfo(id=incoming.id, state='paused', pid=os.getpid(),
                                 extra={'accel': 'fake', 'qemu_status': 'inmigrate'})
        uri = 'fake-migrate://%s' % uuid.uuid4()
        with self._lock:
            self._add(_VM(info, described['memory_mb'], described['vcpus'],
                          [by_id[v] for v in described['volume_ids']],
                          described.get('live_image_id')))
            _INCOMING[uri] = (self, incoming.id)
        return uri

    def migrate_out(self, instance_id: str, uri: str, timeout: float) -> dict[str, Any]:
        with self._lock:
            vm = self._running(instance_id)
            target = _INCOMING.pop(uri, None)
            if self.fail_migrations or target is None:
                raise exception.DriverError(
                    reason='live migration of %s failed; it runs on here: %s'
                    % (instance_id, self.fail_migrations or 'nobody listens at ' + uri))
            vm.info.state = 'paused'
            vm.info.extra['qemu_status'] = 'postmigrate'
            console = list(vm.console)
        driver, incoming_id = target
        with driver._lock:
            arrived = driver.vms.get(incoming_id)
            if arrived is None:
                raise exception.DriverError(reason='the destination of %s went away'
                                            % instance_id)
            arrived.console = console + ['arrived by live migration\n']
            arrived.info.extra['qemu_status'] = 'paused'
        return {'transferred_mb': vm.memory_mb}

    def finish_incoming(self, instance_id: str) -> base.InstanceInfo:
        with self._lock:
            vm = self._running(instance_id)
            if vm.info.extra.get('qemu_status') == 'inmigrate':
                raise exception.DriverError(reason='instance %s has not arrived'
                                            % instance_id)
            vm.info.state = 'running'
            vm.info.extra.pop('qemu_status', None)
            return dataclasses.replace(vm.info, extra=dict(vm.info.extra))

    def disks(self, instance_id: str) -> list[base.Disk]:
        """The disks the VM has now (what a test checks after attach and detach)."""
        with self._lock:
            return list(self._vm(instance_id).disks)
