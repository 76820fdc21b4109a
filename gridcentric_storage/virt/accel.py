"""Decide whether VMs run under KVM or TCG, by running one, never by assuming.

A readable ``/dev/kvm`` proves little: on some hosts (nested set-ups, PVM
hosts) KVM opens fine, SeaBIOS even runs, and then a real Linux guest hangs
right after leaving real mode. So the probe boots a real kernel under
``-accel kvm`` with no root file system and waits for the kernel's own
"Kernel panic ... Unable to mount root fs" on the serial console: a working
KVM gets there in a second or two, a broken one never prints "Linux version"
(the early-console banner) at all. Without any kernel to boot, the probe
falls back to SeaBIOS's debug console ("No bootable device"), which is weaker
and says so in the reason. The answer is cached per (binary, kernel) for the
life of the process, and in ``/run/gridcentric-storage`` for the host's
boot. A QEMU that cannot run at all (not installed) is a TCG answer with
that reason, never an exception: the caller decides what a host without a
hypervisor can still do::

    from gridcentric_storage.virt import accel

    accel.choose('auto', 'qemu-system-x86_64')   # -> Probe(accel='tcg', reason='...')
"""

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any

from gridcentric_storage.common import exception

__all__ = ['MODES', 'Probe', 'choose', 'probe_kvm']

MODES = ('auto', 'kvm', 'tcg')

#: Seconds a working KVM needs at most to print the kernel banner / to panic.
BANNER_TIMEOUT = 4.0
#: Where a probe's answer is kept for the rest of the host's boot (the services'
#: runtime directory, as their units make it).
RUN_DIR = '/run/gridcentric-storage'
PANIC_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class Probe:
    """The accelerator to use and why (for logs and ``InstanceInfo.extra``)."""

    accel: str
    reason: str


_cache: dict[tuple[str, str | None], Probe] = {}
_lock = threading.Lock()


def default_kernel() -> str | None:
    """The newest ``/boot/vmlinuz-*`` readable by us, if any."""
    kernels = sorted(k for k in glob.glob('/boot/vmlinuz-*') if os.access(k, os.R_OK))
    return kernels[-1] if kernels else None


def _kvm_device_reason() -> str | None:
    try:
        fd = os.open('/dev/kvm', os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return '/dev/kvm is not usable: %s' % e.strerror
    os.close(fd)
    return None


def _run_until(argv: list[str], log: str, done: tuple[str, ...], banner: str | None,
               banner_timeout: float, timeout: float) -> tuple[str, str]:
    """Run QEMU until one of ``done`` shows in ``log``; return (outcome, log text)."""
    start = time.monotonic()
    with open(os.devnull, 'rb') as null:
        try:
            proc = subprocess.Popen(argv, stdin=null, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:  # not installed, not executable
            return 'exited', 'cannot run %s: %s' % (argv[0], e.strerror or e)
    text = ''
    outcome = 'timeout'
    try:
        while True:
            try:
                with open(log, errors='replace') as f:
                    text = f.read()
            except FileNotFoundError:
                text = ''
            elapsed = time.monotonic() - start
            if any(marker in text for marker in done):
                outcome = 'ok'
                break
            if proc.poll() is not None:
                outcome = 'exited'
                break
            if banner is not None and banner not in text and elapsed > banner_timeout:
                outcome = 'no-banner'
                break
            if elapsed > timeout:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
    if outcome == 'exited' and err:
        text += '\n' + err.decode(errors='replace')
    return outcome, text


def probe_kvm(qemu_binary: str, kernel: str | None = None) -> Probe:
    """Boot ``kernel`` (default: the newest in /boot) under KVM; see the module doc."""
    reason = _kvm_device_reason()
    if reason:
        return Probe('tcg', reason)
    kernel = kernel or default_kernel()
    with tempfile.TemporaryDirectory(prefix='gc-kvm-probe-') as tmp:
        log = os.path.join(tmp, 'serial.log')
        argv = [qemu_binary, '-accel', 'kvm', '-machine', 'pc', '-m', '128', '-smp', '1',
                '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot']
        if kernel:
            argv += ['-kernel', kernel, '-append',
                     'console=ttyS0 earlyprintk=ttyS0 panic=-1 root=/dev/gc-kvm-probe',
                     '-chardev', 'file,id=s0,path=%s' % log, '-serial', 'chardev:s0']
            outcome, text = _run_until(argv, log, ('Kernel panic', 'Unable to mount root'),
                                       'Linux version', BANNER_TIMEOUT, PANIC_TIMEOUT)
            what = 'kernel %s' % kernel
            if outcome == 'exited' and 'Linux version' in text and 'panic' in text.lower():
                outcome = 'ok'      # panic=-1 + -no-reboot: QEMU quits after the panic
        else:
            argv += ['-chardev', 'file,id=d0,path=%s' % log,
                     '-device', 'isa-debugcon,iobase=0x402,chardev=d0']
            outcome, text = _run_until(argv, log, ('No bootable device', 'Booting from'),
                                       None, BANNER_TIMEOUT, BANNER_TIMEOUT)
            what = 'SeaBIOS only (no kernel in /boot to probe with)'
    if outcome == 'ok':
        return Probe('kvm', 'KVM booted %s' % what)
    detail = {'no-banner': 'no kernel banner within %.0f s' % BANNER_TIMEOUT,
              'timeout': 'guest did not finish booting within %.0f s' % PANIC_TIMEOUT,
              'exited': 'QEMU exited: %s' % text.strip()[-300:]}[outcome]
    return Probe('tcg', 'KVM probe with %s failed (%s); using TCG' % (what, detail))


def choose(mode: str, qemu_binary: str, kernel: str | None = None) -> Probe:
    """Resolve ``mode`` ('auto', 'kvm' or 'tcg'); 'auto' probes once per process."""
    if mode not in MODES:
        raise exception.InvalidDriverOptions(driver='qemu',
                                              reason='accel must be one of %s, not %r'
                                              % ('/'.join(MODES), mode))
    if mode != 'auto':
        return Probe(mode, 'configured')
    binary = shutil.which(qemu_binary)
    if binary is None:  # not cached: installing QEMU later needs no restart here
        return Probe('tcg', '%s not found' % qemu_binary)
    key = (binary, kernel)
    with _lock:
        if key not in _cache:
            _cache[key] = _probe_once_per_boot(binary, kernel)
        return _cache[key]


def _probe_once_per_boot(binary: str, kernel: str | None) -> Probe:
    """probe_kvm, its answer kept in RUN_DIR for this boot of the host: every
    service start probed again, 4 s where KVM is broken, though the answer
    changes only with the host's boot, the QEMU binary or the kernel."""
    kernel = kernel or default_kernel()
    key = _boot_key(binary, kernel)
    path = os.path.join(RUN_DIR, 'kvm-probe.json')
    found = _read_own_json(path) if key else {}
    if key and isinstance(found.get(key), dict):
        return Probe(str(found[key]['accel']), '%s (probed earlier in this boot)'
                     % found[key]['reason'])
    probe = probe_kvm(binary, kernel)
    if key:
        with contextlib.suppress(OSError):
            os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
            tmp = '%s.%d.tmp' % (path, os.getpid())
            with open(tmp, 'w') as f:
                json.dump({key: dataclasses.asdict(probe)}, f)
            os.replace(tmp, path)
    return probe


def _boot_key(binary: str, kernel: str | None) -> str | None:
    """This boot, this QEMU binary and this kernel (None if one cannot be read)."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            boot = f.read().strip()
        parts = [boot]
        for path in (binary, kernel):
            st = os.stat(path) if path else None
            parts.append('%s:%d:%d' % (path, st.st_ino, st.st_mtime_ns) if st else '-')
        return ' '.join(parts)
    except OSError:
        return None


def _read_own_json(path: str) -> dict[str, Any]:
    """The file's JSON object if this user owns it and nobody else may write it."""
    try:
        with open(path) as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                return {}
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
