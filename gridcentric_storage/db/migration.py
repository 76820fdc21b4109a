"""Alembic migrations (upgrade only), driven without an alembic.ini on disk."""

import os

import alembic.command
import alembic.config
import alembic.migration
import sqlalchemy as sa

_SCRIPT_DIR = os.path.join(os.path.dirname(__file__), 'migrations')
#: The newest revision; bump it with every new file in migrations/versions.
HEAD = '0008'


def _config(connection: sa.engine.Connection) -> alembic.config.Config:
    config = alembic.config.Config()
    config.set_main_option('script_location', _SCRIPT_DIR)
    config.attributes['connection'] = connection
    return config


def db_sync(engine: sa.engine.Engine, revision: str = 'head') -> None:
    with engine.begin() as connection:
        alembic.command.upgrade(_config(connection), revision)


def db_version(engine: sa.engine.Engine) -> str | None:
    with engine.connect() as connection:
        return alembic.migration.MigrationContext.configure(connection).get_current_revision()
