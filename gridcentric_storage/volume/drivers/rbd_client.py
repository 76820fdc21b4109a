"""How the RBD driver reaches its Ceph cluster: the rados/rbd bindings, the one
librados connection and its timeouts, binding errors turned into DriverErrors, mon
commands, what a client elsewhere needs (monitor addresses, the cephx key, qemu's
``rbd:`` target) and the UUID-checked image names. It is apart from ``rbd.py`` so
that the driver module holds the Cinder driver methods and the clone graph, and
this one credentials, timeouts and the connection; :class:`CephClient` is a mixin
of ``RBDDriver`` (whose ``__init__`` sets what it declares), so ``driver._run``,
``driver._ioctx``... work as before. The bindings are this module's globals
``rados`` and ``rbd``, read at each call: a test replaces them here.
"""

import configparser
import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

from gridcentric_storage.common import concurrency, exception

__all__ = ['UUID_RE', 'CephClient', 'error', 'import_bindings']

UUID_RE = re.compile('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                     '[0-9a-fA-F]{12}$')
_TIMEOUT_OPTIONS = ('client_mount_timeout', 'rados_osd_op_timeout', 'rados_mon_op_timeout')
ETIMEDOUT = 110

rados: Any = None  # the bindings, imported by do_setup
rbd: Any = None


def error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def import_bindings() -> None:
    global rados, rbd
    if rbd is not None:
        return
    try:
        import rados as rados_mod
        import rbd as rbd_mod
    except ImportError as e:
        raise error(f'the Ceph Python bindings cannot be imported ({e}); install '
                    'python3-rados and python3-rbd (in a virtualenv: '
                    'tools/link-ceph-bindings.sh <venv>)') from None
    rados, rbd = rados_mod, rbd_mod


def conf_fsid(path: str) -> str | None:
    """The cluster fsid a ceph.conf names ([global] fsid), if it can be read."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        parser.read(path)
    except (OSError, configparser.Error):
        return None
    return parser.get('global', 'fsid', fallback=None)


def _escape(value: str) -> str:
    """A value in qemu's ``rbd:`` file name, where ``:`` separates options."""
    return value.replace('\\', '\\\\').replace(':', '\\:')


class CephClient:
    # set by RBDDriver.__init__ (and base.VolumeDriver's)
    backend_name: str
    options: dict[str, Any]
    pool: str
    conf_path: str
    user: str
    timeout: int
    _client: Any
    _connect_lock: threading.Lock
    _ready: bool

    # ---- librados plumbing: every blocking call runs through concurrency.execute
    def _run(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        if not self._ready:
            raise error(f'do_setup has not run for backend {self.backend_name}')
        try:
            return concurrency.execute(fn, *args)
        except (rados.Error, rbd.Error) as e:
            if getattr(e, 'errno', None) in (ETIMEDOUT, -ETIMEDOUT) or isinstance(
                    e, (rados.TimedOut, rbd.Timeout)):
                raise error(f'{what}: the Ceph cluster did not answer within '
                            f'{self.timeout} s ({e})') from e
            if isinstance(e, rbd.ImageBusy):
                raise error(f'{what}: the image is in use (attached?); a client that '
                            f'crashed holds it for 30 s more: {e}') from e
            raise error(f'{what}: {e}') from e

    def _connect(self) -> Any:
        with self._connect_lock:
            if self._client is not None:
                return self._client
            if not os.path.isfile(self.conf_path):
                raise error(f'Ceph configuration {self.conf_path} does not exist')
            conf = {name: str(self.timeout) for name in _TIMEOUT_OPTIONS}
            if self.options.get('keyring'):
                conf['keyring'] = self.options['keyring']
            if self.options.get('key'):
                conf['key'] = self.options['key']
            client = rados.Rados(rados_id=self.user, conffile=self.conf_path, conf=conf)
            try:
                client.connect()
            except rados.Error as e:
                client.shutdown()
                raise error(f'cannot connect to the Ceph cluster of {self.conf_path} as '
                            f'client.{self.user} within {self.timeout} s: {e}') from e
            self._client = client
            return client

    def close(self) -> None:
        """Drop the cluster connection (the next call makes a new one)."""
        with self._connect_lock:
            client, self._client = self._client, None
        if client is not None:
            concurrency.execute(client.shutdown)

    @contextlib.contextmanager
    def _ioctx(self, pool: str | None = None) -> Iterator[Any]:
        pool = pool or self.pool
        try:
            ioctx = self._connect().open_ioctx(pool)
        except rados.ObjectNotFound:
            raise error(f'pool {pool} does not exist in the Ceph cluster of '
                        f'{self.conf_path}') from None
        with ioctx:
            yield ioctx

    def _on_image(self, what: str, name: str, fn: Callable[[Any], Any],
                  read_only: bool = False) -> Any:
        """``fn(image)`` with image ``name`` of the pool open, through _run."""
        def call() -> Any:
            with self._ioctx() as ioctx, rbd.Image(ioctx, name, read_only=read_only) as img:
                return fn(img)
        return self._run(what, call)

    def _mon(self, prefix: str, **args: Any) -> Any:
        cmd = json.dumps({'prefix': prefix, 'format': 'json', **args})
        ret, out, err = self._connect().mon_command(cmd, b'', timeout=self.timeout)
        if ret != 0:
            raise error(f'ceph {prefix} failed: {err or os.strerror(-ret)}')
        return json.loads(out)

    # ---- names
    @staticmethod
    def _name(kind: str, res_id: Any) -> str:
        # fullmatch: '$' would let a trailing newline through
        if not isinstance(res_id, str) or not UUID_RE.fullmatch(res_id):
            raise error(f'{kind} id {res_id!r} is not a UUID; refusing to build an '
                        'image name from it')
        return f'{kind}-{res_id}'

    # ---- what a client on another host needs (initialize_connection, qemu-img)
    def _mon_addrs(self) -> tuple[list[str], list[str]]:
        hosts, ports = [], []
        for mon in self._mon('mon dump')['mons']:
            addrs = {a['type']: a['addr'] for a in
                     mon.get('public_addrs', {}).get('addrvec', [])}
            addr = addrs.get('v1') or addrs.get('v2') or mon['addr'].split('/')[0]
            host, port = addr.rsplit(':', 1)
            hosts.append(host.strip('[]'))
            ports.append(port)
        return hosts, ports

    def _keyring_text(self) -> str:
        """``[client.<user>]`` with its key only, from ``key``, ``keyring`` or the
        keyrings ceph.conf names."""
        key = self.options.get('key')
        if key:
            return f'[client.{self.user}]\n\tkey = {key}\n'
        paths = [self.options['keyring']] if self.options.get('keyring') else [
            p.replace('$cluster', 'ceph').replace('$name', f'client.{self.user}')
            for p in re.split(r'[,;\s]+', self._connect().conf_get('keyring') or '') if p]
        section = re.compile(r'^\[client\.%s\]\s*$(.*?)(?=^\s*\[|\Z)' % re.escape(self.user),
                             re.M | re.S)
        for path in paths:
            try:
                with open(path) as f:
                    found = section.search(f.read())
            except OSError:
                continue
            match = found and re.search(r'^\s*key\s*=\s*(\S+)', found.group(1), re.M)
            if match:
                return f'[client.{self.user}]\n\tkey = {match.group(1)}\n'
        raise error(f'keyring_in_connection_info is set, but no key of client.{self.user} '
                    f'was found in {", ".join(paths) or "any keyring"}')

    # qemu-img talks to librbd itself, with the same timeouts
    @contextlib.contextmanager
    def _qemu_target(self, name: str) -> Iterator[str]:
        """qemu's ``rbd:pool/image:id=...:conf=...`` for the image; a ``key`` goes into
        a private temporary keyring, never on a command line."""
        opts = [('id', self.user), ('conf', self.conf_path)]
        opts += [(o, str(self.timeout)) for o in _TIMEOUT_OPTIONS]
        with tempfile.TemporaryDirectory(prefix='gc-rbd-') as tmp:
            if self.options.get('key'):
                keyring = os.path.join(tmp, 'keyring')
                fd = os.open(keyring, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, 'w') as f:
                    f.write(f'[client.{self.user}]\n\tkey = {self.options["key"]}\n')
                opts.append(('keyring', keyring))
            elif self.options.get('keyring'):
                opts.append(('keyring', self.options['keyring']))
            yield f'rbd:{self.pool}/{name}' + ''.join(f':{k}={_escape(v)}' for k, v in opts)
