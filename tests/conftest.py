"""Shared fixtures: a fresh configuration and database per test.

Everything here is real: SQLite through oslo.db and alembic, oslo.messaging's
in-process ``fake://`` driver, the paste-deployed API on a loopback port.
"""

import contextlib
import os
import shutil
import subprocess
import urllib.parse
import uuid

import pytest
from futurist import _thread as futurist_thread
from oslo_config import cfg

from gridcentric_storage import conf
from gridcentric_storage.api import policy
from gridcentric_storage.common import rpc
from gridcentric_storage.db import api as db
from gridcentric_storage.db import migration

CONF = cfg.CONF
conf.register_all()
CONF([], project='gridcentric-storage', default_config_files=[])

# oslo.messaging's threading executor is a futurist pool whose idle workers look
# for its shutdown once a second (ThreadWorker.MAX_IDLE_FOR), so stopping an RPC
# server (rpc_server.wait(), at the end of every test that ran a service) took up
# to a second of nothing. Here they look every 50 ms; nothing else changes.
futurist_thread.ThreadWorker.MAX_IDLE_FOR = 0.05


def require_service(env: str, what: str) -> str:
    """URL of a server the test tooling started, or skip (fail under CI). RabbitMQ's
    is this process's own vhost on it (see _private_vhost)."""
    url = os.environ.get(env)
    if url and env == 'GC_TEST_RABBIT_URL':
        return _private_vhost(url)
    if url:
        return url
    message = ('%s is not running: start it with tools/%s start and export %s '
               '(.ci/run does)' % (what, 'postgres.sh' if 'PG' in env else 'rabbitmq.sh', env))
    if os.environ.get('GC_REQUIRE_SERVICES') == '1':
        pytest.fail(message)
    pytest.skip(message)


#: The script that runs the test broker, and knows how to reach it with rabbitmqctl.
_RABBITMQ_SH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'tools', 'rabbitmq.sh')
_vhost: dict[str, str] = {}


def _rabbitmq_sh(*args: str) -> None:
    subprocess.run(['bash', _RABBITMQ_SH, *args], check=True, capture_output=True,
                   timeout=120)


def _private_vhost(url: str) -> str:
    """``url`` on a vhost of this test process's own, made once. oslo.messaging names
    its queues after hosts, so two deployments with hosts compute-a and compute-b
    on one vhost (two pytest-xdist workers, or two people's runs) would take each
    other's messages."""
    if url not in _vhost:
        name = 'gc-test-%s-%s' % (os.environ.get('PYTEST_XDIST_WORKER', 'main'),
                                  uuid.uuid4().hex[:8])
        _rabbitmq_sh('add-vhost', name)
        _vhost[url] = name
    return urllib.parse.urlsplit(url)._replace(path='/' + _vhost[url]).geturl()


def pytest_sessionfinish(session: pytest.Session) -> None:
    for name in _vhost.values():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _rabbitmq_sh('delete-vhost', name)
    _vhost.clear()


@pytest.fixture
def gc_conf(tmp_path):
    """Configuration pointing at a private state_path and SQLite file."""
    CONF.set_override('state_path', str(tmp_path))
    CONF.set_override('connection', 'sqlite:///%s/gc.sqlite' % tmp_path, group='database')
    CONF.set_override('transport_url', 'fake://')
    CONF.set_override('auth_strategy', 'noauth', group='api')
    CONF.set_override('report_interval', 1, group='compute')
    CONF.set_override('rpc_call_timeout', 10, group='compute')
    CONF.set_override('host', 'test-host')
    CONF.set_override('virt_driver', 'fake', group='compute')
    CONF.set_override('enabled_drivers', ['file', 'rbd', 'lvm', 'storpool', 'fake'],
                      group='volume')
    CONF.set_override('hooks_dir', str(tmp_path / 'hooks.d'), group='compute')
    db.reset_engine()
    policy.reset()
    yield CONF
    rpc.cleanup()
    db.reset_engine()
    policy.reset()
    CONF.clear_override('state_path')
    for name in ('transport_url', 'host'):
        CONF.clear_override(name)
    CONF.clear_override('connection', group='database')
    CONF.clear_override('auth_strategy', group='api')
    CONF.clear_override('enabled_drivers', group='volume')
    for name in ('report_interval', 'rpc_call_timeout', 'virt_driver', 'hooks_dir'):
        CONF.clear_override(name, group='compute')


@pytest.fixture(scope='session')
def _migrated_sqlite(tmp_path_factory):
    """A SQLite file migrated to the newest revision, once per session (per xdist
    worker): the migrations take about a second, many tests need a database."""
    import sqlalchemy as sa

    path = tmp_path_factory.mktemp('migrated') / 'gc.sqlite'
    engine = sa.create_engine('sqlite:///%s' % path)
    migration.db_sync(engine)
    engine.dispose()
    return path


@pytest.fixture
def gc_db(gc_conf, tmp_path, _migrated_sqlite):
    """The database of gc_conf at the newest revision: a copy of the session's migrated
    file (tests/unit/db/test_migrations.py runs the migrations themselves)."""
    path = tmp_path / 'gc.sqlite'
    if CONF.database.connection == 'sqlite:///%s' % path and not path.exists():
        shutil.copyfile(_migrated_sqlite, path)
    else:
        migration.db_sync(db.get_engine())
    return db


@pytest.fixture
def cloud(gc_db):
    """The real paste-deployed API and a compute service over fake:// RPC."""
    from tests.fixtures.services import InProcessCloud

    instance = InProcessCloud()
    yield instance
    instance.stop()


#: Conformance backends over host-wide daemons: the test Ceph's ``rbd`` pool (whose
#: whole listing the scenarios compare before and after), and tgtd's targets and
#: CHAP accounts (tgt-admin numbers new targets from what tgtd already has).
_SHARED_BACKENDS = frozenset({'rbd', 'cinder-rbd', 'lvm-thick', 'lvm-thin'})
#: Modules that own a fixed name in a shared server (a PostgreSQL database), stop
#: a shared daemon (the test Ceph's OSD) or number tgtd's targets.
_SHARED_MODULES = frozenset({'tests/unit/db/test_migrations.py',
                             'tests/functional/test_rbd_driver.py',
                             'tests/functional/test_lvm_tgt.py'})
#: Single functional tests of that kind: the OSD stops; tgtd numbers a target; the
#: defaults of a config-less all-in-one (port 8779, a fixed state_path).
_SHARED_TESTS = frozenset({
    'tests/functional/test_streamed_launch.py::test_osd_stopped_during_remote_clone',
    'tests/functional/test_volume_migration.py::test_lvm_to_file',
    'tests/functional/test_all_in_one.py::test_all_in_one_without_any_config_file'})


def _shares_host_state(item: pytest.Item) -> bool:
    callspec = getattr(item, 'callspec', None)
    params = callspec.params if callspec else {}
    path = item.nodeid.split('::', 1)[0]
    if path.startswith('tests/conformance/') and params.get('backend') in _SHARED_BACKENDS:
        return True
    if path == 'tests/unit/volume/targets/test_target_contract.py':
        return params.get('env') == 'tgt'
    if path == 'tests/functional/test_volume_lifecycle.py':
        # its rbd backend checks that the whole test pool is empty afterwards
        return 'rbd' in params.values()
    if path.startswith('tests/functional/virt/'):
        # The libvirt driver lists (and destroy_all ends) every gc-* domain, and
        # its tests reuse domain names: the whole of libvirtd is theirs.
        return 'libvirt' in params.values() or path.startswith(
            'tests/functional/virt/test_libvirt')
    return path in _SHARED_MODULES or item.nodeid.split('[', 1)[0] in _SHARED_TESTS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'host_daemons: uses the state of a host-wide daemon '
                            '(set by tests/conftest.py, not by hand)')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that share a host-wide daemon's state: tools/run-tests.sh runs
    ``-m 'not host_daemons'`` two at a time (pytest-xdist; each of those has its
    own temporary directory, SQLite file and fake:// transport), then
    ``-m host_daemons`` one at a time. (xdist's ``--dist loadgroup`` would say
    this with a mark, but it silently stops grouping on pytest 9.2.)"""
    for item in items:
        if _shares_host_state(item):
            item.add_marker(pytest.mark.host_daemons)
