"""In-memory driver for tests and demos: no storage at all is touched.

Options: ``capacity_gb`` (default 1000) and ``fail_on`` (a list of method
names that raise DriverError, to exercise error paths end to end).
"""

import threading
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef


class FakeDriver(base.VolumeDriver):
    OPTIONS_SCHEMA = {
        'type': 'object',
        'properties': {
            'capacity_gb': {'type': 'number', 'minimum': 0},
            'fail_on': {'type': 'array', 'items': {'type': 'string'}},
            'password': {'type': 'string'},
        },
        'additionalProperties': False,
    }
    SECRET_OPTIONS = frozenset({'password'})
    #: No host can open these: streams and attachments refuse them (409).
    DRIVER_VOLUME_TYPE = 'fake'

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.volumes: dict[str, int] = {}
        self.snapshots: dict[str, str] = {}
        self._lock = threading.Lock()

    def _maybe_fail(self, method: str) -> None:
        if method in self.options.get('fail_on', []):
            raise exception.DriverError(reason='%s failed (fail_on)' % method)

    def do_setup(self, context: Any) -> None:
        self._maybe_fail('do_setup')

    def check_for_setup_error(self) -> None:
        self._maybe_fail('check_for_setup_error')

    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        total = float(self.options.get('capacity_gb', 1000))
        with self._lock:
            used = sum(self.volumes.values())
        return {'volume_backend_name': self.backend_name, 'vendor_name': 'Open Source',
                'driver_version': self.VERSION, 'storage_protocol': 'fake',
                'total_capacity_gb': total, 'free_capacity_gb': max(total - used, 0.0),
                'reserved_percentage': 0, 'thin_provisioning_support': False,
                'thick_provisioning_support': True, 'multiattach': True,
                'QoS_support': False, 'online_extend_support': True}

    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        self._maybe_fail('create_volume')
        with self._lock:
            self.volumes[volume.id] = volume.size
        return {'provider_location': 'fake://%s' % volume.name}

    def delete_volume(self, volume: VolumeRef) -> None:
        self._maybe_fail('delete_volume')
        with self._lock:
            self.volumes.pop(volume.id, None)

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        with self._lock:
            self.volumes[volume.id] = new_size

    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        self._maybe_fail('create_snapshot')
        with self._lock:
            self.snapshots[snapshot.id] = snapshot.volume_id
        return None

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        with self._lock:
            self.snapshots.pop(snapshot.id, None)

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        with self._lock:
            if snapshot.id not in self.snapshots:
                raise exception.DriverError(reason='no snapshot %s' % snapshot.id)
        return self.create_volume(volume)

    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        return {'driver_volume_type': 'fake', 'data': {'volume_id': volume.id}}

    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        return None
