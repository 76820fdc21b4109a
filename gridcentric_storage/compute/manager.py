"""RPC endpoints of gridcentric-compute; workflows live in their own modules."""

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.compute import rpcapi
from gridcentric_storage.db import api as db
from gridcentric_storage.volume.manager import VolumeManager
from gridcentric_storage.volume.pool import LocalPool

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class ComputeManager:
    target = messaging.Target(version=rpcapi.RPC_API_VERSION)

    def __init__(self, host: str) -> None:
        self.host = host
        self.pool = LocalPool(host)
        self.volumes = VolumeManager(self.pool)

    def init_host(self) -> None:
        """Load this host's backends and settle work a previous run left mid-way."""
        self.periodic_tasks()
        self.volumes.recover_interrupted()

    def periodic_tasks(self) -> None:
        try:
            db.service_heartbeat(self.host, CONF.compute.topic, 'gridcentric-compute')
            self.pool.sync_and_report()
        except Exception:
            LOG.exception('Periodic report failed; will retry')

    # ---- backends (calls)
    def setup_backend(self, ctxt: Any, backend_id: str) -> dict[str, Any]:
        self.pool.setup(db.backend_get(backend_id))
        return db.backend_get(backend_id)

    def update_backend(self, ctxt: Any, backend_id: str) -> dict[str, Any]:
        return self.setup_backend(ctxt, backend_id)

    def remove_backend(self, ctxt: Any, backend_id: str) -> None:
        self.pool.remove(backend_id)

    # ---- volumes (casts)
    def create_volume(self, ctxt: Any, volume_id: str) -> None:
        self.volumes.create_volume(volume_id)

    def delete_volume(self, ctxt: Any, volume_id: str) -> None:
        self.volumes.delete_volume(volume_id)
