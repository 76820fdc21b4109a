"""A clone's identity told to its guest over the identity port.

Why a channel besides fw_cfg: QEMU 7.2 reads ``-fw_cfg`` files only when it
builds the machine, and cannot change a vmgenid's guid or a virtio-serial
port's chardev after that. A warm pool slot whose machine is built and whose
state is loaded before its clone exists (``qemu_pool_slots.py``, "restored
ahead") can only learn who it is through something the host writes later:
the virtio-serial port :data:`~qemu_cmdline.IDENTITY_PORT`, whose chardev is
a socket QEMU listens on (``identity.sock`` in the instance's directory).

The guest contract: after the generation id changes, the guest agent reads
from the port, one line per file, until ``END``::

    GC-IDENTITY 1
    instance <base64 of the fw_cfg file "instance">
    guest <base64 of "guest">          (only when the clone has parameters)
    user_data <base64 of "user_data">  (only when it has user data)
    END

then answers ``GC-IDENTITY-ACK`` on the port. The files are those a clone
also gets as fw_cfg files ``opt/com.gridcentric/*`` (when started cold), so
an agent that finds nothing on the port within seconds reads fw_cfg.

The host keeps the connection until the guest answers (or
:data:`HOLD_SECONDS` pass), because a virtio-serial port drops what the
host sent when the host hangs up before the guest took it.
"""

import base64
import logging
import os
import selectors
import socket
import threading
import time

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_cmdline as cmdline

LOG = logging.getLogger(__name__)

__all__ = ['ACK', 'HOLD_SECONDS', 'deliver', 'message', 'tell']

ACK = b'GC-IDENTITY-ACK'
#: Seconds the host waits for the guest's answer before it hangs up.
HOLD_SECONDS = 120.0


def message(files: dict[str, bytes]) -> bytes:
    """The identity message of ``files`` (fw_cfg name -> content)."""
    lines = [b'GC-IDENTITY 1\n']
    for name, content in sorted(files.items()):
        lines.append(b'%s %s\n' % (name.encode(), base64.b64encode(content)))
    lines.append(b'END\n')
    return b''.join(lines)


def tell(directory: str, files: dict[str, bytes]) -> None:
    """Send ``files`` (``qemu_live.guest_file_contents``) to the
    identity port of the instance in ``directory`` (see :func:`deliver`)."""
    deliver(os.path.join(directory, cmdline.IDENTITY_SOCKET), files)


def deliver(socket_path: str, files: dict[str, bytes], timeout: float = 5.0,
            hold: float = HOLD_SECONDS) -> None:
    """Send the identity to the port behind ``socket_path``; the connection is then
    kept (by one thread for all of them) until the guest acknowledges, QEMU hangs
    up, or ``hold`` seconds pass. exception.DriverError when QEMU does not take it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(message(files))
    except OSError as e:
        sock.close()
        raise exception.DriverError(reason='cannot tell the guest its identity through %s: '
                                    '%s' % (socket_path, e))
    _HOLDER.add(sock, os.path.basename(os.path.dirname(socket_path)), hold)


class _Holder:
    """One thread keeping every connection whose guest has not answered yet: a
    guest whose agent never reads the port must cost a file descriptor for
    ``hold`` seconds, not a thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, sock: socket.socket, instance: str, hold: float) -> None:
        sock.setblocking(False)
        with self._lock:
            self._selector.register(sock, selectors.EVENT_READ,
                                    [instance, time.monotonic() + hold, b''])
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='gc-identity-hold',
                                                daemon=True)
                self._thread.start()

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._selector.unregister(sock)
        sock.close()

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select(timeout=1.0):
                sock, state = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    chunk = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b''
                state[2] = (state[2] + chunk)[-256:]
                if not chunk or ACK in state[2]:     # QEMU went, or the guest has it
                    self._drop(sock)
            now = time.monotonic()
            with self._lock:
                expired = [k for k in self._selector.get_map().values() if k.data[1] <= now]
            for key in expired:
                LOG.info('Guest of %s did not acknowledge its identity in time',
                         key.data[0])
                assert isinstance(key.fileobj, socket.socket)
                self._drop(key.fileobj)


_HOLDER = _Holder()
