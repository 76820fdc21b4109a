"""Front-end QoS as each hypervisor is told it: QEMU's throttle arguments and libvirt's
``<iotune>``. tests/functional/virt/test_qos.py reads them back from running guests."""

from gridcentric_storage.virt import libvirt_xml, qemu_qos
from gridcentric_storage.volume import qos

LOCAL = {'driver_volume_type': 'local', 'data': {'device_path': '/v/a', 'format': 'raw'}}


def test_qemu_gets_every_limit_and_zero_for_the_rest():
    arguments = qemu_qos.throttle_arguments('disk1', {
        'total_iops_sec': 300, 'total_iops_sec_max': 600, 'read_bytes_sec': 1 << 20})
    assert arguments == {
        'id': '/machine/peripheral/disk1/virtio-backend', 'group': 'throttle-disk1',
        'iops': 300, 'iops_max': 600, 'iops_rd': 0, 'iops_wr': 0,
        'bps': 0, 'bps_rd': 1 << 20, 'bps_wr': 0}
    # no limits: all zeros, QEMU's "unthrottled"
    lifted = qemu_qos.throttle_arguments('disk1', {})
    assert {k: v for k, v in lifted.items() if k not in ('id', 'group')} == {
        'iops': 0, 'iops_rd': 0, 'iops_wr': 0, 'bps': 0, 'bps_rd': 0, 'bps_wr': 0}


def test_libvirt_iotune_names_are_cinders_keys():
    info = qos.connection_with(LOCAL, {'write_bytes_sec': 2048, 'write_bytes_sec_max': 4096,
                                       'total_iops_sec': 50})
    disk = libvirt_xml.disk_xml(info, 'vdb')
    iotune = {child.tag: child.text for child in disk.find('iotune')}
    assert iotune == {'total_iops_sec': '50', 'write_bytes_sec': '2048',
                      'write_bytes_sec_max': '4096'}
    assert libvirt_xml.disk_xml(LOCAL, 'vdb').find('iotune') is None
