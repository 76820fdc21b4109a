"""A block copy that a dead compute service left in a libvirt domain is aborted when
the service starts again (``libvirt_mirror.abort_leftovers``), on a real guest
under a real libvirtd.

The copy is started as the driver starts one, but throttled to a crawl, so it is
still copying when a new driver (a restarted service) looks: afterwards the
domain runs on its source disk with no block job, QEMU no longer holds the
destination, and the guest keeps counting. (The QEMU driver's case, with a real
SIGKILL of the service, is tests/functional/test_mirror_restart.py.)
"""

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest

from gridcentric_storage.virt import base
from gridcentric_storage.virt.libvirt_xml import disk_xml
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import make_driver, restarted, work_dir

MiB = 1 << 20
SIZE = 32 * MiB
VM = 'hr-lvleft'                      # domain gc-hr-lvleft
VOLUME = 'vol-lvleft'


def local(path: str, fmt: str) -> dict[str, Any]:
    return {'driver_volume_type': 'local', 'data': {'device_path': path, 'format': fmt}}


def counter(driver: Any) -> int:
    found = guest.counters(driver.get_console_output(VM))
    return found[-1][0] if found else -1


def holds(driver: Any, path: str) -> bool:
    fds = '/proc/%d/fd' % driver.get_info(VM).pid
    return any(os.path.realpath(os.path.join(fds, fd)) == path for fd in os.listdir(fds))


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    boot = guest.build_or_skip()
    with work_dir() as root:
        driver = make_driver('libvirt', root, request)
        source = os.path.join(root, 'source.raw')
        with open(source, 'wb') as f:
            f.write(os.urandom(SIZE))
        try:
            driver.spawn(base.InstanceSpec(
                id=VM, name=VM, memory_mb=128, kernel=boot.kernel, initrd=boot.initrd,
                cmdline=guest.CMDLINE, disks=[base.Disk(VOLUME, local(source, 'raw'))]))
            wait_for(lambda: counter(driver) >= 2, 180, 0.2, 'the guest to count')
            yield driver, root
        finally:
            driver.destroy(VM)


def test_a_block_copy_left_by_a_dead_service_is_aborted_at_start(
        running: tuple[Any, str]) -> None:
    driver, root = running
    dest = guest.qcow2(os.path.join(root, 'dest.qcow2'), str(SIZE))
    dom = driver._domain(VM)
    # what libvirt_mirror.copy starts, at 1 MiB/s: the service "dies" right after
    dom.blockCopy('vda', ET.tostring(disk_xml(local(dest, 'qcow2'), 'vda', False, None),
                                     encoding='unicode'),
                  {libvirt.VIR_DOMAIN_BLOCK_COPY_BANDWIDTH: MiB},
                  libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT)
    assert dom.blockJobInfo('vda', 0)
    assert holds(driver, dest)

    again = restarted(driver)
    again.init_host('test-host')
    assert again.cancel_volume_mirrors() == [VOLUME]
    assert dom.blockJobInfo('vda', 0) == {}
    disk = ET.fromstring(dom.XMLDesc(0)).find("devices/disk/target[@dev='vda']/..")
    assert disk is not None and disk.find('mirror') is None
    assert disk.find('source').get('file') == os.path.join(root, 'source.raw')
    assert not holds(driver, dest)
    assert driver.get_info(VM).state == 'running'
    before = counter(driver)
    wait_for(lambda: counter(driver) > before + 2, 60, 0.2, 'the guest to keep counting')
    # nothing left: a second start finds nothing to abort
    assert restarted(driver).cancel_volume_mirrors() == []
