"""POST /v1/volumes/{id}/action and the whole-volume data stream /v1/volumes/{id}/data."""

from collections.abc import Iterator
from typing import Any

import requests
import webob
from oslo_config import cfg

from gridcentric_storage.api import validation
from gridcentric_storage.api.controllers.volumes import VolumeAccess
from gridcentric_storage.api.schemas import volumes as schema
from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.image import store as image_store

CONF = cfg.CONF
CHUNK = 1 << 20


def _require_status(volume: dict[str, Any], allowed: tuple[str, ...], action: str) -> None:
    if volume['status'] not in allowed:
        raise exception.InvalidState(
            resource='Volume', id=volume['id'], state=volume['status'],
            reason='%s needs it to be %s' % (action, ' or '.join(allowed)))


class VolumeActionsController(VolumeAccess):
    @validation.body(schema.action)
    def action(self, req: Any, id: str, body: dict[str, Any]) -> Any:
        name, args = next(iter(body.items()))
        handler = {'os-extend': self._extend, 'revert': self._revert,
                   'os-force_detach': self._force_detach,
                   'os-volume_upload_image': self._upload_image}[name]
        return handler(req, id, args)

    def _extend(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:extend')
        _require_status(volume, ('available', 'in-use'), 'extend')
        if args['new_size'] <= volume['size']:
            raise exception.Invalid(reason='new_size %d GiB must be larger than the current '
                                    '%d GiB (volumes cannot shrink)'
                                    % (args['new_size'], volume['size']))
        if volume['status'] == 'in-use':
            backend = db.backend_get(volume['backend_id'])
            if not backend['capabilities'].get('online_extend_support'):
                raise exception.InvalidState(
                    resource='Volume', id=id, state='in-use',
                    reason='backend %s cannot extend attached volumes; detach it first'
                    % backend['name'])
        db.volume_update(id, {'status': 'extending'}, expected_status=(volume['status'],))
        self.rpcapi.extend_volume(req.context, volume['host'], id, args['new_size'],
                                  volume['status'])
        return 202, None

    def _revert(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:revert')
        snapshot = self.get_snapshot(req, args['snapshot_id'], 'snapshot:get')
        if snapshot['volume_id'] != id:
            raise exception.Invalid(reason='snapshot %s belongs to volume %s, not to %s'
                                    % (snapshot['id'], snapshot['volume_id'], id))
        _require_status(volume, ('available',), 'revert')
        if snapshot['status'] != 'available':
            raise exception.InvalidState(resource='Snapshot', id=snapshot['id'],
                                         state=snapshot['status'],
                                         reason='only an available snapshot can be used')
        db.volume_update(id, {'status': 'reverting'}, expected_status=('available',))
        db_snapshots.snapshot_update(snapshot['id'], {'status': 'restoring'})
        self.rpcapi.revert_volume(req.context, volume['host'], id, snapshot['id'])
        return 202, None

    def _force_detach(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        self.get_volume(req, id, 'volume:force_detach')
        attachments = db_attachments.attachment_get_all(volume_id=id)
        if args.get('attachment_id'):
            attachments = [a for a in attachments if a['id'] == args['attachment_id']]
            if not attachments:
                raise exception.AttachmentNotFound(id=args['attachment_id'])
        for attachment in attachments:
            db_attachments.attachment_update(attachment['id'], {'status': 'detaching'})
            self.rpcapi.detach_volume(req.context, attachment['host'], attachment['id'])
        return 202, None

    def _upload_image(self, req: Any, id: str, args: dict[str, Any]
                      ) -> tuple[int, dict[str, Any]]:
        """Write the volume to the image ``image_name`` of the caller's project, in the
        image store of the volume's host; ``image_id`` is that name."""
        volume = self.get_volume(req, id, 'volume:upload_image')
        _require_status(volume, ('available',), 'writing it to an image')
        disk_format = args.get('disk_format', 'raw')
        name = args['image_name']
        image_store.check_name(name)
        db.volume_update(id, {'status': 'uploading'}, expected_status=('available',))
        try:
            # A call, so that an existing image is a 409 now, never overwritten later.
            self.rpcapi.reserve_image(req.context, volume['host'], name)
        except Exception:
            db.volume_update(id, {'status': 'available'}, expected_status=('uploading',))
            raise
        self.rpcapi.copy_volume_to_image(req.context, volume['host'], id,
                                         {'name': name, 'disk_format': disk_format})
        return 202, {'os-volume_upload_image': {
            'id': id, 'image_id': name, 'image_name': name,
            'disk_format': disk_format, 'status': 'uploading'}}

    # ---- streams
    def download(self, req: Any, id: str) -> webob.Response:
        volume = self.get_volume(req, id, 'volume:download')
        _require_status(volume, ('available',), 'download')
        transfer = self.rpcapi.prepare_transfer(req.context, volume['host'], id, 'read')
        upstream = requests.get(transfer['url'], stream=True, timeout=60)
        if upstream.status_code != 200:
            upstream.close()
            raise exception.ServiceUnavailable(reason='the data server of %s refused the '
                                               'transfer' % volume['host'])

        def relay() -> Iterator[bytes]:
            try:
                yield from upstream.iter_content(CHUNK)
            finally:
                upstream.close()

        response = webob.Response(status=200, content_type='application/octet-stream')
        response.content_length = transfer['size']
        response.app_iter = relay()
        return response

    def upload(self, req: Any, id: str) -> dict[str, Any]:
        volume = self.get_volume(req, id, 'volume:upload')
        _require_status(volume, ('available',), 'upload')
        length = req.content_length
        if length is None:
            raise exception.LengthRequired()
        if length > volume['size'] * (1 << 30):
            raise exception.Invalid(reason='%d bytes do not fit in a %d GiB volume'
                                    % (length, volume['size']))
        transfer = self.rpcapi.prepare_transfer(req.context, volume['host'], id, 'write')
        upstream = requests.put(transfer['url'], data=req.body_file, timeout=3600,
                                headers={'Content-Length': str(length)})
        if upstream.status_code == 400:
            raise exception.Invalid(reason=upstream.text.strip())
        if upstream.status_code != 200:
            raise exception.DriverError(reason=upstream.text.strip())
        return {'volume': {'id': id, 'bytes_written': upstream.json()['bytes']}}
