"""The export target contract (``gridcentric_storage.volume.targets.base``), run on
the in-memory fake and on tgt over the real tgtd (``tools/tgt.sh`` starts one;
skipped with the reason where it cannot, e.g. not root).

What an initiator sees is checked the way one would: for tgt by logging in to the
LUN through QEMU's libiscsi with the CHAP secret of the connection properties,
for the fake through :meth:`FakeTarget.open_lun`.
"""

import dataclasses
import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from os_brick.initiator import connector as brick_connector

from gridcentric_storage.common import exception
from gridcentric_storage.volume.targets import base, tgt
from gridcentric_storage.volume.targets.fake import FakeTarget
from tests.fixtures import tgt as tgt_fixture

MiB = 1 << 20
PREFIX = 'iqn.2010-10.org.openstack:'


@dataclasses.dataclass
class Env:
    target: base.Target
    portal: str
    tmp: str
    names: list[str] = dataclasses.field(default_factory=list)

    def new(self, size: int = MiB) -> tuple[str, str, str]:
        """A fresh (name, iqn, backing file of ``size`` bytes); removed after the test."""
        name = f'volume-{uuid.uuid4()}'
        self.names.append(name)
        return name, PREFIX + name, self.backing(size)

    def backing(self, size: int = MiB) -> str:
        path = os.path.join(self.tmp, f'disk-{uuid.uuid4().hex[:8]}.img')
        with open(path, 'wb') as f:
            f.truncate(size)
        return path

    def login(self, iqn: str, user: str | None = None, password: str | None = None) -> int:
        """Bytes the initiator sees on LUN 1; :class:`Refused` (saying why) when it
        cannot open it."""
        if isinstance(self.target, FakeTarget):
            try:
                return self.target.open_lun(iqn, base.LUN, user, password)
            except exception.DriverError as e:
                raise Refused(str(e)) from e
        reason = tgt_fixture.libiscsi_reason()
        if reason:
            pytest.skip(reason)
        cred = f'{user}%{password}@' if user else ''
        proc = subprocess.run(['qemu-img', 'info', '--output=json',
                               f'iscsi://{cred}{self.portal}/{iqn}/{base.LUN}'],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode:
            raise Refused(proc.stderr)
        size: int = json.loads(proc.stdout)['virtual-size']
        return size


class Refused(Exception):
    pass


@pytest.fixture(params=['fake', 'tgt'])
def env(request, tmp_path) -> Iterator[Env]:
    conf_dir = str(tmp_path / 'targets')
    if request.param == 'tgt':
        portal = tgt_fixture.tgtd_or_skip()
        target: base.Target = tgt.TgtAdm(conf_dir)
    else:
        portal, target = '127.0.0.1:3260', FakeTarget(conf_dir)
    env = Env(target, portal, str(tmp_path))
    yield env
    for name in env.names:  # never leave targets or accounts in a shared tgtd
        env.target.remove(name, PREFIX + name)


CHAP = ('Xq3bZ0c9LwP2mV7kA1sD', '8hT2nR5yQ0eW3uK6')
OTHER_CHAP = ('Lw2Vb8Nn3Qa9Rt6Yc1Zx', 'p4Kd7Gm2Hs9Jf5Tw')


def test_ping_answers(env):
    env.target.ping()


def test_create_exports_the_backing_store_behind_chap(env):
    name, iqn, path = env.new()
    export = env.target.create(name, iqn, path, CHAP)
    assert (export.iqn, export.backing_stores, export.accounts) == (iqn, [path], [CHAP[0]])
    assert env.target.show()[iqn] == export
    assert CHAP[0] in env.target.accounts()
    assert env.target.read_conf(name) == {'iqn': iqn, 'path': path,
                                          'user': CHAP[0], 'password': CHAP[1]}
    # the saved description holds the secret: only its owner may read it
    assert stat.S_IMODE(os.stat(env.target.conf_dir).st_mode) == 0o700
    for entry in os.scandir(env.target.conf_dir):
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert env.login(iqn, *CHAP) == MiB
    for creds in ((CHAP[0], 'wrongpassword1234'), ('nobody12345', CHAP[1]), ()):
        with pytest.raises(Refused, match='Authentication failure'):
            env.login(iqn, *creds)


def test_create_without_chap_admits_any_initiator(env):
    name, iqn, path = env.new()
    assert env.target.create(name, iqn, path, None).accounts == []
    assert env.target.read_conf(name) == {'iqn': iqn, 'path': path}
    assert 'auth_method' not in env.target.connection_properties(name, env.portal)
    assert env.login(iqn) == MiB


def test_create_again_leaves_the_running_export_as_it_is(env):
    name, iqn, path = env.new()
    first = env.target.create(name, iqn, path, CHAP)
    assert env.target.create(name, iqn, path, CHAP) == first
    assert [i for i in env.target.show() if i == iqn] == [iqn]


def test_create_rebuilds_an_export_whose_store_or_account_changed(env):
    name, iqn, path = env.new()
    env.target.create(name, iqn, path, CHAP)
    moved = env.backing(2 * MiB)
    export = env.target.create(name, iqn, moved, OTHER_CHAP)
    assert (export.backing_stores, export.accounts) == ([moved], [OTHER_CHAP[0]])
    assert env.target.show()[iqn] == export
    assert CHAP[0] not in env.target.accounts()  # the old account went with it
    assert env.login(iqn, *OTHER_CHAP) == 2 * MiB
    with pytest.raises(Refused, match='Authentication failure'):
        env.login(iqn, *CHAP)


def test_create_after_the_saved_values_brings_the_same_export_back(env):
    """ensure_export: a driver re-creates from read_conf with what it saved."""
    name, iqn, path = env.new()
    env.target.create(name, iqn, path, CHAP)
    saved = env.target.read_conf(name)
    assert saved is not None
    export = env.target.create(name, saved['iqn'], saved['path'],
                               (saved['user'], saved['password']))
    assert (export.backing_stores, export.accounts) == ([path], [CHAP[0]])


def test_remove_deletes_the_export_its_account_and_what_was_saved(env):
    name, iqn, path = env.new()
    env.target.create(name, iqn, path, CHAP)
    assert env.target.remove(name, iqn) == [path]
    assert iqn not in env.target.show()
    assert CHAP[0] not in env.target.accounts()
    assert env.target.read_conf(name) is None
    assert os.listdir(env.target.conf_dir) == []
    with pytest.raises(Refused):
        env.login(iqn, *CHAP)
    assert env.target.remove(name, iqn) == []  # again: nothing left, no error


def test_remove_of_what_was_never_exported_succeeds(env):
    name, iqn, _ = env.new()
    assert env.target.remove(name, iqn) == []


def test_recreate_lun_lets_initiators_see_the_new_size(env):
    name, iqn, path = env.new(MiB)
    env.target.create(name, iqn, path, CHAP)
    os.truncate(path, 3 * MiB)
    assert env.login(iqn, *CHAP) == MiB  # the size is read when the LUN is made
    env.target.recreate_lun(name, iqn, path)
    assert env.login(iqn, *CHAP) == 3 * MiB
    assert env.target.show()[iqn].accounts == [CHAP[0]]


def test_recreate_lun_moves_the_lun_to_a_new_backing_store(env):
    name, iqn, path = env.new()
    env.target.create(name, iqn, path, CHAP)
    moved = env.backing(2 * MiB)
    env.target.recreate_lun(name, iqn, moved)
    assert env.target.show()[iqn].backing_stores == [moved]
    assert env.target.read_conf(name) == {'iqn': iqn, 'path': moved,
                                          'user': CHAP[0], 'password': CHAP[1]}
    assert env.login(iqn, *CHAP) == 2 * MiB


def test_recreate_lun_of_what_is_not_exported_fails(env):
    name, iqn, path = env.new()
    with pytest.raises(exception.DriverError, match='is not exported'):
        env.target.recreate_lun(name, iqn, path)


def test_connection_properties_are_what_os_brick_takes(env):
    name, iqn, path = env.new()
    env.target.create(name, iqn, path, CHAP)
    props = env.target.connection_properties(name, env.portal)
    assert props == {'target_discovered': False, 'target_iqn': iqn,
                     'target_portal': env.portal, 'target_lun': 1, 'auth_method': 'CHAP',
                     'auth_username': CHAP[0], 'auth_password': CHAP[1]}
    conn = brick_connector.InitiatorConnector.factory('ISCSI', root_helper=None)
    assert conn._get_all_targets(props) == [(env.portal, iqn, 1)]
    assert env.login(props['target_iqn'], props['auth_username'],
                     props['auth_password']) == MiB


def test_connection_properties_of_what_is_not_exported_fail(env):
    name, _, _ = env.new()
    with pytest.raises(exception.DriverError, match='is not exported'):
        env.target.connection_properties(name, env.portal)


def test_a_missing_backing_store_is_refused(env):
    name, iqn, path = env.new()
    os.unlink(path)
    with pytest.raises(exception.DriverError):
        env.target.create(name, iqn, path, CHAP)
    with pytest.raises(Refused):
        env.login(iqn, *CHAP)


BAD: list[tuple[str, str, Any, Any]] = [
    ('../etc/passwd', PREFIX + 'v', '/dev/x', None),
    ('.hidden', PREFIX + 'v', '/dev/x', None),
    ('volume-1', 'volume-1', '/dev/x', None),
    ('volume-1', PREFIX + 'v', 'dev/x', None),
    ('volume-1', PREFIX + 'v', '/dev/x\n<target', None),
    ('volume-1', PREFIX + 'v', '/dev/x y', None),
    ('volume-1', PREFIX + 'v', '/dev/x', ('us er', 'p' * 12)),
    ('volume-1', PREFIX + 'v', '/dev/x', ('short', 'p' * 12)),
]


@pytest.mark.parametrize('name,iqn,path,chap', BAD)
def test_odd_values_are_refused_before_anything_is_written(env, name, iqn, path, chap):
    with pytest.raises(exception.DriverError):
        env.target.create(name, iqn, path, chap)
    assert not os.path.exists(env.target.conf_dir) or os.listdir(env.target.conf_dir) == []
    assert iqn not in env.target.show()
