"""Bless a Nova-booted libvirt instance into a live image (runs in gridcentric-compute).

Nova's libvirt driver with ``[libvirt] file_backed_memory`` gives a domain
(UUID = instance UUID) one RAM backend object, ``pc.ram``, a shared file
under libvirt's ``memory_backing_dir``. Bless copies what a clone resumes
from into ``<live_images_path>/<live image id>/``:

``ram``         the frozen RAM (reflink or sparse copy), sealed read-only
``state``       device state saved with ``x-ignore-shared`` (RAM not in it)
``<dev>.<fmt>`` each file disk's top image; its backing chain goes along as
                ``backing-<n>.<fmt>`` (hard links where they can be, else
                copies), rebased onto those relative names so the directory
                holds whole chains and can be read by any clone
``domain.xml``  the migratable XML (the device layout a clone must match)
``nova.json``   the manifest (``nova.manifest``), written last

The domain is paused only to save the device state and copy the RAM and the
top images (backing files are immutable, so they are staged before). A
marker file says the pause is ours, so a restart of gridcentric-compute
resumes a domain it left paused (:func:`resume_if_paused_by_us`).

The RAM block is renamed in ``state`` from ``pc.ram`` to ``gc.ram``:
libvirt 9.0 creates its own ``pc.ram`` backend object for every domain, so
a clone cannot give that id to a backend of its own; the clone maps the
blessed RAM as ``memory-backend-file,id=gc.ram,share=off`` and uses it as
machine memory. The id is named once in the stream, in the RAM section's
setup record (length byte, id, 8-byte big-endian size), and has the same
length under both names.

``x-ignore-shared`` is turned off again once the state is saved: left on, a
later Nova live migration of the source would skip its (shared) RAM.
"""

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import struct
import xml.etree.ElementTree as ET
from typing import Any, cast

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.nova import manifest
from gridcentric_storage.virt import libvirt_live, qmp
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt.qemu_process import check_id

try:
    import libvirt
except ImportError:                    # bless then fails with this reason
    libvirt = None

LOG = logging.getLogger(__name__)

__all__ = ['PAUSED_MARKER', 'RAM_BLOCK', 'SOURCE_BLOCK', 'FileDisk', 'bless_domain',
           'check_file_backed', 'file_disks', 'rename_ram_block', 'resume_if_paused_by_us',
           'resume_paused']

#: libvirt's id of the machine memory backend; the RAMBlock id in a saved state
SOURCE_BLOCK = 'pc.ram'
#: the RAMBlock id of a live image's state, and of a clone's memory backend
RAM_BLOCK = 'gc.ram'
#: in a live image directory while its source domain is paused by bless
PAUSED_MARKER = 'paused-by-bless'
_QEMU_IMG_TIMEOUT = 300
_IGNORE_SHARED_OFF = [{'capability': 'x-ignore-shared', 'state': False}]


@dataclasses.dataclass(frozen=True)
class FileDisk:
    """A disk of the domain that is a local image file."""

    target: str
    path: str
    format: str


def check_file_backed(instance_uuid: str, root: ET.Element) -> None:
    """FileBackedMemoryRequired unless the domain's RAM is a shared file."""
    backing = root.find('memoryBacking')
    if (backing is None or backing.find("source[@type='file']") is None
            or backing.find("access[@mode='shared']") is None):
        raise exception.FileBackedMemoryRequired(id=instance_uuid)


def file_disks(instance_uuid: str, root: ET.Element) -> list[FileDisk]:
    """The domain's disks, each a local qcow2 or raw file; NovaBlessUnsupported otherwise.

    CD-ROMs (a config drive) are left out: a clone gets its own from Nova.
    """
    disks = []
    for disk in root.iterfind('devices/disk'):
        if disk.get('device', 'disk') != 'disk':
            continue
        target = disk.find('target')
        dev = target.get('dev', '?') if target is not None else '?'
        source = disk.find('source')
        if disk.get('type') != 'file' or source is None or not source.get('file'):
            raise exception.NovaBlessUnsupported(
                id=instance_uuid, reason='its disk %s is not a local image file (volumes, '
                'rbd and lvm disks cannot be blessed yet)' % dev)
        driver = disk.find('driver')
        fmt = driver.get('type', 'raw') if driver is not None else 'raw'
        if fmt not in ('qcow2', 'raw'):
            raise exception.NovaBlessUnsupported(
                id=instance_uuid, reason='its disk %s is in %s format (qcow2 or raw only)'
                % (dev, fmt))
        disks.append(FileDisk(dev, source.get('file', ''), fmt))
    return disks


def rename_ram_block(state_path: str, old: str, new: str, size: int) -> None:
    """Rename RAM block ``old`` (of ``size`` bytes) to ``new`` in a saved state, in place.

    The setup record of the RAM section is the only place a stream saved with
    x-ignore-shared names a shared block; the id is matched with its length
    byte and size so no other bytes can be taken for it.
    """
    if len(old) != len(new) or not 0 < len(old) < 256:
        raise ValueError('RAM block ids must be of one length (1-255)')
    needle = bytes([len(old)]) + old.encode() + struct.pack('>Q', size)
    with open(state_path, 'r+b') as f:
        data = f.read()
        found = data.count(needle)
        if found != 1:
            raise exception.DriverError(
                reason='the saved device state names RAM block %s of %d bytes %d times, not '
                'once; it cannot be renamed for clones' % (old, size, found))
        f.seek(data.index(needle) + 1)
        f.write(new.encode())
        f.flush()
        os.fsync(f.fileno())


def _connect(uri: str) -> Any:
    if libvirt is None:
        raise exception.DriverError(reason='the libvirt Python bindings are missing '
                                    '(python3-libvirt) on the compute host')
    libvirt.registerErrorHandler(lambda *_: None, None)      # errors raise; no stderr
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise exception.DriverError(reason='cannot connect to libvirt: %s'
                                    % e.get_error_message())


def _lookup(conn: Any, instance_uuid: str) -> Any:
    try:
        return conn.lookupByUUIDString(instance_uuid)
    except libvirt.libvirtError as e:
        if e.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
            raise exception.NovaInstanceNotFound(id=instance_uuid) from None
        raise exception.DriverError(reason='libvirt: %s' % e.get_error_message())


def _ram_file(mon: libvirt_live.Passthrough, instance_uuid: str) -> tuple[str, int]:
    """Path and size in bytes of the file behind the domain's ``pc.ram``."""
    path = '/objects/' + SOURCE_BLOCK
    try:
        ram = mon.cmd('qom-get', path=path, property='mem-path')
        size = mon.cmd('qom-get', path=path, property='size')
        shared = mon.cmd('qom-get', path=path, property='share')
    except exception.QmpError as e:
        if e.error_class != 'DeviceNotFound':
            raise
        raise exception.NovaBlessUnsupported(
            id=instance_uuid, reason='its memory is not one backend (%s): instances with '
            'a guest NUMA topology cannot be blessed yet' % SOURCE_BLOCK) from None
    if not shared:
        raise exception.FileBackedMemoryRequired(id=instance_uuid)
    return str(ram), int(size)


def qemu_owner(domain_type: str, uri: str = 'qemu:///system') -> tuple[int, int] | None:
    """uid, gid QEMU runs as for domains of ``domain_type`` on this host (see
    :func:`_qemu_owner`)."""
    conn = _connect(uri)
    try:
        return _qemu_owner(conn, domain_type)
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _qemu_owner(conn: Any, domain_type: str) -> tuple[int, int] | None:
    """uid, gid QEMU runs as (libvirt's DAC base label), when we may chown."""
    if os.geteuid() != 0:
        return None
    caps = ET.fromstring(conn.getCapabilities())
    for label in caps.iterfind("host/secmodel[model='dac']/baselabel"):
        if label.get('type') == domain_type and label.text:
            uid, _, gid = label.text.replace('+', '').partition(':')
            return int(uid), int(gid)
    return None


def _qemu_img(*args: str) -> str:
    try:
        return processutils.execute(['qemu-img', *args], timeout=_QEMU_IMG_TIMEOUT)
    except exception.DriverError as e:
        # its reason quotes host paths: logged here, never recorded on the live image
        LOG.error('%s', e)
        raise exception.DriverError(
            reason='qemu-img %s failed on the compute host' % args[0]) from None


def _chain(disk: FileDisk) -> list[dict[str, Any]]:
    """``qemu-img info`` of the disk's image and each image below it, top first."""
    out = _qemu_img('info', '-U', '--backing-chain', '--output=json', disk.path)
    chain: list[dict[str, Any]] = json.loads(out)
    if chain[0]['format'] != disk.format:
        raise exception.DriverError(reason='disk %s is %s, not the %s its domain says'
                                    % (disk.target, chain[0]['format'], disk.format))
    return chain


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
            raise
        live.freeze_copy(src, dst)


@dataclasses.dataclass
class _Plan:
    """Where each disk's chain goes in the live image directory."""

    directory: str
    #: the name of each image below a top image, by its real path
    staged: dict[str, str] = dataclasses.field(default_factory=dict)
    #: top image name and its backing's (name, format) per disk target
    tops: dict[str, tuple[str, tuple[str, str] | None]] = dataclasses.field(
        default_factory=dict)

    def stage(self, disk: FileDisk, chain: list[dict[str, Any]]) -> None:
        """Put the images below the top one in place; they never change, so this
        runs while the domain does. Only an image without a backing of its own
        may be a hard link: one that has is rebased, which writes it."""
        below = None
        for image in reversed(chain[1:]):
            real = os.path.realpath(image['filename'])
            if real not in self.staged:
                name = 'backing-%d.%s' % (len(self.staged), image['format'])
                dst = os.path.join(self.directory, name)
                if below is None:
                    _link_or_copy(real, dst)
                else:
                    live.freeze_copy(real, dst)
                    _qemu_img('rebase', '-u', '-F', below[1], '-b', below[0], dst)
                self.staged[real] = name
            below = (self.staged[real], image['format'])
        self.tops[disk.target] = ('%s.%s' % (disk.target, disk.format), below)

    def path(self, target: str) -> str:
        return os.path.join(self.directory, self.tops[target][0])

    def finish(self) -> None:
        """Point each copied top image at its backing's copy (after the pause)."""
        for target, (_, below) in self.tops.items():
            if below is not None:
                _qemu_img('rebase', '-u', '-F', below[1], '-b', below[0], self.path(target))
            os.chmod(self.path(target), 0o444)


def bless_domain(instance_uuid: str, live_image_id: str, project_id: str, directory: str,
                 timeout: float, checksum: bool,
                 uri: str = 'qemu:///system') -> manifest.NovaLiveImage:
    """Bless the running domain of a Nova instance into the new ``directory``.

    On any failure the domain runs again (if bless paused it), the directory
    is removed and the error raised.
    """
    check_id('live image', live_image_id)
    conn = _connect(uri)
    try:
        dom = _lookup(conn, instance_uuid)
        root = ET.fromstring(dom.XMLDesc(0))
        check_file_backed(instance_uuid, root)
        disks = file_disks(instance_uuid, root)
        if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            raise exception.InvalidState(resource='Instance', id=instance_uuid,
                                         state='not running',
                                         reason='only a running instance can be blessed')
        mon = libvirt_live.Passthrough(dom)
        ram_source, ram_size = _ram_file(mon, instance_uuid)
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        try:
            os.mkdir(directory, 0o755)        # clones' QEMU reads ram, disks
        except FileExistsError:
            raise exception.Conflict(reason='live image %s already exists on this host'
                                     % live_image_id) from None
        try:
            return _bless(dom, mon, instance_uuid, live_image_id, project_id, directory,
                          disks, (ram_source, ram_size), timeout, checksum,
                          _qemu_owner(conn, root.get('type', 'qemu')))
        except BaseException:
            with contextlib.suppress(Exception):
                resume_paused(dom, directory)
            shutil.rmtree(directory, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _bless(dom: Any, mon: libvirt_live.Passthrough, instance_uuid: str, live_image_id: str,
           project_id: str, directory: str, disks: list[FileDisk], ram: tuple[str, int],
           timeout: float, checksum: bool,
           owner: tuple[int, int] | None) -> manifest.NovaLiveImage:
    plan = _Plan(directory)
    for disk in disks:
        plan.stage(disk, _chain(disk))
    domain_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
    marker = os.path.join(directory, PAUSED_MARKER)

    def pause() -> bool:
        live.write_file(marker, instance_uuid)
        dom.suspend()
        return True

    def resume() -> None:
        dom.resume()
        os.unlink(marker)

    def save_device_state(state: str) -> None:
        with open(state, 'xb') as f:
            mon.cmd('getfd', files=[f.fileno()], fdname='gc-state')
            mon.cmd('migrate-set-capabilities', capabilities=live.IGNORE_SHARED)
            try:
                mon.cmd('migrate', uri='fd:gc-state')
                qmp.wait_for_migration(cast(qmp.Monitor, mon), timeout)
            finally:
                mon.cmd('migrate-set-capabilities', capabilities=_IGNORE_SHARED_OFF)
        # QEMU flushed and let go of the images when the state was saved
        for disk in disks:
            live.freeze_copy(disk.path, plan.path(disk.target))

    timing = live.timed_save(ram[0], directory, pause, resume, save_device_state)
    plan.finish()
    ram_path, state_path = os.path.join(directory, 'ram'), os.path.join(directory, 'state')
    sealed = libvirt_live.seal_ram(ram_path, owner, checksum)
    if sealed['ram_size'] != ram[1]:
        raise exception.DriverError(reason='the RAM copy has %d bytes, the guest %d'
                                    % (sealed['ram_size'], ram[1]))
    rename_ram_block(state_path, SOURCE_BLOCK, RAM_BLOCK, ram[1])
    xml_path = os.path.join(directory, 'domain.xml')
    live.write_file(xml_path, domain_xml)
    LOG.info('Blessed instance %s into live image %s: paused %.3f s (RAM %s, state %d '
             'bytes)', instance_uuid, live_image_id, timing['paused_seconds'],
             timing['ram_copy'], timing['state_size'])
    made = manifest.NovaLiveImage(
        live_image_id=live_image_id, project_id=project_id, source_instance=instance_uuid,
        ram_path=ram_path, ram_size=ram[1], ram_block=RAM_BLOCK, state_path=state_path,
        disks={disk.target: plan.path(disk.target) for disk in disks},
        domain_xml_path=xml_path, ram_sha256=sealed.get('ram_sha256'))
    manifest.write(directory, made)
    return made


def resume_paused(dom: Any, directory: str) -> bool:
    """Resume ``dom`` if the marker in ``directory`` says bless paused it; True if so."""
    marker = os.path.join(directory, PAUSED_MARKER)
    if not os.path.exists(marker):
        return False
    mon = libvirt_live.Passthrough(dom)
    # A bless cut short may have left its migration running and the capability on.
    with contextlib.suppress(exception.QmpError):
        if mon.cmd('query-migrate').get('status') in ('active', 'setup', 'device'):
            mon.cmd('migrate_cancel')
    with contextlib.suppress(exception.QmpError):
        mon.cmd('migrate-set-capabilities', capabilities=_IGNORE_SHARED_OFF)
    resumed = False
    if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()
        resumed = True
    os.unlink(marker)
    return resumed


def resume_if_paused_by_us(instance_uuid: str, directory: str,
                           uri: str = 'qemu:///system') -> bool:
    """After a restart: resume the instance an interrupted bless left paused."""
    if not os.path.exists(os.path.join(directory, PAUSED_MARKER)):
        return False
    conn = _connect(uri)
    try:
        return resume_paused(_lookup(conn, instance_uuid), directory)
    finally:
        with contextlib.suppress(Exception):
            conn.close()
