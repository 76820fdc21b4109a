"""Client side of the compute RPC API; the only module that sends RPC.

Version history:

* 1.0 - Initial: setup_backend, update_backend, remove_backend (calls);
  create_volume, delete_volume (casts).
"""

from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.common import rpc

CONF = cfg.CONF
RPC_API_VERSION = '1.0'


class ComputeAPI:
    def __init__(self) -> None:
        self.target = messaging.Target(topic=CONF.compute.topic, version=RPC_API_VERSION)
        self.client = rpc.get_client(self.target, version_cap=RPC_API_VERSION)

    def _prepare(self, host: str, **kwargs: Any) -> Any:
        return self.client.prepare(server=host, version='1.0', **kwargs)

    def _call(self, ctxt: Any, host: str, method: str, **kwargs: Any) -> Any:
        cctxt = self._prepare(host, timeout=CONF.compute.rpc_call_timeout)
        return cctxt.call(ctxt, method, **kwargs)

    def setup_backend(self, ctxt: Any, host: str, backend_id: str) -> dict[str, Any]:
        """Load the backend's driver on its host, set it up, return its stats."""
        return self._call(ctxt, host, 'setup_backend',  # type: ignore[no-any-return]
                          backend_id=backend_id)

    def update_backend(self, ctxt: Any, host: str, backend_id: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'update_backend',  # type: ignore[no-any-return]
                          backend_id=backend_id)

    def remove_backend(self, ctxt: Any, host: str, backend_id: str) -> None:
        self._call(ctxt, host, 'remove_backend', backend_id=backend_id)

    def create_volume(self, ctxt: Any, host: str, volume_id: str) -> None:
        self._prepare(host).cast(ctxt, 'create_volume', volume_id=volume_id)

    def delete_volume(self, ctxt: Any, host: str, volume_id: str) -> None:
        self._prepare(host).cast(ctxt, 'delete_volume', volume_id=volume_id)
