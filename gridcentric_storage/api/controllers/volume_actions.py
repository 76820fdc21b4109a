"""POST /v1/volumes/{id}/action and the whole-volume data stream /v1/volumes/{id}/data."""

import json
from collections.abc import Iterator
from typing import Any

import webob
from oslo_config import cfg

from gridcentric_storage.api import validation
from gridcentric_storage.api.controllers.volumes import VolumeAccess
from gridcentric_storage.api.schemas import volumes as schema
from gridcentric_storage.common import exception, states, wsgi_server
from gridcentric_storage.db import qos as db_qos
from gridcentric_storage.volume import handoff, transfer_io

CONF = cfg.CONF
CHUNK = 1 << 20


class VolumeActionsController(VolumeAccess):
    @validation.body(schema.action)
    def action(self, req: Any, id: str, body: dict[str, Any]) -> Any:
        name, args = next(iter(body.items()))
        handler = {'os-extend': self._extend, 'revert': self._revert,
                   'os-force_detach': self._force_detach,
                   'os-volume_upload_image': self._upload_image, 'qos': self._qos,
                   'migrate': self._migrate, 'os-migrate_volume': self._migrate}[name]
        return handler(req, id, args)

    def _extend(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:extend')
        self.volumes.extend(req.context, volume, args['new_size'])
        return 202, None

    def _revert(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:revert')
        snapshot = self.get_snapshot(req, args['snapshot_id'], 'snapshot:get')
        self.volumes.revert(req.context, volume, snapshot)
        return 202, None

    def _force_detach(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        volume = self.get_volume(req, id, 'volume:force_detach')
        self.volumes.force_detach(req.context, volume, args.get('attachment_id'))
        return 202, None

    def _upload_image(self, req: Any, id: str, args: dict[str, Any]
                      ) -> tuple[int, dict[str, Any]]:
        """Write the volume to the image ``image_name`` of the caller's project, in the
        image store of the volume's host; ``image_id`` is that name."""
        volume = self.get_volume(req, id, 'volume:upload_image')
        disk_format = args.get('disk_format', 'raw')
        name = args['image_name']
        self.volumes.upload_to_image(req.context, volume, name, disk_format)
        return 202, {'os-volume_upload_image': {
            'id': id, 'image_id': name, 'image_name': name,
            'disk_format': disk_format, 'status': 'uploading'}}

    def _qos(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        """Govern the volume by QoS specs (null: by its backend's again)."""
        volume = self.get_volume(req, id, 'qos:associate')
        if args['qos_specs_id'] is not None:
            db_qos.qos_specs_get(args['qos_specs_id'])
        self.volumes.associate_qos(req.context, volume, args['qos_specs_id'])
        return 202, None

    def _migrate(self, req: Any, id: str, args: dict[str, Any]) -> tuple[int, None]:
        """Move the volume to another backend: ``backend`` (``os-migrate_volume``:
        ``host``, a backend's name or id, or Cinder's ``host@backend#pool``), or
        the scheduler's pick for placement fields (``tags``, ``role``, ...)."""
        volume = self.get_volume(req, id, 'volume:migrate')
        backend = args.get('backend')
        if 'host' in args:  # Cinder's spelling: host@backend#pool names the backend
            backend = args['host'].split('#', 1)[0].rsplit('@', 1)[-1]
        placement = {k: v for k, v in args.items() if k in schema.MIGRATE_PLACEMENT}
        if (backend is None) == (not placement):
            raise exception.Invalid(reason='give either a backend or placement fields (%s)'
                                    % ', '.join(schema.MIGRATE_PLACEMENT))
        self.volumes.migrate(req.context, volume, backend, placement or None,
                             args.get('force_host_copy', False))
        return 202, None

    # ---- streams: the bytes move socket to socket in the kernel (transfer_io)
    def download(self, req: Any, id: str) -> webob.Response:
        volume = self.get_volume(req, id, 'volume:download')
        transfer = self.volumes.prepare_transfer(req.context, volume, 'read')
        try:
            # one hop when the data server is on this host, else the HTTP relay
            upstream = handoff.open_download(transfer, req.environ, timeout=60)
        except OSError as e:
            raise exception.ServiceUnavailable(reason='the data server of %s did not '
                                               'answer' % volume['host']) from e
        if upstream.status != 200:
            upstream.close()
            raise exception.ServiceUnavailable(reason='the data server of %s refused the '
                                               'transfer' % volume['host'])
        response = webob.Response(status=200, content_type='application/octet-stream')
        wrapper = req.environ.get('wsgi.file_wrapper')
        response.app_iter = (wrapper(upstream, CHUNK) if wrapper
                             else _chunks(upstream))
        response.content_length = transfer['size']  # after app_iter, whose setter clears it
        return response

    def upload(self, req: Any, id: str) -> dict[str, Any]:
        volume = self.get_volume(req, id, 'volume:upload')
        if volume['status'] != states.VolumeStatus.AVAILABLE:
            raise exception.InvalidState(resource='Volume', id=id, state=volume['status'],
                                         reason='upload needs it to be available')
        length = req.content_length
        if length is None:
            raise exception.LengthRequired()
        if length > volume['size'] * (1 << 30):
            raise exception.Invalid(reason='%d bytes do not fit in a %d GiB volume'
                                    % (length, volume['size']))
        transfer = self.volumes.prepare_transfer(req.context, volume, 'write')
        try:
            status, text = transfer_io.upload(
                transfer['url'], length, req.environ.get(wsgi_server.SOCKET_KEY),
                req.environ['wsgi.input'], timeout=3600,
                expect_continue=req.environ.get('HTTP_EXPECT', '').lower() == '100-continue')
        except OSError as e:
            raise exception.DriverError(reason='the upload broke off: %s'
                                        % exception.describe(e)) from e
        if status == 400:
            raise exception.Invalid(reason=text.strip())
        if status != 200:
            raise exception.DriverError(reason=text.strip())
        return {'volume': {'id': id, 'bytes_written': json.loads(text)['bytes']}}


def _chunks(upstream: Any) -> Iterator[bytes]:
    """The relay (a ``transfer_io.Download``) under a WSGI server without
    ``wsgi.file_wrapper``."""
    try:
        while chunk := upstream.read(CHUNK):
            yield chunk
    finally:
        upstream.close()
