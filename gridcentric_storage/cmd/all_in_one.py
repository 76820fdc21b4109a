"""gridcentric-all-in-one: API and compute service in one process.

The embedded default: SQLite under ``[DEFAULT] state_path``, in-process
messaging (``gc-inproc://``, ``common.inproc_transport``), noauth on
loopback, and a ``file`` backend named ``default`` registered on first start.
Every default can be changed in the config file, e.g. a real
``transport_url`` or ``[database] connection``.
"""

import logging
import os
import sys
import uuid

from oslo_config import cfg

from gridcentric_storage.api import app
from gridcentric_storage.cmd import common
from gridcentric_storage.common import rpc, wsgi_server
from gridcentric_storage.compute import service
from gridcentric_storage.db import api as db
from gridcentric_storage.db import migration
from gridcentric_storage.volume import drivers

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def _default_state_path() -> str:
    if os.geteuid() == 0:
        return '/var/lib/gridcentric-storage'
    data_home = os.environ.get('XDG_DATA_HOME', os.path.expanduser('~/.local/share'))
    return os.path.join(data_home, 'gridcentric-storage')


def endpoint(listen: str, port: int) -> str:
    """The URL a local client uses: a wildcard address is reached on loopback."""
    host = {'0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1'}.get(listen, listen)
    return 'http://%s:%d' % ('[%s]' % host if ':' in host else host, port)


def register_default_backend(host: str) -> None:
    backend_id = str(uuid.uuid4())
    cls = drivers.get_driver_class('file')
    db.backend_create({
        'id': backend_id, 'name': 'default', 'driver': 'file',
        'options': cls.default_options(backend_id, CONF.state_path),
        'state': 'enabled', 'role': 'san', 'cost': 0, 'tags': [],
        'availability_zone': CONF.default_availability_zone, 'host': host,
        'max_over_subscription_ratio': None, 'reserved_percentage': 0,
        'capabilities': {}})
    LOG.info('Registered the default file backend %s', backend_id)


def prepare_database() -> bool:
    """Create or upgrade the schema; True when the database was new."""
    os.makedirs(CONF.state_path, mode=0o750, exist_ok=True)
    engine = db.get_engine()
    fresh = migration.db_version(engine) is None
    migration.db_sync(engine)
    return fresh


def main(argv: list[str] | None = None) -> int:
    common.setup(argv, defaults={(None, 'state_path'): _default_state_path(),
                                 (None, 'transport_url'): 'gc-inproc://',
                                 ('api', 'auth_strategy'): 'noauth',
                                 ('volume', 'create_default_backend'): True})
    try:
        app.check_auth_strategy()
    except SystemExit as e:
        print('gridcentric-all-in-one: %s' % e, file=sys.stderr)
        return 2
    try:
        # Before the database and any recovery: a second service on the same
        # state directory must not touch the first one's work.
        lock = common.lock_state_path(CONF.state_path)
    except common.StatePathBusy as e:
        print('gridcentric-all-in-one: %s' % e, file=sys.stderr)
        return 1
    except OSError as e:
        print('gridcentric-all-in-one: %s' % e, file=sys.stderr)
        return 2
    try:
        fresh = prepare_database()
    except OSError as e:
        print('gridcentric-all-in-one: %s' % e, file=sys.stderr)
        return 2
    if fresh and CONF.volume.create_default_backend:
        register_default_backend(CONF.host)
    rpc.init()
    compute = service.ComputeService()
    compute.start()
    server = wsgi_server.WSGIService(app.load_app(), CONF.api.listen, CONF.api.port,
                                     threads=CONF.api.threads, backlog=CONF.api.backlog)
    server.start()
    url = endpoint(CONF.api.listen, server.port)
    print('gridcentric-all-in-one: API on %s (state in %s); Ctrl-C stops'
          % (url, CONF.state_path), flush=True)
    if CONF.api.auth_strategy == 'noauth':
        # The real port (config, CLI or a free one), so the hint always works.
        gc_api = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), 'gc-api')
        print('gridcentric-all-in-one: try: %s --os-auth-type none --os-endpoint %s '
              'backend-list' % (gc_api, url), flush=True)
    common.wait_for_signal()
    server.stop()
    compute.stop()
    rpc.cleanup()
    lock.close()
    return 0
