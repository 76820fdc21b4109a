"""Run one external command from an argv list, with a timeout; never a shell string.

Drivers call tools such as ``qemu-img``; every call goes through :func:`execute`
so that there is exactly one place that (a) refuses shell strings, (b) bounds the
run time, (c) turns a failure into ``exception.DriverError`` quoting the tool's
own stderr, which is what an operator needs to see::

    from gridcentric_storage.common import processutils

    processutils.execute(['/usr/bin/qemu-img', 'info', '--output=json', '/nope'])
    # DriverError: Backend driver error: /usr/bin/qemu-img info --output=json /nope
    # failed (exit 1): qemu-img: Could not open '/nope': Could not open '/nope':
    # No such file or directory

The child runs through ``concurrency.execute`` (the one module that decides how
blocking work runs). Callers that want a different runner (unit tests, a
privsep entry point) take an ``execute`` argument of type :data:`Executor` and default it
to this module's :func:`execute`; nothing is patched globally.
"""

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence

from gridcentric_storage.common import concurrency, exception

__all__ = ['DEFAULT_TIMEOUT', 'Executor', 'execute']

#: Seconds a command may run before it is killed (a hung NFS mount must not hang
#: a service thread forever).
DEFAULT_TIMEOUT = 600.0

#: Signature shared by :func:`execute` and its replacements in tests.
Executor = Callable[..., str]

# Tools' messages are parsed and shown to users: keep them in English.
_ENV_OVERRIDES = {'LC_ALL': 'C', 'LANG': 'C'}
_MAX_STDERR = 2000


def execute(argv: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT,
            env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
    """Run ``argv`` (a list, ``argv[0]`` the program), return its stdout as text.

    Raises DriverError(reason=...) naming the command and quoting its stderr when
    it cannot be started, exits non-zero or runs longer than ``timeout`` seconds.
    """
    if isinstance(argv, (str, bytes)) or not argv:
        raise TypeError(f'argv must be a non-empty list of strings, not {argv!r}')
    args = [os.fspath(a) for a in argv]
    if not all(isinstance(a, str) for a in args):
        raise TypeError(f'argv items must be strings: {args!r}')
    cmd = shlex.join(args)
    run_env = dict(os.environ if env is None else env)
    run_env.update(_ENV_OVERRIDES)
    try:
        proc = concurrency.execute(subprocess.run, args, input=stdin, capture_output=True,
                                   timeout=timeout, env=run_env, check=False, close_fds=True)
    except FileNotFoundError:
        raise exception.DriverError(reason=f'{cmd}: program {args[0]} not found') from None
    except subprocess.TimeoutExpired:
        raise exception.DriverError(reason=f'{cmd} timed out after {timeout}s') from None
    except OSError as e:
        raise exception.DriverError(reason=f'{cmd} could not start: {e}') from e
    if proc.returncode != 0:
        err = proc.stderr.decode('utf-8', 'replace').strip()[-_MAX_STDERR:]
        if not err:
            err = proc.stdout.decode('utf-8', 'replace').strip()[-_MAX_STDERR:]
        raise exception.DriverError(
            reason=f"{cmd} failed (exit {proc.returncode}): {err or 'no output'}")
    return proc.stdout.decode('utf-8', 'replace')
