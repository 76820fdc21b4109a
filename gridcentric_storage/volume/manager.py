"""Volume and snapshot workflows, run on the host that owns the backend.

The DB is the truth: every workflow moves its resource through the state
machine (volume ``creating -> available <-> in-use``, ``extending``,
``reverting``, ``deleting``; snapshot ``creating -> available``,
``deleting``) and any failure ends in ``error`` with a reason after removing
what the driver may have left behind, so nothing stays in an ``-ing`` state.
"""

import logging
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common import context as gc_context
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.volume.image_cache import ImageCache
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from gridcentric_storage.volume.pool import LocalPool

LOG = logging.getLogger(__name__)
_MODEL_KEYS = ('provider_location', 'provider_auth')


def reason(error: Exception) -> str:
    if isinstance(error, exception.GCException):
        return error.message
    return '%s: %s' % (type(error).__name__, error)


def model_update(update: dict[str, Any] | None) -> dict[str, Any]:
    """The keys of a driver's model update that the DB keeps."""
    return {k: v for k, v in (update or {}).items() if k in _MODEL_KEYS}


def snapshot_ref(snapshot: dict[str, Any]) -> SnapshotRef:
    return SnapshotRef(snapshot)


def _member(volume: dict[str, Any]) -> gc_context.RequestContext:
    """A member of the volume's project: without the caller's context (a restart),
    an image is what any member may use, never an administrator's host path."""
    return gc_context.RequestContext(user_id=volume.get('user_id'),
                                     project_id=volume['project_id'], is_admin=False,
                                     overwrite=False)


class VolumeManager:
    def __init__(self, pool: LocalPool) -> None:
        self.pool = pool
        self.images = ImageStore()
        self.image_cache = ImageCache(pool, self.images)
        self.locks = concurrency.KeyedLocks()

    # ------------------------------------------------------------- create
    def create_volume(self, volume_id: str, ctxt: Any = None) -> None:
        """``ctxt``: the caller's, which decides the images it may use (None: a member
        of the volume's project, as after a restart)."""
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            if volume['status'] != 'creating':
                LOG.info('Volume %s is %s, not creating it', volume_id, volume['status'])
                return
            ref = VolumeRef(volume)
            try:
                driver = self.pool.get(volume['backend_id'])
                update = concurrency.execute(self._create_on_driver, ctxt or _member(volume),
                                             driver, volume, ref)
            except Exception as e:
                LOG.exception('Creating volume %s failed', volume_id)
                self._remove_leftovers(volume)
                db.volume_update(volume_id, {'status': 'error', 'status_reason': reason(e)})
                return
            values = model_update(update)
            values.update(status='available', status_reason=None)
            db.volume_update(volume_id, values, expected_status=('creating',))

    def _create_on_driver(self, ctxt: Any, driver: Any, volume: dict[str, Any],
                          ref: VolumeRef) -> Any:
        if volume.get('snapshot_id'):
            snapshot = db_snapshots.snapshot_get(volume['snapshot_id'])
            return driver.create_volume_from_snapshot(ref, snapshot_ref(snapshot))
        if volume.get('source_volid'):
            source = db.volume_get(volume['source_volid'])
            return driver.create_cloned_volume(ref, VolumeRef(source))
        if volume.get('image_id'):
            return self.image_cache.create_volume_from_image(
                ctxt, volume['backend_id'], driver, ref, volume['image_id'])
        return driver.create_volume(ref)

    def _remove_leftovers(self, volume: dict[str, Any]) -> None:
        try:
            self.pool.get(volume['backend_id']).delete_volume(VolumeRef(volume))
        except Exception:
            LOG.warning('Could not remove leftovers of volume %s', volume['id'],
                        exc_info=True)

    # ------------------------------------------------------------- delete
    def delete_volume(self, volume_id: str, cascade: bool = False) -> None:
        with self.locks.get(volume_id):
            try:
                volume = db.volume_get(volume_id)
            except exception.VolumeNotFound:
                return
            try:
                driver = self.pool.get(volume['backend_id'])
                ref = VolumeRef(volume)
                for attachment in db_attachments.attachment_get_all(volume_id=volume_id):
                    # Nothing dangles: every export ends before the data goes.
                    driver.terminate_connection(ref, attachment.get('connector'))
                    db_attachments.attachment_destroy(attachment['id'])
                driver.remove_export(None, ref)
                if cascade:
                    for snapshot in db_snapshots.snapshot_get_all(volume_id=volume_id):
                        concurrency.execute(driver.delete_snapshot, snapshot_ref(snapshot))
                        db_snapshots.snapshot_destroy(snapshot['id'])
                concurrency.execute(driver.delete_volume, ref)
            except Exception as e:
                LOG.exception('Deleting volume %s failed', volume_id)
                db.volume_update(volume_id, {'status': 'error_deleting',
                                             'status_reason': reason(e)})
                return
            db.volume_destroy(volume_id)

    # ------------------------------------------------------------- resize, revert
    def extend_volume(self, volume_id: str, new_size: int, previous_status: str) -> None:
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            try:
                driver = self.pool.get(volume['backend_id'])
                concurrency.execute(driver.extend_volume, VolumeRef(volume), new_size)
            except Exception as e:
                LOG.exception('Extending volume %s failed', volume_id)
                # The data is intact at the old size: keep the volume usable.
                db.volume_update(volume_id, {'status': previous_status,
                                             'status_reason': 'extend failed: %s' % reason(e)})
                return
            db.volume_update(volume_id, {'status': previous_status, 'size': new_size,
                                         'status_reason': None})

    def revert_volume(self, volume_id: str, snapshot_id: str) -> None:
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            snapshot = db_snapshots.snapshot_get(snapshot_id)
            ref = VolumeRef(volume)
            try:
                driver = self.pool.get(volume['backend_id'])
                concurrency.execute(driver.revert_to_snapshot, None, ref,
                                    snapshot_ref(snapshot))
                if volume['size'] > snapshot['volume_size']:
                    # The snapshot is smaller: keep the volume's current size.
                    concurrency.execute(driver.extend_volume, ref, volume['size'])
            except Exception as e:
                LOG.exception('Reverting volume %s failed', volume_id)
                db.volume_update(volume_id, {'status': 'error',
                                             'status_reason': 'revert failed: %s' % reason(e)})
            else:
                db.volume_update(volume_id, {'status': 'available', 'status_reason': None})
            db_snapshots.snapshot_update(snapshot_id, {'status': 'available'})

    # ------------------------------------------------------------- snapshots
    def create_snapshot(self, snapshot_id: str, quiesced: bool = False) -> None:
        """``quiesced``: whatever has the volume attached is paused and flushed."""
        snapshot = db_snapshots.snapshot_get(snapshot_id)
        with self.locks.get(snapshot['volume_id']):
            try:
                driver = self.pool.get(snapshot['backend_id'])
                ref = SnapshotRef(dict(snapshot, quiesced=quiesced))
                update = concurrency.execute(driver.create_snapshot, ref)
            except Exception as e:
                LOG.exception('Creating snapshot %s failed', snapshot_id)
                try:
                    self.pool.get(snapshot['backend_id']).delete_snapshot(
                        snapshot_ref(snapshot))
                except Exception:
                    LOG.warning('Could not remove leftovers of snapshot %s', snapshot_id)
                db_snapshots.snapshot_update(snapshot_id, {'status': 'error',
                                                           'status_reason': reason(e)})
                return
            values = {k: v for k, v in model_update(update).items()
                      if k == 'provider_location'}
            values.update(status='available', status_reason=None)
            db_snapshots.snapshot_update(snapshot_id, values)

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            snapshot = db_snapshots.snapshot_get(snapshot_id)
        except exception.NotFound:
            return
        with self.locks.get(snapshot['volume_id']):
            try:
                driver = self.pool.get(snapshot['backend_id'])
                concurrency.execute(driver.delete_snapshot, snapshot_ref(snapshot))
            except Exception as e:
                LOG.exception('Deleting snapshot %s failed', snapshot_id)
                db_snapshots.snapshot_update(snapshot_id, {'status': 'error_deleting',
                                                           'status_reason': reason(e)})
                return
            db_snapshots.snapshot_destroy(snapshot_id)

    # ------------------------------------------------------------- images
    def reserve_image(self, ctxt: Any, name: str) -> None:
        self.images.reserve(ctxt, name)

    def copy_volume_to_image(self, ctxt: Any, volume_id: str,
                             image_meta: dict[str, Any]) -> None:
        """Write the volume to the image ``image_meta['name']`` of the caller's project,
        whose name :meth:`reserve_image` claimed; a failure removes every file."""
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            name = image_meta['name']
            try:
                _, work = self.images.export_paths(ctxt, name)
                driver = self.pool.get(volume['backend_id'])
                concurrency.execute(driver.copy_volume_to_image, ctxt, VolumeRef(volume),
                                    self.images, dict(image_meta, path=work))
                self.images.finish_export(ctxt, name, work)
                status_reason = None
            except Exception as e:
                LOG.exception('Writing volume %s to an image failed', volume_id)
                status_reason = 'upload to image failed: %s' % reason(e)
                try:
                    self.images.finish_export(ctxt, name, None)
                except Exception:
                    LOG.warning('Could not remove what the export of %s left', volume_id,
                                exc_info=True)
            # Reading the volume out never changes its data: it stays usable.
            db.volume_update(volume_id, {'status': 'available',
                                         'status_reason': status_reason})

    # ------------------------------------------------------------- restart
    def recover_interrupted(self) -> None:
        """At start-up, finish or fail the work a stop cut short.

        Creates run again after removing what the driver half-made; deletes
        run again; an extend or an upload to an image leaves the data as it
        was, so those volumes go back to ``available``; an interrupted revert
        leaves unknown data, so that volume goes to ``error``.
        """
        host = self.pool.host
        for path in self.images.remove_incomplete():
            LOG.info('Removed %s, left by an export a stop cut short', path)
        for volume in db.volume_get_all_by_host(host, ('creating', 'deleting', 'extending',
                                                       'uploading', 'reverting',
                                                       'downloading')):
            status = volume['status']
            LOG.info('Volume %s was left %s; settling it', volume['id'], status)
            if status == 'deleting':
                self.delete_volume(volume['id'])
            elif status == 'creating':
                self._remove_leftovers(volume)
                self.create_volume(volume['id'])
            elif status in ('reverting', 'downloading'):
                db.volume_update(volume['id'], {
                    'status': 'error',
                    'status_reason': '%s interrupted by a restart of %s; the data is '
                                     'incomplete' % (status, host)})
            else:
                in_use = db_attachments.attachment_get_all(volume_id=volume['id'])
                db.volume_update(volume['id'], {
                    'status': 'in-use' if in_use else 'available',
                    'status_reason': '%s interrupted by a restart of %s' % (status, host)})
        for snapshot in db_snapshots.snapshot_get_all(host=host,
                                                      statuses=('creating', 'deleting',
                                                                'restoring')):
            if snapshot['status'] == 'deleting':
                self.delete_snapshot(snapshot['id'])
            elif snapshot['status'] == 'restoring':
                db_snapshots.snapshot_update(snapshot['id'], {'status': 'available'})
            else:
                try:
                    self.pool.get(snapshot['backend_id']).delete_snapshot(
                        snapshot_ref(snapshot))
                except Exception:
                    LOG.warning('Could not remove leftovers of snapshot %s', snapshot['id'])
                self.create_snapshot(snapshot['id'])
