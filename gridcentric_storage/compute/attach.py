"""Attach and detach volumes on this host through os-brick.

Two hosts take part: this one (the attacher) reports its connector
properties and connects with os-brick; the host that owns the volume's
backend exports it. ``volume.api`` does the bookkeeping of both halves (the
attachment row, the export, the volume's status), so a detach, a forced
detach or a volume delete can undo exactly what was done.
"""

import logging
from typing import Any

from gridcentric_storage.common import concurrency
from gridcentric_storage.compute import brick
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.volume import api as volume_api

LOG = logging.getLogger(__name__)


class AttachManager:
    def __init__(self, host: str, volumes: volume_api.API) -> None:
        self.host = host
        self.volumes = volumes
        self.locks = concurrency.KeyedLocks()

    def attach(self, ctxt: Any, attachment_id: str) -> None:
        attachment = db_attachments.attachment_get(attachment_id)
        volume = db.volume_get(attachment['volume_id'])
        with self.locks.get(volume['id']):
            try:
                connector = dict(brick.connector_properties(self.host),
                                 mode=attachment['mode'])
                connection_info = self.volumes.connect(ctxt, attachment, connector)
                device = concurrency.execute(brick.connect, connection_info)
            except Exception as e:
                LOG.exception('Attaching volume %s to %s failed', volume['id'], self.host)
                self.volumes.attach_failed(ctxt, attachment_id, e)
                return
            self.volumes.attach_complete(attachment_id, brick.device_path(device))

    def detach(self, ctxt: Any, attachment_id: str) -> None:
        attachment = db_attachments.attachment_get(attachment_id)
        with self.locks.get(attachment['volume_id']):
            try:
                if attachment.get('connection_info'):
                    device = {'path': attachment['device_path']} \
                        if attachment.get('device_path') else None
                    concurrency.execute(brick.disconnect, attachment['connection_info'],
                                        device)
                self.volumes.detach_complete(ctxt, attachment_id)
            except Exception as e:
                LOG.exception('Detaching volume %s from %s failed', attachment['volume_id'],
                              self.host)
                self.volumes.detach_failed(attachment_id, e)

    def recover_interrupted(self, ctxt: Any) -> None:
        for attachment in db_attachments.attachment_get_all(
                host=self.host, statuses=('attaching', 'detaching')):
            if attachment['status'] == 'attaching':
                self.attach(ctxt, attachment['id'])
            else:
                self.detach(ctxt, attachment['id'])
