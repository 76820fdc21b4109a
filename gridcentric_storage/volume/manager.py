"""The volume manager: RPC endpoint (namespace ``volume``) on the host that owns a backend.

It runs every volume, snapshot, image and export operation on its backends'
drivers and is, with ``volume.api``, the only writer of volume, snapshot and
attachment status (through ``volume.status``, checked against the tables of
``common.states``). Any failure ends in ``error`` with a reason after
removing what the driver may have left, so nothing stays in an ``-ing``
state; :meth:`VolumeManager.init_host` settles what a stop cut short.
"""

import logging
from typing import Any

import oslo_messaging as messaging

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common import context as gc_context
from gridcentric_storage.common.states import SnapshotStatus as S
from gridcentric_storage.common.states import VolumeStatus as V
from gridcentric_storage.compute import rpcapi as compute_rpcapi
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Snapshot, Volume
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.volume import migration, qos_enforce, rpcapi, status
from gridcentric_storage.volume.image_cache import ImageCache
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from gridcentric_storage.volume.pool import LocalPool
from gridcentric_storage.volume.transfer import TransferServer

LOG = logging.getLogger(__name__)
_MODEL_KEYS = ('provider_location', 'provider_auth')


def model_update(update: dict[str, Any] | None) -> dict[str, Any]:
    """The keys of a driver's model update that the DB keeps."""
    return {k: v for k, v in (update or {}).items() if k in _MODEL_KEYS}


def snapshot_ref(snapshot: Snapshot, **extra: Any) -> SnapshotRef:
    """The driver's reference, naming its volume as the backend does (a migrated
    volume's data keeps its ``name_id``)."""
    try:
        name_id = db.volume_get(snapshot['volume_id']).get('name_id')
    except exception.VolumeNotFound:
        name_id = None
    return SnapshotRef(dict(snapshot, volume_name_id=name_id, **extra))


def _member(volume: Volume) -> gc_context.RequestContext:
    """A member of the volume's project: without the caller's context (a restart),
    an image is what any member may use, never an administrator's host path."""
    return gc_context.RequestContext(user_id=volume.get('user_id'),
                                     project_id=volume['project_id'], is_admin=False,
                                     overwrite=False)


class VolumeManager:
    target = messaging.Target(namespace=rpcapi.NAMESPACE, version=rpcapi.RPC_API_VERSION)

    def __init__(self, host: str, images: ImageStore | None = None) -> None:
        self.host = host
        self.pool = LocalPool(host)
        self.images = images or ImageStore()
        self.image_cache = ImageCache(self.pool, self.images)
        self.locks = concurrency.KeyedLocks()
        self.transfers = TransferServer(host, self.pool, self._begin_transfer,
                                        self._end_transfer)
        self.compute_rpcapi = compute_rpcapi.ComputeAPI()
        self.migrations = migration.Migrator(self)

    # ------------------------------------------------------------- backends
    def setup_backend(self, ctxt: Any, backend_id: str) -> None:
        self.pool.setup(db.backend_get(backend_id))

    def update_backend(self, ctxt: Any, backend_id: str) -> None:
        self.pool.setup(db.backend_get(backend_id))

    def remove_backend(self, ctxt: Any, backend_id: str) -> None:
        self.pool.remove(backend_id)

    # ------------------------------------------------------------- create
    def create_volume(self, ctxt: Any, volume_id: str) -> None:
        """``ctxt``: the caller's, which decides the images it may use (None: a member
        of the volume's project, as after a restart)."""
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            if volume['status'] != V.CREATING:
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
                status.move_volume(volume_id, V.ERROR, V.CREATING,
                                   status_reason=exception.describe(e))
                return
            volume = db.volume_get(volume_id)
            status.move_volume(volume_id, V.AVAILABLE, V.CREATING,
                               status_reason=qos_enforce.apply_on_backend(driver, volume,
                                                                          new=True),
                               **model_update(update))

    def _create_on_driver(self, ctxt: Any, driver: Any, volume: Volume,
                          ref: VolumeRef) -> Any:
        if volume['snapshot_id']:
            snapshot = db_snapshots.snapshot_get(volume['snapshot_id'])
            return driver.create_volume_from_snapshot(ref, snapshot_ref(snapshot))
        if volume['source_volid']:
            source = db.volume_get(volume['source_volid'])
            return driver.create_cloned_volume(ref, VolumeRef(source))
        if volume['image_id']:
            return self.image_cache.create_volume_from_image(
                ctxt, volume['backend_id'], driver, ref, volume['image_id'])
        return driver.create_volume(ref)

    def _remove_leftovers(self, volume: Volume) -> None:
        try:
            self.pool.get(volume['backend_id']).delete_volume(VolumeRef(volume))
        except Exception:
            LOG.warning('Could not remove leftovers of volume %s', volume['id'],
                        exc_info=True)

    # ------------------------------------------------------------- delete
    def delete_volume(self, ctxt: Any, volume_id: str, cascade: bool = False) -> None:
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
                status.move_volume(volume_id, V.ERROR_DELETING, V.DELETING,
                                   status_reason=exception.describe(e))
                return
            db.volume_destroy(volume_id)

    # ------------------------------------------------------------- resize, revert
    def extend_volume(self, ctxt: Any, volume_id: str, new_size: int,
                      previous_status: str) -> None:
        with self.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            back = V(previous_status)
            try:
                driver = self.pool.get(volume['backend_id'])
                concurrency.execute(driver.extend_volume, VolumeRef(volume), new_size)
            except Exception as e:
                LOG.exception('Extending volume %s failed', volume_id)
                # The data is intact at the old size: keep the volume usable.
                status.move_volume(volume_id, back, V.EXTENDING,
                                   status_reason='extend failed: %s' % exception.describe(e))
                return
            status.move_volume(volume_id, back, V.EXTENDING, size=new_size,
                               status_reason=None)
        # Like Cinder's volume-extended event to Nova: the backend has grown
        # the volume, the hypervisor of each VM using it tells the guest.
        for attachment in db_attachments.attachment_get_all(volume_id=volume_id,
                                                            statuses=('attached',)):
            if attachment['instance_uuid']:
                self.compute_rpcapi.extend_server_volume(ctxt, attachment['host'],
                                                         attachment['instance_uuid'],
                                                         attachment['id'], new_size)
        self.apply_qos(ctxt, volume_id)     # per-GB limits grow with the volume

    def revert_volume(self, ctxt: Any, volume_id: str, snapshot_id: str) -> None:
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
                status.move_volume(volume_id, V.ERROR, V.REVERTING,
                                   status_reason='revert failed: %s' % exception.describe(e))
            else:
                status.move_volume(volume_id, V.AVAILABLE, V.REVERTING, status_reason=None)
            status.move_snapshot(snapshot_id, S.AVAILABLE, S.RESTORING)

    # ------------------------------------------------------------- snapshots
    def create_snapshot(self, ctxt: Any, snapshot_id: str, quiesced: bool = False) -> None:
        """``quiesced``: whatever has the volume attached is paused and flushed."""
        snapshot = db_snapshots.snapshot_get(snapshot_id)
        with self.locks.get(snapshot['volume_id']):
            try:
                driver = self.pool.get(snapshot['backend_id'])
                ref = snapshot_ref(snapshot, quiesced=quiesced)
                update = concurrency.execute(driver.create_snapshot, ref)
            except Exception as e:
                LOG.exception('Creating snapshot %s failed', snapshot_id)
                try:
                    self.pool.get(snapshot['backend_id']).delete_snapshot(
                        snapshot_ref(snapshot))
                except Exception:
                    LOG.warning('Could not remove leftovers of snapshot %s', snapshot_id)
                status.move_snapshot(snapshot_id, S.ERROR, S.CREATING,
                                     status_reason=exception.describe(e))
                return
            values = {k: v for k, v in model_update(update).items()
                      if k == 'provider_location'}
            status.move_snapshot(snapshot_id, S.AVAILABLE, S.CREATING, status_reason=None,
                                 **values)

    def delete_snapshot(self, ctxt: Any, snapshot_id: str) -> None:
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
                status.move_snapshot(snapshot_id, S.ERROR_DELETING, S.DELETING,
                                     status_reason=exception.describe(e))
                return
            db_snapshots.snapshot_destroy(snapshot_id)

    # ------------------------------------------------------------- images
    def get_image_info(self, ctxt: Any, image_id: str) -> dict[str, Any]:
        return self.images.info(ctxt, image_id)

    def check_images(self, ctxt: Any, refs: list[str]) -> None:
        for ref in refs:
            self.images.locate(ctxt, ref, 'boot file')

    def reserve_image(self, ctxt: Any, name: str) -> None:
        self.images.reserve(ctxt, name)

    def list_images(self, ctxt: Any) -> list[dict[str, Any]]:
        return self.images.list(ctxt)

    def delete_image(self, ctxt: Any, name: str) -> None:
        self.images.delete(ctxt, name)

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
                status_reason = 'upload to image failed: %s' % exception.describe(e)
                try:
                    self.images.finish_export(ctxt, name, None)
                except Exception:
                    LOG.warning('Could not remove what the export of %s left', volume_id,
                                exc_info=True)
            # Reading the volume out never changes its data: it stays usable.
            status.move_volume(volume_id, V.AVAILABLE, V.UPLOADING,
                               status_reason=status_reason)

    def purge_image_cache(self, ctxt: Any, backend_id: str | None = None,
                          entry_id: str | None = None) -> int:
        if entry_id is not None:
            self.image_cache.purge_entry(db_snapshots.cache_get_entry(entry_id))
            return 1
        return self.image_cache.purge(backend_id)

    # ------------------------------------------------------------- QoS
    def apply_qos(self, ctxt: Any, volume_id: str) -> None:
        """Enforce the volume's current limits: on its backend, then through the
        hypervisor of every server using it (a note says what failed)."""
        with self.locks.get(volume_id):
            try:
                volume = db.volume_get(volume_id)
            except exception.VolumeNotFound:
                return
            if volume['status'] in (V.CREATING, V.DELETING, V.ERROR_DELETING):
                return      # a create applies them itself; a delete needs none
            driver = self.pool.get(volume['backend_id'])
            note = qos_enforce.apply_on_backend(driver, volume)
            if note or (volume['status_reason'] or '').startswith('QoS not applied'):
                db.volume_update(volume_id, {'status_reason': note})
        for attachment in db_attachments.attachment_get_all(volume_id=volume_id,
                                                            statuses=('attached',)):
            if attachment['instance_uuid']:
                self.compute_rpcapi.update_server_volume_qos(ctxt, attachment['host'],
                                                             attachment['instance_uuid'],
                                                             attachment['id'])

    # ------------------------------------------------------------- exports
    def initialize_connection(self, ctxt: Any, volume_id: str,
                              connector: dict[str, Any]) -> dict[str, Any]:
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        update = model_update(driver.create_export(ctxt, VolumeRef(volume), connector))
        if update:
            volume = db.volume_update(volume_id, update)
        info: dict[str, Any] = driver.initialize_connection(VolumeRef(volume), connector)
        return qos_enforce.add_to_connection(info, volume)

    def terminate_connection(self, ctxt: Any, volume_id: str,
                             connector: dict[str, Any] | None, attachment_id: str) -> None:
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        ref = VolumeRef(volume)
        driver.terminate_connection(ref, connector)
        others = [a for a in db_attachments.attachment_get_all(volume_id=volume_id)
                  if a['id'] != attachment_id and a['status'] == 'attached']
        if not others:
            driver.remove_export(ctxt, ref)

    # ------------------------------------------------------------- migration
    def migrate_volume(self, ctxt: Any, volume_id: str, backend_id: str,
                       force_host_copy: bool = False) -> None:
        """Move the volume (``migrating``) to ``backend_id`` (``volume.migration``)."""
        self.migrations.migrate(ctxt, volume_id, backend_id, force_host_copy)

    # ------------------------------------------------------------- streams
    def prepare_transfer(self, ctxt: Any, volume_id: str, direction: str) -> dict[str, Any]:
        return self.transfers.prepare(volume_id, direction)

    @staticmethod
    def _begin_transfer(volume_id: str, direction: str) -> Volume:
        new = V.UPLOADING if direction == 'read' else V.DOWNLOADING
        return status.move_volume(volume_id, new, V.AVAILABLE, status_reason=None)

    @staticmethod
    def _end_transfer(volume_id: str, error: str | None) -> None:
        """Back to available, or error when a write broke off (the data is partial)."""
        current = db.volume_get(volume_id)['status']
        if error and current == V.DOWNLOADING:
            status.move_volume(volume_id, V.ERROR, current, status_reason=error)
            return
        status.move_volume(volume_id, V.AVAILABLE, current, status_reason=error)

    # ------------------------------------------------------------- periodic, restart
    def report(self) -> None:
        self.pool.sync_and_report()

    def init_host(self) -> None:
        """At start-up, finish or fail the work a stop cut short.

        Creates run again after removing what the driver half-made; deletes
        run again; an extend or an upload to an image leaves the data as it
        was, so those volumes go back to where they were; an interrupted
        revert or download leaves unknown data, so that volume goes to
        ``error``; a migration never touched its source, so its destination
        goes and the volume is usable again.
        """
        self.pool.sync_and_report()
        host = self.host
        for path in self.images.remove_incomplete():
            LOG.info('Removed %s, left by an export a stop cut short', path)
        for volume in db.volume_get_all_by_host(host, (V.CREATING, V.DELETING, V.EXTENDING,
                                                       V.UPLOADING, V.REVERTING,
                                                       V.DOWNLOADING)):
            current = volume['status']
            LOG.info('Volume %s was left %s; settling it', volume['id'], current)
            if current == V.DELETING:
                self.delete_volume(None, volume['id'])
            elif current == V.CREATING:
                self._remove_leftovers(volume)
                self.create_volume(None, volume['id'])
            elif current in (V.REVERTING, V.DOWNLOADING):
                status.move_volume(volume['id'], V.ERROR, current, status_reason=(
                    '%s interrupted by a restart of %s; the data is incomplete'
                    % (current, host)))
            else:
                in_use = db_attachments.attachment_get_all(volume_id=volume['id'])
                status.move_volume(volume['id'], V.IN_USE if in_use else V.AVAILABLE,
                                   current, status_reason='%s interrupted by a restart of %s'
                                   % (current, host))
        for snapshot in db_snapshots.snapshot_get_all(host=host,
                                                      statuses=(S.CREATING, S.DELETING,
                                                                S.RESTORING)):
            if snapshot['status'] == S.DELETING:
                self.delete_snapshot(None, snapshot['id'])
            elif snapshot['status'] == S.RESTORING:
                status.move_snapshot(snapshot['id'], S.AVAILABLE, S.RESTORING)
            else:
                try:
                    self.pool.get(snapshot['backend_id']).delete_snapshot(
                        snapshot_ref(snapshot))
                except Exception:
                    LOG.warning('Could not remove leftovers of snapshot %s', snapshot['id'])
                self.create_snapshot(None, snapshot['id'])
        self.migrations.settle_interrupted()
