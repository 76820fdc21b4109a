"""The QEMU driver's side of the warm pool: a slot's process started, claimed, killed.

``qemu_pool.py`` keeps the books (which slots exist and for which live
image); this module does what those books call for with real processes, and
does the claim in as few steps as QEMU 7.2 allows, because the claim is all
a warm launch costs:

* a slot's QMP session opened when its QEMU started stays open until the
  claim (no connect and capabilities negotiation on the launch path);
* the claim sends its QMP commands in one batch without waiting for each
  answer: the disks' nodes, ``x-exit-preconfig`` (QEMU builds the machine,
  reading the clone's guest files), the NIC, the migration capabilities, the
  device state's file descriptor (``getfd``: no ``exec:cat`` shell and
  ``cat`` process) and ``migrate-incoming``; QEMU runs them in order;
* while QEMU loads the state the directory is renamed and the layout
  written, then the ``MIGRATION`` event (capability ``events``) says the
  load completed, instead of ``query-migrate`` polled at intervals; then
  ``cont``.

By default the machine is built at the claim: QEMU 7.2 reads ``-fw_cfg``
files only then, and a clone's guest reads its own identity there after the
vmgenid change exactly as a cold clone's does.

*Restored ahead* (``restore_ahead``, for live images with the identity port
and no disks): the slot also builds the machine, adds the NIC and loads the
state when it starts, and waits paused. The claim then only renames the
directory, sends the clone its identity over the identity port
(``qemu_identity.py``) and ``cont``: no QEMU work is left on the launch
path. Disks stay on the claim path because their nodes are the clone's own
copy-on-write volumes, which exist only once the clone does.
"""

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import Any

from qemu.qmp import EventListener, ExecuteError, QMPError

from gridcentric_storage.common import exception
from gridcentric_storage.virt import (
    base,
    qemu_identity,
    qemu_pool,
    qemu_process,
    qemu_qos,
    qmp,
)
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qemu_live as live

LOG = logging.getLogger(__name__)

__all__ = ['Claimed', 'PoolSlots']

#: The name the state file's descriptor gets in QEMU (``getfd``).
STATE_FD = 'gc-state'
#: x-ignore-shared as for a cold clone; events so the load's end is announced.
CAPABILITIES = live.IGNORE_SHARED + [{'capability': 'events', 'state': True}]


class Claimed:
    """A claimed slot now running as the clone; monotonic times of its steps."""

    def __init__(self, slot_id: str, built: float, loaded: float, ahead: bool) -> None:
        self.slot_id = slot_id
        self.built = built
        self.loaded = loaded
        #: The slot had built the machine and loaded the state before the claim.
        self.ahead = ahead


def _error(name: str, e: BaseException) -> exception.QmpError:
    if isinstance(e, ExecuteError):
        return exception.QmpError(reason='QMP %s failed: %s' % (name, e),
                                  error_class=e.error_class)
    return exception.QmpError(reason='QMP %s failed: %s' % (name, e or type(e).__name__))


async def _send_batch(client: Any, fd: int, commands: list[tuple[str, dict[str, Any]]],
                      listener: EventListener) -> None:
    """Send ``commands`` back to back (the state's fd first), then await every answer.
    The listener stays registered only when every command succeeded."""
    client.register_listener(listener)
    try:
        client.send_fd_scm(fd)          # QEMU hands it to the next getfd
        results = await asyncio.gather(*(client.execute(name, args or None)
                                         for name, args in commands), return_exceptions=True)
        for (name, _), result in zip(commands, results, strict=True):
            if isinstance(result, BaseException):
                raise _error(name, result)
    except BaseException:            # a timeout in the caller cancels this coroutine
        client.remove_listener(listener)
        raise


async def _loaded(client: Any, listener: EventListener) -> float:
    """Wait for the incoming migration's end; the monotonic time it completed."""
    try:
        while True:
            event: dict[str, Any] = dict(await listener.get())
            status = (event.get('data') or {}).get('status')
            if status == 'completed':
                return time.monotonic()
            if status in ('failed', 'cancelled'):
                info: dict[str, Any] = await client.execute('query-migrate')
                raise exception.QmpError(reason='migration %s: %s' % (
                    status, info.get('error-desc', 'no details')))
    finally:
        client.remove_listener(listener)


class PoolSlots:
    """Slots of ``vms`` (a :class:`qemu_process.Processes`) for live images in
    ``live_images_path``; ``accel()`` is the driver's accelerator."""

    def __init__(self, vms: qemu_process.Processes, live_images_path: str, qemu_binary: str,
                 accel: Callable[[], str], size: int, migration_timeout: float,
                 restore_ahead: bool = False) -> None:
        self._vms = vms
        self.restore_ahead = restore_ahead
        self._restored: set[str] = set()
        self.live_images_path = live_images_path
        self.qemu_binary = qemu_binary
        self._accel = accel
        self.migration_timeout = migration_timeout
        self._held: dict[str, contextlib.ExitStack] = {}
        self._monitors: dict[str, qmp.Monitor] = {}
        self._lock = threading.Lock()
        self.pool = qemu_pool.WarmPool(size, self.images, self.prestart, self.alive,
                                       self.kill)

    def images(self) -> list[str]:
        return qemu_pool.live_image_ids(self.live_images_path)

    def alive(self, slot_id: str) -> bool:
        return self._vms.pid(slot_id) is not None

    def prestart(self, slot_id: str, live_image_id: str) -> None:
        """Start a pooled QEMU for ``live_image_id`` in a new slot directory; its
        QMP session stays open for the claim."""
        artifacts = qemu_pool.local_artifacts(self.live_images_path, live_image_id)
        image = live.image_layout(artifacts)
        if image.accel == 'kvm' and self._accel() != 'kvm':
            raise exception.DriverError(reason='live image %s was blessed under KVM, which '
                                        'does not work here' % live_image_id)
        directory = self._vms.new_dir(slot_id)
        live.write_file(os.path.join(directory, qemu_pool.MARKER), live_image_id + '\n')
        layout = cmdline.Layout.from_json(image.to_json())
        layout.id = layout.name = slot_id
        argv = cmdline.build_argv(
            self.qemu_binary, layout, ram_path=artifacts.memory_path, share=False,
            qmp_path=os.path.join(directory, 'qmp.sock'),
            console_path=os.path.join(directory, 'console.log'), incoming=True,
            vmgenid=qemu_pool.slot_vmgenid(slot_id),
            fw_cfg_files=qemu_pool.slot_guest_files(directory), pooled=True)
        stack = contextlib.ExitStack()
        mon = stack.enter_context(self._vms.start(slot_id, argv))
        with self._lock:
            self._held[slot_id], self._monitors[slot_id] = stack, mon
        if self.restore_ahead and layout.identity_port and not layout.disks:
            self._load(mon, layout, artifacts.state_path)
            with self._lock:
                self._restored.add(slot_id)
        LOG.info('Pooled QEMU %s of live image %s is ready (%s)', slot_id, live_image_id,
                 'state loaded ahead' if slot_id in self._restored else 'machine not built')

    def _release(self, slot_id: str) -> None:
        with self._lock:
            self._restored.discard(slot_id)
            stack = self._held.pop(slot_id, None)
            self._monitors.pop(slot_id, None)
        if stack is not None:
            stack.close()

    def kill(self, slot_id: str) -> None:
        self._release(slot_id)
        self._vms.kill(slot_id)
        shutil.rmtree(self._vms.dir(slot_id), ignore_errors=True)

    def stop(self, kill: bool = True) -> None:
        """Stop the pool (see :meth:`WarmPool.stop`); the sessions held are closed."""
        self.pool.stop(kill)
        with self._lock:
            slots = list(self._held)
        for slot_id in slots:
            self._release(slot_id)

    def claim(self, artifacts: base.LiveImageArtifacts, layout: cmdline.Layout,
              clone: base.CloneSpec, record: Callable[[], None]) -> Claimed | None:
        """Make a ready slot the running clone of ``layout``: its guest files, disks and
        NIC, the state loaded, ``cont``; its directory renamed to the clone's and
        ``record()`` called (it writes the layout) while the state loads. None
        when no slot is ready or the one claimed died (the caller starts QEMU)."""
        local = qemu_pool.local_artifacts(self.live_images_path, artifacts.live_image_id)
        if artifacts.memory_path != local.memory_path or \
                artifacts.state_path != local.state_path:
            return None              # not one of this directory's live images
        slot_id = self.pool.claim(artifacts.live_image_id)
        if slot_id is None:
            return None
        with self._lock:
            stack = self._held.pop(slot_id, None) or contextlib.ExitStack()
            mon = self._monitors.pop(slot_id, None)
            restored = slot_id in self._restored
            self._restored.discard(slot_id)
        try:
            with stack:
                if mon is None:      # not started by this driver object
                    mon = stack.enter_context(self._vms.monitor(slot_id))
                if os.path.lexists(self._vms.dir(clone.id)):
                    raise exception.Conflict(reason='instance %s already exists on this '
                                             'host' % clone.id)
                identity = live.guest_file_contents(clone, layout.mac)
                live.write_guest_files(self._vms.dir(slot_id), identity)
                if restored and mon is not None:
                    # QEMU resumes while the directory is handed over and the
                    # identity sent (the guest's agent waits for the port)
                    resumed = mon.resume()
                    self._hand_over(slot_id, clone.id, record)
                    qemu_identity.tell(self._vms.dir(clone.id), identity)
                    resumed()
                    built = loaded = time.monotonic()
                else:
                    built, loaded = self._resume(mon, layout, artifacts.state_path, slot_id,
                                                 clone.id, record)
                    if layout.identity_port:
                        qemu_identity.tell(self._vms.dir(clone.id), identity)
        except BaseException as e:
            current = slot_id
            if not os.path.isdir(self._vms.dir(slot_id)):
                current = clone.id   # renamed before it failed
            died = self._vms.pid(current) is None
            self._vms.kill(current)
            shutil.rmtree(self._vms.dir(current), ignore_errors=True)
            if died and isinstance(e, exception.QmpError):
                LOG.warning('Pooled QEMU %s died while %s claimed it; starting one',
                            slot_id, clone.id)
                return None
            raise
        return Claimed(slot_id, built, loaded, restored)

    def _hand_over(self, slot_id: str, clone_id: str, record: Callable[[], None]) -> None:
        """The slot's directory becomes the clone's (no longer a slot), its layout written."""
        self._vms.rename(slot_id, clone_id)
        os.unlink(self._vms.file(clone_id, qemu_pool.MARKER))
        record()

    @staticmethod
    def _send_incoming(mon: qmp.Monitor, layout: cmdline.Layout, state_path: str,
                       listener: EventListener) -> None:
        """One batch: the disks' nodes, build the machine, the NIC, the capabilities and
        the state file's descriptor, then start loading it (``listener`` hears the end)."""
        commands: list[tuple[str, dict[str, Any]]] = []
        for disk in layout.disks:
            options, secrets = cmdline.blockdev_options(disk.connection_info, disk.node,
                                                        disk.read_only)
            commands += [('object-add', {'qom-type': 'secret', 'id': secret_id, 'data': value})
                         for secret_id, value in secrets.items()]
            commands.append(('blockdev-add', options))
        commands.append(('x-exit-preconfig', {}))
        if layout.mac:
            # hot-plugged while no guest runs: the incoming state overwrites the
            # hot-plug controller's registers (and the MAC the guest sees), so the
            # guest never sees a hot-plug
            commands.append(('device_add', cmdline.nic_device(layout.mac)))
        commands += [('migrate-set-capabilities', {'capabilities': CAPABILITIES}),
                     ('getfd', {'fdname': STATE_FD}),
                     ('migrate-incoming', {'uri': 'fd:' + STATE_FD})]
        fd = os.open(state_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            mon.run(lambda client: _send_batch(client, fd, commands, listener), mon.timeout)
        except (QMPError, OSError, TimeoutError) as e:
            raise _error('batch', e)
        finally:
            os.close(fd)             # QEMU has its own copy

    def _load(self, mon: qmp.Monitor, layout: cmdline.Layout, state_path: str) -> None:
        """Restore ahead: the machine built, the NIC added, the state loaded; QEMU
        stays paused."""
        listener = EventListener('MIGRATION')
        self._send_incoming(mon, layout, state_path, listener)
        try:
            mon.run(lambda client: _loaded(client, listener), self.migration_timeout)
        except (QMPError, OSError, TimeoutError) as e:
            raise _error('restore ahead', e)

    def _resume(self, mon: qmp.Monitor, layout: cmdline.Layout, state_path: str,
                slot_id: str, clone_id: str, record: Callable[[], None]) -> tuple[float, float]:
        listener = EventListener('MIGRATION')
        self._send_incoming(mon, layout, state_path, listener)
        built = time.monotonic()
        self._hand_over(slot_id, clone_id, record)
        try:
            loaded = mon.run(lambda client: _loaded(client, listener), self.migration_timeout)
        except TimeoutError:
            raise exception.QmpError(reason='migration not completed after %.0f s'
                                     % self.migration_timeout)
        except (QMPError, OSError) as e:
            raise _error('query-migrate', e)
        for disk in layout.disks:     # still stopped: before any I/O
            qemu_qos.apply(mon, disk)
        mon.resume()()
        return built, loaded
