"""The reading end of bench/volume_api_bench.py's GETs, run as its own process:
a real client is one, and inside the bench's process (which runs the API and
the data server) it would share their GIL.

``stream_client.py HOST PORT PATH SINK``: prints ``ready``, waits for a line
on stdin, then GETs ``PATH`` (``-``: reads a bare TCP stream, no HTTP) to
its end and prints the seconds it took and the body's byte count. SINK
``copy`` recv_into()s one preallocated 16 MiB buffer, one copy out of the
kernel per byte as dd's read(2) into its buffer; ``splice`` moves the bytes
to /dev/null through a pipe, no copy at all.
"""

import fcntl
import os
import socket
import sys
import time

BLOCK = 16 << 20


def _head(sock: socket.socket, path: str, host: str) -> int:
    """Send the GET, read its response head; returns the body bytes read with it."""
    sock.sendall(b'GET %s HTTP/1.1\r\nHost: %s\r\nX-Auth-Token: admin:admin\r\n\r\n'
                 % (path.encode(), host.encode()))
    head = b''
    while b'\r\n\r\n' not in head:
        # small reads: the body after the head stays in the socket for the sink
        got = sock.recv(256)
        if not got:
            raise SystemExit('GET %s: no answer' % path)
        head += got
    head, body = head.split(b'\r\n\r\n', 1)
    status = head.split(b'\r\n', 1)[0]
    if not status.endswith(b' 200 OK'):
        raise SystemExit('GET %s: %s' % (path, status.decode()))
    return len(body)


def _copy(sock: socket.socket) -> int:
    view = memoryview(bytearray(BLOCK))
    got = 0
    while n := sock.recv_into(view):
        got += n
    return got


def _splice(sock: socket.socket) -> int:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20)
    null = os.open(os.devnull, os.O_WRONLY)
    got = 0
    while n := os.splice(sock.fileno(), w, 1 << 20):
        got += n
        while n:
            n -= os.splice(r, null, n)
    return got


def main() -> int:
    host, port, path, sink = sys.argv[1:5]
    print('ready', flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    with socket.create_connection((host, int(port))) as sock:
        got = 0 if path == '-' else _head(sock, path, host)
        got += _splice(sock) if sink == 'splice' else _copy(sock)
    print('%.6f %d' % (time.perf_counter() - start, got), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
