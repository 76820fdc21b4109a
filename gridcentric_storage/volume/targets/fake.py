"""In-memory export target for tests: no daemon, no network, nothing exported.

It keeps the :mod:`.base` contract the way ``tgt.py`` does, so a test that
passes on it holds on tgtd too (``tests/unit/volume/targets`` runs the same
tests on both): the running exports live in this object, as in a daemon, and
are lost by :meth:`FakeTarget.stop` as tgtd's are when it stops; the saved
descriptions are files under ``conf_dir`` (mode 0600, CHAP secrets) that
outlive it, so an ``ensure_export`` after a restart can be tested. Like tgtd,
a LUN reads its backing store's size when it is made, which :meth:`FakeTarget.open_lun`
shows as an initiator would see it (CHAP checked), and a backing store that does
not exist is refused.
"""

import json
import os
import threading

from gridcentric_storage.common import exception
from gridcentric_storage.volume.targets import base

__all__ = ['FakeTarget']


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def _size(path: str) -> int:
    """Bytes of a file or block device (whose st_size is 0)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


class FakeTarget(base.Target):
    def __init__(self, conf_dir: str) -> None:
        self.conf_dir = conf_dir
        self.running = True
        self._exports: dict[str, base.Export] = {}
        self._sizes: dict[str, int] = {}
        self._accounts: dict[str, str] = {}
        self._next_tid = 1
        self._lock = threading.Lock()

    # ---- the "daemon"
    def stop(self) -> None:
        """The daemon stops: every running export and account is gone, the saved
        descriptions stay; calls that need the daemon fail until :meth:`start`."""
        with self._lock:
            self.running = False
            self._exports.clear()
            self._sizes.clear()
            self._accounts.clear()

    def start(self) -> None:
        self.running = True

    def _daemon(self) -> None:
        if not self.running:
            raise _error('fake target daemon is not running')

    def ping(self) -> None:
        self._daemon()

    def show(self) -> dict[str, base.Export]:
        with self._lock:
            self._daemon()
            return {iqn: base.Export(e.tid, e.iqn, list(e.backing_stores), list(e.accounts),
                                     list(e.acls)) for iqn, e in self._exports.items()}

    def accounts(self) -> list[str]:
        with self._lock:
            self._daemon()
            return sorted(self._accounts)

    def open_lun(self, iqn: str, lun: int, user: str | None = None,
                 password: str | None = None) -> int:
        """What an initiator logging in to ``iqn`` sees: the LUN's size in bytes;
        DriverError when there is no such LUN or the CHAP credentials are wrong."""
        with self._lock:
            self._daemon()
            export = self._exports.get(iqn)
            if export is None or lun != base.LUN:
                raise _error(f'{iqn} has no LUN {lun}')
            if export.accounts and (user not in export.accounts or
                                    self._accounts.get(user) != password):
                raise _error(f'{iqn}: Authentication failure')
            return self._sizes[iqn]

    # ---- saved descriptions
    def _conf(self, name: str) -> str:
        base.check_name(name)
        return os.path.join(self.conf_dir, name + '.json')

    def _write_conf(self, name: str, iqn: str, path: str,
                    chap: tuple[str, str] | None) -> None:
        base.check_export(iqn, path, chap)
        conf = self._conf(name)
        values = {'iqn': iqn, 'path': path}
        if chap is not None:
            values.update(user=chap[0], password=chap[1])
        os.makedirs(self.conf_dir, mode=0o700, exist_ok=True)
        fd = os.open(conf + '.part', os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(values, f)
        os.replace(conf + '.part', conf)

    def read_conf(self, name: str) -> dict[str, str] | None:
        try:
            with open(self._conf(name)) as f:
                values: dict[str, str] = json.load(f)
        except FileNotFoundError:
            return None
        return values

    # ---- exports
    def _make(self, iqn: str, path: str, chap: tuple[str, str] | None) -> base.Export:
        try:
            size = _size(path)
        except OSError as e:
            raise _error(f'cannot use {path} as a backing store: {e}') from e
        export = base.Export(self._next_tid, iqn, [path], [chap[0]] if chap else [], ['ALL'])
        self._next_tid += 1
        self._exports[iqn], self._sizes[iqn] = export, size
        if chap:
            self._accounts[chap[0]] = chap[1]
        return export

    def _drop(self, iqn: str) -> base.Export | None:
        export = self._exports.pop(iqn, None)
        self._sizes.pop(iqn, None)
        for user in export.accounts if export else []:
            self._accounts.pop(user, None)
        return export

    def create(self, name: str, iqn: str, path: str,
               chap: tuple[str, str] | None) -> base.Export:
        with self._lock:
            self._write_conf(name, iqn, path, chap)
            self._daemon()
            existing = self._exports.get(iqn)
            # as tgt: a daemon lists account names only, so a changed password
            # alone is not seen (drivers keep a volume's CHAP secret for good)
            if existing and (existing.backing_stores != [path] or
                             existing.accounts != ([chap[0]] if chap else [])):
                self._drop(iqn)
                existing = None
            return existing or self._make(iqn, path, chap)

    def remove(self, name: str, iqn: str) -> list[str]:
        with self._lock:
            saved = self.read_conf(name)
            if not self.running and saved is None:
                return []
            self._daemon()
            export = self._drop(iqn)
            stores = list(export.backing_stores) if export else []
            if saved and saved.get('user'):
                self._accounts.pop(saved['user'], None)
            for path in (self._conf(name), self._conf(name) + '.part'):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            if saved and saved['path'] not in stores:
                stores.append(saved['path'])
            return stores

    def recreate_lun(self, name: str, iqn: str, path: str) -> None:
        with self._lock:
            saved = self.read_conf(name)
            self._daemon()
            export = self._exports.get(iqn)
            if saved is None or export is None:
                raise _error(f'{iqn} is not exported')
            chap = (saved['user'], saved['password']) if 'user' in saved else None
            self._write_conf(name, iqn, path, chap)
            try:
                self._sizes[iqn] = _size(path)
            except OSError as e:
                raise _error(f'cannot use {path} as a backing store: {e}') from e
            export.backing_stores = [path]
