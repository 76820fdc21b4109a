"""Migrations run on SQLite and PostgreSQL, and end exactly at the models."""

import alembic.autogenerate
import alembic.migration
import pytest
import sqlalchemy as sa

from gridcentric_storage.db import migration, models
from tests.conftest import require_service


def _diff(engine: sa.engine.Engine) -> list:
    with engine.connect() as connection:
        context = alembic.migration.MigrationContext.configure(connection)
        return alembic.autogenerate.compare_metadata(context, models.BASE.metadata)


def _check_engine(engine: sa.engine.Engine) -> None:
    assert migration.db_version(engine) is None
    migration.db_sync(engine)
    assert migration.db_version(engine) == migration.HEAD
    assert _diff(engine) == []
    migration.db_sync(engine)  # a second sync is a no-op, not an error
    assert migration.db_version(engine) == migration.HEAD


def test_sqlite_migrations_match_models(tmp_path):
    _check_engine(sa.create_engine('sqlite:///%s/m.sqlite' % tmp_path))


@pytest.fixture
def pg_engine():
    url = require_service('GC_TEST_PG_URL', 'PostgreSQL')
    admin = sa.create_engine(url, isolation_level='AUTOCOMMIT')
    name = 'gc_migrations_test'
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % name))
        conn.execute(sa.text('CREATE DATABASE %s' % name))
    engine = sa.create_engine(url.rsplit('/', 1)[0] + '/' + name)
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(sa.text('DROP DATABASE IF EXISTS %s' % name))
    admin.dispose()


def test_postgresql_migrations_match_models(pg_engine):
    _check_engine(pg_engine)


def test_head_is_the_last_revision():
    import alembic.config
    import alembic.script

    config = alembic.config.Config()
    config.set_main_option('script_location', migration._SCRIPT_DIR)
    assert alembic.script.ScriptDirectory.from_config(config).get_heads() == [migration.HEAD]


def test_models_and_migration_detect_a_drift(tmp_path):
    """The comparison is not vacuous: a column missing from the DB shows up."""
    engine = sa.create_engine('sqlite:///%s/d.sqlite' % tmp_path)
    migration.db_sync(engine)
    with engine.begin() as conn:
        conn.execute(sa.text('ALTER TABLE volumes DROP COLUMN provider_location'))
    assert any('provider_location' in repr(d) for d in _diff(engine))
