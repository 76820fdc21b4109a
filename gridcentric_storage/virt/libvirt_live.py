"""The libvirt driver's bless and launch steps: QMP passthrough, state over ``fd:``.

Kept apart from ``libvirt.py`` (domains and instance bookkeeping) for the
same reason ``qemu_live.py`` is apart from ``qemu.py``: these are the steps
whose timing is the product. The blessed VM is paused only for
:func:`save_state`, and a clone resumes after :func:`restore_state`.

libvirt runs QEMU under ``-sandbox ...,spawn=deny``: the QEMU driver's
``exec:cat`` URIs cannot work, so bless and launch hand QEMU the state file
with ``getfd`` (``qemuMonitorCommandWithFiles``) and use ``fd:`` URIs.
Pause/resume go through libvirt (``suspend``/``resume``, so its state stays
right), ``x-ignore-shared``, ``migrate`` and ``migrate-incoming`` through QMP
passthrough (libvirt ignores MIGRATION events of jobs it did not start; the
source keeps running).

QEMU 7.2 opens a memory-backend file O_RDWR even with ``share=off``
(``rom=off`` arrives in 8.2), so :func:`seal_ram` leaves a live image's RAM
0464, group QEMU's, instead of 0444; MAP_PRIVATE means no clone ever writes
it, and its sha256 is recorded to check that.
"""

import json
import os
import time
from typing import Any, cast

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt import qmp

try:
    import libvirt
    import libvirt_qemu
except ImportError:                    # libvirt.py then refuses to load the driver
    libvirt = libvirt_qemu = None

__all__ = ['Passthrough', 'restore_state', 'save_state', 'seal_ram']

class Passthrough:
    """``qmp.Monitor``'s ``cmd`` over libvirt's QMP passthrough (for qmp.wait_for_migration)."""

    def __init__(self, dom: Any) -> None:
        self.dom = dom

    def cmd(self, name: str, files: list[int] | None = None, **arguments: Any) -> Any:
        command = json.dumps({'execute': name, 'arguments': arguments})
        try:
            if files:
                out, _ = libvirt_qemu.qemuMonitorCommandWithFiles(self.dom, command, files, 0)
            else:
                out = libvirt_qemu.qemuMonitorCommand(self.dom, command, 0)
        except libvirt.libvirtError as e:
            raise exception.QmpError(reason='QMP %s through libvirt failed: %s' % (name, e))
        reply = json.loads(out)
        if 'error' in reply:
            raise exception.QmpError(
                reason='QMP %s failed: %s' % (name, reply['error'].get('desc')),
                error_class=reply['error'].get('class'))
        return reply.get('return')


def _migrate_over_fd(mon: Passthrough, state_file: Any, command: str, timeout: float) -> None:
    """Hand QEMU the open state file (getfd) and run ``migrate`` or
    ``migrate-incoming`` through it with x-ignore-shared, to the end."""
    mon.cmd('getfd', files=[state_file.fileno()], fdname='gc-state')
    mon.cmd('migrate-set-capabilities', capabilities=live.IGNORE_SHARED)
    mon.cmd(command, uri='fd:gc-state')
    qmp.wait_for_migration(cast(qmp.Monitor, mon), timeout)


def save_state(dom: Any, ram: str, work: str, timeout: float) -> dict[str, Any]:
    """Pause, save device state (x-ignore-shared, fd: URI), freeze RAM, resume."""
    def pause() -> bool:
        was_running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        if was_running:
            dom.suspend()
        return bool(was_running)

    def save_device_state(state: str) -> None:
        with open(state, 'xb') as f:
            _migrate_over_fd(Passthrough(dom), f, 'migrate', timeout)

    return live.timed_save(ram, work, pause, dom.resume, save_device_state)


def seal_ram(ram: str, owner: tuple[int, int] | None, checksum: bool) -> dict[str, Any]:
    """Make a live image's frozen RAM read-only for good; its mode, size (and sha256)."""
    if owner and owner[0] != 0:         # QEMU 7.2 opens it O_RDWR even
        os.chown(ram, 0, owner[1])      # with share=off (no rom=off yet)
    sealed: dict[str, Any] = {'ram_mode': '0464' if owner and owner[0] != 0 else '0444'}
    os.chmod(ram, int(sealed['ram_mode'], 8))
    sealed['ram_size'] = os.stat(ram).st_size
    if checksum:
        sealed['ram_sha256'] = live.sha256(ram)
    return sealed


def restore_state(dom: Any, state: str, timeout: float, resume: bool = True) -> float:
    """Load ``state`` into a domain created paused with ``-incoming defer``, then resume
    it unless ``resume`` is false (its owner resumes it later, e.g. Nova after the
    network is plugged).

    Returns the monotonic time the state was loaded (before ``resume``).
    """
    with open(state, 'rb') as f:
        _migrate_over_fd(Passthrough(dom), f, 'migrate-incoming', timeout)
    loaded = time.monotonic()
    if resume:
        dom.resume()
    return loaded
