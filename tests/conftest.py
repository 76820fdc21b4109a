"""Shared fixtures: a fresh configuration and database per test.

Everything here is real: SQLite through oslo.db and alembic, oslo.messaging's
in-process ``fake://`` driver, the paste-deployed API on a loopback port.
"""

import os

import pytest
from oslo_config import cfg

from gridcentric_storage import conf
from gridcentric_storage.api import policy
from gridcentric_storage.common import rpc
from gridcentric_storage.db import api as db
from gridcentric_storage.db import migration

CONF = cfg.CONF
conf.register_all()
CONF([], project='gridcentric-storage', default_config_files=[])


def require_service(env: str, what: str) -> str:
    """URL of a server the test tooling started, or skip (fail under CI)."""
    url = os.environ.get(env)
    if url:
        return url
    message = ('%s is not running: start it with tools/%s start and export %s '
               '(.ci/run does)' % (what, 'postgres.sh' if 'PG' in env else 'rabbitmq.sh', env))
    if os.environ.get('GC_REQUIRE_SERVICES') == '1':
        pytest.fail(message)
    pytest.skip(message)


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


@pytest.fixture
def gc_db(gc_conf):
    migration.db_sync(db.get_engine())
    return db


@pytest.fixture
def cloud(gc_db):
    """The real paste-deployed API and a compute service over fake:// RPC."""
    from tests.fixtures.services import InProcessCloud

    instance = InProcessCloud()
    yield instance
    instance.stop()
