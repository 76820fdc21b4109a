"""nova.bless without a hypervisor: the RAM block rename in a saved state, and what
bless reads from a Nova domain's XML (file-backed memory, its disks)."""

import struct
import xml.etree.ElementTree as ET

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.nova import bless

UUID = '0b1f5c3e-52a4-4c2e-9d53-8c7d3c1a7e10'
SIZE = 256 << 20

#: What Nova 34's libvirt driver defines with [libvirt] file_backed_memory set
#: (trimmed): RAM in a shared file, a qcow2 root disk on a _base file, a config
#: drive, a NIC.
NOVA_XML = """
<domain type='kvm' id='3'>
  <name>instance-00000001</name>
  <uuid>%s</uuid>
  <memory unit='KiB'>262144</memory>
  <memoryBacking>
    <source type='file'/>
    <access mode='shared'/>
    <allocation mode='immediate'/>
    <discard/>
  </memoryBacking>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file='/var/lib/nova/instances/%s/disk'/>
      <backingStore type='file'>
        <format type='raw'/>
        <source file='/var/lib/nova/instances/_base/4c3f0a'/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='/var/lib/nova/instances/%s/disk.config'/>
      <target dev='hda' bus='ide'/>
      <readonly/>
    </disk>
    <interface type='bridge'><mac address='fa:16:3e:00:00:01'/></interface>
  </devices>
</domain>
""" % (UUID, UUID, UUID)


def nova_xml(**replace: str) -> ET.Element:
    text = NOVA_XML
    for old, new in replace.items():
        text = text.replace(old, new)
    return ET.fromstring(text)


# ---- the saved state

def _stream(*blocks: tuple[str, int], tail: bytes = b'') -> bytes:
    """The shape of a QEMU migration stream's RAM setup record: magic, version,
    section header, total size, then (length byte, id, be64 size) per block."""
    body = b''.join(bytes([len(name)]) + name.encode() + struct.pack('>Q', size)
                    for name, size in blocks)
    total = sum(size for _, size in blocks)
    return (b'QEVM' + struct.pack('>I', 3) + b'\x01\x00\x00\x00\x02\x03ram'
            + struct.pack('>Q', total | 4) + body + tail)


def test_the_ram_block_is_renamed_in_place_and_nothing_else_changes(tmp_path):
    path = tmp_path / 'state'
    # "pc.ram" also appears in device state without a size after it: left alone.
    before = _stream(('pc.ram', SIZE), ('vga.vram', 16 << 20), ('pc.bios', 256 << 10),
                     tail=b'\x06pc.ram-no-size' + b'\0' * 64)
    path.write_bytes(before)

    bless.rename_ram_block(str(path), 'pc.ram', 'gc.ram', SIZE)

    after = path.read_bytes()
    assert len(after) == len(before)
    assert after.count(b'\x06gc.ram' + struct.pack('>Q', SIZE)) == 1
    assert after.replace(b'\x06gc.ram', b'\x06pc.ram', 1) == before


@pytest.mark.parametrize('blocks, size', [
    ((('ram-node0', SIZE),), SIZE),                     # no pc.ram at all
    ((('pc.ram', SIZE),), SIZE // 2),                   # another size than the guest's
])
def test_a_state_without_the_block_is_refused_unchanged(tmp_path, blocks, size):
    path = tmp_path / 'state'
    path.write_bytes(_stream(*blocks))
    before = path.read_bytes()
    with pytest.raises(exception.DriverError, match='0 times, not once'):
        bless.rename_ram_block(str(path), 'pc.ram', 'gc.ram', size)
    assert path.read_bytes() == before


def test_a_state_naming_the_block_twice_is_refused_unchanged(tmp_path):
    path = tmp_path / 'state'
    path.write_bytes(_stream(('pc.ram', SIZE), tail=b'\x06pc.ram' + struct.pack('>Q', SIZE)))
    before = path.read_bytes()
    with pytest.raises(exception.DriverError, match='2 times, not once'):
        bless.rename_ram_block(str(path), 'pc.ram', 'gc.ram', SIZE)
    assert path.read_bytes() == before


def test_ids_of_different_lengths_cannot_be_swapped(tmp_path):
    path = tmp_path / 'state'
    path.write_bytes(_stream(('pc.ram', SIZE)))
    with pytest.raises(ValueError):
        bless.rename_ram_block(str(path), 'pc.ram', 'clone.ram', SIZE)


# ---- file-backed memory

def test_a_nova_domain_with_file_backed_memory_passes():
    bless.check_file_backed(UUID, nova_xml())


@pytest.mark.parametrize('replace', [
    {"<memoryBacking>\n    <source type='file'/>\n    <access mode='shared'/>": '<memoryBacking>'},
    {"<access mode='shared'/>": "<access mode='private'/>"},       # MAP_PRIVATE: uncopyable
    {"<source type='file'/>": "<source type='memfd'/>"},
])
def test_without_a_shared_ram_file_bless_says_how_to_enable_it(replace):
    with pytest.raises(exception.FileBackedMemoryRequired) as caught:
        bless.check_file_backed(UUID, nova_xml(**replace))
    error = caught.value
    assert error.code == 400
    assert UUID in error.message
    for needed in ('[libvirt] file_backed_memory = <MiB>', 'nova.conf',
                   'ram_allocation_ratio = 1.0', 'reserved_host_memory_mb = 0',
                   'restart nova-compute', 'hard-reboot'):
        assert needed in error.message


def test_a_domain_without_memory_backing_is_refused():
    root = nova_xml()
    root.remove(root.find('memoryBacking'))
    with pytest.raises(exception.FileBackedMemoryRequired):
        bless.check_file_backed(UUID, root)


# ---- disks

def test_the_root_disk_is_found_and_the_config_drive_left_to_nova():
    assert bless.file_disks(UUID, nova_xml()) == [
        bless.FileDisk('vda', '/var/lib/nova/instances/%s/disk' % UUID, 'qcow2')]


def test_a_flat_raw_disk_and_an_ephemeral_disk_are_both_blessed():
    root = nova_xml()
    devices = root.find('devices')
    devices.append(ET.fromstring(
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        "<source file='/var/lib/nova/instances/x/disk.eph0'/>"
        "<target dev='vdb' bus='virtio'/></disk>"))
    assert [(d.target, d.format) for d in bless.file_disks(UUID, root)] == [
        ('vda', 'qcow2'), ('vdb', 'raw')]


@pytest.mark.parametrize('disk, why', [
    ("<disk type='network' device='disk'><driver name='qemu' type='raw'/>"
     "<source protocol='rbd' name='vms/x_disk'/><target dev='vdb' bus='virtio'/></disk>",
     'vdb is not a local image file'),
    ("<disk type='block' device='disk'><driver name='qemu' type='raw'/>"
     "<source dev='/dev/disk/by-path/ip-1-lun-1'/><target dev='vdc' bus='virtio'/></disk>",
     'vdc is not a local image file'),
    ("<disk type='file' device='disk'><driver name='qemu' type='vmdk'/>"
     "<source file='/srv/x.vmdk'/><target dev='vdd' bus='virtio'/></disk>",
     'vdd is in vmdk format'),
])
def test_disks_bless_cannot_copy_are_refused_with_the_reason(disk, why):
    root = nova_xml()
    root.find('devices').append(ET.fromstring(disk))
    with pytest.raises(exception.NovaBlessUnsupported, match=why) as caught:
        bless.file_disks(UUID, root)
    assert caught.value.code == 400
    assert '/dev/' not in caught.value.message and '/srv/' not in caught.value.message
