"""Live migration of an attached volume: QEMU mirrors the disk onto another connection.

Why a mirror: the guest keeps writing while its volume moves to another backend.
``blockdev-mirror`` (sync=full) copies every block of the disk's node onto a node
opened on the destination's connection and sends each new guest write to both;
once the copy has caught up (the job is ``ready``), ``job-complete`` swaps the
device's block backend over to the destination node (the pivot). The vCPUs never
stop. Throttling belongs to the block backend, not to the node, so the disk's
QoS limits survive the pivot (they are applied again anyway, from the connection
that now serves the disk).

Node names: a disk's node is ``drive<N>`` until its first live migration; a
mirror target needs a name of its own, so the device then runs on
``drive<N>-m<hex>``, which the layout keeps (``DiskSlot.node_name``) for
detach, extend and a restart. :func:`live_node` reads the running one from
``query-block``.

QEMU's QMP socket serves one session at a time, so the long wait for ``ready``
opens a short session per poll (``connect``) instead of holding one: the
driver's ``get_info`` and other callers get their turn meanwhile::

    qemu_mirror.migrate(lambda: processes.monitor(vm_id), layout, volume_id,
                        base.Disk(volume_id, destination_connection_info), 30.0)

On any failure before the pivot the job is cancelled and the destination node
dropped: the guest stays on its source disk, untouched, and ``DriverError``
says why. A job whose compute service died is cancelled when the service
starts again (``QemuDriver.cancel_volume_mirrors``), or by the next migration of the
volume, whichever comes first. After the pivot nothing fails any more: leftovers of the source
(its node, its secrets) are logged, since the guest already runs on the
destination.
"""

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_qos, qmp
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.volume import qos

LOG = logging.getLogger(__name__)

__all__ = ['cancel_leftovers', 'default_progress', 'job_id',
           'live_node', 'migrate', 'mirror_prefix', 'session']

Connect = Callable[[], contextlib.AbstractContextManager[qmp.Monitor]]
Progress = Callable[[int], None]

#: The slowest copy rate a migration is given time for (bytes/s), beyond a fixed allowance.
MIN_RATE = 4 << 20
BASE_TIMEOUT = 120.0
#: Seconds between two progress reports, at least.
REPORT_INTERVAL = 1.0
_FINISHED = ('concluded', 'null')


def job_id(volume_id: str) -> str:
    """The mirror job of a volume (one at a time per volume)."""
    return 'mirror-' + volume_id


def mirror_prefix(slot: cmdline.DiskSlot) -> str:
    """How the nodes a mirror opens for the disk are named (``drive<N>-m<hex>``)."""
    return 'drive%d-m' % slot.index


def live_node(mon: qmp.Monitor, slot: cmdline.DiskSlot) -> str:
    """The node the disk's device runs on now (``drive<N>``, or a mirror's target)."""
    qdev = '/machine/peripheral/%s/virtio-backend' % slot.device_id
    for block in mon.cmd('query-block'):
        if block.get('qdev') in (qdev, slot.device_id) and block.get('inserted'):
            return str(block['inserted']['node-name'])
    raise exception.DriverError(reason='volume %s has no disk in the VM' % slot.volume_id)


def default_progress(volume_id: str) -> Progress | None:
    """Reports to the volume side (``volume.migration.report_progress``) where it exists.

    Imported late: that module is the volume half of migrations and may be absent.
    A report that fails (the DB away for a moment) is logged: the copy goes on.
    """
    try:
        from gridcentric_storage.volume import migration  # type: ignore[attr-defined]
    except ImportError:
        return None
    report = getattr(migration, 'report_progress', None)
    if report is None:
        return None

    def progress(percent: int) -> None:
        try:
            report(volume_id, percent)
        except Exception:
            LOG.warning('Progress of the migration of volume %s not recorded', volume_id,
                        exc_info=True)
    return progress


@contextlib.contextmanager
def session(connect: Connect) -> Iterator[qmp.Monitor]:
    """A short QMP session (``qmp.connect`` retries a greeting QEMU garbles when
    sessions come and go several times a second, as they do here)."""
    with connect() as mon:
        yield mon


def _job(mon: qmp.Monitor, jid: str) -> dict[str, Any] | None:
    return next((j for j in mon.cmd('query-jobs') if j.get('id') == jid), None)


def _node_names(mon: qmp.Monitor) -> set[str]:
    return {n['node-name'] for n in mon.cmd('query-named-block-nodes', flat=True)}


def _del_node(mon: qmp.Monitor, node: str, connection_info: dict[str, Any],
              timeout: float) -> None:
    """``blockdev-del`` (retried while a finished job still lets go of it) and its secrets."""
    deadline = time.monotonic() + timeout
    while node in _node_names(mon):
        try:
            mon.cmd('blockdev-del', **{'node-name': node})
        except exception.QmpError as e:
            if 'in use' not in e.message or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    _, secrets = cmdline.blockdev_options(connection_info, node)
    for secret_id in secrets:
        with contextlib.suppress(exception.QmpError):
            mon.cmd('object-del', id=secret_id)


def _wait_finished(mon: qmp.Monitor, jid: str, timeout: float) -> dict[str, Any] | None:
    """Poll until the job concluded; its last state (None once it is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        job = _job(mon, jid)
        if job is None or job['status'] in _FINISHED:
            return job
        if time.monotonic() > deadline:
            raise exception.DriverError(reason='mirror job %s still %s after %.0f s'
                                        % (jid, job['status'], timeout))
        time.sleep(0.02)


def cancel(mon: qmp.Monitor, jid: str, target: str, connection_info: dict[str, Any],
           timeout: float) -> None:
    """Stop the mirror without a pivot and drop its target node."""
    job = _job(mon, jid)
    if job is not None and job['status'] not in _FINISHED:
        with contextlib.suppress(exception.QmpError):   # it may have just ended
            mon.cmd('block-job-cancel', device=jid, force=True)
    if _wait_finished(mon, jid, timeout) is not None:
        mon.cmd('job-dismiss', id=jid)
    _del_node(mon, target, connection_info, timeout)


def _drop_leftover(mon: qmp.Monitor, slot: cmdline.DiskSlot, jid: str, current: str,
                   timeout: float) -> bool:
    """Cancel a job and drop the target nodes (and their secrets) an interrupted
    migration left (QEMU outlives the service); whether there was any."""
    found = False
    job = _job(mon, jid)
    if job is not None:
        found = True
        LOG.warning('Cancelling mirror job %s (%s) left by an interrupted migration', jid,
                    job['status'])
        if job['status'] not in _FINISHED:
            with contextlib.suppress(exception.QmpError):
                mon.cmd('block-job-cancel', device=jid, force=True)
        if _wait_finished(mon, jid, timeout) is not None:
            mon.cmd('job-dismiss', id=jid)
    prefix = mirror_prefix(slot)
    for node in _node_names(mon):
        if node.startswith(prefix) and node != current:
            found = True
            LOG.warning('Removing node %s left by an interrupted migration', node)
            with contextlib.suppress(exception.QmpError):
                mon.cmd('blockdev-del', **{'node-name': node})
            with contextlib.suppress(exception.QmpError):   # cmdline.blockdev_options' id
                mon.cmd('object-del', id='sec-' + node)
    return found


def cancel_leftovers(connect: Connect, layout: cmdline.Layout, timeout: float) -> list[str]:
    """Cancel, in a running guest, the mirrors a stop of the compute service cut
    short; the volumes they were moving.

    Left alone, such a job copies on (or waits ``ready``) until the next
    migration of the volume or a restart of the VM, holding the destination
    open, so the volume side's removal of that destination fails (RBD
    watchers, an LVM volume in use). The guest stays on its source, which the
    volume side keeps: it marks the migration ``error``.
    """
    cancelled = []
    with session(connect) as mon:
        for slot in layout.disks:
            try:
                current = live_node(mon, slot)
            except exception.DriverError:       # detached meanwhile: nothing to keep
                current = ''
            if _drop_leftover(mon, slot, job_id(slot.volume_id), current, timeout):
                cancelled.append(slot.volume_id)
    return cancelled


def _start(mon: qmp.Monitor, slot: cmdline.DiskSlot, source: str, target: str,
           connection_info: dict[str, Any], jid: str) -> None:
    # writable even for a read-only disk: the mirror writes it (the device stays read-only)
    options, secrets = cmdline.blockdev_options(connection_info, target, False)
    for secret_id, value in secrets.items():
        mon.cmd('object-add', **{'qom-type': 'secret', 'id': secret_id, 'data': value})
    mon.cmd('blockdev-add', **options)
    # auto-dismiss off: a failed job stays listed with its error until dismissed
    mon.cmd('blockdev-mirror', **{'job-id': jid, 'device': source, 'target': target,
                                  'sync': 'full', 'auto-dismiss': False})


def _wait_ready(connect: Connect, jid: str, timeout: float,
                progress: Progress | None) -> None:
    """Poll the job (a short QMP session each time) until it is ``ready``."""
    started = time.monotonic()
    reported, last, poll = -1, 0.0, 0.05
    while True:
        with session(connect) as mon:
            job = _job(mon, jid)
        if job is None:
            raise exception.DriverError(reason='mirror job %s vanished' % jid)
        if job.get('error'):
            raise exception.DriverError(reason='QEMU mirror failed: %s' % job['error'])
        if job['status'] in _FINISHED or job['status'] == 'aborting':
            raise exception.DriverError(reason='mirror job %s ended (%s) before it was '
                                        'ready' % (jid, job['status']))
        total = int(job.get('total-progress') or 0)
        ready = job['status'] == 'ready'
        percent = 100 if ready else int(100 * int(job.get('current-progress') or 0)
                                       / total) if total else 0
        now = time.monotonic()
        if progress is not None and percent != reported and (
                ready or now - last >= REPORT_INTERVAL):
            progress(percent)
            reported, last = percent, now
        if ready:
            return
        limit = timeout + BASE_TIMEOUT + total / MIN_RATE
        if now - started > limit:
            raise exception.DriverError(reason='mirror job %s was not ready after %.0f s '
                                        '(%d%% copied)' % (jid, limit, percent))
        time.sleep(poll)
        poll = min(poll * 1.5, 0.25)


def _pivot(mon: qmp.Monitor, jid: str, timeout: float) -> None:
    mon.cmd('job-complete', id=jid)
    job = _wait_finished(mon, jid, timeout)
    if job is not None:
        mon.cmd('job-dismiss', id=jid)
        if job.get('error'):
            raise exception.DriverError(reason='QEMU could not switch to the destination: '
                                        '%s' % job['error'])


def _new_connection(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The destination's connection info, keeping the disk's front-end limits when
    the destination brought none (they belong to the volume, not to its backend)."""
    if qos.from_connection(new):
        return dict(new)
    return qos.connection_with(new, qos.from_connection(old))


def migrate(connect: Connect, layout: cmdline.Layout, volume_id: str, disk: base.Disk,
            timeout: float, progress: Progress | None = None) -> None:
    """Move the guest's disk of ``volume_id`` onto ``disk.connection_info`` while it
    runs; on success ``layout`` names the new connection (the caller saves it).

    ``timeout`` bounds each QMP step; the copy itself gets :data:`BASE_TIMEOUT` plus
    the disk's size at :data:`MIN_RATE`. ``progress`` (default: the volume side's
    report, :func:`default_progress`) gets the percentage copied, at most once per
    :data:`REPORT_INTERVAL`; an exception from it cancels the mirror.
    """
    slot = layout.disk_of(volume_id)
    if slot is None:
        raise exception.DriverError(reason='volume %s is not attached to %s'
                                    % (volume_id, layout.id))
    if progress is None:
        progress = default_progress(volume_id)
    jid = job_id(volume_id)
    target = mirror_prefix(slot) + os.urandom(4).hex()
    new_info = _new_connection(slot.connection_info, disk.connection_info)
    with session(connect) as mon:
        _drop_leftover(mon, slot, jid, live_node(mon, slot), timeout)
        source = live_node(mon, slot)           # once no leftover job filters it
        try:
            _start(mon, slot, source, target, new_info, jid)
        except Exception as e:
            _undo(mon, jid, target, new_info, timeout)
            raise _driver_error(volume_id, e)
    try:
        _wait_ready(connect, jid, timeout, progress)
        with session(connect) as mon:
            _pivot(mon, jid, timeout)
    except BaseException as e:
        with session(connect) as mon:
            _undo(mon, jid, target, new_info, timeout)
        if not isinstance(e, Exception):
            raise
        raise _driver_error(volume_id, e)
    old_info = slot.connection_info
    slot.connection_info, slot.node_name = new_info, target
    with session(connect) as mon:
        try:
            _del_node(mon, source, old_info, timeout)
        except exception.QmpError as e:
            LOG.warning('Volume %s moved, but QEMU still holds its source node %s: %s',
                        volume_id, source, e.message)
        try:
            qemu_qos.apply(mon, slot)
        except exception.QmpError as e:
            LOG.warning('Volume %s moved, but its QoS limits were not applied again: %s',
                        volume_id, e.message)


def _undo(mon: qmp.Monitor, jid: str, target: str, connection_info: dict[str, Any],
          timeout: float) -> None:
    try:
        cancel(mon, jid, target, connection_info, timeout)
    except Exception:
        LOG.exception('Could not clean up the mirror %s (node %s)', jid, target)


def _driver_error(volume_id: str, error: Exception) -> exception.DriverError:
    return exception.DriverError(reason='live migration of volume %s failed; the guest '
                                 'stays on its source disk: %s'
                                 % (volume_id, exception.describe(error)))
