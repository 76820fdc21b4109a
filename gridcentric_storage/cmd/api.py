"""gridcentric-api: the REST API (paste pipeline from api-paste.ini).

With ``[nova] enabled = true`` it also serves the ``cobalt`` RPC endpoint
(``gridcentric_storage.nova.manager``) on topic ``[nova] cobalt_topic``, which
nova-api's gridcentric paste filter calls.
"""

import logging
import sys
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.api import app
from gridcentric_storage.cmd import common
from gridcentric_storage.common import rpc, wsgi_server

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def start_cobalt_endpoint() -> Any:
    """The RPC server of the cobalt endpoint, started; None when ``[nova]`` is off."""
    if not CONF.nova.enabled:
        return None
    from gridcentric_storage.nova import manager, rpcapi

    target = messaging.Target(exchange=rpcapi.EXCHANGE, topic=CONF.nova.cobalt_topic,
                              server=CONF.host)
    server = rpc.get_server(target, [manager.CobaltManager()])
    server.start()
    LOG.info('Serving Cobalt actions on Nova instances (topic %s)', CONF.nova.cobalt_topic)
    return server


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
    cobalt = start_cobalt_endpoint()
    common.wait_for_signal()
    if cobalt is not None:
        cobalt.stop()
        cobalt.wait()
    server.stop()
    rpc.cleanup()
    return 0
