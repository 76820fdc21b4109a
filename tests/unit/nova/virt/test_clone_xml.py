"""A clone's domain XML: Nova's XML for the instance, made to resume a live image."""

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.nova import manifest
from gridcentric_storage.nova.virt import clone_xml

INSTANCE_DIR = '/var/lib/nova/instances/1b0f4a8e-6b0c-4f43-9a8e-3c1c2d4e5f60'
NOVA_NS = 'http://openstack.org/xmlns/libvirt/nova/1.1'
QEMU = '{%s}' % clone_xml.QEMU_NS

# What Nova 34's libvirt driver generates for a 128 MiB flavor on a host with
# [libvirt] file_backed_memory (AMI-style image, config drive).
NOVA_XML = '''<domain type="qemu">
  <uuid>1b0f4a8e-6b0c-4f43-9a8e-3c1c2d4e5f60</uuid>
  <name>instance-00000007</name>
  <memory>131072</memory>
  <vcpu>1</vcpu>
  <metadata>
    <nova:instance xmlns:nova="%(nova_ns)s">
      <nova:name>clone-1</nova:name>
      <nova:flavor name="gc-tiny"><nova:memory>128</nova:memory></nova:flavor>
    </nova:instance>
  </metadata>
  <memoryBacking>
    <source type="file"/>
    <access mode="shared"/>
    <allocation mode="immediate"/>
    <discard/>
  </memoryBacking>
  <os>
    <type machine="pc-i440fx-7.2">hvm</type>
    <kernel>%(dir)s/kernel</kernel>
    <initrd>%(dir)s/ramdisk</initrd>
    <cmdline>root=/dev/vda console=tty0 console=ttyS0</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode="custom" match="exact"><model>qemu64</model></cpu>
  <devices>
    <disk type="file" device="disk">
      <driver name="qemu" type="qcow2" cache="none"/>
      <source file="%(dir)s/disk"/>
      <target bus="virtio" dev="vda"/>
    </disk>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw" cache="none"/>
      <source file="%(dir)s/disk.config"/>
      <target bus="ide" dev="hdd"/>
    </disk>
    <serial type="pty"><log file="%(dir)s/console.log" append="off"/></serial>
    <memballoon model="virtio"><stats period="10"/></memballoon>
  </devices>
</domain>''' % {'dir': INSTANCE_DIR, 'nova_ns': NOVA_NS}

LIVE = manifest.NovaLiveImage(
    live_image_id='5f0c7a2e-1111-4d3c-9a55-0123456789ab', project_id='p1',
    source_instance='9e8d7c6b-0000-4a4a-8b8b-abcdefabcdef',
    ram_path='/srv/live-images/5f0c/ram', ram_size=128 << 20, ram_block='gc.ram',
    state_path='/srv/live-images/5f0c/state', disks={'vda': '/srv/live-images/5f0c/vda.qcow2'},
    domain_xml_path='/srv/live-images/5f0c/domain.xml')


def _disk(root: ET.Element, dev: str) -> ET.Element:
    disk = root.find("devices/disk/target[@dev='%s']/.." % dev)
    assert disk is not None
    return disk


def test_clone_maps_the_frozen_ram_privately_and_waits_for_the_state() -> None:
    clone = clone_xml.rewrite(NOVA_XML, LIVE)
    root = ET.fromstring(clone.xml)

    # libvirt's shared RAM file is gone; QEMU maps the live image's RAM under
    # the block name of the saved state, copy-on-write, and waits for the state
    assert root.find('memoryBacking') is None
    args = [a.get('value') for a in root.findall(QEMU + 'commandline/' + QEMU + 'arg')]
    assert args == ['-object', 'memory-backend-file,id=gc.ram,mem-path=/srv/live-images/5f0c/ram,'
                    'share=off,size=%d' % (128 << 20),
                    '-machine', 'memory-backend=gc.ram', '-incoming', 'defer']
    # the root disk becomes an overlay of the live image's disk, at Nova's path
    assert clone.overlays == {INSTANCE_DIR + '/disk': '/srv/live-images/5f0c/vda.qcow2'}
    vda = _disk(root, 'vda')
    assert vda.find('source').get('file') == INSTANCE_DIR + '/disk'     # type: ignore[union-attr]
    assert vda.find('driver').get('type') == 'qcow2'                    # type: ignore[union-attr]


def test_everything_else_is_novas() -> None:
    root = ET.fromstring(clone_xml.rewrite(NOVA_XML, LIVE).xml)
    nova = ET.fromstring(NOVA_XML)
    for path in ('uuid', 'name', 'memory', 'vcpu', 'os/kernel', 'os/cmdline', 'cpu/model'):
        assert root.findtext(path) == nova.findtext(path), path
    assert [d.tag for d in root.find('devices')] == [d.tag for d in nova.find('devices')]  # type: ignore[union-attr]
    # the config drive (not a disk of the live image) is Nova's fresh one
    assert _disk(root, 'hdd').find('source').get('file') == INSTANCE_DIR + '/disk.config'  # type: ignore[union-attr]
    # Nova's metadata keeps its namespace prefix (libvirt stores it as written)
    assert '<nova:name>clone-1</nova:name>' in clone_xml.rewrite(NOVA_XML, LIVE).xml


def test_memory_backing_keeps_what_is_not_the_shared_file() -> None:
    xml = NOVA_XML.replace('<discard/>', '<discard/><locked/>')
    root = ET.fromstring(clone_xml.rewrite(xml, LIVE).xml)
    assert [c.tag for c in root.find('memoryBacking')] == ['locked']      # type: ignore[union-attr]


def test_commas_in_the_ram_path_are_escaped_for_qemu() -> None:
    live = dataclasses.replace(LIVE, ram_path='/srv/a,b/ram')
    assert clone_xml.ram_args(live)[1].split(',id=')[1].startswith(
        'gc.ram,mem-path=/srv/a,,b/ram,share=off')


@pytest.mark.parametrize('xml, live, reason', [
    (NOVA_XML.replace('<memory>131072</memory>', '<memory>262144</memory>'), LIVE,
     'it has 128 MiB of RAM, this instance 256 MiB'),
    (NOVA_XML.replace('<memory>131072</memory>', '<memory unit="GiB">1</memory>'), LIVE,
     'this instance 1024 MiB'),
    (NOVA_XML, dataclasses.replace(LIVE, disks={'vda': '/x/vda', 'vdb': '/x/vdb'}),
     'its disks are vda, vdb, this instance has vda'),
    (NOVA_XML, dataclasses.replace(LIVE, disks={}), 'its disks are none, this instance has vda'),
    (NOVA_XML.replace('type="qcow2" cache="none"', 'type="raw" cache="none"'), LIVE,
     'disk vda is not qcow2'),
    (NOVA_XML.replace('<disk type="file" device="disk">', '<disk type="network" device="disk">')
     .replace('<source file="%s/disk"/>' % INSTANCE_DIR, '<source protocol="rbd" name="vms/x"/>'),
     LIVE, 'disk vda is not a file on this host'),
    (NOVA_XML.replace('<model>qemu64</model>',
                      '<model>qemu64</model><numa><cell id="0" cpus="0" memory="131072"/></numa>'),
     LIVE, 'guest NUMA topology'),
    (NOVA_XML.replace('<devices>', '<devices').replace('</devices>', ''), LIVE, 'does not parse'),
])
def test_refused(xml: str, live: manifest.NovaLiveImage, reason: str) -> None:
    with pytest.raises(exception.Invalid) as e:
        clone_xml.rewrite(xml, live)
    assert reason in e.value.message
    assert e.value.message.startswith('Live image %s cannot be resumed as '
                                      'this instance: ' % live.live_image_id)
    assert '/srv/' not in e.value.message        # no host path reaches the instance fault


# The devices of a defined domain as libvirt gives them back (addresses assigned).
DEFINED = '''<domain type="qemu"><name>instance-00000007</name><devices>
  <disk type="file" device="disk"><source file="/srv/x/disk"/><target dev="vda" bus="virtio"/>
    <address type="pci" domain="0x0000" bus="0x00" slot="0x04" function="0x0"/></disk>
  <disk type="file" device="cdrom"><target dev="hdd" bus="ide"/>
    <address type="drive" controller="0" bus="1" target="0" unit="1"/></disk>
  <controller type="usb" index="0" model="piix3-uhci">
    <address type="pci" domain="0x0000" bus="0x00" slot="0x01" function="0x2"/></controller>
  <controller type="pci" index="0" model="pci-root"/>
  <interface type="bridge"><mac address="fa:16:3e:00:00:01"/><model type="virtio"/>
    <address type="pci" domain="0x0000" bus="0x00" slot="0x03" function="0x0"/></interface>
  <serial type="pty"><target type="isa-serial" port="0"/></serial>
  <memballoon model="virtio">
    <address type="pci" domain="0x0000" bus="0x00" slot="0x05" function="0x0"/></memballoon>
</devices></domain>'''


def test_same_devices_at_the_same_addresses_fit() -> None:
    # disk sources, MACs, a NIC's host side and the name are the clone's own
    clone = (DEFINED.replace('/srv/x/disk', '/var/lib/nova/instances/y/disk')
             .replace('fa:16:3e:00:00:01', 'fa:16:3e:00:00:02')
             .replace('<interface type="bridge">', '<interface type="ethernet">')
             .replace('instance-00000007', 'instance-00000008'))
    clone_xml.check_layout(LIVE, DEFINED, clone)
    vda = 'bus=0x00 domain=0x0000 function=0x0 slot=0x04 type=pci'
    assert clone_xml.device_layout(DEFINED)[vda] == 'disk device=disk target.bus=virtio'


@pytest.mark.parametrize('clone, difference', [
    # a NIC the live image did not have (e.g. another network asked for at launch)
    (DEFINED.replace('</devices>', '<interface type="bridge"><model type="virtio"/>'
                     '<address type="pci" domain="0x0000" bus="0x00" slot="0x06" '
                     'function="0x0"/></interface></devices>'),
     'bus=0x00 domain=0x0000 function=0x0 slot=0x06 type=pci: nothing, here interface '
     'model.type=virtio'),
    # no config drive in the clone
    (DEFINED.replace('<address type="drive" controller="0" bus="1" target="0" unit="1"/>', ''),
     'bus=1 controller=0 target=0 type=drive unit=1: disk device=cdrom target.bus=ide, '
     'here nothing'),
    # another NIC model
    (DEFINED.replace('<model type="virtio"/>', '<model type="e1000"/>'),
     'interface model.type=virtio, here interface model.type=e1000'),
])
def test_other_devices_are_refused_naming_the_difference(clone: str, difference: str) -> None:
    with pytest.raises(exception.Invalid) as e:
        clone_xml.check_layout(LIVE, DEFINED, clone)
    assert "its devices differ from this instance's (" in e.value.message
    assert difference in e.value.message
    assert '/srv/' not in e.value.message
