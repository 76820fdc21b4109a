"""RPC endpoints of gridcentric-compute; workflows live in their own modules."""

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage import virt
from gridcentric_storage.common import context as gc_context
from gridcentric_storage.compute import attach, rpcapi, transfer
from gridcentric_storage.compute.servers import ServerManager
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import snapshots as db_cache
from gridcentric_storage.volume.manager import VolumeManager, model_update
from gridcentric_storage.volume.objects import VolumeRef
from gridcentric_storage.volume.pool import LocalPool

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class ComputeManager:
    target = messaging.Target(version=rpcapi.RPC_API_VERSION)

    def __init__(self, host: str) -> None:
        self.host = host
        self.pool = LocalPool(host)
        self.volumes = VolumeManager(self.pool)
        self.rpcapi = rpcapi.ComputeAPI()
        self.attachments = attach.AttachManager(host, self.rpcapi)
        self.transfers = transfer.TransferServer(host, self.pool)
        self.servers = ServerManager(host, virt.load_driver(), self.rpcapi)

    def init_host(self) -> None:
        """Load this host's backends and settle work a previous run left mid-way."""
        self.servers.driver.init_host(self.host)
        self.periodic_tasks()
        self.volumes.recover_interrupted()

    def after_start(self) -> None:
        """Work that needs the RPC server (attach talks to owner hosts)."""
        admin = gc_context.get_admin_context()
        self.attachments.recover_interrupted(admin)
        self.servers.recover_interrupted(admin)

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

    # ---- volumes and snapshots (casts)
    def create_volume(self, ctxt: Any, volume_id: str) -> None:
        self.volumes.create_volume(volume_id, ctxt)

    def delete_volume(self, ctxt: Any, volume_id: str, cascade: bool = False) -> None:
        self.volumes.delete_volume(volume_id, cascade=cascade)

    def extend_volume(self, ctxt: Any, volume_id: str, new_size: int,
                      previous_status: str) -> None:
        self.volumes.extend_volume(volume_id, new_size, previous_status)
        if db.volume_get(volume_id)['size'] != new_size:
            return  # the extend failed; the volume keeps its size and says why
        # Like Cinder's volume-extended event to Nova: the backend has grown
        # the volume, the hypervisor of each VM using it tells the guest.
        for attachment in db_attachments.attachment_get_all(volume_id=volume_id,
                                                            statuses=('attached',)):
            if attachment['instance_uuid']:
                self.rpcapi.extend_server_volume(ctxt, attachment['host'],
                                                 attachment['instance_uuid'],
                                                 attachment['id'], new_size)

    def revert_volume(self, ctxt: Any, volume_id: str, snapshot_id: str) -> None:
        self.volumes.revert_volume(volume_id, snapshot_id)

    def create_snapshot(self, ctxt: Any, snapshot_id: str, quiesced: bool = False) -> None:
        self.volumes.create_snapshot(snapshot_id, quiesced=quiesced)

    def delete_snapshot(self, ctxt: Any, snapshot_id: str) -> None:
        self.volumes.delete_snapshot(snapshot_id)

    # ---- images (resolved for the caller: gridcentric_storage.image.store)
    def get_image_info(self, ctxt: Any, image_id: str) -> dict[str, Any]:
        return self.volumes.images.info(ctxt, image_id)

    def check_images(self, ctxt: Any, refs: list[str]) -> None:
        for ref in refs:
            self.volumes.images.locate(ctxt, ref, 'boot file')

    def reserve_image(self, ctxt: Any, name: str) -> None:
        self.volumes.reserve_image(ctxt, name)

    def list_images(self, ctxt: Any) -> list[dict[str, Any]]:
        return self.volumes.images.list(ctxt)

    def delete_image(self, ctxt: Any, name: str) -> None:
        self.volumes.images.delete(ctxt, name)

    def copy_volume_to_image(self, ctxt: Any, volume_id: str,
                             image_meta: dict[str, Any]) -> None:
        self.volumes.copy_volume_to_image(ctxt, volume_id, image_meta)

    def purge_image_cache(self, ctxt: Any, backend_id: str | None = None,
                          entry_id: str | None = None) -> int:
        if entry_id is not None:
            self.volumes.image_cache.purge_entry(db_cache.cache_get_entry(entry_id))
            return 1
        return self.volumes.image_cache.purge(backend_id)

    # ---- attachments: this host as attacher (casts)
    def attach_volume(self, ctxt: Any, attachment_id: str) -> None:
        self.attachments.attach(ctxt, attachment_id)

    def detach_volume(self, ctxt: Any, attachment_id: str) -> None:
        self.attachments.detach(ctxt, attachment_id)

    # ---- attachments: this host as owner of the backend (calls)
    def initialize_connection(self, ctxt: Any, volume_id: str,
                              connector: dict[str, Any]) -> dict[str, Any]:
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        update = model_update(driver.create_export(ctxt, VolumeRef(volume), connector))
        if update:
            volume = db.volume_update(volume_id, update)
        info: dict[str, Any] = driver.initialize_connection(VolumeRef(volume), connector)
        return info

    def terminate_connection(self, ctxt: Any, volume_id: str,
                             connector: dict[str, Any] | None, attachment_id: str) -> None:
        volume = db.volume_get(volume_id)
        driver = self.pool.get(volume['backend_id'])
        ref = VolumeRef(volume)
        driver.terminate_connection(ref, connector)
        others = [a for a in db_attachments.attachment_get_all(volume_id=volume_id)
                  if a['id'] != attachment_id and a['status'] == 'attached']
        if not others:
            driver.remove_export(ctxt, ref)

    # ---- streams (call)
    def prepare_transfer(self, ctxt: Any, volume_id: str, direction: str) -> dict[str, Any]:
        return self.transfers.prepare(volume_id, direction)

    # ---- servers and live images
    def spawn_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.spawn(ctxt, server_id)

    def destroy_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.destroy(ctxt, server_id)

    def bless_server(self, ctxt: Any, live_image_id: str) -> None:
        self.servers.bless(ctxt, live_image_id)

    def launch_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.launch(ctxt, server_id)

    def discard_live_image(self, ctxt: Any, live_image_id: str) -> None:
        self.servers.discard(ctxt, live_image_id)

    def get_console_output(self, ctxt: Any, server_id: str, length: int | None) -> str:
        return self.servers.console_output(server_id, length)

    def attach_server_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        self.servers.attach_volume(ctxt, server_id, attachment_id)

    def extend_server_volume(self, ctxt: Any, server_id: str, attachment_id: str,
                             new_size: int) -> None:
        self.servers.extend_volume(server_id, attachment_id, new_size)

    def detach_server_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        self.servers.detach_volume(ctxt, server_id, attachment_id)
