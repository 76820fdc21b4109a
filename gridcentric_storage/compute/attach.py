"""Attach and detach volumes on this host through os-brick.

Two hosts take part: this one (the attacher) reports its connector
properties and connects with os-brick; the host that owns the volume's
backend exports it (``initialize_connection``). The attachment row records
both halves, so a detach, a forced detach or a volume delete can undo
exactly what was done.
"""

import logging
from typing import Any

from gridcentric_storage.common import concurrency
from gridcentric_storage.compute import brick
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.volume.manager import reason

LOG = logging.getLogger(__name__)


def settle_volume_status(volume_id: str) -> None:
    """in-use while any attachment is live, else available."""
    live = db_attachments.attachment_get_all(volume_id=volume_id,
                                             statuses=('attaching', 'attached', 'detaching'))
    volume = db.volume_get(volume_id)
    if volume['status'] in ('attaching', 'detaching', 'in-use', 'available'):
        db.volume_update(volume_id, {'status': 'in-use' if live else 'available'})


class AttachManager:
    def __init__(self, host: str, rpcapi: Any) -> None:
        self.host = host
        self.rpcapi = rpcapi
        self.locks = concurrency.KeyedLocks()

    def attach(self, ctxt: Any, attachment_id: str) -> None:
        attachment = db_attachments.attachment_get(attachment_id)
        volume = db.volume_get(attachment['volume_id'])
        with self.locks.get(volume['id']):
            connection_info = None
            try:
                connector = brick.connector_properties(self.host)
                connector['mode'] = attachment['mode']
                connection_info = self.rpcapi.initialize_connection(
                    ctxt, volume['host'], volume['id'], connector)
                device = concurrency.execute(brick.connect, connection_info)
            except Exception as e:
                LOG.exception('Attaching volume %s to %s failed', volume['id'], self.host)
                if connection_info is not None:
                    self._terminate(ctxt, volume, attachment, connector)
                db_attachments.attachment_update(attachment_id, {
                    'status': 'error', 'status_reason': reason(e)})
                settle_volume_status(volume['id'])
                return
            db_attachments.attachment_update(attachment_id, {
                'status': 'attached', 'connector': connector,
                'connection_info': connection_info,
                'device_path': brick.device_path(device), 'status_reason': None})
            settle_volume_status(volume['id'])

    def _terminate(self, ctxt: Any, volume: dict[str, Any], attachment: dict[str, Any],
                   connector: dict[str, Any] | None) -> None:
        try:
            self.rpcapi.terminate_connection(ctxt, volume['host'], volume['id'], connector,
                                             attachment['id'])
        except Exception:
            LOG.warning('Could not end the export of volume %s for %s', volume['id'],
                        self.host, exc_info=True)

    def detach(self, ctxt: Any, attachment_id: str) -> None:
        attachment = db_attachments.attachment_get(attachment_id)
        volume = db.volume_get(attachment['volume_id'])
        with self.locks.get(volume['id']):
            try:
                if attachment.get('connection_info'):
                    device = {'path': attachment['device_path']} \
                        if attachment.get('device_path') else None
                    concurrency.execute(brick.disconnect, attachment['connection_info'],
                                        device)
                self.rpcapi.terminate_connection(ctxt, volume['host'], volume['id'],
                                                 attachment.get('connector'), attachment_id)
            except Exception as e:
                LOG.exception('Detaching volume %s from %s failed', volume['id'], self.host)
                db_attachments.attachment_update(attachment_id, {
                    'status': 'error', 'status_reason': 'detach failed: %s' % reason(e)})
                settle_volume_status(volume['id'])
                return
            db_attachments.attachment_destroy(attachment_id)
            settle_volume_status(volume['id'])

    def recover_interrupted(self, ctxt: Any) -> None:
        for attachment in db_attachments.attachment_get_all(
                host=self.host, statuses=('attaching', 'detaching')):
            if attachment['status'] == 'attaching':
                self.attach(ctxt, attachment['id'])
            else:
                self.detach(ctxt, attachment['id'])


def settle_volume_status_after_transfer(volume_id: str, error: str | None) -> None:
    """After a stream: back to available/in-use, or error when a write broke off."""
    volume = db.volume_get(volume_id)
    if error and volume['status'] == 'downloading':
        db.volume_update(volume_id, {'status': 'error', 'status_reason': error})
        return
    db.volume_update(volume_id, {'status': 'available', 'status_reason': error})
    settle_volume_status(volume_id)
