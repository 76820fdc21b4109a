"""Domain XML of the libvirt driver, parsed back as libvirt would (no libvirtd here)."""

import os
import xml.etree.ElementTree as ET

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base
from gridcentric_storage.virt import libvirt_xml as lx

QEMU_ARG = '{%s}commandline/{%s}arg' % (lx.QEMU_NS, lx.QEMU_NS)
RBD = {'driver_volume_type': 'rbd', 'data': {
    'name': 'volumes/volume-1', 'auth_username': 'cinder', 'hosts': ['127.0.0.1'],
    'ports': ['6789'], 'conf': '/etc/ceph/ceph.conf',
    'secret_uuid': '2a5b08e4-3dca-4ff9-9a1d-40389758d081'}}
ISCSI = {'driver_volume_type': 'iscsi', 'data': {
    'target_portal': '127.0.0.1:3260', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
    'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
    'auth_password': 's3cr:et,pw'}}


def local(path: str, fmt: str = 'qcow2', **data: object) -> dict:
    return {'driver_volume_type': 'local', 'data': dict(device_path=path, format=fmt, **data)}


def plain_disk(disk: base.Disk, dev: str) -> ET.Element:
    return lx.disk_xml(disk.connection_info, dev, disk.read_only)


def parsed(root: ET.Element) -> ET.Element:
    """What libvirt reads: the serialized document."""
    return ET.fromstring(ET.tostring(root, encoding='unicode'))


def spawned(tmp_path: object, **kwargs: object) -> ET.Element:
    spec: dict = dict(id='vm1', name='web', memory_mb=256, vcpus=2, kernel='/boot/vmlinuz',
                      initrd='/boot/initrd.img', cmdline='quiet',
                      vmgenid='0f6f1f8e-2b4c-4c33-9a5b-2a0e1d7c3b11',
                      disks=[base.Disk('vol-1', local('/v/volume-1'))])
    spec.update(kwargs)
    options: dict = dict(machine='pc', emulator='/usr/bin/qemu-system-x86_64',
                         cpu_model=None, network=None, disk=plain_disk)
    for key in list(options):
        if key in spec:
            options[key] = spec.pop(key)
    return parsed(lx.spawn_xml(base.InstanceSpec(**spec), str(tmp_path), 'qemu', **options))


def qemu_args(root: ET.Element) -> list[str]:
    return [arg.get('value', '') for arg in root.iterfind(QEMU_ARG)]


def test_a_spawned_domain_boots_the_kernel_with_its_ram_in_a_shared_file(tmp_path) -> None:
    root = spawned(tmp_path)
    assert root.get('type') == 'qemu'
    assert (root.findtext('name'), root.findtext('title')) == ('gc-vm1', 'web')
    assert root.findtext('genid') == '0f6f1f8e-2b4c-4c33-9a5b-2a0e1d7c3b11'
    assert (root.findtext('memory'), root.find('memory').get('unit')) == ('256', 'MiB')
    assert root.findtext('vcpu') == '2'
    assert (root.findtext('os/kernel'), root.findtext('os/initrd'),
            root.findtext('os/cmdline')) == ('/boot/vmlinuz', '/boot/initrd.img', 'quiet')
    assert root.find('features/acpi') is not None        # vmgenid and hot-plug need it
    assert root.findtext('devices/emulator') == '/usr/bin/qemu-system-x86_64'
    assert qemu_args(root) == [
        '-object', 'memory-backend-file,id=mem,size=256M,mem-path=%s,share=on'
        % os.path.join(str(tmp_path), 'ram'), '-machine', 'memory-backend=mem']
    serial = root.find("devices/serial[@type='file']/source")
    assert serial is not None and serial.get('path') == str(tmp_path / 'console.log')
    assert [root.findtext(e) for e in ('on_poweroff', 'on_reboot', 'on_crash')] == [
        'destroy'] * 3


def test_the_kernel_command_line_defaults_to_the_serial_console(tmp_path) -> None:
    assert spawned(tmp_path, cmdline=None).findtext('os/cmdline') == 'console=ttyS0'


def test_disks_get_virtio_targets_in_order(tmp_path) -> None:
    root = spawned(tmp_path, disks=[base.Disk('a', local('/v/a')),
                                    base.Disk('b', local('/dev/vg/b', 'raw'), read_only=True)])
    disks = root.findall('devices/disk')
    assert [(d.get('type'), d.find('target').attrib) for d in disks] == [
        ('file', {'dev': 'vda', 'bus': 'virtio'}), ('block', {'dev': 'vdb', 'bus': 'virtio'})]
    assert disks[0].find('source').attrib == {'file': '/v/a'}
    assert disks[1].find('source').attrib == {'dev': '/dev/vg/b'}
    assert disks[0].find('driver').attrib == {'name': 'qemu', 'type': 'qcow2'}
    assert disks[1].find('readonly') is not None and disks[0].find('readonly') is None


def test_a_mac_gives_a_user_nic_or_one_on_the_configured_network(tmp_path) -> None:
    user = spawned(tmp_path, mac='52:54:00:12:34:56').findall('devices/interface')
    assert [(n.get('type'), n.find('mac').get('address'), n.find('model').get('type'))
            for n in user] == [('user', '52:54:00:12:34:56', 'virtio')]
    nic = spawned(tmp_path, mac='52:54:00:12:34:56', network='default').find(
        'devices/interface')
    assert nic.get('type') == 'network' and nic.find('source').get('network') == 'default'
    assert spawned(tmp_path).find('devices/interface') is None


def test_cpu_model_only_when_configured(tmp_path) -> None:
    assert spawned(tmp_path, cpu_model='Haswell').findtext('cpu/model') == 'Haswell'
    assert spawned(tmp_path).find('cpu') is None


def test_rbd_is_a_network_disk_with_its_monitors_and_ceph_secret() -> None:
    disk = parsed(lx.disk_xml(RBD, 'vdb'))
    assert disk.get('type') == 'network'
    assert disk.find('source').attrib == {'protocol': 'rbd', 'name': 'volumes/volume-1'}
    assert disk.find('source/host').attrib == {'name': '127.0.0.1', 'port': '6789'}
    assert disk.find('source/config').get('file') == '/etc/ceph/ceph.conf'
    assert disk.find('auth').get('username') == 'cinder'
    assert disk.find('auth/secret').attrib == {'type': 'ceph',
                                               'uuid': RBD['data']['secret_uuid']}


def test_iscsi_is_a_network_disk_whose_chap_password_stays_in_a_libvirt_secret() -> None:
    disk = parsed(lx.disk_xml(ISCSI, 'vdc', secret_uuid='uuid-of-secret'))
    assert disk.find('source').attrib == {'protocol': 'iscsi',
                                          'name': 'iqn.2010-10.org.openstack:volume-2/1'}
    assert disk.find('source/host').attrib == {'name': '127.0.0.1', 'port': '3260'}
    assert disk.find('auth').get('username') == 'user'
    assert disk.find('auth/secret').attrib == {'type': 'iscsi', 'uuid': 'uuid-of-secret'}
    assert 's3cr' not in ET.tostring(disk, encoding='unicode')
    no_chap = {'driver_volume_type': 'iscsi', 'data': dict(ISCSI['data'], auth_method='None')}
    assert lx.disk_xml(no_chap, 'vdc', secret_uuid='uuid-of-secret').find('auth') is None


def test_discard_reaches_the_driver_element() -> None:
    disk = lx.disk_xml(local('/v/a', 'raw', discard=True), 'vda')
    assert disk.find('driver').get('discard') == 'unmap'


@pytest.mark.parametrize('connection_info, words', [
    ({'driver_volume_type': 'nfs', 'data': {}}, "unsupported driver_volume_type 'nfs'"),
    (local('/v/a', 'vmdk'), "format must be raw or qcow2, not 'vmdk'"),
    ({'driver_volume_type': 'rbd', 'data': {'name': 'volume-1'}}, 'must be pool/image'),
])
def test_connection_info_libvirt_cannot_use_is_refused_with_the_reason(
        connection_info: dict, words: str) -> None:
    with pytest.raises(exception.DriverError, match='cannot build a libvirt disk') as err:
        lx.disk_xml(connection_info, 'vda')
    assert words in err.value.message


def blessed_image(tmp_path, source: ET.Element) -> tuple[base.LiveImageArtifacts, ET.Element]:
    """A live image directory holding ``source`` as the blessed migratable XML."""
    directory = tmp_path / 'li-1'
    directory.mkdir()
    for name in ('ram', 'state'):
        (directory / name).write_bytes(b'')
    (directory / 'layout.json').write_text('{"layout": {"id": "vm1", "name": "web", '
                                           '"memory_mb": 256, "vcpus": 2, "accel": "tcg"}}')
    (directory / 'domain.xml').write_text(ET.tostring(source, encoding='unicode'))
    art = base.LiveImageArtifacts('li-1', str(directory), str(directory / 'ram'),
                                  str(directory / 'state'), 256, 2)
    return art, source


def test_a_clone_gets_its_own_identity_disks_and_a_private_ram_mapping(tmp_path) -> None:
    (tmp_path / 'vm1').mkdir()
    source = spawned(tmp_path / 'vm1', mac='52:54:00:12:34:56')
    ET.SubElement(source, 'uuid').text = 'b7c1d6e2-0000-4000-8000-000000000001'
    ET.SubElement(source, 'seclabel', type='dynamic')
    ET.SubElement(source.find('devices/disk'), 'address', type='pci', slot='0x05')
    art, _ = blessed_image(tmp_path, source)
    root, disks = lx.blessed_xml(art)
    clone_dir = tmp_path / 'clone-1'
    clone_dir.mkdir()
    clone = base.CloneSpec(id='clone-1', name='web-1', mac='52:54:00:65:43:21',
                           vmgenid='11111111-2222-4333-8444-555555555555',
                           disks=[base.Disk('vol-c1', local('/v/clone-1'))],
                           guest={'role': 'web'}, user_data=b'#cloud-config\n')
    lx.clone_xml(root, art, clone, str(clone_dir), disks, plain_disk)
    root = parsed(root)
    assert (root.findtext('name'), root.findtext('title')) == ('gc-clone-1', 'web-1')
    assert root.findtext('genid') == clone.vmgenid
    assert root.find('uuid') is None and root.find('seclabel') is None
    assert root.find('os/kernel') is None and root.find('os/cmdline') is None
    disk = root.find('devices/disk')
    assert disk.find('source').get('file') == '/v/clone-1'
    assert disk.find('target').get('dev') == 'vda'
    assert disk.find('address').get('slot') == '0x05'          # the blessed VM's PCI slot
    assert root.find('devices/interface/mac').get('address') == '52:54:00:65:43:21'
    assert root.find('devices/serial/source').get('path') == str(clone_dir / 'console.log')
    entries = {e.get('name'): e.get('file') for e in root.iterfind("sysinfo[@type='fwcfg']/entry")}
    assert entries == {'opt/com.gridcentric/instance': str(clone_dir / 'fw-instance'),
                       'opt/com.gridcentric/guest': str(clone_dir / 'fw-guest'),
                       'opt/com.gridcentric/user_data': str(clone_dir / 'fw-user-data')}
    assert (clone_dir / 'fw-guest').read_text() == 'role=web\n'
    assert 'mac=52:54:00:65:43:21\n' in (clone_dir / 'fw-instance').read_text()
    assert qemu_args(root) == [
        '-object', 'memory-backend-file,id=mem,size=256M,mem-path=%s,share=off' % art.memory_path,
        '-machine', 'memory-backend=mem', '-incoming', 'defer']


def test_a_clone_without_a_mac_or_genid_gets_fresh_ones(tmp_path) -> None:
    (tmp_path / 'vm1').mkdir()
    art, _ = blessed_image(tmp_path, spawned(tmp_path / 'vm1', mac='52:54:00:12:34:56'))
    macs, genids = set(), set()
    for i in range(2):
        root, disks = lx.blessed_xml(art)
        (tmp_path / str(i)).mkdir()
        lx.clone_xml(root, art, base.CloneSpec(id='c%d' % i, name='c', disks=[
            base.Disk('v', local('/v/c%d' % i))]), str(tmp_path / str(i)), disks, plain_disk)
        macs.add(root.find('devices/interface/mac').get('address'))
        genids.add(root.findtext('genid'))
    assert len(macs | {'52:54:00:12:34:56'}) == 3
    assert len(genids | {'0f6f1f8e-2b4c-4c33-9a5b-2a0e1d7c3b11'}) == 3


def test_a_discarded_live_image_has_no_domain_to_clone(tmp_path) -> None:
    art = base.LiveImageArtifacts('li-gone', str(tmp_path / 'li-gone'),
                                  str(tmp_path / 'li-gone/ram'),
                                  str(tmp_path / 'li-gone/state'), 256, 1)
    with pytest.raises(exception.LiveImageFilesMissing, match='li-gone.*discarded'):
        lx.blessed_xml(art)
