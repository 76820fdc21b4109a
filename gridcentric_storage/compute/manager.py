"""The compute manager: RPC endpoint for servers, live images and host attachments.

Its workflows live in their own modules: ``compute.servers`` (VMs),
``compute.live_images`` (bless, launch, discard), ``compute.nova_live_images``
(bless a Nova instance), ``compute.live_image_export`` (a live image as one
image of the store, and back) and ``compute.attach`` (a volume connected to this
host with os-brick). Volume work on this host's
backends is the volume manager's, in the same service under the ``volume``
RPC namespace; this manager reaches volumes only through ``volume.api``, as
Nova reaches Cinder.
"""

import dataclasses
import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage import virt
from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common import context as gc_context
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.common.states import ServerStatus
from gridcentric_storage.compute import attach, live_image_export, nova_live_images, rpcapi
from gridcentric_storage.compute import live_image_publish as publish
from gridcentric_storage.compute.live_image_mounts import MountManager
from gridcentric_storage.compute.live_images import LiveImageManager, artifacts_from_db
from gridcentric_storage.compute.nova_live_images import NovaLiveImageManager
from gridcentric_storage.compute.server_migration import ServerMigrations
from gridcentric_storage.compute.servers import ServerManager
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.nova import store as nova_store
from gridcentric_storage.volume import api as volume_api

LOG = logging.getLogger(__name__)


class ComputeManager:
    target = messaging.Target(version=rpcapi.RPC_API_VERSION)

    def __init__(self, host: str, images: ImageStore) -> None:
        self.host = host
        self.volume_api = volume_api.API()
        self.attachments = attach.AttachManager(host, self.volume_api)
        self.servers = ServerManager(host, virt.load_driver(), self.volume_api, images)
        self.live_images = LiveImageManager(self.servers)
        self.publisher = publish.Publisher()
        self.mounts = MountManager(on_death=self._mount_died)
        self.live_images.on_blessed = self.publisher.start
        self.live_images.remote_artifacts = self.mounts.artifacts
        self.live_images.on_discard = self._unpublish
        self.nova_live_images = NovaLiveImageManager(host, self.servers.driver,
                                                     self.servers.locks)
        self.migrations = ServerMigrations(self.live_images)

    def init_host(self) -> None:
        self.servers.driver.init_host(self.host)
        # Before the volume manager (started next) removes the destinations of
        # interrupted volume migrations: a mirror our stop cut short holds them.
        try:
            self.servers.driver.cancel_volume_mirrors()
        except Exception:       # the service starts all the same
            LOG.exception('Could not look for interrupted volume migrations')
        # Before RPC is served: a bless cast after the restart is not one cut short.
        self.nova_live_images.recover_interrupted(gc_context.get_admin_context())

    def after_start(self) -> None:
        """Settle what a stop cut short; this needs RPC (owners export volumes)."""
        admin = gc_context.get_admin_context()
        self.attachments.recover_interrupted(admin)
        self.live_images.recover_interrupted(admin)
        self.servers.recover_interrupted(admin)
        self._store_capability()     # mounts adopted before a clone's migration is settled
        self.migrations.recover_interrupted(admin)

    def stop(self) -> None:
        """Service stop: the virt driver's helpers (a warm pool) end, and published
        live images mapped here that no guest uses are unmounted."""
        self.servers.driver.cleanup_host()
        self.mounts.stop()

    # ---- streamed launch (compute.live_image_publish, compute.live_image_mounts)
    def _store_capability(self) -> None:
        """Take over mounts an earlier run left; tell the API this host can
        launch clones of published live images."""
        if not publish.enabled():
            return
        self.mounts.adopt()
        self.publisher.recover(self.host)
        topic = cfg.CONF.compute.topic
        for service in db.service_get_all(topic):
            if service['host'] == self.host:
                caps = dict(service.get('capabilities') or {}, live_image_store=True)
                db.service_heartbeat(self.host, topic, service['binary'],
                                     capabilities=caps)

    def _mount_died(self, live_image_id: str, reason: str) -> None:
        """Clones mapping a dead mount's file would die of SIGBUS: fail them now."""
        for server in db_servers.server_get_all(host=self.host,
                                                live_image_id=live_image_id):
            if server['status'] != ServerStatus.ERROR:
                with self.servers.locks.get(server['id']):
                    self.servers.fail(server['id'], exception.LiveImageFilesMissing(
                        id=live_image_id, reason=reason))

    def _unpublish(self, ctxt: Any, live_image: LiveImage) -> None:
        """Discard on the blessing host: other hosts drop their mounts (their
        rbd-fuse holds the image open), then the published copy goes."""
        if not live_image.get('publish_status') or live_image['publish_status'] == \
                publish.NONE:
            return
        client = rpcapi.ComputeAPI()
        for service in db.service_get_all(cfg.CONF.compute.topic, up_only=True):
            if service['host'] != self.host and (service.get('capabilities') or {}).get(
                    'live_image_store'):
                client.drop_live_image(ctxt, service['host'], live_image['id'])
        # A Nova clone on this host may have mapped the published copy too.
        concurrency.execute(self.mounts.drop, live_image['id'])
        self.publisher.remove(live_image['id'], nova_live_images.is_nova(live_image))

    def _unpublish_nova(self, ctxt: Any, live_image_id: str) -> bool:
        """Discard of a Nova instance's live image: its published copy goes first
        (``live_images.discard`` removes its directory); False when it failed (the
        live image is in error then, with the reason)."""
        try:
            live_image = db_servers.live_image_get(live_image_id)
        except exception.LiveImageNotFound:
            return True
        if not nova_live_images.is_nova(live_image) or live_image['status'] != L.DISCARDING:
            return True
        try:
            with self.servers.locks.get(live_image_id):
                self._unpublish(ctxt, live_image)
        except Exception as e:
            LOG.exception('Removing the published copy of live image %s failed',
                          live_image_id)
            set_live_image(live_image_id, L.ERROR, L.DISCARDING,
                           status_reason='discard failed: %s' % exception.describe(e))
            return False
        return True

    def prepare_nova_live_image(self, ctxt: Any, live_image_id: str) -> str:
        """nova-compute's driver on this host resumes a clone of a Nova live image
        blessed elsewhere: the directory that holds it here, from the store."""
        live_image = db_servers.live_image_get(live_image_id)
        if not nova_live_images.is_nova(live_image) or live_image['status'] != L.BLESSED:
            raise exception.LiveImageFilesMissing(
                id=live_image_id, reason='it is not a blessed live image of a Nova instance')
        try:
            return concurrency.execute(  # type: ignore[no-any-return]
                self.mounts.nova_directory, live_image)
        except (exception.GCException, OSError) as e:
            LOG.warning('Live image %s for a Nova clone here: %s', live_image_id, e)
            raise nova_store.refusal(live_image_id, e) from None

    def drop_live_image(self, ctxt: Any, live_image_id: str) -> None:
        concurrency.execute(self.mounts.drop, live_image_id)

    # ---- this host as the attacher of a volume (casts)
    def attach_volume(self, ctxt: Any, attachment_id: str) -> None:
        self.attachments.attach(ctxt, attachment_id)

    def detach_volume(self, ctxt: Any, attachment_id: str) -> None:
        self.attachments.detach(ctxt, attachment_id)

    # ---- servers and live images
    def spawn_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.spawn(ctxt, server_id)

    def destroy_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.destroy(ctxt, server_id)

    def bless_server(self, ctxt: Any, live_image_id: str) -> None:
        self.live_images.bless(ctxt, live_image_id)

    def bless_nova_instance(self, ctxt: Any, live_image_id: str, instance_uuid: str) -> None:
        self.nova_live_images.bless(ctxt, live_image_id, instance_uuid)
        self._publish_if_blessed(live_image_id)

    def _publish_if_blessed(self, live_image_id: str) -> None:
        try:
            if db_servers.live_image_get(live_image_id)['status'] == L.BLESSED:
                self.publisher.start(live_image_id)
        except exception.LiveImageNotFound:
            pass

    def launch_server(self, ctxt: Any, server_id: str) -> None:
        self.live_images.launch(ctxt, server_id)

    def discard_live_image(self, ctxt: Any, live_image_id: str) -> None:
        if self._unpublish_nova(ctxt, live_image_id):
            self.live_images.discard(ctxt, live_image_id)

    def export_live_image(self, ctxt: Any, live_image_id: str) -> dict[str, Any]:
        """Pack a blessed live image into the caller's image store; image, sha256, size."""
        with self.servers.locks.get(live_image_id):
            live_image = db_servers.live_image_get(live_image_id)
            if live_image['status'] != L.BLESSED or not live_image['artifacts']:
                raise exception.InvalidState(resource='Live image', id=live_image_id,
                                             state=live_image['status'],
                                             reason='only a blessed live image is exported')
            if nova_live_images.is_nova(live_image):
                return concurrency.execute(  # type: ignore[no-any-return]
                    self.nova_live_images.export, ctxt, self.servers.images, live_image)
            return concurrency.execute(  # type: ignore[no-any-return]
                live_image_export.export, ctxt, self.servers.images,
                artifacts_from_db(live_image))

    def import_live_image(self, ctxt: Any, live_image_id: str, image: str,
                          sha256: str) -> None:
        """Unpack an export into the live image row the API made (``blessing``) and
        bless it; a refusal raises with no file left (the API drops the row)."""
        with self.servers.locks.get(live_image_id):
            live_image = db_servers.live_image_get(live_image_id)
            if nova_live_images.is_nova(live_image):
                self._import_nova(ctxt, live_image, image, sha256)
                return
            driver = self.servers.driver
            root = nova_live_images.live_images_root(driver)
            artifacts = concurrency.execute(
                live_image_export.import_, ctxt, self.servers.images, driver, root, image,
                sha256, live_image_id, live_image['memory_mb'], live_image['vcpus'])
            try:
                set_live_image(live_image_id, L.BLESSED, L.BLESSING, status_reason=None,
                               artifacts=dataclasses.asdict(artifacts))
            except Exception:
                # The API gave up on the row (a timeout): nothing may stay behind.
                driver.discard(artifacts)
                nova_live_images.remove_directory(root, artifacts)
                raise

    def _import_nova(self, ctxt: Any, live_image: LiveImage, image: str, sha256: str
                     ) -> None:
        artifacts = concurrency.execute(self.nova_live_images.import_, ctxt,
                                        self.servers.images, live_image, image, sha256)
        try:
            set_live_image(live_image['id'], L.BLESSED, L.BLESSING, status_reason=None,
                           artifacts=artifacts)
        except Exception:
            nova_live_images.remove_directory(self.nova_live_images.root,
                                              artifacts_from_db({**live_image,
                                                                 'artifacts': artifacts}))
            raise
        self.publisher.start(live_image['id'])

    def pause_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.pause(server_id)

    def unpause_server(self, ctxt: Any, server_id: str) -> None:
        self.servers.unpause(server_id)

    def get_console_output(self, ctxt: Any, server_id: str, length: int | None) -> str:
        return self.servers.console_output(server_id, length)

    def attach_server_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        self.servers.attach_volume(ctxt, server_id, attachment_id)

    def extend_server_volume(self, ctxt: Any, server_id: str, attachment_id: str,
                             new_size: int) -> None:
        self.servers.extend_volume(server_id, attachment_id, new_size)

    def detach_server_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        self.servers.detach_volume(ctxt, server_id, attachment_id)

    def update_server_volume_qos(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        self.servers.update_volume_qos(server_id, attachment_id)

    def migrate_server_volume(self, ctxt: Any, server_id: str, attachment_id: str,
                              connection_info: dict[str, Any]) -> None:
        self.servers.migrate_volume(ctxt, server_id, attachment_id, connection_info)

    # ---- live migration of a server (compute.server_migration)
    def migrate_server(self, ctxt: Any, server_id: str) -> None:
        self.migrations.migrate(ctxt, server_id)

    def prepare_incoming_server(self, ctxt: Any, server_id: str,
                                description: dict[str, Any]) -> str:
        return self.migrations.prepare_incoming(ctxt, server_id, description)

    def finish_incoming(self, ctxt: Any, server_id: str,
                        succeeded: bool) -> dict[str, Any] | None:
        return self.migrations.finish_incoming(ctxt, server_id, succeeded)
