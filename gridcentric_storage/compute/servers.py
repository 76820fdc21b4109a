"""Server and live-image workflows on one compute host.

States (DB is the truth): server ``BUILD -> ACTIVE`` (or ``ERROR`` with a
fault), task ``blessing`` on the source while it is blessed, ``deleting``;
live image ``blessing -> blessed -> discarding`` (or ``error``). After a
crash of this service, :meth:`ServerManager.recover_interrupted` finishes or
fails every one of them and removes leftovers, so nothing stays mid-way.
"""

import dataclasses
import logging
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.compute import hooks, live_disks
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume.manager import reason

LOG = logging.getLogger(__name__)
GiB = 1 << 30


def artifacts_from_db(live_image: dict[str, Any]) -> virt.LiveImageArtifacts:
    data = dict(live_image['artifacts'])
    data['disks'] = [virt.Disk(**d) for d in data.get('disks', [])]
    return virt.LiveImageArtifacts(**data)


class ServerManager:
    def __init__(self, host: str, driver: virt.VirtDriver, rpcapi: Any) -> None:
        self.host = host
        self.driver = driver
        self.rpcapi = rpcapi
        self.locks = concurrency.KeyedLocks()
        self.images = ImageStore()

    # ---- disks
    def _disks(self, ctxt: Any, server: dict[str, Any]) -> list[virt.Disk]:
        """The root volume as a Disk, exported to this host by its backend's owner."""
        if not server.get('volume_id'):
            return []
        from gridcentric_storage.compute import brick

        volume = db.volume_get(server['volume_id'])
        connector = brick.connector_properties(self.host)
        info = self.rpcapi.initialize_connection(ctxt, volume['host'], volume['id'],
                                                 connector)
        existing = db_attachments.attachment_get_all(volume_id=volume['id'])
        if not any(a['instance_uuid'] == server['id'] for a in existing):
            db_attachments.attachment_create({
                'id': server['id'], 'volume_id': volume['id'],
                'project_id': volume['project_id'], 'host': self.host,
                'instance_uuid': server['id'], 'mode': 'rw', 'status': 'attached',
                'connector': connector, 'connection_info': info})
            db.volume_update(volume['id'], {'status': 'in-use'})
        return [virt.Disk(volume_id=volume['id'], connection_info=info)]

    def _release_disks(self, ctxt: Any, server: dict[str, Any]) -> None:
        for attachment in db_attachments.attachment_get_all():
            if attachment['instance_uuid'] != server['id']:
                continue
            volume = db.volume_get(attachment['volume_id'])
            try:
                self.rpcapi.terminate_connection(ctxt, volume['host'], volume['id'],
                                                 attachment['connector'], attachment['id'])
            except Exception:
                LOG.warning('Could not end the export of volume %s', volume['id'],
                            exc_info=True)
            db_attachments.attachment_destroy(attachment['id'])
            rest = db_attachments.attachment_get_all(volume_id=volume['id'])
            if not rest:
                db.volume_update(volume['id'], {'status': 'available'})

    def _boot_file(self, ctxt: Any, ref: str | None) -> str | None:
        """The file the server's kernel/initrd reference names for its creator."""
        return self.images.locate(ctxt, ref, 'boot file') if ref else None

    def _spec(self, ctxt: Any, server: dict[str, Any],
              disks: list[virt.Disk]) -> virt.InstanceSpec:
        return virt.InstanceSpec(
            id=server['id'], name=server['name'], memory_mb=server['memory_mb'],
            vcpus=server['vcpus'], kernel=self._boot_file(ctxt, server['kernel']),
            initrd=self._boot_file(ctxt, server['initrd']),
            cmdline=server['cmdline'], disks=disks, mac=server['mac'],
            vmgenid=server['vmgenid'])

    def _fail(self, server_id: str, error: Exception) -> None:
        try:
            self.driver.destroy(server_id)
        except Exception:
            LOG.warning('Could not remove leftovers of server %s', server_id, exc_info=True)
        db_servers.server_update(server_id, {'status': 'ERROR', 'task_state': None,
                                             'fault': reason(error)})

    # ---- lifecycle
    def spawn(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['status'] != 'BUILD':
                return
            try:
                spec = self._spec(ctxt, server, self._disks(ctxt, server))
                info = concurrency.execute(self.driver.spawn, spec)
            except Exception as e:
                LOG.exception('Spawning server %s failed', server_id)
                self._fail(server_id, e)
                return
            db_servers.server_update(server_id, {'status': 'ACTIVE', 'task_state': None,
                                                 'extra': dataclasses.asdict(info)})

    def destroy(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            try:
                server = db_servers.server_get(server_id)
            except exception.ServerNotFound:
                return
            try:
                concurrency.execute(self.driver.destroy, server_id)
                self._release_disks(ctxt, server)
                live_disks.delete_clone_volumes(ctxt, self.rpcapi, server)
            except Exception as e:
                LOG.exception('Deleting server %s failed', server_id)
                db_servers.server_update(server_id, {'status': 'ERROR', 'task_state': None,
                                                     'fault': 'delete failed: %s' % reason(e)})
                return
            db_servers.server_destroy(server_id)

    def attach_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        """Hot-plug a volume: os-brick connection info becomes a QEMU drive."""
        from gridcentric_storage.compute import attach, brick

        attachment = db_attachments.attachment_get(attachment_id)
        volume = db.volume_get(attachment['volume_id'])
        with self.locks.get(server_id):
            connector = None
            try:
                connector = brick.connector_properties(self.host)
                info = self.rpcapi.initialize_connection(ctxt, volume['host'], volume['id'],
                                                         connector)
                concurrency.execute(self.driver.attach_volume, server_id,
                                    virt.Disk(volume_id=volume['id'], connection_info=info,
                                              read_only=attachment['mode'] == 'ro'))
            except Exception as e:
                LOG.exception('Attaching volume %s to server %s failed', volume['id'],
                              server_id)
                if connector is not None:
                    try:
                        self.rpcapi.terminate_connection(ctxt, volume['host'], volume['id'],
                                                         connector, attachment_id)
                    except Exception:
                        LOG.warning('Could not end the export of %s', volume['id'])
                db_attachments.attachment_update(attachment_id, {
                    'status': 'error', 'status_reason': reason(e)})
                attach.settle_volume_status(volume['id'])
                return
            db_attachments.attachment_update(attachment_id, {
                'status': 'attached', 'connector': connector, 'connection_info': info})
            attach.settle_volume_status(volume['id'])

    def detach_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        from gridcentric_storage.compute import attach

        attachment = db_attachments.attachment_get(attachment_id)
        volume = db.volume_get(attachment['volume_id'])
        with self.locks.get(server_id):
            try:
                concurrency.execute(self.driver.detach_volume, server_id, volume['id'])
                self.rpcapi.terminate_connection(ctxt, volume['host'], volume['id'],
                                                 attachment['connector'], attachment_id)
            except Exception as e:
                LOG.exception('Detaching volume %s from server %s failed', volume['id'],
                              server_id)
                db_attachments.attachment_update(attachment_id, {
                    'status': 'error', 'status_reason': 'detach failed: %s' % reason(e)})
                attach.settle_volume_status(volume['id'])
                return
            db_attachments.attachment_destroy(attachment_id)
            attach.settle_volume_status(volume['id'])

    def extend_volume(self, server_id: str, attachment_id: str, new_size: int) -> None:
        """Show the guest the new size of a volume its backend has grown."""
        attachment = db_attachments.attachment_get(attachment_id)
        with self.locks.get(server_id):
            try:
                concurrency.execute(self.driver.extend_volume, server_id,
                                    attachment['volume_id'], new_size * GiB)
            except Exception as e:
                # The volume did grow; only the guest's view lags (until a reboot).
                LOG.exception('Server %s did not take the new size of volume %s',
                              server_id, attachment['volume_id'])
                db_attachments.attachment_update(attachment_id, {
                    'status_reason': 'the guest did not see the extend: %s' % reason(e)})
            else:
                db_attachments.attachment_update(attachment_id, {'status_reason': None})

    def console_output(self, server_id: str, length: int | None) -> str:
        return self.driver.get_console_output(server_id, length)

    # ---- live images
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
                db_servers.live_image_update(live_image_id, {'status': 'error',
                                                             'status_reason': reason(e)})
                db_servers.server_update(server_id, {'task_state': None})
                return
            db_servers.live_image_update(live_image_id, {
                'status': 'blessed', 'artifacts': dataclasses.asdict(artifacts),
                'status_reason': None})
            db_servers.server_update(server_id, {'task_state': None})
        hooks.run('post', 'bless', server_id=server_id, live_image_id=live_image_id)

    def _bless_with_disks(self, ctxt: Any, server: dict[str, Any],
                          live_image_id: str) -> virt.LiveImageArtifacts:
        """Memory and disks of one instant: pause, snapshot volumes, save, resume."""
        if not live_disks.attachments_of(server['id']):
            return concurrency.execute(self.driver.bless, server['id'], live_image_id, [])
        self.driver.pause(server['id'])
        disks: list[virt.Disk] = []
        try:
            disks = live_disks.snapshot_all(ctxt, self.rpcapi, server['id'], live_image_id)
            return concurrency.execute(self.driver.bless, server['id'], live_image_id, disks)
        except Exception:
            live_disks.delete_snapshots(ctxt, self.rpcapi,
                                        [dataclasses.asdict(d) for d in disks])
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

    def launch(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['status'] != 'BUILD':
                return
            live_image = db_servers.live_image_get(server['live_image_id'])
            clone = virt.CloneSpec(
                id=server_id, name=server['name'], mac=server['mac'],
                vmgenid=server['vmgenid'], guest=dict(server['guest'] or {}),
                user_data=(server['user_data'] or '').encode() or None)
            try:
                hooks.run('pre', 'launch', server_id=server_id,
                          live_image_id=live_image['id'], clone_id=server_id)
                artifacts = artifacts_from_db(live_image)
                clone.disks = live_disks.connect_clone_volumes(ctxt, self.rpcapi, self.host,
                                                               server, artifacts)
                info = concurrency.execute(self.driver.launch, artifacts, clone)
            except Exception as e:
                LOG.exception('Launching server %s failed', server_id)
                self._fail(server_id, e)
                return
            db_servers.server_update(server_id, {
                'status': 'ACTIVE', 'task_state': None,
                'extra': dict(dataclasses.asdict(info),
                              volumes=server['extra'].get('volumes', []))})
        hooks.run('post', 'launch', server_id=server_id, live_image_id=live_image['id'],
                  clone_id=server_id)

    def discard(self, ctxt: Any, live_image_id: str) -> None:
        with self.locks.get(live_image_id):
            try:
                live_image = db_servers.live_image_get(live_image_id)
            except exception.LiveImageNotFound:
                return
            try:
                hooks.run('pre', 'discard', live_image_id=live_image_id,
                          server_id=live_image['server_id'])
                if live_image.get('artifacts'):
                    concurrency.execute(self.driver.discard, artifacts_from_db(live_image))
                    live_disks.delete_snapshots(ctxt, self.rpcapi,
                                                live_image['artifacts'].get('disks', []))
            except Exception as e:
                LOG.exception('Discarding live image %s failed', live_image_id)
                db_servers.live_image_update(live_image_id, {
                    'status': 'error', 'status_reason': 'discard failed: %s' % reason(e)})
                return
            db_servers.live_image_destroy(live_image_id)
        hooks.run('post', 'discard', live_image_id=live_image_id,
                  server_id=live_image['server_id'])

    # ---- restart
    def recover_interrupted(self, ctxt: Any) -> None:
        """Settle what a crash of this service left mid-way, and remove leftovers."""
        for live_image in db_servers.live_image_get_all(host=self.host,
                                                        statuses=('blessing', 'discarding')):
            if live_image['status'] == 'discarding':
                self.discard(ctxt, live_image['id'])
                continue
            LOG.info('Live image %s was being blessed; marking it error', live_image['id'])
            self._discard_leftovers(live_image['id'])
            db_servers.live_image_update(live_image['id'], {
                'status': 'error',
                'status_reason': 'bless interrupted by a restart of %s' % self.host})
            self._resume_source(live_image['server_id'])
        for server in db_servers.server_get_all(host=self.host):
            if server['task_state'] == 'deleting':
                self.destroy(ctxt, server['id'])
            elif server['status'] == 'BUILD':
                info = self.driver.get_info(server['id'])
                if info.state == 'running':
                    db_servers.server_update(server['id'], {
                        'status': 'ACTIVE', 'task_state': None,
                        'extra': dataclasses.asdict(info)})
                else:
                    self._fail(server['id'], RuntimeError(
                        'build interrupted by a restart of %s' % self.host))
            elif server['task_state'] == 'blessing':
                self._resume_source(server['id'])
        known = {s['id'] for s in db_servers.server_get_all(host=self.host)}
        for orphan in set(self.driver.list_instances()) - known:
            LOG.info('Removing VM %s that no server owns', orphan)
            self.driver.destroy(orphan)

    def _resume_source(self, server_id: str) -> None:
        """A source paused by an interrupted bless runs again."""
        try:
            if self.driver.get_info(server_id).state == 'paused':
                self.driver.unpause(server_id)
        except Exception:
            LOG.warning('Could not resume server %s', server_id, exc_info=True)
        try:
            db_servers.server_update(server_id, {'task_state': None})
        except exception.ServerNotFound:
            pass
