"""Client side of the volume RPC API: sent to the host that owns a backend.

The volume manager listens in the ``volume`` namespace of each host's
gridcentric-compute service (one process serves both APIs), so the two APIs
version independently.

Version history:

* 1.0 - The volume half of compute RPC 1.4, moved to its own namespace:
  backends (setup, update, remove: calls); volumes and snapshots (create,
  delete, extend, revert: casts); images of the host's store (info, check,
  reserve, list, delete: calls; copy_volume_to_image: cast); the template
  cache (purge: call); exports (initialize/terminate_connection: calls);
  streams (prepare_transfer: call). Two calls wait for the work itself, for
  a caller that cannot go on without it: create_volume_and_wait (a launch
  makes its clones' disks) and create_snapshot_and_wait (a bless holds the
  VM paused meanwhile).
* 1.1 - apply_qos (cast): enforce a volume's current QoS limits on its
  backend and through the hypervisors of the servers using it.
* 1.2 - migrate_volume (cast): move a volume to another backend, run on the
  owner of its current one (``volume.migration``).
"""

from typing import Any

from gridcentric_storage.common import rpc

NAMESPACE = 'volume'
RPC_API_VERSION = '1.2'


class VolumeAPI(rpc.HostClient):
    NAMESPACE = NAMESPACE
    VERSION = RPC_API_VERSION

    # ---- backends
    def setup_backend(self, ctxt: Any, host: str, backend_id: str) -> None:
        """Load the backend's driver on its host and set it up (errors come back)."""
        self._call(ctxt, host, 'setup_backend', '1.0', backend_id=backend_id)

    def update_backend(self, ctxt: Any, host: str, backend_id: str) -> None:
        self._call(ctxt, host, 'update_backend', '1.0', backend_id=backend_id)

    def remove_backend(self, ctxt: Any, host: str, backend_id: str) -> None:
        self._call(ctxt, host, 'remove_backend', '1.0', backend_id=backend_id)

    # ---- volumes
    def create_volume(self, ctxt: Any, host: str, volume_id: str) -> None:
        self._cast(ctxt, host, 'create_volume', '1.0', volume_id=volume_id)

    def create_volume_and_wait(self, ctxt: Any, host: str, volume_id: str) -> None:
        """create_volume, returning once the volume is ``available`` or ``error``."""
        self._call(ctxt, host, 'create_volume', '1.0', volume_id=volume_id)

    def delete_volume(self, ctxt: Any, host: str, volume_id: str,
                      cascade: bool = False) -> None:
        self._cast(ctxt, host, 'delete_volume', '1.0', volume_id=volume_id, cascade=cascade)

    def extend_volume(self, ctxt: Any, host: str, volume_id: str, new_size: int,
                      previous_status: str) -> None:
        self._cast(ctxt, host, 'extend_volume', '1.0', volume_id=volume_id,
                   new_size=new_size, previous_status=previous_status)

    def revert_volume(self, ctxt: Any, host: str, volume_id: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'revert_volume', '1.0', volume_id=volume_id,
                   snapshot_id=snapshot_id)

    def apply_qos(self, ctxt: Any, host: str, volume_id: str) -> None:
        self._cast(ctxt, host, 'apply_qos', '1.1', volume_id=volume_id)

    def migrate_volume(self, ctxt: Any, host: str, volume_id: str, backend_id: str,
                       force_host_copy: bool = False) -> None:
        """``host``: the owner of the volume's current backend."""
        self._cast(ctxt, host, 'migrate_volume', '1.2', volume_id=volume_id,
                   backend_id=backend_id, force_host_copy=force_host_copy)

    # ---- snapshots
    def create_snapshot(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'create_snapshot', '1.0', snapshot_id=snapshot_id)

    def create_snapshot_and_wait(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        """Snapshot a volume whose VM is paused and flushed, returning when done."""
        self._call(ctxt, host, 'create_snapshot', '1.0', snapshot_id=snapshot_id,
                   quiesced=True)

    def delete_snapshot(self, ctxt: Any, host: str, snapshot_id: str) -> None:
        self._cast(ctxt, host, 'delete_snapshot', '1.0', snapshot_id=snapshot_id)

    # ---- images of the host's store, resolved for the caller's context
    def get_image_info(self, ctxt: Any, host: str, image_id: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'get_image_info',  # type: ignore[no-any-return]
                          '1.0', image_id=image_id)

    def check_images(self, ctxt: Any, host: str, refs: list[str]) -> None:
        """Each reference names an image of ``host`` that the caller may use."""
        self._call(ctxt, host, 'check_images', '1.0', refs=refs)

    def reserve_image(self, ctxt: Any, host: str, name: str) -> None:
        """Claim an image name in the caller's project; Conflict if it is taken."""
        self._call(ctxt, host, 'reserve_image', '1.0', name=name)

    def list_images(self, ctxt: Any, host: str) -> list[dict[str, Any]]:
        """The caller's project's images and the public ones in ``host``'s store."""
        return self._call(ctxt, host, 'list_images', '1.0')  # type: ignore[no-any-return]

    def delete_image(self, ctxt: Any, host: str, name: str) -> None:
        self._call(ctxt, host, 'delete_image', '1.0', name=name)

    def copy_volume_to_image(self, ctxt: Any, host: str, volume_id: str,
                             image_meta: dict[str, Any]) -> None:
        """``image_meta``: ``{'name': <reserved name>, 'disk_format': 'raw'|'qcow2'}``."""
        self._cast(ctxt, host, 'copy_volume_to_image', '1.0', volume_id=volume_id,
                   image_meta=image_meta)

    def purge_image_cache(self, ctxt: Any, host: str, backend_id: str | None = None,
                          entry_id: str | None = None) -> int:
        return self._call(ctxt, host, 'purge_image_cache',  # type: ignore[no-any-return]
                          '1.0', backend_id=backend_id, entry_id=entry_id)

    # ---- exports, for an attacher anywhere
    def initialize_connection(self, ctxt: Any, host: str, volume_id: str,
                              connector: dict[str, Any]) -> dict[str, Any]:
        return self._call(ctxt, host, 'initialize_connection',  # type: ignore[no-any-return]
                          '1.0', volume_id=volume_id, connector=connector)

    def terminate_connection(self, ctxt: Any, host: str, volume_id: str,
                             connector: dict[str, Any] | None, attachment_id: str) -> None:
        self._call(ctxt, host, 'terminate_connection', '1.0', volume_id=volume_id,
                   connector=connector, attachment_id=attachment_id)

    # ---- streams
    def prepare_transfer(self, ctxt: Any, host: str, volume_id: str,
                         direction: str) -> dict[str, Any]:
        return self._call(ctxt, host, 'prepare_transfer',  # type: ignore[no-any-return]
                          '1.0', volume_id=volume_id, direction=direction)
