"""What only the libvirt driver does (the shared contract: test_conformance.py).

Against a real libvirtd (tools/libvirtd.sh, through the ``libvirtd``
fixture): the domain it creates is transient and runs the RAM file the
driver asked for, iSCSI CHAP passwords live in libvirt secrets only while
the domain needs them, and the ``[libvirt]`` options reach the driver. The
one domain made here sits in its firmware (no kernel): nothing boots.
"""

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import base
from tests.functional.virt.drivers import destroy_all, make_driver, process_runs, work_dir

GENID = '6a1f0c9e-8a43-4d61-9d7a-3c7e1e0b5f21'


@pytest.fixture(scope='module')
def driver(request: pytest.FixtureRequest) -> Iterator[Any]:
    with work_dir() as root:
        drv = make_driver('libvirt', root, request)
        yield drv
        destroy_all(drv)


def test_a_spawned_domain_is_transient_and_maps_the_drivers_ram_file(driver: Any) -> None:
    info = driver.spawn(base.InstanceSpec(id='xml', name='xml', memory_mb=64, vmgenid=GENID))
    try:
        dom = driver._domain('xml')
        assert not dom.isPersistent()            # gone with its QEMU, never redefined
        root = ET.fromstring(dom.XMLDesc(0))
        assert root.get('type') == ('kvm' if driver.accel == 'kvm' else 'qemu')
        assert (root.findtext('name'), root.findtext('genid')) == ('gc-xml', GENID)
        serial = root.find("devices/serial[@type='file']/source")
        assert serial is not None and serial.get('path') == info.console_path
        assert info.pid and process_runs(info.pid, 'guest=gc-xml,')
        with open('/proc/%d/cmdline' % info.pid, 'rb') as f:
            argv = f.read().split(b'\0')
        ram = os.path.join(info.instance_dir, 'ram')
        assert ('memory-backend-file,id=mem,size=64M,mem-path=%s,share=on' % ram).encode() in argv
        assert os.path.getsize(ram) == 64 << 20
    finally:
        driver.destroy('xml')
    assert driver._lookup('xml') is None
    assert not process_runs(info.pid, 'guest=gc-xml,')
    assert not os.path.exists(info.instance_dir)


def test_an_iscsi_chap_password_lives_in_a_libvirt_secret_until_dropped(driver: Any) -> None:
    iscsi = base.Disk('v2', {'driver_volume_type': 'iscsi', 'data': {
        'target_portal': '127.0.0.1:3260', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
        'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
        'auth_password': 's3cr:et,pw'}})
    spec = base.InstanceSpec(id='net', name='net', memory_mb=64, disks=[iscsi])

    def secrets() -> dict[str, str]:
        return {s.usageID(): s.UUIDString() for s in driver._connection().listAllSecrets(0)
                if (s.usageID() or '').startswith('gc-net-')}

    try:
        xml = ET.tostring(driver.spawn_xml(spec, '/tmp/gc-net', 'qemu'), encoding='unicode')
        assert 's3cr' not in xml
        uuid = ET.fromstring(xml).find('devices/disk/auth/secret').get('uuid')
        assert secrets() == {'gc-net-vda': uuid}
    finally:
        driver._drop_secrets('net')
    assert secrets() == {}


def test_from_config_reads_the_libvirt_group(driver: Any) -> None:
    class Group:
        uri, accel, instances_path, live_images_path = 'qemu:///system', 'tcg', None, None

    class Conf:
        state_path = '/tmp/gc-state'
        libvirt = Group()

    drv = type(driver).from_config(Conf())
    assert (drv.uri, drv.accel, drv.instances_path) == ('qemu:///system', 'tcg',
                                                        '/tmp/gc-state/instances')
