"""QEMU processes of the QEMU driver: started, found again, stopped.

Kept apart from ``qemu.py`` (instances and live images) because supervising
a process is one concern on its own: a VM's QEMU outlives the compute service
that started it, so it is found again by the pid file in its instance
directory, checked against ``/proc`` (the pid must still be a live QEMU whose
command line names this VM's QMP socket, or a recycled pid would be taken
for the VM), and stopped with QMP ``quit`` before any signal.
"""

import contextlib
import logging
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt import qmp

LOG = logging.getLogger(__name__)

__all__ = ['STARTED_AS', 'Processes', 'check_id']

#: In a renamed instance directory: the name QEMU's command line knows it by.
STARTED_AS = 'started-as'
_ID_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$')


def check_id(kind: str, value: str) -> str:
    """``value`` if it can name a directory and a domain; else exception.Invalid."""
    if not _ID_RE.fullmatch(value or ''):  # '$' alone lets a trailing newline through
        raise exception.Invalid(reason='%s id %r must match %s' % (kind, value, _ID_RE.pattern))
    return value


def make_instance_dir(instances_path: str, directory: str, instance_id: str) -> None:
    """Create a new VM's directory; exception.Conflict when the VM exists already."""
    os.makedirs(instances_path, exist_ok=True)
    try:
        os.mkdir(directory, 0o750)
    except FileExistsError:
        raise exception.Conflict(reason='instance %s already exists on this host'
                                 % instance_id)


class Processes:
    """One QEMU per instance directory ``<instances_path>/<id>/`` (timeouts in seconds)."""

    def __init__(self, instances_path: str, start_timeout: float, stop_timeout: float,
                 qmp_timeout: float) -> None:
        self.instances_path = instances_path
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.qmp_timeout = qmp_timeout
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def dir(self, instance_id: str) -> str:
        return os.path.join(self.instances_path, check_id('instance', instance_id))

    def file(self, instance_id: str, name: str) -> str:
        return os.path.join(self.dir(instance_id), name)

    def new_dir(self, instance_id: str) -> str:
        """Create the instance directory; exception.Conflict when it exists."""
        directory = self.dir(instance_id)
        if len(os.path.join(directory, 'qmp.sock')) > 107:     # sun_path is 108 bytes
            raise exception.Invalid(reason='instance path %s is too long for a unix '
                                    'socket; use a shorter instances_path' % directory)
        make_instance_dir(self.instances_path, directory, instance_id)
        return directory

    def pid(self, instance_id: str) -> int | None:
        """QEMU's pid if it still runs (and is really this VM's QEMU)."""
        proc = self._procs.get(instance_id)
        if proc is not None:
            if proc.poll() is None:
                return proc.pid                      # our child (maybe not exec'd yet)
            self._procs.pop(instance_id, None)       # reaped
            return None
        try:
            with open(self.file(instance_id, 'pid')) as f:
                pid = int(f.read().strip())
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                argv = f.read()
            with open('/proc/%d/stat' % pid) as f:
                zombie = f.read().rsplit(')', 1)[1].split()[0] == 'Z'
        except (OSError, ValueError, IndexError):
            return None
        names = {self.file(instance_id, 'qmp.sock').encode()}
        started_as = self.started_as(instance_id)
        if started_as:
            names.add(self.file(started_as, 'qmp.sock').encode())
        return pid if any(name in argv for name in names) and not zombie else None

    def started_as(self, instance_id: str) -> str | None:
        """The directory name QEMU was started in, when it was renamed since
        (a warm-pool slot claimed by a clone), else None."""
        try:
            with open(self.file(instance_id, STARTED_AS)) as f:
                return check_id('pool slot', f.read().strip())
        except (OSError, exception.Invalid):
            return None

    def rename(self, old_id: str, new_id: str) -> None:
        """Make the running VM of directory ``old_id`` the VM ``new_id``: its
        directory renamed (QEMU keeps its open files and its QMP socket moves
        along), ``STARTED_AS`` naming the directory its command line still names."""
        old, new = self.dir(old_id), self.dir(new_id)
        if os.path.lexists(new):      # rename(2) would replace an empty directory
            raise exception.Conflict(reason='instance %s already exists on this host'
                                     % new_id)
        live.write_file(os.path.join(old, STARTED_AS), old_id + '\n')
        os.rename(old, new)
        proc = self._procs.pop(old_id, None)
        if proc is not None:
            self._procs[new_id] = proc

    def log_tail(self, instance_id: str) -> str:
        """The end of QEMU's stderr, on one line (for error messages)."""
        try:
            with open(self.file(instance_id, 'qemu.log'), errors='replace') as f:
                return ' '.join(f.read()[-600:].split())
        except OSError:
            return ''

    def monitor(self, instance_id: str, wait: float = 0.0, timeout: float | None = None) -> Any:
        """A QMP session with the VM's QEMU (a context manager)."""
        return qmp.connect(self.file(instance_id, 'qmp.sock'),
                           timeout=timeout or self.qmp_timeout, wait=wait,
                           alive=lambda: self.pid(instance_id) is not None)

    @contextlib.contextmanager
    def start(self, instance_id: str, argv: list[str]) -> Iterator[qmp.Monitor]:
        """Start QEMU in the (existing) instance directory; yield its first QMP session."""
        directory = self.dir(instance_id)
        LOG.debug('starting %s', shlex.join(argv))
        with open(os.path.join(directory, 'qemu.log'), 'ab') as log, \
                open(os.devnull, 'rb') as null:
            try:
                proc = subprocess.Popen(argv, stdin=null, stdout=log, stderr=log,
                                        cwd=directory, start_new_session=True, close_fds=True)
            except OSError as e:
                raise exception.DriverError(reason='cannot run %s: %s' % (argv[0], e))
        self._procs[instance_id] = proc
        live.write_file(os.path.join(directory, 'pid'), '%d\n' % proc.pid)
        connected = False
        try:
            with self.monitor(instance_id, wait=self.start_timeout) as mon:
                connected = True
                yield mon
        except exception.QmpError:
            if connected:
                raise
            raise exception.DriverError(reason='QEMU for %s did not start: %s'
                                        % (instance_id, self.log_tail(instance_id)))

    def kill(self, instance_id: str) -> None:
        """Stop QEMU: QMP quit, then SIGKILL after ``stop_timeout``."""
        pid = self.pid(instance_id)
        if pid is None:
            return
        try:
            with self.monitor(instance_id, timeout=max(self.stop_timeout / 2, 1)) as mon:
                mon.cmd('quit')
        except exception.QmpError:
            pass                                       # quit races the socket closing
        deadline = time.monotonic() + self.stop_timeout
        while self.pid(instance_id) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.pid(instance_id) is not None:
            LOG.warning('QEMU of %s ignored quit; killing pid %d', instance_id, pid)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.pid(instance_id) is not None and time.monotonic() < deadline:
                time.sleep(0.01)
        proc = self._procs.pop(instance_id, None)
        if proc is not None:
            proc.wait(timeout=10)
