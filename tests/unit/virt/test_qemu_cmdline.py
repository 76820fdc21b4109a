"""The QEMU command line of a VM and of a clone, built from plain data (no QEMU run)."""

import json

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_cmdline as cmdline


def local(path: str, fmt: str = 'qcow2', **data: object) -> dict:
    return {'driver_volume_type': 'local', 'data': dict(device_path=path, format=fmt, **data)}


RBD = {'driver_volume_type': 'rbd', 'data': {
    'name': 'volumes/volume-1', 'auth_username': 'cinder', 'hosts': ['127.0.0.1', '127.0.0.2'],
    'ports': ['6789', '6790'], 'conf': '/etc/ceph/test.conf'}}
ISCSI = {'driver_volume_type': 'iscsi', 'data': {
    'target_portal': '127.0.0.1:3260', 'target_iqn': 'iqn.2010-10.org.openstack:volume-2',
    'target_lun': 1, 'auth_method': 'CHAP', 'auth_username': 'user',
    'auth_password': 's3cr:et,pw'}}


def layout(**kwargs: object) -> cmdline.Layout:
    values: dict = dict(id='vm1', name='web', memory_mb=256, vcpus=2, accel='tcg')
    values.update(kwargs)
    return cmdline.Layout(**values)


def slot(index: int, connection_info: dict, read_only: bool = False) -> cmdline.DiskSlot:
    return cmdline.DiskSlot('vol-%d' % index, index, cmdline.FIRST_DISK_SLOT + index,
                            connection_info, read_only)


def argv_of(lay: cmdline.Layout, **kwargs: object) -> list[str]:
    options: dict = dict(ram_path='/vms/vm1/ram', share=True, qmp_path='/vms/vm1/qmp.sock',
                         console_path='/vms/vm1/console.log')
    options.update(kwargs)
    return cmdline.build_argv('qemu-system-x86_64', lay, **options)


def values_of(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def json_values(argv: list[str], option: str) -> list[dict]:
    """The JSON-form values of ``option`` (``-device vmgenid,...`` is not one)."""
    return [json.loads(v) for v in values_of(argv, option) if v.startswith('{')]


def test_a_spawned_vm_boots_its_kernel_on_a_shared_ram_file() -> None:
    argv = argv_of(layout(kernel='/boot/vmlinuz', initrd='/boot/initrd.img', cmdline='quiet'))
    assert argv[0] == 'qemu-system-x86_64'
    assert all(isinstance(a, str) for a in argv)
    assert values_of(argv, '-object') == [
        'memory-backend-file,id=mem,size=256M,mem-path=/vms/vm1/ram,share=on']
    assert values_of(argv, '-machine') == ['pc,memory-backend=mem']
    assert (values_of(argv, '-m'), values_of(argv, '-smp')) == (['256M'], ['2'])
    assert values_of(argv, '-accel') == ['tcg']
    assert (values_of(argv, '-kernel'), values_of(argv, '-initrd'),
            values_of(argv, '-append')) == (['/boot/vmlinuz'], ['/boot/initrd.img'], ['quiet'])
    assert '-incoming' not in argv
    assert 'socket,id=qmp0,path=/vms/vm1/qmp.sock,server=on,wait=off' in argv
    assert 'file,id=console0,path=/vms/vm1/console.log' in argv


def test_the_kernel_command_line_defaults_to_the_serial_console() -> None:
    assert values_of(argv_of(layout(kernel='/k')), '-append') == ['console=ttyS0']


def test_a_clone_waits_for_its_state_on_a_private_mapping_and_boots_nothing() -> None:
    argv = argv_of(layout(kernel='/boot/vmlinuz', initrd='/boot/initrd.img'),
                   ram_path='/live/li-1/ram', share=False, incoming=True)
    assert values_of(argv, '-object') == [
        'memory-backend-file,id=mem,size=256M,mem-path=/live/li-1/ram,share=off']
    assert argv[-3:] == ['-incoming', 'defer', '-S']
    assert '-kernel' not in argv and '-initrd' not in argv and '-append' not in argv


def test_paths_are_single_arguments_with_commas_escaped_never_shell_strings() -> None:
    argv = argv_of(layout(), ram_path='/v m,s/ram', console_path="/it's/console.log")
    assert 'memory-backend-file,id=mem,size=256M,mem-path=/v m,,s/ram,share=on' in argv
    assert "file,id=console0,path=/it's/console.log" in argv
    assert not any(a.startswith(('"', "'")) for a in argv)


def test_vmgenid_is_the_given_guid_or_left_to_qemu() -> None:
    guid = '0f6f1f8e-2b4c-4c33-9a5b-2a0e1d7c3b11'
    assert values_of(argv_of(layout(), vmgenid=guid), '-device')[0] == 'vmgenid,guid=' + guid
    assert values_of(argv_of(layout()), '-device')[0] == 'vmgenid,guid=auto'


def test_a_mac_gives_a_virtio_nic_on_the_configured_netdev() -> None:
    argv = argv_of(layout(mac='52:54:00:12:34:56', netdev='tap,ifname=tap0,script=no'))
    assert values_of(argv, '-netdev') == ['tap,ifname=tap0,script=no,id=net0']
    nics = [d for d in json_values(argv, '-device') if d.get('driver') == 'virtio-net-pci']
    assert nics == [{'driver': 'virtio-net-pci', 'id': 'nic0', 'netdev': 'net0',
                     'mac': '52:54:00:12:34:56', 'bus': 'pci.0', 'addr': '0x3'}]
    assert '-netdev' not in argv_of(layout())


def test_cpu_model_only_when_configured() -> None:
    assert values_of(argv_of(layout(cpu='Haswell')), '-cpu') == ['Haswell']
    assert '-cpu' not in argv_of(layout())


def test_local_disks_are_qcow2_or_raw_files_or_block_devices() -> None:
    disks = [slot(0, local('/v/volume-1')), slot(1, local('/dev/vg/volume-2', 'raw'), True),
             slot(2, local('/v/volume-3', 'raw', discard=True))]
    argv = argv_of(layout(disks=disks))
    assert json_values(argv, '-blockdev') == [
        {'driver': 'qcow2', 'node-name': 'drive0', 'read-only': False,
         'file': {'driver': 'file', 'filename': '/v/volume-1'}},
        {'driver': 'raw', 'node-name': 'drive1', 'read-only': True,
         'file': {'driver': 'host_device', 'filename': '/dev/vg/volume-2'}},
        {'driver': 'raw', 'node-name': 'drive2', 'read-only': False, 'discard': 'unmap',
         'file': {'driver': 'file', 'filename': '/v/volume-3'}}]
    devices = [d for d in json_values(argv, '-device') if d['driver'] == 'virtio-blk-pci']
    assert [(d['id'], d['drive'], d['addr']) for d in devices] == [
        ('disk0', 'drive0', '0x4'), ('disk1', 'drive1', '0x5'), ('disk2', 'drive2', '0x6')]
    assert devices[0]['bootindex'] == 0 and 'bootindex' not in devices[1]


def test_a_kernel_boot_gives_no_disk_a_bootindex() -> None:
    argv = argv_of(layout(kernel='/k', disks=[slot(0, local('/v/volume-1'))]))
    assert 'bootindex' not in json_values(argv, '-device')[0]


def test_rbd_becomes_a_structured_protocol_node() -> None:
    options, secrets = cmdline.blockdev_options(RBD, 'drive0')
    assert secrets == {}
    assert options['driver'] == 'raw'
    assert options['file'] == {'driver': 'rbd', 'pool': 'volumes', 'image': 'volume-1',
                               'user': 'cinder', 'conf': '/etc/ceph/test.conf',
                               'server': [{'host': '127.0.0.1', 'port': '6789'},
                                          {'host': '127.0.0.2', 'port': '6790'}]}


def test_iscsi_chap_password_travels_in_a_secret_file_not_in_argv() -> None:
    options, secrets = cmdline.blockdev_options(ISCSI, 'drive1')
    assert secrets == {'sec-drive1': 's3cr:et,pw'}
    assert options['file'] == {'driver': 'iscsi', 'transport': 'tcp',
                               'portal': '127.0.0.1:3260', 'lun': 1, 'user': 'user',
                               'target': 'iqn.2010-10.org.openstack:volume-2',
                               'password-secret': 'sec-drive1'}
    argv = argv_of(layout(disks=[slot(1, ISCSI)]),
                   secret_files={'sec-drive1': '/vms/vm1/sec-drive1.secret'})
    assert not any('s3cr' in a for a in argv)
    assert 'secret,id=sec-drive1,file=/vms/vm1/sec-drive1.secret,format=raw' in argv


def test_iscsi_without_chap_names_no_user() -> None:
    data = dict(ISCSI['data'], auth_method='None')
    options, secrets = cmdline.blockdev_options({'driver_volume_type': 'iscsi',
                                                 'data': data}, 'drive0')
    assert secrets == {} and 'user' not in options['file']


@pytest.mark.parametrize('connection_info, words', [
    ({'driver_volume_type': 'nfs', 'data': {}}, "unsupported driver_volume_type 'nfs'"),
    (local('/v/volume-1', 'vmdk'), "format must be raw or qcow2, not 'vmdk'"),
    ({'driver_volume_type': 'rbd', 'data': {'name': 'volume-1'}}, 'must be pool/image'),
    ({'driver_volume_type': 'iscsi', 'data': {}}, 'target_portal'),
])
def test_connection_info_qemu_cannot_use_is_refused_with_the_reason(
        connection_info: dict, words: str) -> None:
    with pytest.raises(exception.DriverError, match='cannot build a QEMU drive') as err:
        cmdline.blockdev_options(connection_info, 'drive0')
    assert words in err.value.message


def test_fw_cfg_files_are_named_under_the_gridcentric_prefix() -> None:
    argv = argv_of(layout(), incoming=True, fw_cfg_files={'guest': '/vms/c/fw-guest',
                                                          'instance': '/vms/c/fw-instance'})
    assert values_of(argv, '-fw_cfg') == ['name=opt/com.gridcentric/guest,file=/vms/c/fw-guest',
                                          'name=opt/com.gridcentric/instance,'
                                          'file=/vms/c/fw-instance']


def test_hot_plug_takes_the_first_free_pci_slot_until_none_is_left() -> None:
    lay = layout(disks=[slot(0, local('/a')), slot(2, local('/c'))])
    assert cmdline.free_pci_slot(lay) == cmdline.FIRST_DISK_SLOT + 1
    lay.disks = [cmdline.DiskSlot('v%d' % s, s, s, local('/x'))
                 for s in range(cmdline.FIRST_DISK_SLOT, cmdline.LAST_PCI_SLOT + 1)]
    with pytest.raises(exception.DriverError, match='no free PCI slot'):
        cmdline.free_pci_slot(lay)


def test_a_layout_survives_its_json_and_ignores_unknown_keys() -> None:
    lay = layout(disks=[slot(0, RBD, True)], mac='52:54:00:00:00:01', live_image_id='li-1')
    data = json.loads(json.dumps(lay.to_json()))
    assert cmdline.Layout.from_json(dict(data, added_later=1)) == lay
    assert lay.disk_of('vol-0') is lay.disks[0] and lay.disk_of('vol-9') is None
