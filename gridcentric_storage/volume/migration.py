"""Moving a volume to another backend, the way Cinder's ``migrate_volume`` does.

The API side (:func:`check`, :func:`start`) refuses what cannot move, moves
the volume to ``migrating`` (``migration_status`` ``starting``) and casts
``migrate_volume`` to the owner of its current backend, where
:class:`Migrator` runs it:

1. Driver-assisted: the source driver's ``migrate_volume`` moves the data
   itself when it can (same Ceph cluster, same StorPool cluster); the row
   then points at the destination. Not for attached volumes, nor with
   ``force_host_copy``.
2. Host-assisted otherwise: a temporary destination row (``migration_status``
   ``target:<volume id>``, never shown to members) is created on the
   destination's owner; this host reads the source through os-brick (the
   stream server's opener) and writes the destination through its owner's
   data server, the bytes moving in the kernel (``transfer_io``), so the
   destination may be on any host; ``migration_progress`` follows at most
   once a second.
3. An attached volume of one of this service's servers: the destination is
   exported to the server's host, whose hypervisor mirrors the running
   guest's disk onto it and pivots (compute RPC ``migrate_server_volume``);
   the attachment then carries the new connection.
4. Completion, like Cinder's ``migrate_volume_completion``: one transaction
   gives the volume the destination's backend, host, location and backend
   name (``name_id``: the backend names the data after the temporary row)
   and gives the temporary row the source's, which is then deleted like any
   volume, taking the old data with it.

The source is never written before the switch: any failure, or a restart
(:meth:`Migrator.settle_interrupted`), removes the destination and puts the
volume back to ``available``/``in-use`` with ``migration_status`` ``error``.
A restart between a guest's pivot and the switch is the one case this does
not cover: the guest then runs on a destination the database does not know.
"""

import contextlib
import io
import logging
import socket
import threading
import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception, rpc, states
from gridcentric_storage.common import context as gc_context
from gridcentric_storage.common.states import MigrationStatus as M
from gridcentric_storage.common.states import VolumeStatus as V
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.db.records import Attachment, Backend, Volume
from gridcentric_storage.volume import rpcapi, status, transfer_io
from gridcentric_storage.volume.objects import VolumeRef

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GiB = 1 << 30
#: Seconds between two writes of ``migration_progress``.
PROGRESS_INTERVAL = 1.0
#: Seconds the destination's data server may wait for bytes (as a stream does).
COPY_TIMEOUT = 300.0
_MODEL_KEYS = ('provider_location', 'provider_auth')


def is_target(volume: Volume) -> bool:
    """A migration's temporary destination row (internal: members never see it)."""
    return (volume.get('migration_status') or '').startswith(states.MIGRATION_TARGET_PREFIX)


def report_progress(volume_id: str, percent: int) -> None:
    """Record how far a migration of ``volume_id`` is (0-100); compute hosts
    mirroring a guest's disk call it too. Ignored once the volume has settled."""
    percent = max(0, min(100, int(percent)))
    with contextlib.suppress(exception.NotFound, exception.InvalidState):
        db.volume_update(volume_id, {'migration_progress': percent},
                         expected_status=(V.MIGRATING,))


def live_attachments(volume_id: str) -> list[Attachment]:
    """Attachments that hold the volume (as ``status.settle_volume`` counts them)."""
    return [a for a in db_attachments.attachment_get_all(volume_id=volume_id)
            if a['status'] in states.ATTACHMENT_LIVE or a['connection_info'] is not None]


# ----------------------------------------------------------------- API side

def find_backend(name_or_id: str) -> Backend:
    try:
        return db.backend_get(name_or_id)
    except exception.BackendNotFound:
        found = db.backend_get_all(filters={'name': name_or_id})
        if not found:
            raise
        return found[0]


def can_mirror(host: str | None) -> bool:
    """Whether ``host``'s compute service can move a running guest's disk: it is
    up and its service advertises ``volume_mirror`` (a virt driver that can;
    hosts started before that capability existed cannot)."""
    if host is None:
        return False
    for service in db.service_get_all(topic=CONF.compute.topic, up_only=True):
        if service['host'] == host:
            caps = service['capabilities'] or {}
            return bool(caps.get('volume_mirror'))
    return False


def check(volume: Volume, dest: Backend) -> None:
    """Refuse (4xx) a migration that cannot run; capacity is the scheduler's."""
    vid = volume['id']
    if volume['status'] not in (V.AVAILABLE, V.IN_USE):
        raise exception.InvalidState(resource='Volume', id=vid, state=volume['status'],
                                     reason='migration needs it to be available or in-use')
    if is_target(volume):
        raise exception.Invalid(reason='volume %s is the destination of a migration' % vid)
    if dest['id'] == volume['backend_id']:
        raise exception.Invalid(reason='volume %s is on backend %s already'
                                % (vid, dest['name']))
    snapshots = db_snapshots.snapshot_get_all(volume_id=vid)
    if snapshots:
        raise exception.Invalid(reason='volume %s has %d snapshot(s); snapshots do not '
                                'migrate, delete them first' % (vid, len(snapshots)))
    attachments = live_attachments(vid)
    if len(attachments) > 1:
        raise exception.Invalid(reason='volume %s is attached %d times; a multi-attached '
                                'volume cannot migrate' % (vid, len(attachments)))
    for attachment in attachments:
        server_id = attachment['instance_uuid']
        if attachment['status'] != states.AttachmentStatus.ATTACHED:
            raise exception.InvalidState(resource='Attachment', id=attachment['id'],
                                         state=attachment['status'],
                                         reason='wait until it settles')
        if not server_id:
            raise exception.Invalid(reason='volume %s is connected to a host, not to a '
                                    'server; detach it first' % vid)
        try:
            server = db_servers.server_get(server_id)
        except exception.ServerNotFound:
            raise exception.Invalid(reason='volume %s is attached to instance %s, which '
                                    'this service does not run; detach it first'
                                    % (vid, server_id)) from None
        if not can_mirror(server['host']):
            raise exception.Invalid(reason='the hypervisor of server %s cannot move an '
                                    'attached disk while the guest runs; detach the '
                                    'volume first' % server_id)


def start(volume_rpcapi: rpcapi.VolumeAPI, ctxt: Any, volume: Volume, dest: Backend,
          force_host_copy: bool) -> Volume:
    """Mark the volume ``migrating`` and send the work to its owner host."""
    previous = volume['status']
    moved = status.move_volume(volume['id'], V.MIGRATING, previous, status_reason=None,
                               migration_status=M.STARTING, migration_progress=0)
    try:
        volume_rpcapi.migrate_volume(ctxt, volume['host'], volume['id'], dest['id'],
                                     force_host_copy=force_host_copy)
    except Exception:
        status.move_volume(volume['id'], V(previous), V.MIGRATING, migration_status=M.ERROR)
        raise
    return moved


# ----------------------------------------------------------------- owner host

class Migrator:
    """The owner host's half; ``manager`` is its VolumeManager (pool, locks,
    the stream server whose opener reads the source, compute RPC)."""

    volume_rpcapi = rpc.LazyClient(rpcapi.VolumeAPI)

    def __init__(self, manager: Any) -> None:
        self.manager = manager

    def migrate(self, ctxt: Any, volume_id: str, backend_id: str,
                force_host_copy: bool) -> None:
        with self.manager.locks.get(volume_id):
            volume = db.volume_get(volume_id)
            if volume['status'] != V.MIGRATING:
                LOG.info('Volume %s is %s, not migrating it', volume_id, volume['status'])
                return
            attachments = live_attachments(volume_id)
            back = V.IN_USE if attachments else V.AVAILABLE
            try:
                dest = db.backend_get(backend_id)
                volume = db.volume_update(volume_id, {'migration_status': M.MIGRATING})
                if not force_host_copy and not attachments and self._driver_moved(
                        ctxt, volume, dest, back):
                    return
                target = self._create_target(ctxt, volume, dest)
                if attachments:
                    self._mirror(ctxt, volume, target, attachments[0])
                else:
                    self._copy(ctxt, volume, target)
                self._complete(ctxt, volume_id, target['id'], back)
            except Exception as e:
                LOG.exception('Migrating volume %s to backend %s failed', volume_id,
                              backend_id)
                # (a destination whose creation failed is no ``target`` yet; after
                # the switch the temporary row holds the old data: deleting it is
                # what was left to do)
                for row in db.volume_migration_targets(volume_id):
                    self._discard(ctxt, row['id'])
                if db.volume_get(volume_id)['status'] == V.MIGRATING:
                    status.move_volume(volume_id, back, V.MIGRATING,
                                       migration_status=M.ERROR,
                                       status_reason='migration failed: %s'
                                       % exception.describe(e))

    def _driver_moved(self, ctxt: Any, volume: Volume, dest: Backend, back: V) -> bool:
        driver = self.manager.pool.get(volume['backend_id'])
        host = {'host': dest['host'], 'backend_id': dest['id'], 'backend_name': dest['name'],
                'driver': dest['driver'], 'options': dest['options'],
                'capabilities': dest['capabilities']}
        moved, update = concurrency.execute(driver.migrate_volume, ctxt, VolumeRef(volume),
                                            host)
        if not moved:
            return False
        values = {k: v for k, v in (update or {}).items() if k in _MODEL_KEYS}
        status.move_volume(volume['id'], back, V.MIGRATING, backend_id=dest['id'],
                           host=dest['host'], migration_status=M.SUCCESS,
                           migration_progress=100, status_reason=None, **values)
        LOG.info('Backend %s moved volume %s to backend %s itself', volume['backend_id'],
                 volume['id'], dest['id'])
        self.volume_rpcapi.apply_qos(ctxt, dest['host'], volume['id'])
        return True

    def _create_target(self, ctxt: Any, volume: Volume, dest: Backend) -> Volume:
        target = db.volume_create({
            'id': str(uuid.uuid4()), 'name': volume['name'],
            'project_id': volume['project_id'], 'user_id': volume['user_id'],
            'size': volume['size'], 'status': V.CREATING, 'backend_id': dest['id'],
            'host': dest['host'], 'tags': volume['tags'],
            'multiattach': volume['multiattach'],
            'migration_status': states.migration_target(volume['id'])})
        self.volume_rpcapi.create_volume_and_wait(ctxt, dest['host'], target['id'])
        target = db.volume_get(target['id'])
        if target['status'] != V.AVAILABLE:
            raise exception.DriverError(reason='the destination volume on backend %s is '
                                        '%s: %s' % (dest['name'], target['status'],
                                                    target['status_reason']))
        return target

    def _copy(self, ctxt: Any, volume: Volume, target: Volume) -> None:
        """Source (read here through os-brick) -> destination's data server."""
        size = volume['size'] * GiB
        prepared = self.volume_rpcapi.prepare_transfer(ctxt, target['host'], target['id'],
                                                       'write')
        # The stream server's opener: the same os-brick connection and views
        # (files, qcow2 chains, librbd) as a download.
        with self.manager.transfers.opened(volume['id'], 'rb') as view:
            here, there = socket.socketpair()
            stop = threading.Event()
            reporter = concurrency.spawn(_report_until, stop, volume['id'], view.progress,
                                         size)
            reader = concurrency.spawn(_send_and_close, view, here, size)
            try:
                code, text = transfer_io.upload(prepared['url'], size, there,
                                                io.BufferedReader(io.BytesIO()),
                                                timeout=COPY_TIMEOUT)
            finally:
                there.close()
                stop.set()
                reporter.result()
            reader.result()
        if code != 200:
            raise exception.DriverError(reason='writing the destination failed: %s'
                                        % text.strip())

    def _mirror(self, ctxt: Any, volume: Volume, target: Volume,
                attachment: Attachment) -> None:
        """The server's host copies the running guest's disk onto the destination."""
        connector = attachment['connector'] or {}
        info = self.volume_rpcapi.initialize_connection(ctxt, target['host'], target['id'],
                                                        connector)
        try:
            self.manager.compute_rpcapi.migrate_server_volume(
                ctxt, attachment['host'], attachment['instance_uuid'], attachment['id'], info,
                size_gb=volume['size'])
        except Exception:
            with contextlib.suppress(Exception):
                self.volume_rpcapi.terminate_connection(ctxt, target['host'], target['id'],
                                                        connector, attachment['id'])
            raise
        # The guest runs on the destination now: the source's export ends.
        driver = self.manager.pool.get(volume['backend_id'])
        ref = VolumeRef(volume)
        try:
            driver.terminate_connection(ref, connector)
            driver.remove_export(ctxt, ref)
        except Exception:
            LOG.warning('Could not end the export of the source of volume %s', volume['id'],
                        exc_info=True)
        db_attachments.attachment_update(attachment['id'], {'connection_info': info})

    def _complete(self, ctxt: Any, volume_id: str, target_id: str, back: V) -> None:
        """Swap the two rows' places in one transaction, then delete the old data."""
        report_progress(volume_id, 100)
        volume = db.volume_update(volume_id, {'migration_status': M.COMPLETING})
        target = db.volume_get(target_id)
        states.VOLUME.check(volume_id, V.MIGRATING, back)
        states.VOLUME.check(target_id, target['status'], V.DELETING)
        db.volume_migration_swap(
            volume_id, {'status': back, 'backend_id': target['backend_id'],
                        'host': target['host'],
                        'provider_location': target['provider_location'],
                        'provider_auth': target['provider_auth'],
                        'name_id': target['name_id'] or target_id,
                        'migration_status': M.SUCCESS, 'status_reason': None},
            V.MIGRATING, target_id,
            {'status': V.DELETING, 'backend_id': volume['backend_id'],
             'host': volume['host'], 'provider_location': volume['provider_location'],
             'provider_auth': volume['provider_auth'],
             'name_id': volume['name_id'] or volume_id})
        LOG.info('Volume %s now on backend %s; deleting its old data', volume_id,
                 target['backend_id'])
        self.volume_rpcapi.delete_volume(ctxt, volume['host'], target_id)
        self.volume_rpcapi.apply_qos(ctxt, target['host'], volume_id)

    def _discard(self, ctxt: Any, target_id: str) -> None:
        """Delete a destination that will not be used (its owner does)."""
        try:
            target = db.volume_get(target_id)
            if target['status'] != V.DELETING:
                status.move_volume(target_id, V.DELETING,
                                   (V.AVAILABLE, V.ERROR, V.ERROR_DELETING, V.IN_USE),
                                   status_reason=None)
            self.volume_rpcapi.delete_volume(ctxt, target['host'], target_id)
        except exception.VolumeNotFound:
            return
        except Exception:
            LOG.warning('Could not delete the destination %s of a migration', target_id,
                        exc_info=True)

    def settle_interrupted(self) -> None:
        """At start-up: a migration a stop cut short left the source untouched;
        its destination goes and the volume is usable again."""
        host = self.manager.host
        ctxt = gc_context.get_admin_context()
        for volume in db.volume_get_all_by_host(host, (V.MIGRATING,)):
            for target in db.volume_migration_targets(volume['id']):
                self._discard(ctxt, target['id'])
            back = V.IN_USE if live_attachments(volume['id']) else V.AVAILABLE
            LOG.info('Volume %s was left migrating; back to %s', volume['id'], back)
            status.move_volume(volume['id'], back, V.MIGRATING, migration_status=M.ERROR,
                               status_reason='migration interrupted by a restart of %s'
                               % host)
        # Destinations here whose migration ended without them (their source
        # host restarted, or the delete did not reach this host).
        for target in db.volume_get_all_by_host(host, (V.AVAILABLE, V.ERROR)):
            if not is_target(target):
                continue
            source_id = (target['migration_status'] or '')[len(states.MIGRATION_TARGET_PREFIX):]
            with contextlib.suppress(exception.VolumeNotFound):
                if db.volume_get(source_id)['status'] == V.MIGRATING:
                    continue
            self._discard(ctxt, target['id'])


def _send_and_close(view: Any, sock: socket.socket, size: int) -> None:
    try:
        view.read_to(sock, size)
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        sock.close()


def _report_until(stop: threading.Event, volume_id: str, progress: transfer_io.Progress,
                  size: int) -> None:
    last = -1
    while not stop.wait(PROGRESS_INTERVAL):
        percent = min(99, progress.done * 100 // max(size, 1))
        if percent != last:
            report_progress(volume_id, percent)
            last = percent
