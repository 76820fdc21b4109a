"""Volume workflows run on the host that owns the volume's backend.

The DB is the truth: every workflow moves the volume through its state
machine (``creating -> available``, ``deleting -> gone``) and any failure
ends in ``error`` with a reason, after removing what the driver may have
left behind.
"""

import logging
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.db import api as db
from gridcentric_storage.volume.objects import VolumeRef
from gridcentric_storage.volume.pool import LocalPool

LOG = logging.getLogger(__name__)


def _reason(error: Exception) -> str:
    if isinstance(error, exception.GCException):
        return error.message
    return '%s: %s' % (type(error).__name__, error)


class VolumeManager:
    def __init__(self, pool: LocalPool) -> None:
        self.pool = pool
        self._locks = concurrency.KeyedLocks()

    def create_volume(self, volume_id: str) -> None:
        with self._locks.get(volume_id):
            volume = db.volume_get(volume_id)
            if volume['status'] != 'creating':
                LOG.info('Volume %s is %s, not creating it', volume_id, volume['status'])
                return
            ref = VolumeRef(volume)
            try:
                driver = self.pool.get(volume['backend_id'])
                update = concurrency.execute(driver.create_volume, ref) or {}
            except Exception as e:
                LOG.exception('Creating volume %s failed', volume_id)
                self._cleanup_failed(volume)
                db.volume_update(volume_id, {'status': 'error', 'status_reason': _reason(e)})
                return
            values = {k: v for k, v in update.items() if k == 'provider_location'}
            values.update(status='available', status_reason=None)
            db.volume_update(volume_id, values, expected_status=('creating',))

    def _cleanup_failed(self, volume: dict[str, Any]) -> None:
        try:
            driver = self.pool.get(volume['backend_id'])
            driver.delete_volume(VolumeRef(volume))
        except Exception:
            LOG.warning('Could not remove leftovers of volume %s', volume['id'],
                        exc_info=True)

    def delete_volume(self, volume_id: str) -> None:
        with self._locks.get(volume_id):
            try:
                volume = db.volume_get(volume_id)
            except exception.VolumeNotFound:
                return
            try:
                driver = self.pool.get(volume['backend_id'])
                concurrency.execute(driver.delete_volume, VolumeRef(volume))
            except Exception as e:
                LOG.exception('Deleting volume %s failed', volume_id)
                db.volume_update(volume_id, {'status': 'error_deleting',
                                             'status_reason': _reason(e)})
                return
            db.volume_destroy(volume_id)

    def recover_interrupted(self) -> None:
        """At start-up, finish the creates and deletes a stop cut short.

        Whatever the driver may have half-made is removed before the create
        runs again; a create that fails now ends in ``error`` as usual.
        """
        for volume in db.volume_get_all_by_host(self.pool.host, ('creating', 'deleting')):
            LOG.info('Volume %s was left %s; finishing it', volume['id'], volume['status'])
            if volume['status'] == 'deleting':
                self.delete_volume(volume['id'])
            else:
                self._cleanup_failed(volume)
                self.create_volume(volume['id'])
