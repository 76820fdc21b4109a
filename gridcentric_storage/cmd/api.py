"""gridcentric-api: the REST API (paste pipeline from api-paste.ini)."""

import logging
import sys

from oslo_config import cfg

from gridcentric_storage.api import app
from gridcentric_storage.cmd import common
from gridcentric_storage.common import rpc, wsgi_server

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    common.setup(argv)
    rpc.init()
    try:
        application = app.load_app()
    except SystemExit as e:
        print('gridcentric-api: %s' % e, file=sys.stderr)
        return 2
    server = wsgi_server.WSGIService(application, CONF.api.listen, CONF.api.port,
                                     threads=CONF.api.threads, backlog=CONF.api.backlog)
    server.start()
    common.wait_for_signal()
    server.stop()
    rpc.cleanup()
    return 0
