"""A small threaded WSGI server for the API and the all-in-one.

Production deployments may instead run ``gridcentric_storage.api.wsgi_app``
under uWSGI or mod_wsgi, as current OpenStack services do.
"""

import logging
import socketserver
import threading
from typing import Any
from wsgiref import simple_server

LOG = logging.getLogger(__name__)


class _Handler(simple_server.WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        LOG.info('%s %s', self.address_string(), format % args)


class _Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class WSGIService:
    def __init__(self, app: Any, host: str, port: int) -> None:
        self._server = simple_server.make_server(host, port, app, server_class=_Server,
                                                 handler_class=_Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='gc-wsgi', daemon=True)
        self._thread.start()
        LOG.info('API listening on %s:%d', self._server.server_address[0], self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
