"""The stand-in's volume actions, byte streams, snapshots, attachments and image cache.

A mixin of :class:`~tests.unit.client.fake_api.FakeAPI`; like the rest of the
stand-in it follows the documented envelopes and status transitions, not the real
API's internals. A "GiB" of volume data is :attr:`gib` bytes here (1 KiB), so whole
volumes can be streamed in unit tests; the byte streams require a Content-Length
(411 otherwise), like the real API.
"""

from __future__ import annotations

import uuid
from typing import Any

SNAPSHOT_CREATE = {'volume_id', 'name', 'force'}
ATTACHMENT_CREATE = {'volume_id', 'host', 'instance_uuid', 'mode'}


def _fault(code: int, message: str) -> Exception:
    from .fake_api import Fault
    return Fault(code, message)


def _fields(body: Any, key: str, allowed: set[str]) -> dict[str, Any]:
    from .fake_api import _check_fields
    return _check_fields(body, key, allowed)


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith('_')}


class VolumeFeatures:
    """Routes and handlers added to ``FakeAPI``."""

    EXTRA_ROUTES = [
        (r'/v1/volumes/([^/]+)/action', 'volume_action'),
        (r'/v1/volumes/([^/]+)/data', 'volume_data'),
        (r'/v1/snapshots', 'snapshots'),
        (r'/v1/snapshots/([^/]+)', 'snapshot'),
        (r'/v1/attachments', 'attachments'),
        (r'/v1/attachments/([^/]+)', 'attachment'),
        (r'/v1/image-cache', 'image_cache'),
        (r'/v1/image-cache/action', 'image_cache_action'),
        (r'/v1/image-cache/([^/]+)', 'image_cache_entry'),
    ]

    gib = 1024
    volumes: dict[str, dict[str, Any]]
    settle_after: int

    def _init_volume_features(self) -> None:
        self.snapshots: dict[str, dict[str, Any]] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self.image_cache: dict[str, dict[str, Any]] = {}
        self.data: dict[str, bytes] = {}

    # -- shared ------------------------------------------------------------

    def _start(self, item: dict[str, Any], transitional: str, **outcome: Any) -> None:
        """Put ``item`` in a ``transitional`` status; it settles to ``outcome`` (or
        disappears, for ``deleting``/``detaching``) after ``settle_after`` reads."""
        item.update(status=transitional, _reads=0, _outcome=outcome)

    def _settle_item(self, store: dict[str, dict[str, Any]],
                     item: dict[str, Any]) -> dict[str, Any] | None:
        if '_outcome' in item:
            item['_reads'] += 1
            if item['_reads'] >= self.settle_after:
                if item['status'] in ('deleting', 'detaching'):
                    del store[item['id']]
                    self._gone(item)
                    return None
                item.update(item.pop('_outcome'))
        return _public(item)

    def _gone(self, item: dict[str, Any]) -> None:
        if 'mode' in item:    # a detached attachment frees its volume
            volume = self.volumes.get(item['volume_id'])
            if volume is not None and not self._live_attachments(volume['id']):
                volume['status'] = 'available'

    def _live_attachments(self, volume_id: str) -> list[dict[str, Any]]:
        return [a for a in self.attachments.values() if a['volume_id'] == volume_id]

    def _volume(self, volume_id: str) -> dict[str, Any]:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise _fault(404, f'Volume {volume_id} could not be found.')
        return volume

    def _origin(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The source fields of a new volume, and its default size."""
        given = [k for k in ('source_volid', 'snapshot_id', 'imageRef') if spec.get(k)]
        if len(given) > 1:
            raise _fault(400, 'give at most one of source_volid, snapshot_id and imageRef')
        if spec.get('snapshot_id'):
            snapshot = self._snapshot(spec['snapshot_id'])
            return {'snapshot_id': snapshot['id'], 'size': snapshot['volume_size']}
        if spec.get('source_volid'):
            source = self._volume(spec['source_volid'])
            return {'source_volid': source['id'], 'size': source['size']}
        if spec.get('imageRef'):
            return {'image_id': spec['imageRef'], 'size': 1}
        return {}

    def _require(self, volume: dict[str, Any], *allowed: str) -> None:
        if volume['status'] not in allowed:
            raise _fault(409, 'Volume {} is {}; this needs it to be {}'.format(
                volume['id'], volume['status'], ' or '.join(allowed)))

    # -- volume actions and streams ------------------------------------------

    def _volume_action_post(self, volume_id: str, query: Any, body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        if not isinstance(body, dict) or len(body) != 1:
            raise _fault(400, 'Invalid action')
        name, args = next(iter(body.items()))
        if name == 'os-extend':
            if args['new_size'] <= volume['size']:
                raise _fault(400, 'new_size {} GiB must be larger than the current {} GiB '
                                  '(volumes cannot shrink)'.format(args['new_size'],
                                                                   volume['size']))
            self._require(volume, 'available', 'in-use')
            self._start(volume, 'extending', status=volume['status'], size=args['new_size'])
        elif name == 'revert':
            snapshot = self.snapshots.get(args['snapshot_id'])
            if snapshot is None:
                raise _fault(404, 'Snapshot {} could not be found.'.format(args['snapshot_id']))
            if snapshot['volume_id'] != volume_id:
                raise _fault(400, 'snapshot {} belongs to volume {}, not to {}'.format(
                    snapshot['id'], snapshot['volume_id'], volume_id))
            self._require(volume, 'available')
            self.data[volume_id] = snapshot['_data']
            self._start(volume, 'reverting', status='available')
        elif name == 'os-force_detach':
            for attachment in self._live_attachments(volume_id):
                if args.get('attachment_id') in (None, attachment['id']):
                    self._start(attachment, 'detaching')
        elif name == 'os-volume_upload_image':
            self._require(volume, 'available')
            fmt = args.get('disk_format', 'raw')
            self._start(volume, 'uploading', status='available', status_reason=None)
            path = '/var/lib/gridcentric/images/{}.{}'.format(args['image_name'], fmt)
            return 202, {'os-volume_upload_image': {
                'id': volume_id, 'image_id': path, 'image_name': args['image_name'],
                'disk_format': fmt, 'status': 'uploading', 'host': 'fakehost'}}
        else:
            raise _fault(400, f'Invalid action {name}')
        return 202, None

    def _volume_data_get(self, volume_id: str, query: Any, body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        self._require(volume, 'available')
        return 200, self.data.get(volume_id, b'').ljust(volume['size'] * self.gib, b'\0')

    def _volume_data_put(self, volume_id: str, query: Any, body: Any) -> tuple[int, Any]:
        volume = self._volume(volume_id)
        self._require(volume, 'available')
        if body is None:
            raise _fault(411, 'A Content-Length is required.')
        if len(body) > volume['size'] * self.gib:
            raise _fault(400, '{} bytes do not fit in a {} GiB volume'.format(
                len(body), volume['size']))
        old = self.data.get(volume_id, b'')
        self.data[volume_id] = body + old[len(body):]
        return 200, {'volume': {'id': volume_id, 'bytes_written': len(body)}}

    # -- snapshots -------------------------------------------------------------

    def _snapshots_get(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = [s for s in (self._settle_item(self.snapshots, s)
                             for s in list(self.snapshots.values())) if s]
        if 'volume_id' in query:
            items = [s for s in items if s['volume_id'] == query['volume_id'][-1]]
        return 200, {'snapshots': items}

    def _snapshots_post(self, query: Any, body: Any) -> tuple[int, Any]:
        fields = _fields(body, 'snapshot', SNAPSHOT_CREATE)
        volume = self._volume(fields['volume_id'])
        self._require(volume, 'available', *(['in-use'] if fields.get('force') else []))
        snapshot = {'id': str(uuid.uuid4()), 'name': fields.get('name'),
                    'volume_id': volume['id'], 'volume_size': volume['size'],
                    'size': volume['size'], 'status_reason': None,
                    'project_id': 'fake-project', '_data': self.data.get(volume['id'], b'')}
        self._start(snapshot, 'creating', status='available')
        self.snapshots[snapshot['id']] = snapshot
        return 202, {'snapshot': _public(snapshot)}

    def _snapshot(self, snapshot_id: str) -> dict[str, Any]:
        snapshot = self.snapshots.get(snapshot_id)
        if snapshot is None or self._settle_item(self.snapshots, snapshot) is None:
            raise _fault(404, f'Snapshot {snapshot_id} could not be found.')
        return snapshot

    def _snapshot_get(self, snapshot_id: str, query: Any, body: Any) -> tuple[int, Any]:
        return 200, {'snapshot': _public(self._snapshot(snapshot_id))}

    def _snapshot_delete(self, snapshot_id: str, query: Any, body: Any) -> tuple[int, Any]:
        self._start(self._snapshot(snapshot_id), 'deleting')
        return 202, None

    # -- attachments -----------------------------------------------------------

    def _attachments_get(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = [a for a in (self._settle_item(self.attachments, a)
                             for a in list(self.attachments.values())) if a]
        if 'volume_id' in query:
            items = [a for a in items if a['volume_id'] == query['volume_id'][-1]]
        return 200, {'attachments': items}

    def _attachments_post(self, query: Any, body: Any) -> tuple[int, Any]:
        fields = _fields(body, 'attachment', ATTACHMENT_CREATE)
        volume = self._volume(fields['volume_id'])
        self._require(volume, 'available')
        volume['status'] = 'in-use'
        attachment = {'id': str(uuid.uuid4()), 'volume_id': volume['id'],
                      'host': fields.get('host', 'fakehost'),
                      'instance_uuid': fields.get('instance_uuid'),
                      'mode': fields.get('mode', 'rw'), 'status_reason': None,
                      'device_path': None, 'project_id': 'fake-project'}
        self._start(attachment, 'attaching', status='attached', device_path='/dev/fake0')
        self.attachments[attachment['id']] = attachment
        return 202, {'attachment': _public(attachment)}

    def _attachment(self, attachment_id: str) -> dict[str, Any]:
        attachment = self.attachments.get(attachment_id)
        if attachment is None or self._settle_item(self.attachments, attachment) is None:
            raise _fault(404, f'Attachment {attachment_id} could not be found.')
        return attachment

    def _attachment_get(self, attachment_id: str, query: Any, body: Any) -> tuple[int, Any]:
        return 200, {'attachment': _public(self._attachment(attachment_id))}

    def _attachment_delete(self, attachment_id: str, query: Any, body: Any
                           ) -> tuple[int, Any]:
        self._start(self._attachment(attachment_id), 'detaching')
        return 202, None

    # -- image cache -------------------------------------------------------------

    def _image_cache_get(self, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        items = list(self.image_cache.values())
        if 'backend_id' in query:
            items = [e for e in items if e['backend_id'] == query['backend_id'][-1]]
        return 200, {'image_cache': items}

    def _image_cache_entry_delete(self, entry_id: str, query: Any, body: Any
                                  ) -> tuple[int, Any]:
        if self.image_cache.pop(entry_id, None) is None:
            raise _fault(404, f'Image cache entry {entry_id} could not be found.')
        return 204, None

    def _image_cache_action_post(self, query: Any, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or set(body) != {'purge'}:
            raise _fault(400, "'purge' is a required property")
        backend_id = body['purge'].get('backend_id')
        doomed = [k for k, e in self.image_cache.items()
                  if backend_id in (None, e['backend_id'])]
        for key in doomed:
            del self.image_cache[key]
        return 200, {'purged': len(doomed)}
