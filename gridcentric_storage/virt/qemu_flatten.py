"""Bless a clone: flatten its private copy-on-write RAM into a new live image.

A clone maps its live image's RAM ``share=off``: the pages it never wrote are
the parent's file, the ones it wrote are anonymous copies in its own process.
So the new live image needs a RAM file holding both, and a device state saved
with ``x-ignore-shared`` (which only skips RAM mapped ``share=on``, so the
clone itself cannot give one). How (module of its own: this is the only QEMU
sequence with a second QEMU in it)::

    clone  --migrate, RAM included, unthrottled-->  <work>/stream
    clone resumes (the guest's pause ends here)
    helper QEMU -incoming, RAM share=on at <work>/ram  <--  <work>/stream
    helper  --migrate, x-ignore-shared-->  <work>/state     (then it quits)

Every page the helper receives lands in the new RAM file (zero pages stay
holes: QEMU does not write a page that is zero already), so the result is a
live image like any other: it does not name or need the parent's files, and
discarding the parent later is safe. The helper never runs guest code (it
stays stopped, ``-S``) and never opens the clone's disks: each disk is a
``null-co`` node of the same size under the same node name (the devices'
state is what migrates, not the disks' data; opening the real images would
fight the running clone for their locks, and QEMU 7.2 aborts migrating out a
VM whose images stayed inactive). It gets the clone's VM generation id, so
loading the state writes no new id into the guest's memory.

Why this and not the other ways to read a clone's memory:

* ``/proc/<pid>/mem`` or ``process_vm_readv`` at the RAM block's host address
  need ptrace rights over QEMU (Yama's ``ptrace_scope`` and containers deny
  them; after a service restart QEMU is no child of ours), QEMU does not
  publish the host address, and the device state problem above remains.
* ``dump-guest-memory`` writes guest-physical ranges (holes, the PCI window
  above 3.5 GiB) that must be mapped back to RAM block offsets, writes every
  page while the VM is paused, and again leaves the device state problem.
* Only the dirty pages over a reflink of the parent's RAM: QEMU's dirty
  bitmaps track disks; for RAM it tracks writes since a migration started,
  not since the clone mapped the file, so it cannot tell which pages are the
  clone's. The stream carries every non-zero page instead. A running clone
  keeps running while they are written (a live migration: QEMU stops it for
  the pages it wrote meanwhile, and the state); one its caller paused (to
  snapshot its disks at the same instant) is paused while all are written,
  at disk or page-cache speed. The helper's load comes after either runs again.
"""

import contextlib
import json
import os
import time
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt import qemu_process, qmp

__all__ = ['HELPER', 'kill_helper', 'save_clone_state']

#: The helper QEMU's directory under a blessing's work directory (short: its
#: QMP socket path must fit a unix socket address).
HELPER = 'h'
#: Bytes/s: a paused clone's stream goes to a local file; QEMU's default cap
#: (128 MiB/s) would only make the guest's pause longer.
UNTHROTTLED = 1 << 40
#: Seconds a running clone's migration may go on live before the clone is paused
#: for the rest (it converges in one pass unless the guest writes fast).
LIVE_SECONDS = 5.0


def _capabilities(mon: qmp.Monitor) -> dict[str, bool]:
    return {c['capability']: c['state'] for c in mon.cmd('query-migrate-capabilities')}


def _disk_sizes(mon: qmp.Monitor) -> dict[str, int]:
    """Virtual size of each of the clone's top block nodes, by node name."""
    return {node['node-name']: int(node['image']['virtual-size'])
            for node in mon.cmd('query-named-block-nodes', flat=True)
            if node.get('node-name')}


def _stand_in_disks(argv: list[str], sizes: dict[str, int]) -> list[str]:
    """``argv`` with each ``-blockdev`` replaced by a ``null-co`` node of the same
    name, size and read-only flag (the helper must not open the clone's images)."""
    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg != '-blockdev':
            continue
        options = json.loads(out[i + 1])
        node = options['node-name']
        out[i + 1] = json.dumps({'driver': 'null-co', 'node-name': node,
                                 'read-only': options.get('read-only', False),
                                 'size': sizes.get(node, 1 << 30), 'read-zeroes': True},
                                sort_keys=True)
    return out


def save_clone_state(mon: qmp.Monitor, layout: cmdline.Layout, work: str, *,
                     qemu_binary: str, timeout: float, start_timeout: float,
                     stop_timeout: float, qmp_timeout: float,
                     resume_after_capture: bool = False) -> dict[str, Any]:
    """Write ``work/ram`` and ``work/state`` of the clone behind ``mon``; its timing.

    A running clone is paused only for the end of its (live) stream; one its
    caller paused stays so while the stream is written, then is left paused,
    or running with ``resume_after_capture`` (the helper's seconds are then no
    pause either).
    """
    stream = os.path.join(work, 'stream')
    guid = mon.cmd('query-vm-generation-id')['guid']
    sizes = _disk_sizes(mon)
    capabilities = _capabilities(mon)
    bandwidth = mon.cmd('query-migrate-parameters').get('max-bandwidth')
    start = time.monotonic()
    was_running = mon.cmd('query-status')['status'] == 'running'
    resume = was_running or resume_after_capture
    try:
        mon.cmd('migrate-set-capabilities',
                capabilities=[{'capability': 'x-ignore-shared', 'state': False}])
        mon.cmd('migrate-set-parameters', **{'max-bandwidth': UNTHROTTLED})
        migrate = time.monotonic()
        mon.migrate_file('migrate', stream)
        downtime = _finish(mon, was_running, timeout)
        saved = time.monotonic()
    finally:
        if resume:
            mon.cmd('cont')
        resumed = time.monotonic()
        with contextlib.suppress(exception.QmpError):   # what the clone's next migration sees
            mon.cmd('migrate-set-capabilities', capabilities=[
                {'capability': 'x-ignore-shared',
                 'state': capabilities.get('x-ignore-shared', False)}])
            if bandwidth is not None:
                mon.cmd('migrate-set-parameters', **{'max-bandwidth': bandwidth})
    paused = downtime + (resumed - saved) if was_running else resumed - migrate
    stream_size = os.stat(stream).st_size
    try:
        _load_and_save(layout, work, stream, guid, sizes, qemu_binary=qemu_binary,
                       timeout=timeout, start_timeout=start_timeout,
                       stop_timeout=stop_timeout, qmp_timeout=qmp_timeout)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(stream)
    done = time.monotonic()
    return {'ram_copy': 'flatten', 'state_seconds': round(saved - migrate, 4),
            'ram_copy_seconds': round(done - resumed, 4),
            'paused_seconds': round(paused, 4),
            'bless_seconds': round(done - start, 4),
            'state_size': os.stat(os.path.join(work, 'state')).st_size,
            'stream_size': stream_size, 'resumed': resume}


def _finish(mon: qmp.Monitor, live: bool, timeout: float) -> float:
    """Wait for the clone's migration to end; the seconds QEMU kept it stopped.

    ``live``: it runs while its pages go out and QEMU stops it for the last
    ones only; one that has not converged within :data:`LIVE_SECONDS` is
    paused, so the rest goes at once.
    """
    deadline = time.monotonic() + (LIVE_SECONDS if live else timeout)
    stopped_at = None if live else time.monotonic()
    while True:
        info = mon.cmd('query-migrate')
        status = info.get('status')
        if status == 'completed':
            if stopped_at is not None:
                return time.monotonic() - stopped_at if live else 0.0
            return float(info.get('downtime', 0)) / 1000
        if status in ('failed', 'cancelled'):
            raise exception.QmpError(reason='migration %s: %s'
                                     % (status, info.get('error-desc', 'no details')))
        if time.monotonic() > deadline:
            if stopped_at is not None:
                raise exception.QmpError(reason='migration still %s after %.0f s'
                                         % (status, timeout))
            mon.cmd('stop')
            stopped_at = time.monotonic()
            deadline = stopped_at + timeout
        time.sleep(0.002)


def _load_and_save(layout: cmdline.Layout, work: str, stream: str, guid: str,
                   sizes: dict[str, int], **options: Any) -> None:
    """The helper QEMU: load ``stream`` into ``work/ram`` (share=on), save the state."""
    timeout = options.pop('timeout')
    qemu_binary = options.pop('qemu_binary')
    procs = qemu_process.Processes(work, options['start_timeout'], options['stop_timeout'],
                                   options['qmp_timeout'])
    directory = procs.new_dir(HELPER)
    helper = cmdline.Layout.from_json(layout.to_json())
    helper.id = helper.name = HELPER
    argv = _stand_in_disks(cmdline.build_argv(
        qemu_binary, helper, ram_path=os.path.join(work, 'ram'), share=True,
        qmp_path=os.path.join(directory, 'qmp.sock'),
        console_path=os.path.join(directory, 'console.log'), vmgenid=guid, incoming=True),
        sizes)
    try:
        with procs.start(HELPER, argv) as mon:
            mon.migrate_file('migrate-incoming', stream)
            qmp.wait_for_migration(mon, timeout)
            mon.cmd('migrate-set-capabilities', capabilities=live.IGNORE_SHARED)
            mon.migrate_file('migrate', os.path.join(work, 'state'))
            qmp.wait_for_migration(mon, timeout)
    except exception.DriverError as e:
        tail = procs.log_tail(HELPER)
        if tail and tail not in e.message:
            raise exception.DriverError(reason='flattening the clone failed: %s (helper '
                                        'QEMU: %s)' % (e.message, tail)) from e
        raise
    finally:
        procs.kill(HELPER)
        with contextlib.suppress(OSError):
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)


def kill_helper(work: str) -> None:
    """Stop a helper QEMU a stopped service left in ``work`` (found by its pid file)."""
    if os.path.isdir(os.path.join(work, HELPER)):
        qemu_process.Processes(work, 5.0, 5.0, 5.0).kill(HELPER)
