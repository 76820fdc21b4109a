"""Live-image workflows on one compute host: bless, launch clones, discard.

States (``common.states``): live image ``blessing -> blessed -> discarding``
(or ``error``); the source server carries task ``blessing`` meanwhile; a
clone goes ``BUILD -> ACTIVE`` (or ``ERROR``). A launch is one workflow on
this host: it makes the clone's disks by calls to their owners (each returns
when its volume exists), attaches them here, then resumes the memory.
Discard also removes live images of Nova's instances (blessed by
``compute.nova_live_images``), by their directory alone.
"""

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.common.states import ServerStatus
from gridcentric_storage.compute import hooks, live_disks, nova_live_images
from gridcentric_storage.compute.servers import ServerManager
from gridcentric_storage.compute.status import set_live_image, set_server
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import LiveImage, Server
from gridcentric_storage.virt import base as virt

LOG = logging.getLogger(__name__)


def artifacts_from_db(live_image: LiveImage) -> virt.LiveImageArtifacts:
    data = dict(live_image['artifacts'] or {})
    data['disks'] = [virt.Disk(**d) for d in data.get('disks', [])]
    return virt.LiveImageArtifacts(**data)


class LiveImageManager:
    def __init__(self, servers: ServerManager) -> None:
        self.servers = servers
        self.driver = servers.driver
        self.volumes = servers.volumes
        self.host = servers.host
        self.locks = servers.locks  # one lock per server, shared with its other work
        # Streamed launch (compute.manager sets them when [live_image_store] is on):
        # publish after a bless, map another host's published RAM, drop it at discard.
        self.on_blessed: Callable[[str], None] = lambda live_image_id: None
        self.remote_artifacts: Callable[[LiveImage], virt.LiveImageArtifacts] | None = None
        self.on_discard: Callable[[Any, LiveImage], None] = lambda ctxt, live_image: None

    # ---- bless
    def bless(self, ctxt: Any, live_image_id: str) -> None:
        live_image = db_servers.live_image_get(live_image_id)
        server_id = live_image['server_id']
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            try:
                hooks.run('pre', 'bless', server_id=server_id, live_image_id=live_image_id)
                artifacts = self._bless_with_disks(ctxt, server, live_image_id)
            except Exception as e:
                LOG.exception('Blessing server %s failed', server_id)
                self._discard_leftovers(live_image_id)
                set_live_image(live_image_id, L.ERROR, L.BLESSING,
                               status_reason=exception.describe(e))
                set_server(server_id, {'task_state': None})
                return
            set_live_image(live_image_id, L.BLESSED, L.BLESSING, status_reason=None,
                           artifacts=dataclasses.asdict(artifacts))
            set_server(server_id, {'task_state': None})
        self.on_blessed(live_image_id)
        hooks.run('post', 'bless', server_id=server_id, live_image_id=live_image_id)

    def _bless_with_disks(self, ctxt: Any, server: Server,
                          live_image_id: str) -> virt.LiveImageArtifacts:
        """Memory and disks of one instant: pause, snapshot volumes, save, resume."""
        if not live_disks.attachments_of(server['id']):
            return concurrency.execute(self.driver.bless, server['id'], live_image_id, [])
        # A clone's bless goes on after its memory is captured (the QEMU driver
        # flattens it): a driver that can lets it run from then on.
        early = ({'resume_after_capture': True}
                 if server['live_image_id'] and getattr(self.driver, 'flattens_clones', False)
                 else {})
        self.driver.pause(server['id'])
        try:
            disks = live_disks.snapshot_all(ctxt, self.volumes, server['id'], live_image_id)
            try:
                return concurrency.execute(self.driver.bless, server['id'], live_image_id,
                                           disks, **early)
            except Exception:
                live_disks.delete_snapshots(ctxt, self.volumes, [d.volume_id for d in disks])
                raise
        finally:
            self.driver.unpause(server['id'])

    def _discard_leftovers(self, live_image_id: str) -> None:
        live_image = db_servers.live_image_get(live_image_id)
        try:
            if live_image.get('artifacts'):
                self.driver.discard(artifacts_from_db(live_image))
            else:
                self.driver.discard(virt.LiveImageArtifacts(
                    live_image_id=live_image_id, directory='', memory_path='',
                    state_path='', memory_mb=live_image['memory_mb'],
                    vcpus=live_image['vcpus']))
        except Exception:
            LOG.warning('Could not remove leftovers of live image %s', live_image_id,
                        exc_info=True)

    # ---- launch
    def launch(self, ctxt: Any, server_id: str) -> None:
        begun = time.monotonic()
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['status'] != ServerStatus.BUILD:
                return
            live_image = db_servers.live_image_get(server['live_image_id'] or '')
            # A driver with QEMU processes started ahead gives the clone the
            # generation id of the one it takes (fixed once QEMU built the
            # machine): it reports it, the record takes it.
            warm = getattr(self.driver, 'warm_pool_size', 0) > 0
            clone = virt.CloneSpec(
                id=server_id, name=server['name'], mac=server['mac'],
                vmgenid=None if warm else server['vmgenid'], guest=dict(server['guest'] or {}),
                user_data=(server['user_data'] or '').encode() or None)
            volume_ids: list[str] = []
            try:
                hooks.run('pre', 'launch', server_id=server_id,
                          live_image_id=live_image['id'], clone_id=server_id)
                artifacts = self.launch_artifacts(live_image)
                volume_ids = live_disks.make_clone_volumes(
                    ctxt, self.volumes, server, artifacts,
                    record=lambda ids: self._record_volumes(server_id, ids))
                if volume_ids:   # (os-brick's host probe alone takes most of a second)
                    clone.disks = live_disks.connect_clone_volumes(
                        ctxt, self.volumes, self.host, server, volume_ids, artifacts)
                disks_made = time.monotonic()
                info = concurrency.execute(self.driver.launch, artifacts, clone)
            except Exception as e:
                LOG.exception('Launching server %s failed', server_id)
                self.servers.fail(server_id, e)
                return
            # Where a launch's time went on this host (the driver's own split is in info)
            took = {'before_driver': round(disks_made - begun, 4),
                    'total': round(time.monotonic() - begun, 4)}
            set_server(server_id, {'status': ServerStatus.ACTIVE, 'task_state': None,
                                   'vmgenid': info.extra.get('vmgenid') or server['vmgenid'],
                                   'extra': dict(dataclasses.asdict(info), volumes=volume_ids,
                                                 workflow_seconds=took)})
        hooks.run('post', 'launch', server_id=server_id, live_image_id=live_image['id'],
                  clone_id=server_id)

    def launch_artifacts(self, live_image: LiveImage) -> virt.LiveImageArtifacts:
        """This host's files, or another host's published ones mapped here."""
        if live_image['host'] == self.host or self.remote_artifacts is None:
            return artifacts_from_db(live_image)
        return self.remote_artifacts(live_image)

    @staticmethod
    def _record_volumes(server_id: str, volume_ids: list[str]) -> None:
        """The clone owns its disks from the moment each exists: deleted with it."""
        server = db_servers.server_get(server_id)
        set_server(server_id, {'extra': dict(server['extra'] or {}, volumes=list(volume_ids)),
                               'volume_id': volume_ids[0]})

    # ---- discard
    def discard(self, ctxt: Any, live_image_id: str) -> None:
        with self.locks.get(live_image_id):
            try:
                live_image = db_servers.live_image_get(live_image_id)
            except exception.LiveImageNotFound:
                return
            try:
                hooks.run('pre', 'discard', live_image_id=live_image_id,
                          server_id=live_image['server_id'])
                if live_image['artifacts'] and nova_live_images.is_nova(live_image):
                    # A Nova instance's: its files only, whatever this host's driver
                    concurrency.execute(nova_live_images.remove_directory,
                                        nova_live_images.live_images_root(self.driver),
                                        artifacts_from_db(live_image))
                elif live_image['artifacts']:
                    self.on_discard(ctxt, live_image)  # its published copy first
                    artifacts = artifacts_from_db(live_image)
                    concurrency.execute(self.driver.discard, artifacts)
                    live_disks.delete_snapshots(ctxt, self.volumes,
                                                [d.volume_id for d in artifacts.disks])
            except Exception as e:
                LOG.exception('Discarding live image %s failed', live_image_id)
                set_live_image(live_image_id, L.ERROR, L.DISCARDING,
                               status_reason='discard failed: %s' % exception.describe(e))
                return
            db_servers.live_image_destroy(live_image_id)
        hooks.run('post', 'discard', live_image_id=live_image_id,
                  server_id=live_image['server_id'])

    # ---- restart
    def recover_interrupted(self, ctxt: Any) -> None:
        """Settle the live images and blessed sources a crash of this service left."""
        for live_image in db_servers.live_image_get_all(host=self.host,
                                                        statuses=(L.BLESSING, L.DISCARDING)):
            if live_image['status'] == L.DISCARDING:
                self.discard(ctxt, live_image['id'])
                continue
            LOG.info('Live image %s was being blessed; marking it error', live_image['id'])
            self._discard_leftovers(live_image['id'])
            # The disks' snapshots a bless took before the stop: no artifacts
            # name them yet, their name does.
            live_disks.delete_snapshots(ctxt, self.volumes, [
                s['id'] for s in db_snapshots.snapshot_get_all()
                if s['name'] == live_disks.snapshot_name(live_image['id'])])
            set_live_image(live_image['id'], L.ERROR, L.BLESSING,
                           status_reason='bless interrupted by a restart of %s' % self.host)
            self._resume_source(live_image['server_id'])
        for server in db_servers.server_get_all(host=self.host):
            if server['task_state'] == st.ServerTask.BLESSING:
                self._resume_source(server['id'])

    def _resume_source(self, server_id: str) -> None:
        """A source paused by an interrupted bless runs again."""
        try:
            if self.driver.get_info(server_id).state == 'paused':
                self.driver.unpause(server_id)
        except Exception:
            LOG.warning('Could not resume server %s', server_id, exc_info=True)
        try:
            set_server(server_id, {'task_state': None})
        except exception.ServerNotFound:
            pass
