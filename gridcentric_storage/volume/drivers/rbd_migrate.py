"""Driver-assisted migration of an RBD volume to another pool of the same cluster.

Apart from ``rbd.py`` (the Cinder driver methods and the clone graph) because it
is a move of its own: librbd deep-copies the image into the destination's pool,
so no byte crosses this host, which a host copy (``volume/migration.py``) would
read and write. :class:`MigrationMixin` is a mixin of ``RBDDriver``, whose
``__init__`` sets what ``CephClient`` declares; ``driver.migrate_volume`` and
``driver._same_cluster`` work as before.
"""

import contextlib
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import rbd_client
from gridcentric_storage.volume.objects import VolumeRef

__all__ = ['MigrationMixin']
LOG = logging.getLogger(__name__)

if TYPE_CHECKING:
    from gridcentric_storage.volume.drivers.rbd_client import CephClient as _Base
else:
    _Base = object


class MigrationMixin(_Base):
    if TYPE_CHECKING:   # RBDDriver's
        DEFAULTS: ClassVar[dict[str, Any]]

        def _features(self, exclusive: bool | None = None) -> int: ...

        @staticmethod
        def _parent(image: Any) -> tuple[str, str, str] | None: ...

        def delete_volume(self, volume: VolumeRef) -> None: ...

    def _same_cluster(self, options: Mapping[str, Any]) -> bool:
        """Whether a backend with ``options`` is on this cluster: the same
        ceph.conf, or one naming the same fsid."""
        other = options.get('ceph_conf', self.DEFAULTS['ceph_conf'])
        if os.path.realpath(other) == os.path.realpath(self.conf_path):
            return True
        mine, theirs = rbd_client.conf_fsid(self.conf_path), rbd_client.conf_fsid(other)
        return mine is not None and mine == theirs

    def migrate_volume(self, context: Any, volume: VolumeRef,
                       host: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        """To an RBD backend of the same cluster: librbd deep-copies the image into
        the destination's pool under the same name (flattened: a copy never
        depends on this pool's clone graph), then this one is deleted. Another
        cluster, an image with snapshots (hidden clone snapshots included), or a
        copy this backend's user may not make: False, so the host copies."""
        options = host.get('options') or {}
        if host.get('driver') != 'rbd' or not self._same_cluster(options):
            return False, None
        pool, name = options['pool'], self._name('volume', volume.id)
        if pool == self.pool:
            return True, None   # the same pool: the data is where it should be
        features = self._features(bool(options.get('exclusive_lock')))
        lib = rbd_client.rbd

        def copy() -> bool:
            with self._ioctx() as src_io, self._ioctx(pool) as dst_io:
                with lib.Image(src_io, name, read_only=True) as image:
                    if list(image.list_snaps()):
                        return False
                    try:
                        image.deep_copy(dst_io, name, features=features)
                        with lib.Image(dst_io, name) as moved:
                            if self._parent(moved) is not None:
                                moved.flatten()
                    except Exception:
                        with contextlib.suppress(lib.ImageNotFound):
                            lib.RBD().remove(dst_io, name)
                        raise
            return True
        try:
            if not self._run(f'cannot copy {name} to pool {pool}', copy):
                return False, None
        except exception.DriverError:
            LOG.warning('RBD could not copy %s to pool %s itself; the host copies it',
                        name, pool, exc_info=True)
            return False, None
        self.delete_volume(volume)
        return True, None
