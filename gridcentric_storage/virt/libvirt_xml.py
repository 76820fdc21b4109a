"""Domain XML for the libvirt driver: built, and rewritten for clones (no libvirt calls).

Why a module of its own: a clone must present exactly the devices of the VM
that was blessed, so the spawned VM's XML (:func:`spawn_xml`) and the rewrite
of the blessed VM's migratable XML (:func:`blessed_xml`) into a clone's
(:func:`clone_xml`) are best read side by side, apart from the driver's domain
lifecycle. Disks that need a libvirt secret (iSCSI CHAP) come from the
caller's ``disk`` function, so the connection stays in ``libvirt.py``.

Guest RAM is given by ``<qemu:commandline>``, not ``<memoryBacking><source
type='file'/>``: libvirt 9.0 puts that file under qemu.conf's host-wide
``memory_backing_dir``, in a directory named after the domain's runtime id and
deleted at shutdown, and cannot point a clone at a given file with
``share=off``; the clone's RAM block must carry the blessed VM's name. So both
get ``-object memory-backend-file,id=mem`` + ``-machine memory-backend=mem``
(the later ``-machine`` wins; libvirt's own ``pc.ram`` is never mapped nor
migrated).
"""

import os
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.volume import qos

__all__ = ['PREFIX', 'QEMU_NS', 'blessed_xml', 'clone_xml', 'disk_xml', 'ram_args', 'spawn_xml']

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
ET.register_namespace('qemu', QEMU_NS)
PREFIX = 'gc-'

#: Builds the ``<disk>`` of one volume at a target dev (may define a libvirt secret).
DiskBuilder = Callable[[base.Disk, str], ET.Element]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def disk_xml(connection_info: dict[str, Any], dev: str, read_only: bool = False,
             secret_uuid: str | None = None) -> ET.Element:
    """A virtio ``<disk>`` from os-brick style connection info (local, rbd, iscsi).

    iSCSI CHAP needs a libvirt secret holding the password (``secret_uuid``);
    rbd uses Cinder's ``secret_uuid`` (a ceph secret defined on the host) when
    ``auth_username`` is set, else ceph.conf's defaults.
    """
    kind = connection_info.get('driver_volume_type')
    data = connection_info.get('data') or {}
    disk = ET.Element('disk', device='disk')
    try:
        if kind == 'local':
            path, fmt = data['device_path'], data.get('format', 'raw')
            if fmt not in ('raw', 'qcow2'):
                raise ValueError('format must be raw or qcow2, not %r' % fmt)
            block = path.startswith('/dev/')
            disk.set('type', 'block' if block else 'file')
            _sub(disk, 'driver', name='qemu', type=fmt, **({'discard': 'unmap'}
                                                             if data.get('discard') else {}))
            _sub(disk, 'source', **{'dev' if block else 'file': path})
        elif kind in ('rbd', 'iscsi'):
            disk.set('type', 'network')
            _sub(disk, 'driver', name='qemu', type='raw')
            if kind == 'rbd':
                if '/' not in data['name']:
                    raise ValueError('name must be pool/image, not %r' % data['name'])
                source = _sub(disk, 'source', protocol='rbd', name=data['name'])
                hosts, ports = data.get('hosts') or [], data.get('ports') or []
                for host, port in zip(hosts, ports or ['6789'] * len(hosts), strict=False):
                    _sub(source, 'host', name=host, port=str(port))
                if data.get('conf'):
                    _sub(source, 'config', file=data['conf'])
                user, secret_type = data.get('auth_username'), 'ceph'
                secret_uuid = secret_uuid or data.get('secret_uuid')
            else:
                source = _sub(disk, 'source', protocol='iscsi', name='%s/%d' % (
                    data['target_iqn'], int(data.get('target_lun', 0))))
                host, _, port = data['target_portal'].rpartition(':')
                _sub(source, 'host', name=host.strip('[]') or port, port=port or '3260')
                user, secret_type = data.get('auth_username'), 'iscsi'
                if data.get('auth_method', 'CHAP') != 'CHAP':
                    user = None
            if user and secret_uuid:
                auth = _sub(disk, 'auth', username=user)
                _sub(auth, 'secret', type=secret_type, uuid=secret_uuid)
        else:
            raise ValueError('unsupported driver_volume_type %r' % kind)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise exception.DriverError(reason='cannot build a libvirt disk from %s connection '
                                    'info: %s' % (kind, e))
    _sub(disk, 'target', dev=dev, bus='virtio')
    limits = qos.from_connection(connection_info)
    if limits:
        # <iotune>'s element names are Cinder's keys (what Nova's libvirt driver relies on)
        iotune = _sub(disk, 'iotune')
        for key in sorted(limits):
            _sub(iotune, key, str(int(limits[key])))
    if read_only:
        _sub(disk, 'readonly')
    return disk


def ram_args(root: ET.Element, memory_mb: int, path: str, share: bool,
             incoming: bool) -> None:
    """Replace ``root``'s ``<qemu:commandline>`` with the RAM backend (and ``-incoming``)."""
    for old in root.findall('{%s}commandline' % QEMU_NS):
        root.remove(old)
    args = ['-object', 'memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s' % (
        memory_mb, path.replace(',', ',,'), 'on' if share else 'off'),
        '-machine', 'memory-backend=mem'] + (['-incoming', 'defer'] if incoming else [])
    cmdline = ET.SubElement(root, '{%s}commandline' % QEMU_NS)
    for arg in args:
        ET.SubElement(cmdline, '{%s}arg' % QEMU_NS, value=arg)


def spawn_xml(instance: base.InstanceSpec, directory: str, domain_type: str, *,
              machine: str, emulator: str, cpu_model: str | None, network: str | None,
              disk: DiskBuilder) -> ET.Element:
    """The domain of a new VM whose RAM file (``<directory>/ram``) is shared, to bless."""
    root = ET.Element('domain', type=domain_type)
    _sub(root, 'name', PREFIX + instance.id)
    _sub(root, 'title', instance.name)
    _sub(root, 'genid', instance.vmgenid)
    _sub(root, 'memory', str(instance.memory_mb), unit='MiB')
    _sub(root, 'vcpu', str(instance.vcpus))
    os_el = _sub(root, 'os')
    _sub(os_el, 'type', 'hvm', arch='x86_64', machine=machine)
    if instance.kernel:
        _sub(os_el, 'kernel', instance.kernel)
        if instance.initrd:
            _sub(os_el, 'initrd', instance.initrd)
        _sub(os_el, 'cmdline', instance.cmdline or 'console=ttyS0')
    _sub(_sub(root, 'features'), 'acpi')        # vmgenid and PCI hot-plug need ACPI
    if cpu_model:
        _sub(_sub(root, 'cpu', mode='custom', match='exact'), 'model', cpu_model)
    for event in ('on_poweroff', 'on_reboot', 'on_crash'):
        _sub(root, event, 'destroy')
    devices = _sub(root, 'devices')
    _sub(devices, 'emulator', emulator)
    for i, spec in enumerate(instance.disks):
        devices.append(disk(spec, 'vd' + chr(ord('a') + i)))
    _sub(devices, 'controller', type='usb', model='none')
    if instance.mac:
        nic = _sub(devices, 'interface', type='network' if network else 'user')
        if network:
            _sub(nic, 'source', network=network)
        _sub(nic, 'mac', address=instance.mac)
        _sub(nic, 'model', type='virtio')
    serial = _sub(devices, 'serial', type='file')
    _sub(serial, 'source', path=os.path.join(directory, 'console.log'))
    _sub(serial, 'target', port='0')
    _sub(devices, 'memballoon', model='none')
    ram_args(root, instance.memory_mb, os.path.join(directory, 'ram'), True, False)
    return root


def blessed_xml(artifacts: base.LiveImageArtifacts) -> tuple[ET.Element, list[ET.Element]]:
    """A live image's migratable domain XML and its ``<disk device='disk'>`` elements.

    Raises ``exception.LiveImageFilesMissing`` when the live image's files are gone.
    """
    live.image_layout(artifacts)
    try:
        root = ET.parse(os.path.join(artifacts.directory, 'domain.xml')).getroot()
    except (OSError, ET.ParseError) as e:
        raise exception.LiveImageFilesMissing(id=artifacts.live_image_id,
                                     reason='no domain XML (%s)' % e)
    devices = root.find('devices')
    assert devices is not None
    return root, [d for d in devices.findall('disk') if d.get('device', 'disk') == 'disk']


def clone_xml(root: ET.Element, artifacts: base.LiveImageArtifacts, clone: base.CloneSpec,
              directory: str, disks: list[ET.Element], disk: DiskBuilder) -> None:
    """Turn the blessed VM's migratable XML into the clone's, in place.

    Also writes the clone's ``fw-*`` files into ``directory`` (``<sysinfo
    type='fwcfg'>`` names them), since they carry the MAC chosen here.
    """
    for tag in ('uuid', 'seclabel'):
        for el in root.findall(tag):
            root.remove(el)
    name, title, genid = root.find('name'), root.find('title'), root.find('genid')
    assert name is not None
    name.text = PREFIX + clone.id
    if title is not None:
        title.text = clone.name
    if genid is None:
        genid = _sub(root, 'genid')
    genid.text = clone.vmgenid or str(uuid.uuid4())
    os_el = root.find('os')
    for tag in ('kernel', 'initrd', 'cmdline'):
        for el in os_el.findall(tag) if os_el is not None else []:
            os_el.remove(el)                    # type: ignore[union-attr]
    devices = root.find('devices')
    assert devices is not None
    for old, spec in zip(disks, clone.disks, strict=True):
        target, address = old.find('target'), old.find('address')
        new = disk(spec, target.get('dev', '') if target is not None else '')
        if address is not None:
            new.append(address)                 # same PCI slot as in the blessed VM
        devices.insert(list(devices).index(old), new)
        devices.remove(old)
    for nic in devices.findall('interface'):
        mac = nic.find('mac')
        if mac is not None:
            mac.set('address', clone.mac or '52:54:00:%02x:%02x:%02x'
                    % tuple(os.urandom(3)))
    mac_el = devices.find('interface/mac')
    for serial in devices.findall('serial'):
        source = serial.find('source')
        if source is not None:
            source.set('path', os.path.join(directory, 'console.log'))
    files = live.guest_files(directory, clone, None if mac_el is None
                             else mac_el.get('address'))
    for sysinfo in root.findall("sysinfo[@type='fwcfg']"):
        root.remove(sysinfo)
    sysinfo = ET.Element('sysinfo', type='fwcfg')
    for key, path in sorted(files.items()):
        _sub(sysinfo, 'entry', name='opt/com.gridcentric/' + key, file=path)
    root.insert(list(root).index(os_el) if os_el is not None else 0, sysinfo)
    ram_args(root, artifacts.memory_mb, artifacts.memory_path, False, True)
