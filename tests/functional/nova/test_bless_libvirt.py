"""nova.bless against a real libvirtd and QEMU (TCG): a domain defined the way Nova's
libvirt driver defines one with ``[libvirt] file_backed_memory``.

The domain (UUID = the "instance", RAM a shared file libvirt makes, a qcow2
root disk on a raw ``_base`` file, a second disk three images deep on the
same base) runs the test guest. After the bless the source still runs, the
live image directory holds whole self-contained disk chains with the same
data, sealed RAM, a state naming ``gc.ram`` and the manifest; a clone made
by hand from those files (RAM ``id=gc.ram,share=off``) resumes the guest's
memory. A domain whose RAM is not a shared file is refused, saying how to
enable it. The last test goes through a compute service's RPC (bless, then
discard). Skips (fails under GC_REQUIRE_SERVICES=1) without libvirtd/QEMU.
"""

import contextlib
import json
import os
import stat
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg

from gridcentric_storage.common import context, exception
from gridcentric_storage.common import states as st
from gridcentric_storage.compute import rpcapi
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.nova import bless, manifest
from gridcentric_storage.virt import libvirt_live
from gridcentric_storage.virt import qemu_live as live
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.virt.conftest import libvirtd  # noqa: F401 - the shared fixture
from tests.functional.virt.drivers import BOOT_TIMEOUT, work_dir
from tests.unit.compute import helpers

URI = os.environ.get('GC_TEST_LIBVIRT_URI', 'qemu:///system')
PREFIX = 'gc-hb-'
MEMORY_MB = 256
QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'

pytestmark = pytest.mark.usefixtures('libvirtd')


def _domain_xml(name: str, instance: str, work: str, disks: dict[str, str],
                file_backed: bool) -> str:
    paths = guest.build()
    backing = ("<memoryBacking><source type='file'/><access mode='shared'/>"
               "<allocation mode='immediate'/><discard/></memoryBacking>"
               if file_backed else '')
    disk_xml = ''.join(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='%s'/><target dev='%s' bus='virtio'/></disk>" % (path, dev)
        for dev, path in disks.items())
    return """
<domain type='qemu'>
  <name>%(name)s</name><uuid>%(uuid)s</uuid>
  <memory unit='MiB'>%(mb)d</memory>%(backing)s<vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>%(kernel)s</kernel>
      <initrd>%(initrd)s</initrd><cmdline>%(cmdline)s</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>
  <devices>
    %(disks)s
    <controller type='usb' model='none'/>
    <serial type='file'><source path='%(console)s'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>""" % {'name': name, 'uuid': instance, 'mb': MEMORY_MB, 'backing': backing,
                'kernel': paths.kernel, 'initrd': paths.initrd, 'cmdline': guest.CMDLINE,
                'disks': disk_xml, 'console': os.path.join(work, name + '.log')}


class Host:
    """libvirt on this host, and the domains a test made there (undefined after)."""

    def __init__(self, work: str) -> None:
        import libvirt
        self.libvirt = libvirt
        self.work = work
        self.conn = libvirt.open(URI)
        self.domains: list[Any] = []

    def define(self, xml: str, start: bool = True) -> Any:
        dom = self.conn.defineXML(xml)          # persistent, as Nova's are
        self.domains.append(dom)
        if start:
            dom.create()
        return dom

    def create_paused(self, xml: str) -> Any:
        dom = self.conn.createXML(xml, self.libvirt.VIR_DOMAIN_START_PAUSED)
        self.domains.append(dom)
        return dom

    def close(self) -> None:
        for dom in self.domains:
            with contextlib.suppress(self.libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(self.libvirt.libvirtError):
                dom.undefine()
        self.conn.close()


@pytest.fixture
def host() -> Iterator[Host]:
    reason = guest.missing()
    if reason:
        pytest.skip(reason)
    with work_dir() as work:
        h = Host(work)
        try:
            yield h
        finally:
            h.close()


def console(host: Host, dom: Any) -> str:
    with open(os.path.join(host.work, dom.name() + '.log'), errors='replace') as f:
        return f.read()


def qemu_img(*args: str) -> str:
    return subprocess.run(['qemu-img', *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def nova_disks(work: str) -> tuple[str, dict[str, str]]:
    """Nova's layout: instances/_base/<image> (raw), instances/<uuid>/disk on it; plus a
    disk two overlays above the same base. Each image holds its own bytes."""
    base_dir = os.path.join(work, 'instances', '_base')
    inst_dir = os.path.join(work, 'instances', 'inst')
    os.makedirs(base_dir)
    os.makedirs(inst_dir)
    base = os.path.join(base_dir, 'image-sha1')
    with open(base, 'wb') as f:
        f.write(b'BASE IMAGE DATA'.ljust(4096, b'.'))
        f.truncate(64 << 20)
    root = os.path.join(inst_dir, 'disk')
    mid = os.path.join(inst_dir, 'disk.mid')
    eph = os.path.join(inst_dir, 'disk.eph0')
    qemu_img('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, root)
    qemu_img('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, mid)
    subprocess.run(['qemu-io', '-c', 'write -P 0x4d 1M 64k', mid], check=True,
                   capture_output=True, timeout=60)
    qemu_img('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', mid, eph)
    for path, pattern in ((root, 0x52), (eph, 0x45)):
        subprocess.run(['qemu-io', '-c', 'write -P 0x%02x 2M 64k' % pattern, path],
                       check=True, capture_output=True, timeout=60)
    return base, {'vda': root, 'vdb': eph}


def booted(host: Host, dom: Any) -> str:
    """The guest's boot token once it counts."""
    wait_for(lambda: guest.counters(console(host, dom)), timeout=BOOT_TIMEOUT,
             what='the guest of %s to boot' % dom.name())
    token = guest.boot_token(console(host, dom))
    assert token
    return token


def capability(dom: Any, name: str) -> bool:
    caps = libvirt_live.Passthrough(dom).cmd('query-migrate-capabilities')
    return bool(next(c['state'] for c in caps if c['capability'] == name))


def clone_xml(made: manifest.NovaLiveImage, name: str, disks: dict[str, str],
              console_path: str) -> str:
    """A clone as the Nova virt driver makes one: the blessed XML with every disk an
    overlay of its copy, RAM given as ``gc.ram`` mapped privately, waiting for the state."""
    root = ET.parse(made.domain_xml_path).getroot()
    for tag in ('uuid', 'seclabel', 'memoryBacking'):
        for el in root.findall(tag):
            root.remove(el)
    root.find('name').text = name
    devices = root.find('devices')
    for disk in devices.findall('disk'):
        for chain in disk.findall('backingStore'):
            disk.remove(chain)
        disk.find('source').set('file', disks[disk.find('target').get('dev')])
    devices.find('serial/source').set('path', console_path)
    cmdline = ET.SubElement(root, '{%s}commandline' % QEMU_NS)
    for arg in ('-object', 'memory-backend-file,id=%s,size=%d,mem-path=%s,share=off'
                % (made.ram_block, made.ram_size, made.ram_path),
                '-machine', 'memory-backend=%s' % made.ram_block, '-incoming', 'defer'):
        ET.SubElement(cmdline, '{%s}arg' % QEMU_NS, value=arg)
    return ET.tostring(root, encoding='unicode')


def test_a_nova_domain_is_blessed_and_a_clone_resumes_its_memory(host: Host) -> None:
    instance = str(uuid.uuid4())
    base, disks = nova_disks(host.work)
    src = host.define(_domain_xml(PREFIX + 'src', instance, host.work, disks, True))
    token = booted(host, src)
    live_images = os.path.join(host.work, 'live-images')
    directory = os.path.join(live_images, 'li-1')

    made = bless.bless_domain(instance, 'li-1', 'demo', directory, 120, True, uri=URI)

    # The source runs on, counting, and may live-migrate again later.
    assert src.state()[0] == host.libvirt.VIR_DOMAIN_RUNNING
    seen = guest.counters(console(host, src))[-1][0]
    wait_for(lambda: guest.counters(console(host, src))[-1][0] > seen + 2, timeout=60,
             what='the source to keep counting')
    assert not capability(src, 'x-ignore-shared')
    assert not os.path.exists(os.path.join(directory, bless.PAUSED_MARKER))

    # The manifest names this instance's files, all inside the directory.
    assert manifest.read(live_images, 'li-1') == made
    assert (made.source_instance, made.project_id, made.ram_block) == (instance, 'demo',
                                                                      'gc.ram')
    assert made.ram_size == MEMORY_MB << 20 == os.path.getsize(made.ram_path)
    assert made.ram_sha256 == live.sha256(made.ram_path)
    assert stat.S_IMODE(os.stat(made.ram_path).st_mode) in (0o444, 0o464)
    assert sorted(made.disks) == ['vda', 'vdb']
    xml = ET.parse(made.domain_xml_path).getroot()
    assert xml.findtext('uuid') == instance
    with open(made.state_path, 'rb') as f:
        state = f.read()
    assert b'\x06gc.ram' in state and b'\x06pc.ram' not in state

    # Each disk: the same data as the source's, its whole chain in the directory,
    # the raw base hard-linked once (same file system), never rewritten.
    for dev, source in disks.items():
        chain = json.loads(qemu_img('info', '--backing-chain', '--output=json',
                                    made.disks[dev]))
        assert [os.path.dirname(os.path.realpath(image['filename'])) for image in chain] \
            == [directory] * len(chain)
        assert len(chain) == (2 if dev == 'vda' else 3)
        qemu_img('compare', '-U', source, made.disks[dev])
    raws = [n for n in os.listdir(directory) if n.endswith('.raw')]
    assert len(raws) == 1
    assert os.stat(os.path.join(directory, raws[0])).st_ino == os.stat(base).st_ino
    # Nova's own images are left as they were.
    assert json.loads(qemu_img('info', '-U', '--output=json', disks['vda'])
                      )['backing-filename'] == base

    # A clone from these files alone resumes where the guest was.
    overlays = {dev: os.path.join(host.work, 'clone-' + dev) for dev in made.disks}
    for dev, overlay in overlays.items():
        qemu_img('create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', made.disks[dev], overlay)
    clone_name = PREFIX + 'clone'
    clone = host.create_paused(clone_xml(made, clone_name, overlays,
                                         os.path.join(host.work, clone_name + '.log')))
    libvirt_live.restore_state(clone, made.state_path, 120)
    wait_for(lambda: guest.tokens(console(host, clone)), timeout=120,
             what='the clone to print its token')
    text = console(host, clone)
    assert guest.tokens(text) == {token}
    assert guest.boot_token(text) is None               # resumed, not booted
    assert guest.counters(text)[0][0] > 0


def test_a_domain_without_file_backed_memory_is_refused_saying_how(host: Host) -> None:
    instance = str(uuid.uuid4())
    _, disks = nova_disks(host.work)
    host.define(_domain_xml(PREFIX + 'plain', instance, host.work, {'vda': disks['vda']},
                            False), start=False)
    live_images = os.path.join(host.work, 'live-images')

    with pytest.raises(exception.FileBackedMemoryRequired) as caught:
        bless.bless_domain(instance, 'li-2', 'demo', os.path.join(live_images, 'li-2'), 60,
                           False, uri=URI)
    assert '[libvirt] file_backed_memory' in caught.value.message
    assert 'hard-reboot' in caught.value.message
    assert not os.path.exists(os.path.join(live_images, 'li-2'))


def test_an_instance_without_a_domain_here_is_not_found(host: Host) -> None:
    with pytest.raises(exception.NovaInstanceNotFound):
        bless.bless_domain(str(uuid.uuid4()), 'li-3', 'demo',
                           os.path.join(host.work, 'live-images', 'li-3'), 60, False, uri=URI)


def test_a_bless_failing_while_paused_resumes_the_source_and_leaves_nothing(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = str(uuid.uuid4())
    _, disks = nova_disks(host.work)
    src = host.define(_domain_xml(PREFIX + 'full', instance, host.work, {'vda': disks['vda']},
                                  True))
    booted(host, src)
    copy = live.freeze_copy

    def disk_full(source: str, dest: str) -> str:
        if os.path.basename(dest) == 'ram':             # after the state, still paused
            raise OSError(28, 'No space left on device', dest)
        return copy(source, dest)
    monkeypatch.setattr(live, 'freeze_copy', disk_full)
    live_images = os.path.join(host.work, 'live-images')

    with pytest.raises(OSError, match='No space left'):
        bless.bless_domain(instance, 'li-4', 'demo', os.path.join(live_images, 'li-4'), 60,
                           False, uri=URI)
    assert src.state()[0] == host.libvirt.VIR_DOMAIN_RUNNING
    assert not capability(src, 'x-ignore-shared')
    assert os.listdir(live_images) == []


def test_after_a_restart_only_a_domain_bless_paused_is_resumed(host: Host) -> None:
    _, disks = nova_disks(host.work)
    ours, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    doms = {instance: host.define(_domain_xml(PREFIX + name, instance, host.work,
                                              {'vda': disks[dev]}, True))
            for instance, name, dev in ((ours, 'ours', 'vda'), (theirs, 'theirs', 'vdb'))}
    live_images = os.path.join(host.work, 'live-images')
    for instance, dom in doms.items():
        dom.suspend()
        os.makedirs(os.path.join(live_images, instance))
    # what a bless cut short leaves: its marker in the live image's directory
    with open(os.path.join(live_images, ours, bless.PAUSED_MARKER), 'w') as f:
        f.write(ours)

    assert bless.resume_if_paused_by_us(ours, os.path.join(live_images, ours), uri=URI)
    assert not bless.resume_if_paused_by_us(theirs, os.path.join(live_images, theirs),
                                            uri=URI)
    assert doms[ours].state()[0] == host.libvirt.VIR_DOMAIN_RUNNING
    assert doms[theirs].state()[0] == host.libvirt.VIR_DOMAIN_PAUSED


def test_a_compute_service_blesses_and_discards_a_nova_instance(host: Host, gc_db: Any) -> None:
    """The compute RPC end to end: the row the API side makes, the cast, the files."""
    instance = str(uuid.uuid4())
    _, disks = nova_disks(host.work)
    src = host.define(_domain_xml(PREFIX + 'rpc', instance, host.work, {'vda': disks['vda']},
                                  True))
    booted(host, src)
    cfg.CONF.set_override('uri', URI, group='libvirt')
    service = helpers.start_service()
    try:
        image = db_servers.live_image_create({
            'id': str(uuid.uuid4()), 'name': 'gold', 'project_id': 'demo', 'user_id': 'u',
            'server_id': instance, 'host': helpers.HOST, 'status': 'blessing',
            'memory_mb': MEMORY_MB, 'vcpus': 1, 'nova_source': {'flavor_id': '1'}})
        ctxt = context.get_admin_context()
        rpcapi.ComputeAPI().bless_nova_instance(ctxt, helpers.HOST, image['id'], instance)
        blessed = helpers.settled_live_image(image['id'], timeout=120)
        assert blessed is not None
        assert (blessed['status'], blessed['status_reason']) == ('blessed', None)
        directory = blessed['artifacts']['directory']
        assert manifest.read(os.path.dirname(directory), image['id']).source_instance \
            == instance
        assert src.state()[0] == host.libvirt.VIR_DOMAIN_RUNNING

        set_live_image(image['id'], st.LiveImageStatus.DISCARDING, st.LiveImageStatus.BLESSED)
        rpcapi.ComputeAPI().discard_live_image(ctxt, helpers.HOST, image['id'])
        assert helpers.settled_live_image(image['id']) is None
        assert not os.path.exists(directory)
        assert src.state()[0] == host.libvirt.VIR_DOMAIN_RUNNING
    finally:
        service.stop()
        cfg.CONF.clear_override('uri', group='libvirt')
