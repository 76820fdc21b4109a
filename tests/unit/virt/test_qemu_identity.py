"""The identity port: its devices on the command line and the message a guest reads."""

import base64
import os
import socket
import threading

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qemu_identity
from tests.fixtures.services import wait_for
from tests.unit.virt.test_qemu_cmdline import argv_of, layout, values_of


def test_a_layout_with_the_port_gets_a_virtio_serial_port_whose_chardev_is_a_socket() -> None:
    argv = argv_of(layout(identity_port=True))
    devices = values_of(argv, '-device')
    assert 'virtio-serial-pci,id=vser0,bus=pci.0,addr=%s' % hex(cmdline.IDENTITY_SLOT) \
        in devices
    port = [d for d in devices if d.startswith('virtserialport,')]
    assert port == ['virtserialport,bus=vser0.0,nr=1,chardev=identity0,id=identity0port,'
                    'name=com.gridcentric.identity.0']
    assert 'socket,id=identity0,path=/vms/vm1/identity.sock,server=on,wait=off' in \
        values_of(argv, '-chardev')          # QEMU never waits for the host


def test_older_layouts_have_no_port_and_keep_their_device_model() -> None:
    old = cmdline.Layout.from_json({'id': 'vm1', 'name': 'web', 'memory_mb': 256,
                                    'vcpus': 1, 'accel': 'tcg'})
    assert old.identity_port is False
    assert not [d for d in values_of(argv_of(old), '-device') if 'serial' in d]


def test_the_port_does_not_take_a_disk_or_nic_slot() -> None:
    assert cmdline.IDENTITY_SLOT not in range(cmdline.FIRST_DISK_SLOT,
                                              cmdline.LAST_PCI_SLOT + 1)
    assert cmdline.IDENTITY_SLOT != cmdline.NIC_SLOT


def test_the_message_is_one_base64_line_per_file_then_end() -> None:
    files = {'instance': b'id=c1\nname=c1\n', 'user_data': b'\x00binary\nlines'}
    lines = qemu_identity.message(files).split(b'\n')
    assert lines[0] == b'GC-IDENTITY 1'
    assert lines[-2:] == [b'END', b'']
    decoded = {name.decode(): base64.b64decode(data)
               for name, data in (line.split(b' ') for line in lines[1:-2])}
    assert decoded == files


def _guest(path: str, reply: bytes, got: list[bytes], done: threading.Event) -> None:
    """A stand-in for QEMU's socket and the guest behind it."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen(1)
        done.set()
        conn, _ = server.accept()
        with conn:
            data = b''
            while not data.endswith(b'END\n'):
                data += conn.recv(4096)
            got.append(data)
            conn.sendall(reply)
            got.append(conn.recv(10))        # b'' once the host hung up


def _listening_guest(tmp_path, reply: bytes) -> tuple[str, list[bytes], threading.Thread]:
    path = os.path.join(tmp_path, 'identity.sock')
    got: list[bytes] = []
    listening = threading.Event()
    guest = threading.Thread(target=_guest, args=(path, reply, got, listening))
    guest.start()
    listening.wait(10)
    return path, got, guest


def test_the_host_hangs_up_once_the_guest_acknowledged(tmp_path) -> None:
    path, got, guest = _listening_guest(tmp_path, b'GC-IDENTITY-ACK\n')
    qemu_identity.deliver(path, {'instance': b'id=c1\n'})
    guest.join(10)
    assert got[0] == qemu_identity.message({'instance': b'id=c1\n'})
    assert got[1] == b''


def test_the_host_keeps_the_connection_until_the_guest_answers(tmp_path) -> None:
    path, got, guest = _listening_guest(tmp_path, b'')
    qemu_identity.deliver(path, {'instance': b'id=c1\n'}, hold=0.5)
    wait_for(lambda: got, 10, what='the message')
    assert guest.is_alive()                  # still connected: no answer yet
    guest.join(10)                           # hung up after hold
    assert got[1] == b''


def test_no_listener_is_a_driver_error_naming_the_socket(tmp_path) -> None:
    path = os.path.join(tmp_path, 'identity.sock')
    with pytest.raises(exception.DriverError, match='identity.sock'):
        qemu_identity.deliver(path, {'instance': b'id=c1\n'})
