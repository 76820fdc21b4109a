"""Nova's domain XML for an instance, rewritten to resume a live image (no Nova, no libvirt).

The virt driver lets Nova build the clone's XML exactly as for a boot (same
flavor, image and host configuration as the blessed instance, hence the same
devices in the same order), and this module changes only what makes it a
resume:

* Guest RAM. Nova's ``[libvirt] file_backed_memory`` gives ``<memoryBacking>``
  a ``<source type='file'/>`` that libvirt 9.0 maps shared from its own
  ``memory_backing_dir``; a clone must map the live image's frozen copy
  private (``share=off``: every clone writes its own copy-on-write pages). So
  that source goes, and ``<qemu:commandline>`` adds a ``memory-backend-file``
  whose id is the RAMBlock name the saved state carries. libvirt still creates
  its own ``pc.ram`` backend (hence bless renames the block: two objects cannot
  share an id); the later ``-machine memory-backend=`` wins, so that one is
  never mapped, touched or migrated.
* ``-incoming defer``: the driver starts the domain paused and loads the state.
* Disks the live image holds: the same target, now a qcow2 overlay of the
  live image's disk at the path Nova chose (the driver creates it).

The saved device state fits only the devices it was saved from, at the same
addresses. Nova's XML carries no addresses (libvirt assigns them at define),
so once the clone is defined the driver compares :func:`device_layout` of
its XML with the blessed domain's, and refuses with the difference rather
than leave it to QEMU's "error while loading state".
"""

import dataclasses
import io
import xml.etree.ElementTree as ET

from gridcentric_storage.common import exception
from gridcentric_storage.nova import manifest as manifest_mod

__all__ = ['QEMU_NS', 'CloneDomain', 'check_layout', 'device_layout', 'memory_bytes', 'ram_args',
           'rewrite']

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
ET.register_namespace('qemu', QEMU_NS)

#: What Nova's file_backed_memory puts in <memoryBacking>; all of it describes
#: libvirt's shared RAM file, which a clone replaces.
_FILE_BACKING = ('source', 'access', 'allocation', 'discard')

_UNITS = {'b': 1, 'bytes': 1, 'k': 2**10, 'kib': 2**10, 'kb': 10**3,
          'm': 2**20, 'mib': 2**20, 'mb': 10**6, 'g': 2**30, 'gib': 2**30, 'gb': 10**9,
          't': 2**40, 'tib': 2**40, 'tb': 10**12}


@dataclasses.dataclass(frozen=True)
class CloneDomain:
    xml: str
    #: the path of each disk in ``xml`` -> the live image disk it must be a qcow2 overlay of
    overlays: dict[str, str]


def _refuse(live: manifest_mod.NovaLiveImage, reason: str) -> exception.Invalid:
    return exception.LiveImageIncompatible(id=live.live_image_id, reason=reason)


def memory_bytes(element: ET.Element) -> int:
    """A libvirt ``<memory>`` value in bytes (libvirt's default unit is KiB)."""
    unit = element.get('unit', 'KiB').lower()
    if unit not in _UNITS or not (element.text or '').strip().isdigit():
        raise ValueError('cannot read <%s unit=%r>%s' % (element.tag, unit, element.text))
    return int((element.text or '').strip()) * _UNITS[unit]


def ram_args(live: manifest_mod.NovaLiveImage) -> list[str]:
    """QEMU arguments that map the live image's RAM privately and wait for its state."""
    backend = 'memory-backend-file,id=%s,mem-path=%s,share=off,size=%d' % (
        live.ram_block, live.ram_path.replace(',', ',,'), live.ram_size)
    return ['-object', backend, '-machine', 'memory-backend=' + live.ram_block,
            '-incoming', 'defer']


def _replace_disks(devices: ET.Element, live: manifest_mod.NovaLiveImage) -> dict[str, str]:
    """Point each disk the live image holds at an overlay path; {path: live image disk}."""
    by_target: dict[str, ET.Element] = {}
    for disk in devices.findall('disk'):
        target = disk.find('target')
        if disk.get('device', 'disk') == 'disk' and target is not None:
            by_target[target.get('dev', '')] = disk
    extra = sorted(set(by_target) - set(live.disks))
    missing = sorted(set(live.disks) - set(by_target))
    if missing or extra:
        raise _refuse(live, 'its disks are %s, this instance has %s' % (
            ', '.join(sorted(live.disks)) or 'none', ', '.join(sorted(by_target)) or 'none'))
    overlays = {}
    for dev, backing in sorted(live.disks.items()):
        disk = by_target[dev]
        source, driver = disk.find('source'), disk.find('driver')
        path = source.get('file') if source is not None else None
        if disk.get('type') != 'file' or not path:
            raise _refuse(live, 'disk %s is not a file on this host (only local instance '
                          'disks can be overlays of a live image)' % dev)
        if driver is None or driver.get('type') != 'qcow2':
            raise _refuse(live, 'disk %s is not qcow2 (Nova must use qcow2 instance disks)'
                          % dev)
        overlays[path] = backing
    return overlays


def _keep_prefixes(domain_xml: str) -> None:
    """Serialize Nova's namespaces (``nova:`` metadata) with the prefixes it wrote,
    not ElementTree's ``ns0``: libvirt keeps metadata elements as written."""
    for _, (prefix, uri) in ET.iterparse(io.StringIO(domain_xml), events=('start-ns',)):
        try:
            ET.register_namespace(prefix, uri)
        except ValueError:          # ElementTree's own ns<N> prefixes
            pass


def rewrite(domain_xml: str, live: manifest_mod.NovaLiveImage) -> CloneDomain:
    """Nova's domain XML for an instance, made the XML of a clone of ``live``.

    Raises ``exception.LiveImageIncompatible`` when the instance cannot hold the live image:
    other RAM size, other disks, disks that are not local qcow2 files, or a
    guest NUMA topology (its RAM would be several backends, not one block).
    """
    try:
        root = ET.fromstring(domain_xml)
        _keep_prefixes(domain_xml)
    except ET.ParseError as e:
        raise _refuse(live, 'its domain XML does not parse (%s)' % e) from e
    memory, devices = root.find('memory'), root.find('devices')
    if root.tag != 'domain' or memory is None or devices is None:
        raise _refuse(live, 'the domain XML has no <memory> or <devices>')
    try:
        size = memory_bytes(memory)
    except ValueError as e:
        raise _refuse(live, str(e)) from e
    if size != live.ram_size:
        raise _refuse(live, 'it has %d MiB of RAM, this instance %d MiB' % (
            live.ram_size >> 20, size >> 20))
    if root.find('cpu/numa') is not None:
        raise _refuse(live, 'this instance has a guest NUMA topology')
    overlays = _replace_disks(devices, live)

    for backing in root.findall('memoryBacking'):
        for child in [c for c in backing if c.tag in _FILE_BACKING]:
            backing.remove(child)
        if not len(backing):
            root.remove(backing)
    cmdline = root.find('{%s}commandline' % QEMU_NS)
    if cmdline is None:
        cmdline = ET.SubElement(root, '{%s}commandline' % QEMU_NS)
    for arg in ram_args(live):
        ET.SubElement(cmdline, '{%s}arg' % QEMU_NS, value=arg)
    return CloneDomain(xml=ET.tostring(root, encoding='unicode'), overlays=overlays)


def _kind(device: ET.Element) -> str:
    """What QEMU device an element becomes, in words with no host path."""
    words = [device.tag]
    for attr in ('type', 'device', 'model', 'bus', 'index'):
        # a disk's or NIC's type is its host side (file, bridge...), not the guest's device
        if device.get(attr) is not None and not (
                attr == 'type' and device.tag in ('disk', 'interface')):
            words.append('%s=%s' % (attr, device.get(attr)))
    for child, attr in (('model', 'type'), ('target', 'bus'), ('target', 'type')):
        el = device.find(child)
        if el is not None and el.get(attr) is not None:
            words.append('%s.%s=%s' % (child, attr, el.get(attr)))
    return ' '.join(words)


def device_layout(domain_xml: str) -> dict[str, str]:
    """Each device address libvirt assigned (PCI slot, drive bus/unit, ...) -> its device."""
    layout = {}
    for device in ET.fromstring(domain_xml).iterfind('devices/*'):
        address = device.find('address')
        if address is not None:
            where = ' '.join('%s=%s' % (k, v) for k, v in sorted(address.attrib.items()))
            layout[where] = _kind(device)
    return layout


def check_layout(live: manifest_mod.NovaLiveImage, blessed_xml: str, clone_xml: str) -> None:
    """LiveImageIncompatible unless the clone's devices sit where the blessed domain's did.

    Both XMLs must be libvirt's (addresses assigned), ideally both migratable.
    """
    blessed, clone = device_layout(blessed_xml), device_layout(clone_xml)
    differences = ['%s: %s, here %s' % (where, blessed.get(where, 'nothing'),
                                        clone.get(where, 'nothing'))
                   for where in sorted(set(blessed) | set(clone))
                   if blessed.get(where) != clone.get(where)]
    if differences:
        raise _refuse(live, 'its devices differ from this instance\'s (%s)'
                      % '; '.join(differences))
