"""[database] options come from oslo.db; only the default connection is ours."""

from oslo_config import cfg
from oslo_db import options as db_options

_DEFAULT_SQL = 'sqlite:///$state_path/gridcentric.sqlite'


def register_opts(conf: cfg.ConfigOpts) -> None:
    db_options.set_defaults(conf, connection=_DEFAULT_SQL)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return []
