"""Client side of the compute RPC API: servers, live images and host attachments.

Sent to a gridcentric-compute service by host; its volume half (namespace
``volume``) has its own client, ``volume.rpcapi``.

Version history:

* 1.0 - 1.4 - Backends, volumes, snapshots, images, exports and streams,
  with servers and live images from 1.2 (the volume half moved out in 2.0).
* 2.0 - Servers and live images only: spawn_server, destroy_server,
  bless_server, launch_server, discard_live_image, attach_server_volume,
  detach_server_volume, extend_server_volume (casts); get_console_output
  (call); and a host as the attacher of a volume: attach_volume,
  detach_volume (casts). launch_server makes the clone's disks itself, by a
  call to their owners, so nothing waits on a parallel cast.
* 2.1 - pause_server, unpause_server (calls: Nova's pause answers when done).
* 2.2 - bless_nova_instance (cast): bless a Nova instance's libvirt domain on
  this host into a live image row the API side made.
* 2.3 - export_live_image (call: packs a blessed live image into the caller's
  image store, answers image, sha256 and size), import_live_image (call:
  unpacks such an image into a live image row the API side made, blessed
  when it answers).
* 2.4 - update_server_volume_qos (cast): give an attached volume's current
  front-end QoS limits to the server's hypervisor.
* 2.5 - migrate_server_volume (call, as long as the copy): move an attached
  volume of a running server onto the destination's connection (mirror, then
  pivot); answers once the guest runs on the destination, raises with the
  guest left on its source.
* 2.6 - drop_live_image (call): a host that mapped a published live image
  stops its mount and removes its cached state (a discard, before the
  published copy goes).
* 2.7 - Live migration of a running server between hosts: migrate_server (cast
  to the source; it runs the whole move), prepare_incoming_server (call to the
  destination: its volumes connected there, QEMU started waiting; answers the
  URI to send the guest to), finish_incoming (call to the destination: run the
  guest that arrived, or drop it and its connections).
* 2.8 - prepare_nova_live_image (call, from nova-compute's driver on the same
  host): a Nova instance's live image published by another host, mounted and
  fetched here; answers the directory holding it.
"""

from typing import Any

from gridcentric_storage.common import rpc

RPC_API_VERSION = '2.8'
#: Export and import read and write a whole guest RAM: longer than a short call.
TRANSFER_TIMEOUT = 1800
#: A live volume migration copies the whole volume: a fixed allowance plus this many
#: seconds per GiB (4 MiB/s, the slowest copy virt.qemu_mirror waits for, plus margin).
MIRROR_TIMEOUT = 600
MIRROR_SECONDS_PER_GIB = 300
#: Preparing an incoming server connects its volumes and starts QEMU.
PREPARE_TIMEOUT = 300
#: When the caller does not say the volume's size.
MIRROR_TIMEOUT_UNSIZED = 6 * 3600


def mirror_timeout(size_gb: int | None) -> int:
    """How long a caller of migrate_server_volume waits for a volume of ``size_gb``."""
    if size_gb is None:
        return MIRROR_TIMEOUT_UNSIZED
    return MIRROR_TIMEOUT + MIRROR_SECONDS_PER_GIB * max(int(size_gb), 1)


class ComputeAPI(rpc.HostClient):
    VERSION = RPC_API_VERSION

    # ---- attachments
    def attach_volume(self, ctxt: Any, host: str, attachment_id: str) -> None:
        self._cast(ctxt, host, 'attach_volume', '2.0', attachment_id=attachment_id)

    def detach_volume(self, ctxt: Any, host: str, attachment_id: str) -> None:
        self._cast(ctxt, host, 'detach_volume', '2.0', attachment_id=attachment_id)

    # ---- servers and live images
    def spawn_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'spawn_server', '2.0', server_id=server_id)

    def destroy_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'destroy_server', '2.0', server_id=server_id)

    def bless_server(self, ctxt: Any, host: str, live_image_id: str) -> None:
        self._cast(ctxt, host, 'bless_server', '2.0', live_image_id=live_image_id)

    def bless_nova_instance(self, ctxt: Any, host: str, live_image_id: str,
                            instance_uuid: str) -> None:
        self._cast(ctxt, host, 'bless_nova_instance', '2.2', live_image_id=live_image_id,
                   instance_uuid=instance_uuid)

    def launch_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'launch_server', '2.0', server_id=server_id)

    def discard_live_image(self, ctxt: Any, host: str, live_image_id: str) -> None:
        self._cast(ctxt, host, 'discard_live_image', '2.0',
                   live_image_id=live_image_id)

    def export_live_image(self, ctxt: Any, host: str, live_image_id: str) -> dict[str, Any]:
        cctxt = self.client.prepare(server=host, version='2.3', timeout=TRANSFER_TIMEOUT)
        return cctxt.call(ctxt, 'export_live_image',  # type: ignore[no-any-return]
                          live_image_id=live_image_id)

    def import_live_image(self, ctxt: Any, host: str, live_image_id: str, image: str,
                          sha256: str) -> None:
        cctxt = self.client.prepare(server=host, version='2.3', timeout=TRANSFER_TIMEOUT)
        cctxt.call(ctxt, 'import_live_image', live_image_id=live_image_id, image=image,
                   sha256=sha256)

    def drop_live_image(self, ctxt: Any, host: str, live_image_id: str) -> None:
        self._call(ctxt, host, 'drop_live_image', '2.6', live_image_id=live_image_id)

    # prepare_nova_live_image (2.8) is called by nova-compute's driver, through
    # nova.compute_client: nova-compute runs neither this module nor its CONF.

    def pause_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._call(ctxt, host, 'pause_server', '2.1', server_id=server_id)

    def unpause_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._call(ctxt, host, 'unpause_server', '2.1', server_id=server_id)

    def get_console_output(self, ctxt: Any, host: str, server_id: str,
                           length: int | None) -> str:
        return self._call(ctxt, host, 'get_console_output',  # type: ignore[no-any-return]
                          '2.0', server_id=server_id, length=length)

    def attach_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str) -> None:
        self._cast(ctxt, host, 'attach_server_volume', '2.0', server_id=server_id,
                   attachment_id=attachment_id)

    def extend_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str, new_size: int) -> None:
        self._cast(ctxt, host, 'extend_server_volume', '2.0', server_id=server_id,
                   attachment_id=attachment_id, new_size=new_size)

    def detach_server_volume(self, ctxt: Any, host: str, server_id: str,
                             attachment_id: str) -> None:
        self._cast(ctxt, host, 'detach_server_volume', '2.0', server_id=server_id,
                   attachment_id=attachment_id)

    def update_server_volume_qos(self, ctxt: Any, host: str, server_id: str,
                                 attachment_id: str) -> None:
        self._cast(ctxt, host, 'update_server_volume_qos', '2.4', server_id=server_id,
                   attachment_id=attachment_id)

    def migrate_server_volume(self, ctxt: Any, host: str, server_id: str, attachment_id: str,
                              connection_info: dict[str, Any],
                              size_gb: int | None = None) -> None:
        """Blocks until the guest runs on ``connection_info`` (the destination's,
        exported to ``host``); ``size_gb`` (the volume's) sizes the wait."""
        cctxt = self.client.prepare(server=host, version='2.5',
                                    timeout=mirror_timeout(size_gb))
        cctxt.call(ctxt, 'migrate_server_volume', server_id=server_id,
                   attachment_id=attachment_id, connection_info=connection_info)

    # ---- live migration of a server (compute.server_migration)
    def migrate_server(self, ctxt: Any, host: str, server_id: str) -> None:
        self._cast(ctxt, host, 'migrate_server', '2.7', server_id=server_id)

    def prepare_incoming_server(self, ctxt: Any, host: str, server_id: str,
                                description: dict[str, Any]) -> str:
        """The URI the source's hypervisor sends the guest to (its volumes are
        connected on ``host`` first, which may take an os-brick probe)."""
        cctxt = self.client.prepare(server=host, version='2.7', timeout=PREPARE_TIMEOUT)
        return cctxt.call(ctxt, 'prepare_incoming_server',  # type: ignore[no-any-return]
                          server_id=server_id, description=description)

    def finish_incoming(self, ctxt: Any, host: str, server_id: str,
                        succeeded: bool) -> dict[str, Any] | None:
        """``succeeded``: run the guest on ``host`` and answer its InstanceInfo (a
        dict); else drop it there. Idempotent both ways."""
        return self._call(ctxt, host, 'finish_incoming',  # type: ignore[no-any-return]
                          '2.7', server_id=server_id, succeeded=succeeded)
