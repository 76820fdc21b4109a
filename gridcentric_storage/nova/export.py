"""A Nova instance's live image as an export, and back (runs in gridcentric-compute).

``compute.live_image_export`` packs and unpacks; this module decides what of
a Nova live image's directory goes into the tar and what an import must be
before nova-compute may resume it.

What leaves the host: the RAM, the device state, each disk (``vda.qcow2``)
and its backing images (``backing-N.<format>``, already chained by relative
names), and a *layout* in place of ``domain.xml``: the blessed domain's
devices and their addresses, all the virt driver compares, without a single
host path. ``nova.json`` (absolute paths of this host) stays.

What an import accepts is narrower, because the files are the member's input
and a clone's QEMU opens them: exactly those names; a layout that parses;
every disk a qcow2 or raw image whose whole backing chain, formats named,
lies inside the live image's directory and that has no external data file;
a RAM file of the manifest's size. The import then writes a ``nova.json``
of its own (this host's paths, the importing project).
"""

import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.nova import bless, manifest
from gridcentric_storage.virt import base as virt
from gridcentric_storage.virt import libvirt_live

__all__ = ['check_files', 'export_contents', 'finish_import', 'layout_xml']

DOMAIN_XML = 'domain.xml'
_FIXED = frozenset({'ram', 'state', DOMAIN_XML})
#: a disk target as Nova names them (vda, sdb, hdc, xvdaa), and its image
_TOP = re.compile(r'(?P<target>(?:[vsh]|xv)d[a-z]{1,2})\.(?:qcow2|raw)')
_BACKING = re.compile(r'backing-\d{1,3}\.(?:qcow2|raw)')
_FORMATS = ('qcow2', 'raw')
#: The extra that travels: scalars that say what the files are, no path.
_EXTRA = ('kind', 'ram_block', 'ram_size', 'ram_sha256')
_MAX_LAYOUT = 1 << 20
_QEMU_IMG_TIMEOUT = 60.0
_DOMAIN_TYPES = ('kvm', 'qemu')
#: What of a device the virt driver's layout check reads (clone_xml.device_layout).
_DEVICE_ATTRS = ('type', 'device', 'model', 'bus', 'index')
_CHILD_ATTRS = (('model', ('type',)), ('target', ('bus', 'type')))


def _refuse(reason: str) -> exception.Invalid:
    return exception.Invalid(reason='not an importable live image export: %s' % reason)


def layout_xml(domain_xml: str) -> bytes:
    """The blessed domain reduced to its devices' kinds and addresses."""
    source = ET.fromstring(domain_xml)
    domain = ET.Element('domain', {k: v for k, v in source.attrib.items() if k == 'type'})
    devices = ET.SubElement(domain, 'devices')
    for device in source.iterfind('devices/*'):
        address = device.find('address')
        if address is None:
            continue
        kept = ET.SubElement(devices, device.tag, {a: device.get(a) or '' for a in
                                                    _DEVICE_ATTRS if device.get(a) is not None})
        for child, attrs in _CHILD_ATTRS:
            element = device.find(child)
            if element is not None:
                ET.SubElement(kept, child, {a: element.get(a) or '' for a in attrs
                                            if element.get(a) is not None})
        ET.SubElement(kept, 'address', dict(address.attrib))
    return ET.tostring(domain)


def export_contents(artifacts: virt.LiveImageArtifacts
                    ) -> tuple[virt.LiveImageArtifacts, list[str], dict[str, bytes]]:
    """The artifacts as the tar's manifest tells them, the files that go, and the
    layout that replaces ``domain.xml``."""
    directory = artifacts.directory
    files = sorted(name for name in os.listdir(directory)
                   if name in _FIXED or _TOP.fullmatch(name) or _BACKING.fullmatch(name))
    with open(os.path.join(directory, DOMAIN_XML)) as f:
        layout = layout_xml(f.read())
    extra = {k: artifacts.extra[k] for k in _EXTRA if artifacts.extra.get(k) is not None}
    shown = virt.LiveImageArtifacts(
        live_image_id=artifacts.live_image_id, directory=directory,
        memory_path=os.path.join(directory, 'ram'),
        state_path=os.path.join(directory, 'state'), memory_mb=artifacts.memory_mb,
        vcpus=artifacts.vcpus, disks=[], extra=extra)
    return shown, files, {DOMAIN_XML: layout}


def check_files(read_json: Callable[[str], Any], files: set[str], memory_mb: int,
                vcpus: int) -> None:
    """An export of a Nova live image, by its member names (a ``Checker``)."""
    del read_json, memory_mb, vcpus  # the manifest's sizes are checked by the caller
    missing = _FIXED - files
    if missing:
        raise _refuse('it has no %s' % ', '.join(sorted(missing)))
    unknown = sorted(n for n in files - _FIXED
                     if not (_TOP.fullmatch(n) or _BACKING.fullmatch(n)))
    if unknown:
        raise _refuse('%s %s not part of a Nova live image'
                      % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are'))


def _image_info(directory: str, name: str) -> dict[str, Any]:
    """qemu-img's view of one image, opened as the format its name says and
    without its backing file (which is checked by name, never followed)."""
    fmt = name.rsplit('.', 1)[1]
    try:
        out = processutils.execute(['qemu-img', 'info', '-U', '-f', fmt, '--output=json',
                                    os.path.join(directory, name)], timeout=_QEMU_IMG_TIMEOUT)
        info = json.loads(out)
    except (exception.DriverError, ValueError):
        raise _refuse('%s is not a %s image' % (name, fmt)) from None
    if not isinstance(info, dict) or info.get('format') != fmt:
        raise _refuse('%s is not a %s image' % (name, fmt))
    return info


def _check_disks(directory: str, images: list[str]) -> None:
    """Every image a plain file of the directory, each backing file another one of
    them with its format named, no cycle, no external data file."""
    backing_of: dict[str, str] = {}
    for name in images:
        info = _image_info(directory, name)
        specific = (info.get('format-specific') or {}).get('data') or {}
        if specific.get('data-file'):
            raise _refuse('%s has an external data file' % name)
        backing = info.get('backing-filename')
        if backing is None:
            continue
        if backing not in images or not _BACKING.fullmatch(str(backing)):
            raise _refuse('%s has a backing file that is not part of the live image' % name)
        if info.get('backing-filename-format') != str(backing).rsplit('.', 1)[1]:
            raise _refuse('%s does not name the format of its backing file' % name)
        backing_of[name] = str(backing)
    for name in images:
        seen = {name}
        while name in backing_of:
            name = backing_of[name]
            if name in seen:
                raise _refuse('the backing files of %s form a loop' % name)
            seen.add(name)


def finish_import(artifacts: virt.LiveImageArtifacts, project_id: str,
                  qemu_owner: Callable[[str], tuple[int, int] | None] = lambda kind: None
                  ) -> manifest.NovaLiveImage:
    """Check the unpacked files, seal the RAM for the QEMU that ``qemu_owner`` names
    for the domain type, and write their ``nova.json``; what it says."""
    directory = artifacts.directory
    extra = artifacts.extra
    if extra.get('kind') != 'nova':
        raise _refuse('it is not the live image of a Nova instance')
    if extra.get('ram_block') != bless.RAM_BLOCK:
        raise _refuse('its RAM block is not %s' % bless.RAM_BLOCK)
    ram_size = artifacts.memory_mb << 20
    if extra.get('ram_size') != ram_size or os.path.getsize(artifacts.memory_path) != ram_size:
        raise _refuse('its RAM is not %d MiB' % artifacts.memory_mb)
    xml_path = os.path.join(directory, DOMAIN_XML)
    if os.path.getsize(xml_path) > _MAX_LAYOUT:
        raise _refuse('%s is larger than %d bytes' % (DOMAIN_XML, _MAX_LAYOUT))
    try:
        with open(xml_path) as f:
            root = ET.fromstring(f.read())
    except (ET.ParseError, UnicodeDecodeError, ValueError):
        raise _refuse('%s is not XML' % DOMAIN_XML) from None
    if root.tag != 'domain' or root.find('devices') is None:
        raise _refuse('%s has no devices' % DOMAIN_XML)
    if root.get('type') not in _DOMAIN_TYPES:
        raise _refuse('its domain type is not one of %s' % ', '.join(_DOMAIN_TYPES))
    # as bless leaves it: clones' QEMU opens it O_RDWR, and never may write it
    libvirt_live.seal_ram(artifacts.memory_path, qemu_owner(root.get('type', 'qemu')),
                          checksum=False)
    images = sorted(n for n in os.listdir(directory)
                    if _TOP.fullmatch(n) or _BACKING.fullmatch(n))
    _check_disks(directory, images)
    disks = {}
    for name in images:
        # clones' overlays sit on these: nothing may write them again
        os.chmod(os.path.join(directory, name), 0o444)
        if match := _TOP.fullmatch(name):
            disks[match['target']] = os.path.join(directory, name)
    made = manifest.NovaLiveImage(
        live_image_id=artifacts.live_image_id, project_id=project_id,
        source_instance='', ram_path=os.path.join(directory, 'ram'), ram_size=ram_size,
        ram_block=bless.RAM_BLOCK, state_path=os.path.join(directory, 'state'),
        disks=disks, domain_xml_path=xml_path, ram_sha256=extra.get('ram_sha256'))
    manifest.write(directory, made)
    return made

