"""A recording executor that plays an lvm2 + tgt host, for the LVM driver's unit tests.

Thin pools, thin volumes, COW snapshots, activation and lvmlockd need
device-mapper, which the test machines lack (``lvcreate -s`` there fails with
"Can't create snapshot without using device-mapper kernel driver."). The driver's
behaviour for them is checked at the level that can run anywhere: the exact argv
it executes, against answers in lvm2's real JSON report format (captured from
lvm2 2.03.16) and tgtadm's real ``--op show`` text. :class:`FakeHost` keeps just
enough state (LVs, attributes, targets) for whole workflows to run.
"""

import json
import shlex
from typing import Any

from gridcentric_storage.common import exception

GiB = 1 << 30
EXTENT = 4 << 20


def lvm_json(key: str, rows: list[dict[str, str]]) -> str:
    """lvm2's ``--reportformat json`` text, indentation included."""
    body = ',\n'.join('                  ' + json.dumps(r, separators=(', ', ':'))
                       for r in rows)
    return ('  {\n      "report": [\n          {\n              "%s": [\n%s\n'
            '              ]\n          }\n      ]\n  }\n' % (key, body))


class FakeHost:
    """Answers lvm2, tgt, losetup, dd and qemu-img argv lists; records every call."""

    def __init__(self, vg: str = 'vg0', vg_size: int = 100 * GiB, lock_type: str = '',
                 activation: bool = True) -> None:
        self.vg, self.vg_size, self.lock_type = vg, vg_size, lock_type
        self.activation = activation
        self.lvs: dict[str, dict[str, Any]] = {}
        self.targets: dict[str, dict[str, Any]] = {}
        self.accounts: set[str] = set()
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str] | None] = []
        self.fail: dict[str, str] = {}  # argv[0] -> stderr to fail with

    # ---- helpers for tests
    def add_lv(self, name: str, size: int, attr: str = '-wi-a-----', origin: str = '',
               pool_lv: str = '', data_percent: str = '', tags: str = 'gridcentric-storage'
               ) -> None:
        self.lvs[name] = {'size': size, 'attr': attr, 'origin': origin, 'pool_lv': pool_lv,
                          'data_percent': data_percent, 'tags': tags}

    def commands(self, *programs: str) -> list[str]:
        """The recorded calls of these programs as shell-quoted strings."""
        return [shlex.join(c) for c in self.calls if not programs or c[0] in programs]

    # ---- the executor
    def __call__(self, argv: list[str], **kwargs: Any) -> str:
        argv = list(argv)
        self.calls.append(argv)
        self.envs.append(kwargs.get('env'))
        if argv[0] in self.fail:
            raise exception.DriverError(reason=f'{shlex.join(argv)} failed (exit 5): '
                                               f'{self.fail[argv[0]]}')
        args = argv[1:]
        if args[:2] == ['--driverloaded', 'n']:
            args = args[2:]
        handler = getattr(self, '_' + argv[0].replace('-', '_'), None)
        return handler(args) if handler else ''

    def _used(self) -> int:
        return sum(lv['size'] for lv in self.lvs.values() if not lv['pool_lv'])

    def _vgs(self, args: list[str]) -> str:
        fields = args[args.index('-o') + 1]
        if 'pv_name' in fields:
            return lvm_json('vg', [{'vg_name': self.vg, 'pv_name': '/dev/sdb',
                                    'pe_start': '1048576'}])
        return lvm_json('vg', [{'vg_name': self.vg, 'vg_size': str(self.vg_size),
                                'vg_free': str(self.vg_size - self._used()),
                                'vg_extent_size': str(EXTENT), 'lv_count': str(len(self.lvs)),
                                'vg_lock_type': self.lock_type}])

    def _lvs(self, args: list[str]) -> str:
        if '--segments' in args:
            name = args[-1].split('/', 1)[1]
            first = 10
            last = first + self.lvs[name]['size'] // EXTENT - 1
            return lvm_json('seg', [{'lv_name': name,
                                     'seg_pe_ranges': f'/dev/sdb:{first}-{last}'}])
        return lvm_json('lv', [{'lv_name': n, 'lv_size': str(lv['size']),
                                'lv_attr': lv['attr'], 'lv_tags': lv['tags'],
                                'origin': lv['origin'], 'pool_lv': lv['pool_lv'],
                                'data_percent': lv['data_percent']}
                               for n, lv in sorted(self.lvs.items())])

    @staticmethod
    def _size(value: str) -> int:
        assert value.endswith('g'), value
        return int(value[:-1]) * GiB

    def _active_flag(self, args: list[str]) -> str:
        return 'a' if self.activation and '-an' not in args else '-'

    def _lvcreate(self, args: list[str]) -> str:
        tags = 'gridcentric-storage' if '--addtag' in args else ''
        act = self._active_flag(args)
        name = args[args.index('-n') + 1] if '-n' in args else ''
        if '-s' in args:
            origin = args[-1].split('/', 1)[1]
            if '-L' in args:  # COW snapshot
                self.lvs[origin]['attr'] = 'o' + self.lvs[origin]['attr'][1:]
                self.add_lv(name, self.lvs[origin]['size'], f'swi-{act}-s---', origin=origin,
                            data_percent='0.00', tags=tags)
            else:  # thin snapshot: skip flag unless -kn
                skip = '-' if '-kn' in args else 'k'
                self.add_lv(name, self.lvs[origin]['size'],
                            f'Vwi-{act if skip == "-" else "-"}-tz-{skip}', origin=origin,
                            pool_lv=self.lvs[origin]['pool_lv'], data_percent='0.00', tags=tags)
        elif '-V' in args:
            pool = args[args.index('-T') + 1].split('/', 1)[1]
            self.add_lv(name, self._size(args[args.index('-V') + 1]), f'Vwi-{act}-tz--',
                        pool_lv=pool, data_percent='0.00', tags=tags)
        elif '-T' in args:
            pool = args[-1].split('/', 1)[1]
            self.add_lv(pool, (self.vg_size - self._used()) * 95 // 100 // EXTENT * EXTENT,
                        f'twi-{act}otz--', data_percent='0.00', tags=tags)
        else:
            alloc = 'c' if 'contiguous' in args else 'i'
            self.add_lv(name, self._size(args[args.index('-L') + 1]), f'-w{alloc}-{act}-----',
                        tags=tags)
        return ''

    def _lvextend(self, args: list[str]) -> str:
        self.lvs[args[-1].split('/', 1)[1]]['size'] = self._size(args[args.index('-L') + 1])
        return ''

    def _lvremove(self, args: list[str]) -> str:
        del self.lvs[args[-1].split('/', 1)[1]]
        return ''

    def _lvconvert(self, args: list[str]) -> str:
        snap = self.lvs.pop(args[-1].split('/', 1)[1])
        origin = self.lvs[snap['origin']]
        if not any(lv['origin'] == snap['origin'] for lv in self.lvs.values()):
            origin['attr'] = '-' + origin['attr'][1:]
        return ''

    def _lvchange(self, args: list[str]) -> str:
        lv = self.lvs[args[-1].split('/', 1)[1]]
        mode = next(a for a in args if a.startswith('-a'))
        state = '-' if mode == '-an' else ('a' if self.activation else '-')
        lv['attr'] = lv['attr'][:4] + state + lv['attr'][5:]
        return ''

    def _losetup(self, args: list[str]) -> str:
        if '--show' in args:
            return '/dev/loop7\n'
        if '--list' in args:
            return json.dumps({'loopdevices': []})
        return ''

    # ---- tgt
    def _tgt_admin(self, args: list[str]) -> str:
        if '--update' in args:
            conf = open(args[args.index('-c') + 1]).read().split()
            iqn = args[args.index('--update') + 1]
            user = conf[conf.index('incominguser') + 1] if 'incominguser' in conf else None
            self.targets[iqn] = {'tid': len(self.targets) + 1, 'user': user,
                                 'path': conf[conf.index('backing-store') + 1]}
            if user:
                self.accounts.add(user)
        elif '--delete' in args:
            self.targets.pop(args[args.index('--delete') + 1], None)
        return ''

    def _tgtadm(self, args: list[str]) -> str:
        if args[args.index('--op') + 1] != 'show':
            if '--user' in args and '--op' in args and 'delete' in args:
                self.accounts.discard(args[args.index('--user') + 1])
            return ''
        mode = args[args.index('--mode') + 1]
        if mode == 'account':
            return 'Account list:\n' + ''.join(f'    {u}\n' for u in sorted(self.accounts))
        if mode == 'system':
            return 'System:\n    State: ready\n'
        out = []
        for iqn, t in self.targets.items():
            out += [f"Target {t['tid']}: {iqn}", '    System information:',
                    '        Driver: iscsi', '        State: ready',
                    '    I_T nexus information:', '    LUN information:',
                    '        LUN: 0', '            Type: controller',
                    '            Backing store path: None',
                    '        LUN: 1', '            Type: disk',
                    f"            Backing store path: {t['path']}",
                    '    Account information:']
            out += [f"        {t['user']}"] if t['user'] else []
            out += ['    ACL information:', '        ALL']
        return '\n'.join(out) + ('\n' if out else '')
