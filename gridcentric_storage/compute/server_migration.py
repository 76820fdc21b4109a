"""Live migration of a running server to another compute host.

``compute.api.migrate`` refuses what cannot work (a clone whose memory the
destination cannot map, a disk only its own host opens), claims task
``migrating`` with the destination in ``extra['migration']`` and casts
``migrate_server`` to the source host, which runs the whole move:

1. the source's driver describes the machine (``describe_outgoing``);
2. a call to the destination (``prepare_incoming_server``): it connects the
   server's volumes there (second attachments, ``volume.api``), maps a clone's
   live image RAM (its own files, or the published copy, as a remote launch),
   starts the same machine waiting and answers the URI to send it to;
3. the source's driver sends the guest (``migrate_out``: QEMU migration over
   TCP) and waits until it is all there; the source QEMU is then paused for good;
4. a call to the destination (``finish_incoming``) runs the guest there; the
   row's host becomes the destination, the task ends, the source QEMU quits and
   the source's attachments are released.

Until step 3 completes the guest runs on the source: any failure drops the
destination's QEMU and connections and leaves the server ACTIVE where it was,
with a fault note. The row's ``host`` names whichever host runs the guest.
After a crash, :meth:`ServerMigrations.recover_interrupted` (source and
destination alike) settles a server left in ``migrating`` to one running QEMU.
"""

import dataclasses
import logging
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, rpc
from gridcentric_storage.common.states import ServerTask
from gridcentric_storage.compute import brick, rpcapi
from gridcentric_storage.compute.live_images import LiveImageManager
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import Server
from gridcentric_storage.virt import base as virt

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def destination(server: Server) -> str | None:
    """The host a server in task ``migrating`` moves to."""
    return ((server.get('extra') or {}).get('migration') or {}).get('dest')


class ServerMigrations:
    rpcapi = rpc.LazyClient(rpcapi.ComputeAPI)

    def __init__(self, live_images: LiveImageManager) -> None:
        self.live_images = live_images
        self.servers = live_images.servers
        self.driver = live_images.driver
        self.volumes = live_images.volumes
        self.host = live_images.host
        self.locks = live_images.locks

    # ---- source
    def migrate(self, ctxt: Any, server_id: str) -> None:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            dest = destination(server)
            if server['task_state'] != ServerTask.MIGRATING or server['host'] != self.host \
                    or not dest:
                return
            LOG.info('Migrating server %s to host %s', server_id, dest)
            try:
                description = concurrency.execute(self.driver.describe_outgoing, server_id)
                uri = self.rpcapi.prepare_incoming_server(ctxt, dest, server_id, description)
            except Exception as e:
                LOG.exception('Host %s could not receive server %s', dest, server_id)
                self._abort(ctxt, server, dest, e)
                return
            try:
                figures = concurrency.execute(self.driver.migrate_out, server_id, uri,
                                              CONF.compute.migration_timeout)
            except Exception as e:
                LOG.exception('Live migration of server %s failed', server_id)
                self._abort(ctxt, server, dest, e)
                return
            # From here the source is paused for good: the guest's state is all on
            # the destination, which only has to run it.
            self._finish(ctxt, server, dest, figures)

    def _finish(self, ctxt: Any, server: Server, dest: str,
                figures: dict[str, Any] | None) -> None:
        server_id = server['id']
        try:
            info = self.rpcapi.finish_incoming(ctxt, dest, server_id, True)
        except Exception as e:
            # The destination could not run it (or said nothing): make sure it does
            # not, then the source (whose state is as new) runs on.
            LOG.exception('Host %s did not resume server %s', dest, server_id)
            self._abort(ctxt, server, dest, e)
            return
        # The guest runs there: this paused copy and its connections go before the
        # task ends (a stop in between finds no QEMU here and adopts the remote one).
        try:
            concurrency.execute(self.driver.destroy, server_id)
        except Exception:
            LOG.warning('Could not stop the source QEMU of server %s', server_id,
                        exc_info=True)
        self._release_here(ctxt, server_id)
        extra = dict(info or {}, volumes=(server['extra'] or {}).get('volumes', []))
        if figures:
            extra['migration_figures'] = figures
        self.servers.end_migration(server_id, {'host': dest, 'fault': None, 'extra': extra})
        LOG.info('Server %s runs on host %s', server_id, dest)

    def _abort(self, ctxt: Any, server: Server, dest: str, error: Exception) -> None:
        """The guest stays here: the destination drops its copy, this QEMU runs on."""
        server_id = server['id']
        # Sent in full: the destination may run it, so this copy waits for its word.
        sent = self.driver.get_info(server_id).extra.get('qemu_status') == 'postmigrate'
        try:
            self.rpcapi.finish_incoming(ctxt, dest, server_id, False)
        except Exception:
            LOG.exception('Host %s did not drop the incoming copy of server %s', dest,
                          server_id)
            if sent:
                # Cannot tell whether the destination runs it: keep this one paused
                # and the task set; a restart of either service settles it.
                self.servers.note_fault(server_id, 'migration interrupted: %s; the '
                                        'destination did not answer'
                                        % exception.describe(error))
                return
            # It never had the whole guest, so it never ran it: its waiting QEMU is
            # an orphan its next start removes.
        try:
            if self.driver.get_info(server_id).state == 'paused':
                concurrency.execute(self.driver.unpause, server_id)
        except Exception:
            LOG.exception('Could not resume server %s after its migration failed', server_id)
        self.servers.end_migration(server_id, {
            'extra': _without_migration(server['extra']),
            'fault': 'migration failed: %s' % exception.describe(error)})

    def _release_here(self, ctxt: Any, server_id: str) -> None:
        for attachment in db_attachments.attachment_get_all(instance_uuid=server_id):
            if attachment['host'] == self.host:
                try:
                    self.volumes.release(ctxt, attachment)
                except Exception:
                    LOG.warning('Could not release attachment %s of server %s',
                                attachment['id'], server_id, exc_info=True)

    # ---- destination
    def prepare_incoming(self, ctxt: Any, server_id: str, description: dict[str, Any]) -> str:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['task_state'] != ServerTask.MIGRATING or \
                    destination(server) != self.host or server['host'] == self.host:
                raise exception.InvalidState(resource='Server', id=server_id,
                                             state=server['task_state'] or server['status'],
                                             reason='it is not migrating to this host')
            try:
                incoming = virt.IncomingSpec(id=server_id, description=description,
                                             disks=self._connect_disks(ctxt, server),
                                             listen=CONF.compute.migration_listen)
                if server['live_image_id']:
                    # The RAM a clone maps: this host's own live image files, or the
                    # published copy mounted here (checked as for a launch).
                    live_image = db_servers.live_image_get(server['live_image_id'])
                    incoming.memory_path = \
                        self.live_images.launch_artifacts(live_image).memory_path
                return concurrency.execute(  # type: ignore[no-any-return]
                    self.driver.prepare_incoming, incoming)
            except Exception:
                self._drop_incoming(ctxt, server_id)
                raise

    def _connect_disks(self, ctxt: Any, server: Server) -> list[virt.Disk]:
        disks = []
        connector = None
        for attachment in db_attachments.attachment_get_all(instance_uuid=server['id']):
            if attachment['host'] == self.host:
                continue         # one a failed attempt left: dropped before a retry
            if connector is None:
                connector = brick.connector_properties(self.host)
            info = self.volumes.attach_for_migration(ctxt, attachment, self.host, connector)
            disks.append(virt.Disk(volume_id=attachment['volume_id'], connection_info=info,
                                   read_only=attachment['mode'] == 'ro'))
        return disks

    def finish_incoming(self, ctxt: Any, server_id: str,
                        succeeded: bool) -> dict[str, Any] | None:
        with self.locks.get(server_id):
            server = db_servers.server_get(server_id)
            if server['host'] == self.host:
                # Already adopted (a retry after a lost answer): it is ours and runs.
                if not succeeded:
                    raise exception.InvalidState(resource='Server', id=server_id,
                                                 state='running here',
                                                 reason='its migration completed')
                return dataclasses.asdict(self.driver.get_info(server_id))
            if succeeded:
                info = concurrency.execute(self.driver.finish_incoming, server_id)
                return dataclasses.asdict(info)
            self._drop_incoming(ctxt, server_id)
            return None

    def _drop_incoming(self, ctxt: Any, server_id: str) -> None:
        try:
            concurrency.execute(self.driver.destroy, server_id)
        except Exception:
            LOG.warning('Could not stop the incoming QEMU of server %s', server_id,
                        exc_info=True)
        self._release_here(ctxt, server_id)

    # ---- restart
    def recover_interrupted(self, ctxt: Any) -> None:
        """Settle servers a crash left in ``migrating``, on either end, so that one
        QEMU runs the guest and the row names its host."""
        for server in db_servers.server_get_all():
            if server['task_state'] != ServerTask.MIGRATING:
                continue
            dest = destination(server)
            with self.locks.get(server['id']):
                if server['host'] == self.host:
                    self._recover_source(ctxt, server, dest)
                elif dest == self.host:
                    self._recover_destination(ctxt, server)

    def _recover_source(self, ctxt: Any, server: Server, dest: str | None) -> None:
        if self.driver.get_info(server['id']).state == 'stopped':
            # Our QEMU is gone: the guest lives on the destination if anywhere.
            self._adopt_remote(ctxt, server, dest)
            return
        # QEMU went on migrating without us: stop it (unless it is done) first,
        # so what we look at next stays true.
        try:
            self.driver.cancel_outgoing(server['id'])
        except Exception:
            LOG.warning('Could not cancel the migration of server %s', server['id'],
                        exc_info=True)
        info = self.driver.get_info(server['id'])
        if info.extra.get('qemu_status') == 'postmigrate' and dest:
            # Sent in full before the stop: the destination runs it (or can).
            self._finish(ctxt, server, dest, None)
        elif dest:
            self._abort(ctxt, server, dest, RuntimeError(
                'migration interrupted by a restart of the compute service'))
        else:
            self.servers.end_migration(server['id'],
                                       {'extra': _without_migration(server['extra'])})

    def _adopt_remote(self, ctxt: Any, server: Server, dest: str | None) -> None:
        try:
            info = self.rpcapi.finish_incoming(ctxt, dest, server['id'], True) \
                if dest else None
        except Exception as e:
            LOG.exception('Server %s has no QEMU here nor on host %s', server['id'], dest)
            self.servers.fail(server['id'], e)
            return
        self.servers.end_migration(server['id'], {
            'host': dest, 'extra': dict(info or {}, volumes=(
                server['extra'] or {}).get('volumes', []))})
        self._release_here(ctxt, server['id'])

    def _recover_destination(self, ctxt: Any, server: Server) -> None:
        """An incoming QEMU that runs already is the guest (the source may be gone
        before it recorded the move): adopt it. One still waiting is dropped: the
        source's own migration fails and its guest runs on there."""
        info = self.driver.get_info(server['id'])
        if info.state == 'running':
            self.servers.end_migration(server['id'], {
                'host': self.host, 'extra': dict(dataclasses.asdict(info), volumes=(
                    server['extra'] or {}).get('volumes', []))})
            LOG.info('Adopted server %s, which had arrived here', server['id'])
        elif info.state != 'stopped':
            self._drop_incoming(ctxt, server['id'])


def _without_migration(extra: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (extra or {}).items() if k != 'migration'}

