"""Live volume migration in the libvirt driver (``virt/libvirt_mirror.py``), on a real
guest under a real libvirtd (the ``libvirtd`` fixture).

A running test guest's disk moves onto a qcow2 file while it runs: the domain stays
running and its console keeps counting, the live domain XML names the destination
with the disk's ``<iotune>`` kept, the destination holds the disk's data, and QEMU no
longer has the source open. A destination that cannot be opened leaves the guest on
its source.
"""

import os
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_mirror
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import make_driver, work_dir

MiB = 1 << 20
SIZE = 32 * MiB
VM = 'hB-lvmirror'                    # domain gc-hB-lvmirror
VOLUME = 'vol-lvmirror'


def local(path: str, fmt: str, limits: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {'device_path': path, 'format': fmt}
    if limits:
        data['qos_specs'] = dict(limits)
    return {'driver_volume_type': 'local', 'data': data}


def counter(driver: Any) -> int:
    found = guest.counters(driver.get_console_output(VM))
    return found[-1][0] if found else -1


def source_file(driver: Any) -> str | None:
    root = ET.fromstring(driver._domain(VM).XMLDesc(0))
    return root.find("devices/disk/target[@dev='vda']/../source").get('file')


def holds(driver: Any, path: str) -> bool:
    pid = driver.get_info(VM).pid
    fds = '/proc/%d/fd' % pid
    return any(os.path.realpath(os.path.join(fds, fd)) == path for fd in os.listdir(fds))


@pytest.fixture
def running(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[tuple[Any, str, bytes]]:
    """(driver, its directory, the disk's data); the disk is read-only when the
    test's param says so."""
    read_only = bool(getattr(request, 'param', False))
    monkeypatch.setattr(qemu_mirror, 'default_progress', lambda volume_id: None)
    boot = guest.build_or_skip()
    with work_dir() as root:
        driver = make_driver('libvirt', root, request)
        content = os.urandom(SIZE)
        source = os.path.join(root, 'source.raw')
        with open(source, 'wb') as f:
            f.write(content)
        try:
            driver.spawn(base.InstanceSpec(
                id=VM, name=VM, memory_mb=128, kernel=boot.kernel, initrd=boot.initrd,
                cmdline=guest.CMDLINE, disks=[base.Disk(VOLUME, local(
                    source, 'raw', {'total_iops_sec': 150}), read_only)]))
            wait_for(lambda: counter(driver) >= 2, 180, 0.2, 'the guest to count')
            yield driver, root, content
        finally:
            driver.destroy(VM)


def test_the_disk_moves_onto_qcow2_while_the_domain_runs(
        running: tuple[Any, str, bytes]) -> None:
    driver, root, content = running
    source = os.path.join(root, 'source.raw')
    dest = guest.qcow2(os.path.join(root, 'dest.qcow2'), str(SIZE))
    before = counter(driver)
    driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(dest, 'qcow2')))
    assert driver.get_info(VM).state == 'running'
    assert source_file(driver) == dest
    assert driver._domain(VM).blockIoTune('vda', 0)['total_iops_sec'] == 150
    assert driver._domain(VM).blockJobInfo('vda', 0) == {}
    assert holds(driver, dest) and not holds(driver, source)
    wait_for(lambda: counter(driver) > before + 2, 60, 0.2, 'the guest to keep counting')
    raw = os.path.join(root, 'check.raw')
    subprocess.run(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'raw', dest, raw],
                   check=True, timeout=120)
    with open(raw, 'rb') as f:
        assert f.read() == content


def test_a_destination_that_cannot_be_opened_leaves_the_domain_on_its_source(
        running: tuple[Any, str, bytes]) -> None:
    driver, root, _ = running
    missing = os.path.join(root, 'missing.qcow2')
    with pytest.raises(exception.DriverError) as failed:
        driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(missing, 'qcow2')))
    assert 'stays on its source disk' in failed.value.message
    assert source_file(driver) == os.path.join(root, 'source.raw')
    assert driver._domain(VM).blockJobInfo('vda', 0) == {}
    assert driver.get_info(VM).state == 'running'
    before = counter(driver)
    wait_for(lambda: counter(driver) > before + 2, 60, 0.2, 'the guest to keep counting')


@pytest.mark.parametrize('running', [True], indirect=True)
def test_a_read_only_disk_moves_and_stays_read_only(
        running: tuple[Any, str, bytes]) -> None:
    driver, root, content = running
    dest = os.path.join(root, 'dest.raw')
    with open(dest, 'wb') as f:
        f.truncate(SIZE)
    driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(dest, 'raw'), True))
    assert source_file(driver) == dest
    disk = ET.fromstring(driver._domain(VM).XMLDesc(0)).find(
        "devices/disk/target[@dev='vda']/..")
    assert disk is not None and disk.find('readonly') is not None
    with open(dest, 'rb') as f:
        assert f.read() == content
