"""iSCSI exports through a local ``tgtd`` the way Cinder's ``TgtAdm`` does it
(:class:`TgtAdm`, the :mod:`.base` contract's implementation for production).

Each exported volume gets one target with one LUN (1) backed by a block device,
described by a conf snippet ``<conf_dir>/<volume name>.conf`` (mode 0600: it
holds the CHAP password) that ``tgt-admin --update`` turns into the running
target; the snippet survives restarts, so ``ensure_export`` can bring the
target back after tgtd or the host restarted::

    <target iqn.2010-10.org.openstack:volume-5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e>
        backing-store /dev/vg0/volume-5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e
        driver iscsi
        incominguser Xq3bZ0c9LwP2mV7kA1sD 8hT2nR5yQ0eW3uK6
        write-cache on
    </target>

    tgt-admin -C 0 -c <conf_dir>/volume-5b2c....conf --update iqn.2010-10...:volume-5b2c...

Without ``initiator-address`` tgt-admin binds the target to ALL initiators;
access is guarded by the per-volume CHAP account (``incominguser``). Removal is
``tgt-admin --force --delete <iqn>`` (``tgtadm --op delete --force --mode target``
as a fallback) plus deleting the CHAP account, which tgt-admin leaves behind.
All tgt commands here talk to the daemon on control port ``control_port``
(``tgtadm -C``); calls are serialised in-process because tgt-admin picks the
next free target id by reading the running state.
"""

import os
import re
import secrets
import string
import threading

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.volume.targets import base
from gridcentric_storage.volume.targets.base import Export

__all__ = ['Export', 'Target', 'TgtAdm', 'generate_chap', 'parse_show']

_LOCK = threading.Lock()  # one tgtd per host, shared by every backend in the process
_ALNUM = string.ascii_letters + string.digits


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def generate_chap() -> tuple[str, str]:
    """A fresh CHAP (user, password): 20 and 16 random letters and digits, like Cinder."""
    return (''.join(secrets.choice(_ALNUM) for _ in range(20)),
            ''.join(secrets.choice(_ALNUM) for _ in range(16)))


#: The former name of :class:`~.base.Export` here (before the contract), kept for
#: callers that still spell it so; not the contract class ``base.Target``.
Target = Export


def parse_show(out: str) -> dict[str, Export]:
    """Parse ``tgtadm --op show --mode target`` into ``{iqn: Export}``."""
    targets: dict[str, Export] = {}
    current: Export | None = None
    section = ''
    for line in out.splitlines():
        m = re.match(r'^Target (\d+): (\S+)\s*$', line)
        if m:
            current = Export(int(m[1]), m[2], [], [], [])
            targets[current.iqn] = current
            section = ''
            continue
        if current is None:
            continue
        stripped = line.strip()
        if line.startswith('    ') and not line.startswith('        '):
            section = stripped
        elif stripped.startswith('Backing store path:'):
            path = stripped.split(':', 1)[1].strip()
            if path and path != 'None':
                current.backing_stores.append(path)
        elif section == 'Account information:' and stripped:
            current.accounts.append(stripped.split()[0])
        elif section == 'ACL information:' and stripped:
            current.acls.append(stripped)
    return targets


class TgtAdm(base.Target):
    """The :class:`~.base.Target` contract over one tgtd: exports described by
    snippets in ``conf_dir``."""

    def __init__(self, conf_dir: str, execute: processutils.Executor | None = None,
                 control_port: int = 0) -> None:
        self.conf_dir = conf_dir
        self._execute = execute or processutils.execute
        self.control_port = str(int(control_port))

    # ---- files
    def conf_path(self, name: str) -> str:
        base.check_name(name)
        return os.path.join(self.conf_dir, name + '.conf')

    def write_conf(self, name: str, iqn: str, path: str,
                   chap: tuple[str, str] | None) -> str:
        base.check_export(iqn, path, chap)
        auth = ''
        if chap is not None:
            auth = f'    incominguser {chap[0]} {chap[1]}\n'
        os.makedirs(self.conf_dir, mode=0o700, exist_ok=True)
        conf = self.conf_path(name)
        text = (f'<target {iqn}>\n'
                f'    backing-store {path}\n'
                f'    driver iscsi\n'
                f'{auth}'
                f'    write-cache on\n'
                f'</target>\n')
        tmp = conf + '.part'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, conf)
        return conf

    def read_conf(self, name: str) -> dict[str, str] | None:
        """``{'iqn', 'path'[, 'user', 'password']}`` from the snippet, None if absent."""
        try:
            with open(self.conf_path(name)) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        values: dict[str, str] = {}
        for line in text.splitlines():
            words = line.strip().strip('<>').split()
            if len(words) == 2 and words[0] == 'target':
                values['iqn'] = words[1]
            elif len(words) == 2 and words[0] == 'backing-store':
                values['path'] = words[1]
            elif len(words) == 3 and words[0] == 'incominguser':
                values['user'], values['password'] = words[1], words[2]
        return values if {'iqn', 'path'} <= set(values) else None

    # ---- tgtd state
    def _tgtadm(self, *args: str) -> str:
        return self._execute(['tgtadm', '-C', self.control_port, '--lld', 'iscsi', *args])

    def show(self) -> dict[str, Export]:
        return parse_show(self._tgtadm('--op', 'show', '--mode', 'target'))

    def accounts(self) -> list[str]:
        out = self._tgtadm('--op', 'show', '--mode', 'account')
        return [line.strip() for line in out.splitlines()[1:] if line.strip()]

    def ping(self) -> None:
        """Raise DriverError (quoting tgtadm) when no tgtd answers on the control port."""
        self._execute(['tgtadm', '-C', self.control_port, '--op', 'show', '--mode', 'system'])

    # ---- targets
    def create(self, name: str, iqn: str, path: str,
               chap: tuple[str, str] | None) -> Export:
        """Write the snippet and make the running target match it (idempotent)."""
        with _LOCK:
            conf = self.write_conf(name, iqn, path, chap)
            existing = self.show().get(iqn)
            wanted_accounts = [chap[0]] if chap else []
            if existing and (existing.backing_stores != [path] or
                             existing.accounts != wanted_accounts):
                # stale (a loop device or account that changed): rebuild it, and
                # drop an account it no longer uses (tgt-admin leaves accounts behind)
                self._delete_locked(iqn, existing, conf)
                self._delete_accounts(set(existing.accounts) - set(wanted_accounts))
                existing = None
            if existing is None:
                self._execute(['tgt-admin', '-C', self.control_port, '-c', conf,
                               '--update', iqn])
            target = self.show().get(iqn)
        if target is None or target.backing_stores != [path]:
            raise _error(f'tgt-admin --update {iqn} did not create the target '
                         f'(backing store {path}); see the tgtd log')
        return target

    def remove(self, name: str, iqn: str) -> list[str]:
        """Delete the target, its CHAP account and snippet; return the backing stores
        it had (the caller may own them, e.g. a loop device). Idempotent."""
        with _LOCK:
            conf = self.conf_path(name)
            saved = self.read_conf(name)
            try:
                target = self.show().get(iqn)
            except exception.DriverError:
                if saved is None:  # never exported by us: tgtd is not needed
                    return []
                raise
            stores = list(target.backing_stores) if target else []
            if target is not None:
                self._delete_locked(iqn, target, conf)
            users = set(target.accounts if target else [])
            if saved and saved.get('user'):
                users.add(saved['user'])
            self._delete_accounts(users)
            for path in (conf, conf + '.part'):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            if saved and saved['path'] not in stores:
                stores.append(saved['path'])
        return stores

    def _delete_accounts(self, users: set[str]) -> None:
        existing = self.accounts() if users else []
        for user in sorted(users & set(existing)):
            self._tgtadm('--op', 'delete', '--mode', 'account', '--user', user)

    def _delete_locked(self, iqn: str, target: Export, conf: str) -> None:
        argv = ['tgt-admin', '-C', self.control_port]
        if os.path.exists(conf):
            argv += ['-c', conf]
        try:
            self._execute([*argv, '--force', '--delete', iqn])
        except exception.DriverError:
            pass  # the tgtadm fallback below says why, if it fails too
        if iqn in self.show():
            self._tgtadm('--op', 'delete', '--force', '--mode', 'target',
                         '--tid', str(target.tid))

    def recreate_lun(self, name: str, iqn: str, path: str) -> None:
        """Give LUN 1 a new backing store or let it see a new size (Cinder's
        ``extend_target``): tgtd reads a backing store's size only when the LUN is
        made, so after a resize the LUN is deleted and made again."""
        with _LOCK:
            saved = self.read_conf(name)
            target = self.show().get(iqn)
            if saved is None or target is None:
                raise _error(f'{iqn} is not exported')
            chap = (saved['user'], saved['password']) if 'user' in saved else None
            self.write_conf(name, iqn, path, chap)
            tid, lun = str(target.tid), str(base.LUN)
            self._tgtadm('--op', 'delete', '--mode', 'logicalunit', '--tid', tid, '--lun', lun)
            self._tgtadm('--op', 'new', '--mode', 'logicalunit', '--tid', tid, '--lun', lun,
                         '-b', path)
