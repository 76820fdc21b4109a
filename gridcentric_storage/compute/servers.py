"""Server workflows on one compute host: spawn, delete, hot-plug, console.

States (``common.states``; the DB is the truth): server ``BUILD -> ACTIVE``
(or ``ERROR`` with a fault), task ``deleting`` while it goes, ``migrating``
while ``compute.server_migration`` moves it to another host. This module and
``compute.live_images`` (bless, launch, discard) write them on the host;
``compute.api`` writes them on the API side. After a crash of this service,
:meth:`ServerManager.recover_interrupted` finishes or fails every one of them
and removes leftovers, so nothing stays mid-way.
"""

import dataclasses
import logging
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import ServerStatus
from gridcentric_storage.compute import brick
from gridcentric_storage.compute.status import set_server
from gridcentric_storage.db import api as db_volumes
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import Server
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.virt import base as virt
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import qos_enforce

LOG = logging.getLogger(__name__)
GiB = 1 << 30


class ServerManager:
    def __init__(self, host: str, driver: virt.VirtDriver, volumes: volume_api.API,
                 images: ImageStore) -> None:
        self.host = host
        self.driver = driver
        self.volumes = volumes
        self.images = images
        self.locks = concurrency.KeyedLocks()

    # ---- disks
    def _disks(self, ctxt: Any, server: Server) -> list[virt.Disk]:
        """The root volume as a Disk, attached to this host (the attachment's id is
        the server's, so a spawn run again after a restart finds it)."""
        volume_id = server['volume_id']
        if not volume_id:
            return []
        connector = brick.connector_properties(self.host)
        try:
            attachment = db_attachments.attachment_get(server['id'])
        except exception.AttachmentNotFound:
            info = self.volumes.attach_for_server(ctxt, volume_id, server['id'],
                                                  self.host, connector,
                                                  attachment_id=server['id'])
        else:
            info = self.volumes.connect(ctxt, attachment, connector)
        return [virt.Disk(volume_id=volume_id, connection_info=info)]

    def release_disks(self, ctxt: Any, server: Server) -> None:
        for attachment in db_attachments.attachment_get_all(instance_uuid=server['id']):
            self.volumes.release(ctxt, attachment)

    def _boot_file(self, ctxt: Any, ref: str | None) -> str | None:
        """The file the server's kernel/initrd reference names for its creator."""
        return self.images.locate(ctxt, ref, 'boot file') if ref else None

    def _spec(self, ctxt: Any, server: Server,
              disks: list[virt.Disk]) -> virt.InstanceSpec:
        return virt.InstanceSpec(
            id=server['id'], name=server['name'], memory_mb=server['memory_mb'],
            vcpus=server['vcpus'], kernel=self._boot_file(ctxt, server['kernel']),
            initrd=self._boot_file(ctxt, server['initrd']),
            cmdline=server['cmdline'], disks=disks, mac=server['mac'],
            vmgenid=server['vmgenid'])

    def fail(self, server_id: str, error: Exception) -> None:
        try:
            self.driver.destroy(server_id)
        except Exception:
            LOG.warning('Could not remove leftovers of server %s', server_id, exc_info=True)
        set_server(server_id, {'status': ServerStatus.ERROR, 'task_state': None,
                               'fault': exception.describe(error)})

    # ---- lifecycle
    def spawn(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['status'] != ServerStatus.BUILD:
                return
            try:
                spec = self._spec(ctxt, server, self._disks(ctxt, server))
                info = concurrency.execute(self.driver.spawn, spec)
            except Exception as e:
                LOG.exception('Spawning server %s failed', server_id)
                self.fail(server_id, e)
                return
            set_server(server_id, {'status': ServerStatus.ACTIVE, 'task_state': None,
                                   'extra': dataclasses.asdict(info)})

    def destroy(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            try:
                server = db_servers.server_get(server_id)
            except exception.ServerNotFound:
                return
            try:
                concurrency.execute(self.driver.destroy, server_id)
                self.release_disks(ctxt, server)
                for volume_id in server['extra'].get('volumes', []):
                    self.volumes.delete_owned_by_server(ctxt, volume_id)
            except Exception as e:
                LOG.exception('Deleting server %s failed', server_id)
                set_server(server_id, {'status': ServerStatus.ERROR, 'task_state': None,
                                       'fault': 'delete failed: %s' % exception.describe(e)})
                return
            db_servers.server_destroy(server_id)

    def attach_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        """Hot-plug a volume: os-brick connection info becomes a hypervisor disk."""
        attachment = db_attachments.attachment_get(attachment_id)
        with self.locks.get(server_id):
            try:
                connector = brick.connector_properties(self.host)
                info = self.volumes.connect(ctxt, attachment, connector)
                concurrency.execute(self.driver.attach_volume, server_id,
                                    virt.Disk(volume_id=attachment['volume_id'],
                                              connection_info=info,
                                              read_only=attachment['mode'] == 'ro'))
            except Exception as e:
                LOG.exception('Attaching volume %s to server %s failed',
                              attachment['volume_id'], server_id)
                self.volumes.attach_failed(ctxt, attachment_id, e)
                return
            self.volumes.attach_complete(attachment_id)

    def detach_volume(self, ctxt: Any, server_id: str, attachment_id: str) -> None:
        attachment = db_attachments.attachment_get(attachment_id)
        with self.locks.get(server_id):
            try:
                concurrency.execute(self.driver.detach_volume, server_id,
                                    attachment['volume_id'])
                self.volumes.detach_complete(ctxt, attachment_id)
            except Exception as e:
                LOG.exception('Detaching volume %s from server %s failed',
                              attachment['volume_id'], server_id)
                self.volumes.detach_failed(attachment_id, e)

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
                self.volumes.attachment_note(attachment_id, 'the guest did not see the '
                                             'extend: %s' % exception.describe(e))
            else:
                self.volumes.attachment_note(attachment_id, None)

    def update_volume_qos(self, server_id: str, attachment_id: str) -> None:
        """Give the hypervisor an attached volume's current front-end limits."""
        attachment = db_attachments.attachment_get(attachment_id)
        with self.locks.get(server_id):
            try:
                volume = db_volumes.volume_get(attachment['volume_id'])
                limits = qos_enforce.limits_for(volume, 'front-end')
                concurrency.execute(self.driver.set_volume_qos, server_id,
                                    attachment['volume_id'], limits)
            except Exception as e:
                LOG.exception('Server %s did not take the QoS of volume %s', server_id,
                              attachment['volume_id'])
                self.volumes.attachment_note(attachment_id, 'QoS not applied: %s'
                                             % exception.describe(e))
            else:
                self.volumes.attachment_note(attachment_id, None)

    def migrate_volume(self, ctxt: Any, server_id: str, attachment_id: str,
                       connection_info: dict[str, Any]) -> None:
        """Move an attached volume's disk onto ``connection_info`` (the destination's,
        exported to this host by its owner) while the guest runs.

        The hypervisor opens the connection itself, as for a hot-plug (QEMU's
        file, librbd and libiscsi drivers), so no host device is connected or
        disconnected here. Raises when the guest stays on its source; the caller
        (``volume.migration``) then ends the destination's export.
        """
        attachment = db_attachments.attachment_get(attachment_id)
        volume_id = attachment['volume_id']
        if attachment['instance_uuid'] != server_id:
            raise exception.Invalid(reason='attachment %s is not one of server %s'
                                    % (attachment_id, server_id))
        brick.check_connectable(connection_info.get('driver_volume_type') or '')
        disk = virt.Disk(volume_id=volume_id, connection_info=connection_info,
                         read_only=attachment['mode'] == 'ro')
        with self.locks.get(server_id):
            LOG.info('Moving volume %s of server %s onto its destination', volume_id,
                     server_id)
            try:
                concurrency.execute(self.driver.migrate_volume, server_id, volume_id, disk)
            except exception.GCException:
                LOG.exception('Live migration of volume %s of server %s failed', volume_id,
                              server_id)
                raise
            except Exception as e:
                LOG.exception('Live migration of volume %s of server %s failed', volume_id,
                              server_id)
                raise exception.DriverError(reason=exception.describe(e)) from e

    def pause(self, server_id: str) -> None:
        """Stop the VM's vCPUs; its memory and devices stay as they are."""
        with self.locks.get(server_id):
            concurrency.execute(self.driver.pause, server_id)
            set_server(server_id, {'status': ServerStatus.PAUSED})

    def unpause(self, server_id: str) -> None:
        with self.locks.get(server_id):
            concurrency.execute(self.driver.unpause, server_id)
            set_server(server_id, {'status': ServerStatus.ACTIVE})

    def console_output(self, server_id: str, length: int | None) -> str:
        return self.driver.get_console_output(server_id, length)

    # ---- live migration (compute.server_migration runs it; its outcome is written here)
    def end_migration(self, server_id: str, values: dict[str, Any]) -> None:
        """Task ``migrating`` ends: the guest runs on one host (``values['host']`` when
        it moved), ``fault`` says how a failed move went."""
        set_server(server_id, dict(values, task_state=None))

    def note_fault(self, server_id: str, fault: str) -> None:
        set_server(server_id, {'fault': fault})

    # ---- restart
    def recover_interrupted(self, ctxt: Any) -> None:
        """Settle the servers a crash of this service left mid-way; remove stray VMs."""
        for server in db_servers.server_get_all(host=self.host):
            if server['task_state'] == st.ServerTask.DELETING:
                self.destroy(ctxt, server['id'])
            elif server['status'] == ServerStatus.BUILD:
                info = self.driver.get_info(server['id'])
                if info.state == 'running':
                    set_server(server['id'], {'status': ServerStatus.ACTIVE,
                                              'task_state': None,
                                              'extra': dict(dataclasses.asdict(info),
                                                            volumes=server['extra'].get(
                                                                'volumes', []))})
                else:
                    self.fail(server['id'], RuntimeError(
                        'build interrupted by a restart of %s' % self.host))
        known = {s['id'] for s in db_servers.server_get_all(host=self.host)}
        # A server migrating here runs on its source until it arrives: not an orphan
        # (compute.server_migration settles it).
        known |= {s['id'] for s in db_servers.server_get_all()
                  if s['task_state'] == st.ServerTask.MIGRATING
                  and ((s['extra'] or {}).get('migration') or {}).get('dest') == self.host}
        for orphan in set(self.driver.list_instances()) - known:
            LOG.info('Removing VM %s that no server owns', orphan)
            self.driver.destroy(orphan)
