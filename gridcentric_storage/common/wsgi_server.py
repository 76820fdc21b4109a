"""A small threaded WSGI server for the API, the all-in-one and the data server.

A fixed pool of ``threads`` workers serves requests; while all of them are
busy the accept loop waits, so a burst of connections queues in the kernel's
listen backlog (``backlog``, like oslo.service's 4096) instead of being reset
at the default backlog of 5, and a flood cannot start one thread per
connection. Production deployments may instead run
``gridcentric_storage.api.wsgi_app`` under uWSGI or mod_wsgi, as current
OpenStack services do::

    server = WSGIService(app, '127.0.0.1', 0, threads=64, backlog=4096)
    server.start()          # serves on server.port
    server.stop()
"""

import contextlib
import logging
import queue
import selectors
import socket
import socketserver
import threading
from typing import Any
from wsgiref import simple_server

LOG = logging.getLogger(__name__)

#: environ key of the connection's socket: a stream relay moves a request body
#: with splice from it rather than through ``wsgi.input`` (other WSGI servers
#: do not set it; then ``wsgi.input`` is read as usual).
SOCKET_KEY = 'gridcentric.socket'

DEFAULT_THREADS = 64
DEFAULT_BACKLOG = 4096


class PromptShutdown(socketserver.TCPServer):
    """socketserver's serve_forever and shutdown, woken at once: BaseServer's loop
    looks for a shutdown request only every poll_interval (0.5 s), so each
    server of a stopping service held the stop up to that long, and an idle
    server woke twice a second. Here shutdown() wakes the loop through a socket
    pair; put this class before the socketserver class among the bases."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._shutdown_request = False
        self._is_shut_down = threading.Event()
        super().__init__(*args, **kwargs)

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._is_shut_down.clear()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._shutdown_request:
                    for key, _events in selector.select():
                        if key.fileobj is self._wake_r:
                            self._wake_r.recv(64)
                        elif not self._shutdown_request:
                            self._handle_request_noblock()  # type: ignore[attr-defined]
                    self.service_actions()
        finally:
            self._shutdown_request = False
            self._is_shut_down.set()

    def shutdown(self) -> None:
        self._shutdown_request = True
        # closed by server_close: a second stop, with no loop left to wake
        with contextlib.suppress(OSError):
            self._wake_w.send(b'\0')
        self._is_shut_down.wait()

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()


class _ServerHandler(simple_server.ServerHandler):
    def sendfile(self) -> bool:
        """PEP 3333's hook for a platform's own file transmission: a
        ``wsgi.file_wrapper`` body whose object has ``send_to(socket)`` moves
        its bytes itself (sendfile/splice) instead of being iterated."""
        handler: Any = self  # BaseHandler's attributes are not in its stubs
        send_to = getattr(getattr(handler.result, 'filelike', None), 'send_to', None)
        sock = handler.environ.get(SOCKET_KEY)
        if send_to is None or sock is None:
            return False
        if not handler.headers_sent:
            self.send_headers()
        send_to(sock)
        return True


class _Handler(simple_server.WSGIRequestHandler):
    # A response head is two small writes: with Nagle's algorithm the second
    # waits for the client's (delayed) ACK of the first before any body moves.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info('%s %s', self.address_string(), format % args)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.connection
        return environ

    def handle(self) -> None:
        # WSGIRequestHandler.handle with _ServerHandler in place of ServerHandler
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ''
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile,  # type: ignore[arg-type]
                                 self.get_stderr(), self.get_environ(), multithread=False)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]


class _PooledServer(PromptShutdown, simple_server.WSGIServer):
    """WSGIServer whose requests run on at most ``threads`` worker threads.

    Workers are daemon threads started on demand and then kept: a stop never
    waits for a long request (a volume stream may take minutes), exactly as
    with the ThreadingMixIn this replaces.
    """

    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], threads: int, backlog: int,
                 timeout: float | None) -> None:
        # socketserver reads the listen backlog from this attribute in
        # server_activate(), which the constructor calls.
        self.request_queue_size = backlog
        self._max_threads = threads
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(threads)
        self._queue: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        # Called right after accept(): wait for a free worker before taking
        # the next connection, so the rest wait in the listen backlog. Poll,
        # so that stop() is not held up by long requests.
        while not self._slots.acquire(timeout=0.2):
            if self.stopping.is_set():
                return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if self._idle == 0 and len(self._workers) < self._max_threads:
                worker = threading.Thread(target=self._work, daemon=True,
                                          name='gc-wsgi-%d' % len(self._workers))
                self._workers.append(worker)
                worker.start()
            else:
                self._idle -= 1
        self._queue.put((request, client_address))

    def _work(self) -> None:
        while True:
            request, client_address = self._queue.get()
            try:
                # A blocked send or receive raises instead of holding the worker
                # forever when a peer vanishes without closing.
                request.settimeout(self._timeout)
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._lock:
                    self._idle += 1
                self._slots.release()


class WSGIService:
    def __init__(self, app: Any, host: str, port: int, threads: int = DEFAULT_THREADS,
                 backlog: int = DEFAULT_BACKLOG, timeout: float | None = None) -> None:
        """``timeout``: seconds a connection may block on one send or receive."""
        self._server = _PooledServer((host, port), threads, backlog, timeout)
        self._server.set_app(app)
        self.threads = threads
        self.backlog = backlog
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='gc-wsgi', daemon=True)
        self._thread.start()
        LOG.info('Listening on %s:%d (%d threads, backlog %d)',
                 self._server.server_address[0], self.port, self.threads, self.backlog)

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
