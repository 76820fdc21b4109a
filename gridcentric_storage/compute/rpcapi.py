"""Client side of the compute RPC API; the only module that sends RPC.

Version history:

* 1.0 - Initial: setup_backend, update_backend, remove_backend (calls);
  create_volume, delete_volume (casts).
* 1.1 - Volume lifecycle: snapshots, extend, revert, image cache, images,
  attachments (attach/detach on the attacher; initialize/terminate_connection
  on the owner), streams (prepare_transfer). delete_volume gains ``cascade``.
* 1.2 - Servers and live images: spawn_server, destroy_server, bless_server,
  launch_server, discard_live_image, attach_server_volume,
  detach_server_volume (casts); get_console_output (call).
* 1.3 - create_snapshot gains ``quiesced``: the attacher is paused and
  flushed, so a driver may copy an in-use volume whose file it cannot freeze.
  extend_server_volume (cast): tell a guest that an attached volume grew.
* 1.4 - Images are entries of the compute host's image store, resolved with
  the caller's context, never host paths a member names: reserve_image,
  check_images, list_images, delete_image (calls); copy_volume_to_image takes
  ``image_meta`` with the image's ``name`` (written to the caller's project),
  no longer a ``path``.
"""

from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.common import rpc

CONF = cfg.CONF
RPC_API_VERSION = '1.4'


class ComputeAPI:
    def __init__(self) -> None:
        self.target = messaging.Target(topic=CONF.compute.topic, version=RPC_API_VERSION)
        self.client = rpc.get_client(self.target, version_cap=RPC_API_VERSION)

    def _prepare(self, host: str, version: str = '1.0', **kwargs: Any) -> Any:
        return self.client.prepare(server=host, version=version, **kwargs)

    def _call(self, ctxt: Any, host: str, method: str, version: str = '1.0',
              **kwargs: Any) -> Any:
        cctxt = self._prepare(host, version=version, timeout=CONF.compute.rpc_call_timeout)
        return cctxt.call(ctxt, method, **kwargs)

    def _cast(self, ctxt: Any, host: str, method: str, version: str = '1.1',
              **kwargs: Any) -> None:
        self._prepare(host, version=version).cast(ctxt, method, **kwargs)

    # ---- backends (1.0)
    def setup_backend(self, ctxt: Any, host: str, backend_id: str) -> dict[str, Any]:
        """Load the backend's driver on its host, set it up, return its stats."""
        return self._call(ctxt, host, 'setup_backend',  # type: ignore[no-any-return]
                          backend_id=backend_id)

    def update_backend(self, ctxt: Any, host: str, backend_id: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'update_backend',  # type: ignore[no-any-return]
                          backend_id=backend_id)

    def remove_backend(self, ctxt: Any, host: str, backend_id: str) -> None:
        self._call(ctxt, host, 'remove_backend', backend_id=backend_id)

    # ---- volumes
    def create_volume(self, ctxt: Any, host: str, volume_id: str) -> None:
        self._cast(ctxt, host, 'create_volume', version='1.0', volume_id=volume_id)

    def delete_volume(self, ctxt: Any, host: str, volume_id: str,
                      cascade: bool = False) -> None:
        self._cast(ctxt, host, 'delete_volume', volume_id=volume_id, cascade=cascade)

    def extend_volume(self, ctxt: Any, host: str, volume_id: str, new_size: int,
                      previous_status: str) -> None:
        self._cast(ctxt, host, 'extend_volume', volume_id=volume_id, new_size=new_size,
                   previous_status=previous_status)

    def revert_volume(self, ctxt: Any, host: str, volume_id: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'revert_volume', volume_id=volume_id, snapshot_id=snapshot_id)

    def create_snapshot(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'create_snapshot', snapshot_id=snapshot_id)

    def call_create_snapshot(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        """create_snapshot of a paused VM's volume, waiting for it (a bless holds the
        VM paused meanwhile)."""
        cctxt = self._prepare(host, version='1.3', timeout=CONF.compute.rpc_call_timeout)
        cctxt.call(ctxt, 'create_snapshot', snapshot_id=snapshot_id, quiesced=True)

    def delete_snapshot(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'delete_snapshot', snapshot_id=snapshot_id)

    # ---- images
    def get_image_info(self, ctxt: Any, host: str, image_id: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'get_image_info',  # type: ignore[no-any-return]
                          version='1.1', image_id=image_id)

    def check_images(self, ctxt: Any, host: str, refs: list[str]) -> None:
        """Each reference names a file of ``host`` that the caller may use."""
        self._call(ctxt, host, 'check_images', version='1.4', refs=refs)

    def reserve_image(self, ctxt: Any, host: str, name: str) -> None:
        """Claim an image name in the caller's project; Conflict if it is taken."""
        self._call(ctxt, host, 'reserve_image', version='1.4', name=name)

    def list_images(self, ctxt: Any, host: str) -> list[dict[str, Any]]:
        """The caller's project's images and the public ones in ``host``'s store."""
        return self._call(ctxt, host, 'list_images',  # type: ignore[no-any-return]
                          version='1.4')

    def delete_image(self, ctxt: Any, host: str, name: str) -> None:
        """Delete the caller's project's image ``name``; NotFound if ``host`` has none."""
        self._call(ctxt, host, 'delete_image', version='1.4', name=name)

    def copy_volume_to_image(self, ctxt: Any, host: str, volume_id: str,
                             image_meta: dict[str, Any]) -> None:
        """``image_meta``: ``{'name': <reserved name>, 'disk_format': 'raw'|'qcow2'}``."""
        self._cast(ctxt, host, 'copy_volume_to_image', version='1.4', volume_id=volume_id,
                   image_meta=image_meta)

    def purge_image_cache(self, ctxt: Any, host: str, backend_id: str | None = None,
                          entry_id: str | None = None) -> int:
        return self._call(ctxt, host, 'purge_image_cache',  # type: ignore[no-any-return]
                          version='1.1', backend_id=backend_id, entry_id=entry_id)

    # ---- attachments
    def attach_volume(self, ctxt: Any, host: str, attachment_id: str) -> None:
        self._cast(ctxt, host, 'attach_volume', attachment_id=attachment_id)

    def detach_volume(self, ctxt: Any, host: str, attachment_id: str) -> None:
        self._cast(ctxt, host, 'detach_volume', attachment_id=attachment_id)

    def initialize_connection(self, ctxt: Any, host: str, volume_id: str,
                              connector: dict[str, Any]) -> dict[str, Any]:
        return self._call(ctxt, host, 'initialize_connection',  # type: ignore[no-any-return]
                          version='1.1', volume_id=volume_id, connector=connector)

    def terminate_connection(self, ctxt: Any, host: str, volume_id: str,
                             connector: dict[str, Any] | None, attachment_id: str) -> None:
        self._call(ctxt, host, 'terminate_connection', version='1.1', volume_id=volume_id,
                   connector=connector, attachment_id=attachment_id)

    # ---- streams
    def prepare_transfer(self, ctxt: Any, host: str, volume_id: str,
                         direction: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'prepare_transfer',  # type: ignore[no-any-return]
                          version='1.1', volume_id=volume_id, direction=direction)

    # ---- servers and live images (1.2)
    def spawn_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'spawn_server', version='1.2', server_id=server_id)

    def destroy_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'destroy_server', version='1.2', server_id=server_id)

    def bless_server(self, ctxt: Any, host: str, live_image_id: str) -> None:
        self._cast(ctxt, host, 'bless_server', version='1.2', live_image_id=live_image_id)

    def launch_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'launch_server', version='1.2', server_id=server_id)

    def discard_live_image(self, ctxt: Any, host: str, live_image_id: str) -> None:
        self._cast(ctxt, host, 'discard_live_image', version='1.2',
                   live_image_id=live_image_id)

    def get_console_output(self, ctxt: Any, host: str, server_id: str,
                           length: int | None) -> str:
        return self._call(ctxt, host, 'get_console_output',  # type: ignore[no-any-return]
                          version='1.2', server_id=server_id, length=length)

    def attach_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str) -> None:
        self._cast(ctxt, host, 'attach_server_volume', version='1.2', server_id=server_id,
                   attachment_id=attachment_id)

    def extend_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str, new_size: int) -> None:
        self._cast(ctxt, host, 'extend_server_volume', version='1.3', server_id=server_id,
                   attachment_id=attachment_id, new_size=new_size)

    def detach_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str) -> None:
        self._cast(ctxt, host, 'detach_server_volume', version='1.2', server_id=server_id,
                   attachment_id=attachment_id)


class LazyComputeAPI:
    """Class attribute giving each instance a ComputeAPI made on first use.

    API controllers are built when the paste pipeline loads, before the RPC
    transport may be set up; the client is made when a request needs it.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = '_lazy_' + name

    def __get__(self, obj: Any, owner: type | None = None) -> ComputeAPI:
        client = obj.__dict__.get(self._attr)
        if client is None:
            client = obj.__dict__[self._attr] = ComputeAPI()
        return client  # type: ignore[no-any-return]
