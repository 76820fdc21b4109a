"""In-memory virt driver for tests of the compute manager and the API."""

import os
import threading

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base


class FakeVirtDriver(base.VirtDriver):
    def __init__(self) -> None:
        self.instances: dict[str, base.InstanceInfo] = {}
        self.images: dict[str, base.LiveImageArtifacts] = {}
        self.volumes: dict[str, list[str]] = {}
        self.volume_sizes: dict[str, int] = {}  # what each guest was told (bytes)
        self._lock = threading.Lock()

    def spawn(self, instance: base.InstanceSpec) -> base.InstanceInfo:
        info = base.InstanceInfo(id=instance.id, state='running', pid=os.getpid())
        with self._lock:
            self.instances[instance.id] = info
            self.volumes[instance.id] = [disk.volume_id for disk in instance.disks]
        return info

    def destroy(self, instance_id: str) -> None:
        with self._lock:
            self.instances.pop(instance_id, None)
            self.volumes.pop(instance_id, None)

    def get_info(self, instance_id: str) -> base.InstanceInfo:
        with self._lock:
            return self.instances.get(instance_id) or base.InstanceInfo(id=instance_id,
                                                                        state='stopped')

    def list_instances(self) -> list[str]:
        with self._lock:
            return list(self.instances)

    def get_console_output(self, instance_id: str, length: int | None = None) -> str:
        return 'fake console of %s\n' % instance_id

    def bless(self, instance_id: str, live_image_id: str,
              snapshot_disks: list[base.Disk]) -> base.LiveImageArtifacts:
        artifacts = base.LiveImageArtifacts(
            live_image_id=live_image_id, directory='/fake/%s' % live_image_id,
            memory_path='/fake/%s/memory' % live_image_id,
            state_path='/fake/%s/state' % live_image_id, memory_mb=64, vcpus=1,
            disks=snapshot_disks)
        with self._lock:
            self.images[live_image_id] = artifacts
        return artifacts

    def launch(self, artifacts: base.LiveImageArtifacts,
               clone: base.CloneSpec) -> base.InstanceInfo:
        info = base.InstanceInfo(id=clone.id, state='running', pid=os.getpid())
        with self._lock:
            self.instances[clone.id] = info
            self.volumes[clone.id] = [disk.volume_id for disk in clone.disks]
        return info

    def discard(self, artifacts: base.LiveImageArtifacts) -> None:
        with self._lock:
            self.images.pop(artifacts.live_image_id, None)

    def pause(self, instance_id: str) -> None:
        with self._lock:
            if instance_id in self.instances:
                self.instances[instance_id].state = 'paused'

    def unpause(self, instance_id: str) -> None:
        with self._lock:
            if instance_id in self.instances:
                self.instances[instance_id].state = 'running'

    def attach_volume(self, instance_id: str, disk: base.Disk) -> None:
        with self._lock:
            self.volumes.setdefault(instance_id, []).append(disk.volume_id)

    def extend_volume(self, instance_id: str, volume_id: str, new_size: int) -> None:
        with self._lock:
            if volume_id not in self.volumes.get(instance_id, []):
                raise exception.DriverError(reason='%s is not attached to %s'
                                            % (volume_id, instance_id))
            self.volume_sizes[volume_id] = new_size

    def detach_volume(self, instance_id: str, volume_id: str) -> None:
        with self._lock:
            if volume_id in self.volumes.get(instance_id, []):
                self.volumes[instance_id].remove(volume_id)
