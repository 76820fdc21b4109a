"""gridcentric-manage: database and service administration.

    gridcentric-manage --config-file /etc/gridcentric-storage/gridcentric-storage.conf db sync
    gridcentric-manage db version
    gridcentric-manage service list
"""

import sys
from typing import Any

from oslo_config import cfg

from gridcentric_storage.cmd import common
from gridcentric_storage.db import api as db
from gridcentric_storage.db import migration

CONF = cfg.CONF


def _db_sync() -> int:
    migration.db_sync(db.get_engine())
    print('Database at revision %s' % migration.db_version(db.get_engine()))
    return 0


def _db_version() -> int:
    print(migration.db_version(db.get_engine()) or 'None (run "db sync")')
    return 0


def _service_list() -> int:
    print('%-30s %-14s %-6s %s' % ('Host', 'Topic', 'State', 'Last seen'))
    for service in db.service_get_all():
        state = 'up' if db.is_fresh(service['last_seen_at']) else 'down'
        print('%-30s %-14s %-6s %s' % (service['host'], service['topic'], state,
                                       service['last_seen_at']))
    return 0


_COMMANDS = {('db', 'sync'): _db_sync, ('db', 'version'): _db_version,
             ('service', 'list'): _service_list}


def _add_parsers(subparsers: Any) -> None:
    for category in ('db', 'service'):
        parser = subparsers.add_parser(category)
        actions = sorted(a for c, a in _COMMANDS if c == category)
        parser.add_argument('action', choices=actions)


def main(argv: list[str] | None = None) -> int:
    CONF.register_cli_opt(cfg.SubCommandOpt('category', title='Commands',
                                            handler=_add_parsers))
    try:
        common.setup(argv)
    except cfg.Error as e:
        print('gridcentric-manage: %s' % e, file=sys.stderr)
        return 2
    try:
        return _COMMANDS[(CONF.category.name, CONF.category.action)]()
    except Exception as e:
        print('gridcentric-manage: %s' % e, file=sys.stderr)
        return 1
