"""Work-arounds for bugs measured in Cinder 29's own drivers, done with their own code.

RBD: ``RBDDriver._delete_volume`` returns as soon as its fast path removed a
clone, before ``_delete_clone_parent_refs``. So the clone's parent keeps the
protected ``volume-<clone id>.clone_snap`` for good, and a source deleted while
the clone lived (renamed ``volume-<id>.deleted``, kept for the clone) is never
removed: storage leaks with every clone of a volume. :class:`RBDParentRefs`
notes the parent before the delete and, once the clone is really gone, lets the
driver's own ``_delete_clone_parent_refs`` drop the snapshot (and the parent,
if it was deleted and has no snapshots left).
"""

import logging
from typing import Any

LOG = logging.getLogger(__name__)
RBD_DRIVER = 'cinder.volume.drivers.rbd.RBDDriver'


class NoFixup:
    def before_delete(self, driver: Any, volume: Any) -> Any:
        return None

    def after_delete(self, driver: Any, volume: Any, noted: Any) -> None:
        return None


class RBDParentRefs(NoFixup):
    def before_delete(self, driver: Any, volume: Any) -> tuple[str, str] | None:
        from cinder.volume.drivers import rbd

        try:
            with rbd.RBDVolumeProxy(driver, volume.name, read_only=True) as image:
                clone_snap = driver._find_clone_snap(image)
                _pool, parent, snap = driver._get_clone_info(image, volume.name,
                                                             clone_snap)
        except driver.rbd.ImageNotFound:
            return None
        return (parent, snap) if parent else None

    def after_delete(self, driver: Any, volume: Any, noted: Any) -> None:
        if noted is None:
            return
        from cinder.volume.drivers import rbd

        parent, snap = noted
        try:
            with rbd.RADOSClient(driver) as client:
                names = set(driver.RBDProxy().list(client.ioctx))
                if {volume.name, volume.name + '.deleted'} & names:
                    return  # not removed (hidden for its own clones): refs stay
                with rbd.RBDVolumeProxy(driver, parent, ioctx=client.ioctx,
                                        client=client.cluster, read_only=True) as image:
                    if snap not in {s['name'] for s in image.list_snaps()}:
                        return
                    image.set_snap(snap)
                    if list(image.list_children()):
                        return  # another clone of the same snapshot
                driver._delete_clone_parent_refs(client, parent, snap)
        except Exception:  # the volume is gone; a leftover must not fail the delete
            LOG.warning('Could not drop %s@%s after deleting clone %s', parent, snap,
                        volume.name, exc_info=True)


def for_driver(volume_driver: str) -> NoFixup:
    return RBDParentRefs() if volume_driver == RBD_DRIVER else NoFixup()
