"""Virt drivers to test, and how a test looks into the VMs each one runs.

``make_driver(kind, work, request)`` builds the fake, QEMU or libvirt driver
over the directory ``work``; the real ones skip with the reason when this
host cannot run them (fail instead under ``GC_REQUIRE_SERVICES=1``); the
libvirt one asks for the ``libvirtd`` fixture (conftest.py). The other
helpers read what a user of each hypervisor would: the guest console, the
disks and NIC the hypervisor gives a VM, the command line it runs.
"""

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import base, qemu_cmdline, qmp
from gridcentric_storage.virt.fake import FakeVirtDriver
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
LIBVIRTD = os.path.join(ROOT, 'tools', 'libvirtd.sh')
KINDS = ('fake', 'qemu', 'libvirt')
BOOT_TIMEOUT = 180.0
MEMORY_MB = 256


def skip_or_fail(reason: str) -> None:
    if os.environ.get('GC_REQUIRE_SERVICES') == '1':
        pytest.fail(reason)
    pytest.skip(reason)


def libvirt_missing() -> str | None:
    """Why the libvirt driver cannot run here (plain words), or None."""
    if shutil.which('libvirtd') is None or shutil.which('virtlogd') is None:
        return ('libvirtd is not installed (apt-get install -y libvirt-daemon-system '
                'libvirt-clients python3-libvirt)')
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return ('the libvirt Python bindings are missing (python3-libvirt, or pip install '
                'libvirt-python)')
    if os.geteuid() != 0:
        return 'libvirtd (qemu:///system) needs root'
    return guest.missing()


@contextlib.contextmanager
def work_dir() -> Iterator[str]:
    """A short directory (QEMU's unix sockets) that libvirt's QEMU user may enter."""
    path = tempfile.mkdtemp(prefix='gc-', dir='/tmp')
    os.chmod(path, 0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def make_driver(kind: str, work: str, request: pytest.FixtureRequest) -> base.VirtDriver:
    """The ``kind`` driver over ``work``, its host initialised; skips when it cannot run."""
    if kind == 'fake':
        return FakeVirtDriver()
    if guest.missing():
        skip_or_fail(guest.missing() or '')
    paths = {'instances_path': os.path.join(work, 'i'),
             'live_images_path': os.path.join(work, 'l')}
    driver: base.VirtDriver
    if kind == 'qemu':
        driver = QemuDriver(accel='auto', **paths)
    else:
        request.getfixturevalue('libvirtd')
        from gridcentric_storage.virt.libvirt import LibvirtDriver
        driver = LibvirtDriver(accel='auto', **paths)
    driver.init_host('test-host')
    return driver


def restarted(driver: Any) -> base.VirtDriver:
    """A new driver over the same directories, as after a restart of the compute service."""
    return type(driver)(instances_path=driver.instances_path,
                        live_images_path=driver.live_images_path, accel=driver.accel)


def destroy_all(driver: base.VirtDriver) -> None:
    for instance_id in driver.list_instances():
        driver.destroy(instance_id)


def kind_of(driver: base.VirtDriver) -> str:
    if isinstance(driver, FakeVirtDriver):
        return 'fake'
    return 'qemu' if isinstance(driver, QemuDriver) else 'libvirt'


def disk_file(driver: base.VirtDriver, path: str, size: str = '64M',
              backing: str | None = None) -> str:
    """A qcow2 file for a VM's disk (the fake driver opens nothing: an empty file)."""
    if kind_of(driver) == 'fake':
        open(path, 'xb').close()
        return path
    return guest.qcow2(path, size, backing)


def snapshot(source: str, dest: str) -> str:
    """What a file backend's snapshot is here: a sparse copy of the qcow2."""
    subprocess.run(['cp', '--sparse=always', source, dest], check=True, timeout=60)
    return dest


def console(driver: base.VirtDriver, instance_id: str) -> str:
    return driver.get_console_output(instance_id)


def counter_past(driver: base.VirtDriver, instance_id: str,
                 value: int) -> Callable[[], bool]:
    return lambda: any(n > value for n, _ in guest.counters(console(driver, instance_id)))


def _domain_xml(driver: Any, instance_id: str) -> ET.Element:
    return ET.fromstring(driver._domain(instance_id).XMLDesc(0))


def disk_paths(driver: Any, instance_id: str) -> list[str]:
    """The files and devices the hypervisor has open as the VM's disks, in device order."""
    kind = kind_of(driver)
    if kind == 'fake':
        return [d.connection_info['data']['device_path'] for d in driver.disks(instance_id)]
    if kind == 'qemu':
        sock = os.path.join(driver.get_info(instance_id).instance_dir, 'qmp.sock')
        with qmp.connect(sock) as mon:
            return [b['inserted']['file'] for b in mon.cmd('query-block') if 'inserted' in b]
    return [s.get('file') or s.get('dev') or ''
            for s in _domain_xml(driver, instance_id).iterfind('devices/disk/source')]


def nic_mac(driver: Any, instance_id: str) -> str | None:
    """The MAC address the hypervisor gave the VM's NIC."""
    if kind_of(driver) == 'qemu':
        sock = os.path.join(driver.get_info(instance_id).instance_dir, 'qmp.sock')
        with qmp.connect(sock) as mon:
            return str(mon.cmd('qom-get', path='/machine/peripheral/nic0', property='mac'))
    mac = _domain_xml(driver, instance_id).find('devices/interface/mac')
    return None if mac is None else mac.get('address')


def process_runs(pid: int, name: str) -> bool:
    """Whether ``pid`` is still a process whose command line names ``name``."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return name.encode() in f.read()
    except OSError:
        return False


def native_command_line(driver: Any, disks: list[base.Disk], work: str) -> str:
    """The QEMU command line the driver would run for a VM with ``disks``, as the
    hypervisor side turns it out (libvirt: its own conversion of the domain XML)."""
    spec = base.InstanceSpec(id='remote', name='remote', memory_mb=64, disks=disks)
    if kind_of(driver) == 'qemu':
        layout = qemu_cmdline.Layout(id=spec.id, name=spec.name, memory_mb=64, vcpus=1,
                                     accel='tcg', disks=driver._layout_disks(disks))
        secrets = {}
        for disk in layout.disks:
            for secret_id, value in qemu_cmdline.blockdev_options(
                    disk.connection_info, disk.node)[1].items():
                secrets[secret_id] = os.path.join(work, secret_id + '.secret')
                with open(secrets[secret_id], 'w') as f:
                    f.write(value)
        return shlex.join(qemu_cmdline.build_argv(
            driver.qemu_binary, layout, ram_path=os.path.join(work, 'ram'), share=True,
            qmp_path=os.path.join(work, 'qmp.sock'),
            console_path=os.path.join(work, 'console.log'), secret_files=secrets))
    try:
        xml = ET.tostring(driver.spawn_xml(spec, work, 'qemu'), encoding='unicode')
        return str(driver._connection().domainXMLToNative('qemu-argv', xml, 0))
    finally:
        driver._drop_secrets(spec.id)


def protocol_nodes(command_line: str) -> dict[str, dict[str, Any]]:
    """The protocol node of every ``-blockdev`` of a command line, by its driver."""
    nodes = {}
    for match in re.finditer(r"-blockdev '(\{.*?\})'", command_line):
        node = json.loads(match.group(1))
        node = node.get('file', node)
        if isinstance(node, dict) and 'driver' in node:
            nodes[node['driver']] = node
    return nodes
