"""A Nova live image's export and import (nova.export with compute.live_image_export).

Real qemu-img builds and reads the disk images; the directory is laid out as
nova.bless leaves it (RAM, state, domain.xml, nova.json, a qcow2 disk on a
raw backing image), without a guest. tests/functional/nova exports and
imports a real blessed instance on the Nova stack.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import tarfile
import types

import pytest

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.compute import live_image_export
from gridcentric_storage.compute.nova_live_images import NovaLiveImageManager
from gridcentric_storage.nova import export, manifest
from gridcentric_storage.nova.virt import clone_xml
from gridcentric_storage.virt import base as virt

pytestmark = pytest.mark.skipif(shutil.which('qemu-img') is None,
                                reason='needs qemu-img (Debian package qemu-utils)')

MEMORY_MB = 8
DOMAIN = '''<domain type='qemu'><name>instance-00000001</name>
  <uuid>9e4c1d2a-41b7-4c5f-8a51-0e9f5b1c7d11</uuid>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='%(dir)s/../nova/instances/x/disk'/><target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>
    <interface type='bridge'><mac address='fa:16:3e:00:00:01'/><source bridge='br-int'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>
    <serial type='pty'><log file='%(dir)s/console.log'/></serial>
  </devices></domain>'''


def _qemu_img(*args):
    subprocess.run(['qemu-img', *args], check=True, capture_output=True)


def _blessed_directory(root, live_image_id='li-1'):
    """What nova.bless leaves: the files, nova.json with this host's paths."""
    directory = os.path.join(root, live_image_id)
    os.makedirs(directory)
    ram = os.path.join(directory, 'ram')
    with open(ram, 'wb') as f:
        f.truncate(MEMORY_MB << 20)
        f.write(b'guest memory')
    with open(os.path.join(directory, 'state'), 'wb') as f:
        f.write(b'QEVM device state')
    with open(os.path.join(directory, 'domain.xml'), 'w') as f:
        f.write(DOMAIN % {'dir': directory})
    _qemu_img('create', '-q', '-f', 'raw', os.path.join(directory, 'backing-0.raw'), '1M')
    _qemu_img('create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', 'backing-0.raw',
              os.path.join(directory, 'vda.qcow2'))
    made = manifest.NovaLiveImage(
        live_image_id=live_image_id, project_id='proj-a', source_instance='src-uuid',
        ram_path=ram, ram_size=MEMORY_MB << 20, ram_block='gc.ram',
        state_path=os.path.join(directory, 'state'),
        disks={'vda': os.path.join(directory, 'vda.qcow2')},
        domain_xml_path=os.path.join(directory, 'domain.xml'))
    manifest.write(directory, made)
    return virt.LiveImageArtifacts(
        live_image_id=live_image_id, directory=directory, memory_path=ram,
        state_path=made.state_path, memory_mb=MEMORY_MB, vcpus=1, disks=[],
        extra={'kind': 'nova', 'source_instance': 'src-uuid', 'ram_block': 'gc.ram',
               'ram_size': MEMORY_MB << 20, 'ram_sha256': None,
               'disks': {'vda': made.disks['vda']}})


def _pack(artifacts, out):
    shown, files, replaced = export.export_contents(artifacts)
    return live_image_export.pack(shown, str(out), files, replaced)['sha256']


class _Store:
    """The image store's one method an import uses (ImageStore.locate)."""

    def __init__(self, path):
        self.path = str(path)

    def locate(self, ctxt, image, what):
        return self.path


def _importer(tmp_path):
    driver = types.SimpleNamespace(live_images_path=str(tmp_path / 'imported'))
    # libvirt's DAC label for the domain type: QEMU's user and group
    return NovaLiveImageManager('host-1', driver, concurrency.KeyedLocks(),
                                qemu_owner=lambda kind, uri: (4242, 4343))


def _import(tmp_path, tar, sha256, live_image_id='li-2', memory_mb=MEMORY_MB):
    row = {'id': live_image_id, 'project_id': 'proj-b', 'memory_mb': memory_mb, 'vcpus': 1}
    return _importer(tmp_path).import_(None, _Store(tar), row, 'export.tar', sha256)


def test_the_export_holds_no_host_path_and_imports_for_another_project(tmp_path):
    artifacts = _blessed_directory(str(tmp_path / 'blessed'))
    tar = tmp_path / 'export.tar'
    sha256 = _pack(artifacts, tar)
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == ['files/backing-0.raw', 'files/domain.xml',
                                        'files/ram', 'files/state', 'files/vda.qcow2',
                                        'manifest.json']
        contents = b''.join(t.extractfile(m).read() for m in t)
    assert str(tmp_path).encode() not in contents and b'br-int' not in contents

    row_artifacts = _import(tmp_path, tar, sha256)
    directory = str(tmp_path / 'imported' / 'li-2')
    assert row_artifacts['directory'] == directory
    assert row_artifacts['extra']['disks'] == {'vda': directory + '/vda.qcow2'}
    live = manifest.read(str(tmp_path / 'imported'), 'li-2')
    assert (live.project_id, live.ram_size, live.ram_block) == ('proj-b', 8 << 20, 'gc.ram')
    with open(live.ram_path, 'rb') as f:
        assert f.read(12) == b'guest memory'
    if os.geteuid() == 0:   # sealed as bless seals it: QEMU's group reads and maps it
        ram = os.stat(live.ram_path)
        assert (ram.st_uid, ram.st_gid, oct(ram.st_mode & 0o777)) == (0, 4343, '0o464')
    # the disk's chain resolves inside the new directory, read-only
    info = json.loads(subprocess.run(
        ['qemu-img', 'info', '-U', '--backing-chain', '--output=json', live.disks['vda']],
        check=True, capture_output=True, text=True).stdout)
    assert [i['filename'] for i in info] == [directory + '/vda.qcow2',
                                              directory + '/backing-0.raw']
    assert not os.access(live.disks['vda'], os.W_OK) or os.geteuid() == 0
    assert oct(os.stat(live.disks['vda']).st_mode & 0o777) == '0o444'
    # the layout still tells a clone's devices apart, as the blessed domain did
    with open(live.domain_xml_path) as f:
        clone_xml.check_layout(live, f.read(), DOMAIN % {'dir': '/elsewhere'})
    moved = DOMAIN.replace("slot='0x03'", "slot='0x05'") % {'dir': '/elsewhere'}
    with open(live.domain_xml_path) as f, pytest.raises(exception.LiveImageIncompatible):
        clone_xml.check_layout(live, f.read(), moved)


def _hostile(tmp_path, change):
    """Export a blessed directory that ``change`` altered (or whose packed contents
    it returns); the import must refuse it."""
    artifacts = _blessed_directory(str(tmp_path / 'blessed'))
    shown, files, replaced = export.export_contents(artifacts)
    changed = change(artifacts.directory)
    if isinstance(changed, dict):
        replaced.update(changed)
    tar = tmp_path / 'export.tar'
    extra = list(set(os.listdir(artifacts.directory)) - set(files) - {'nova.json'})
    sha256 = live_image_export.pack(shown, str(tar), files + extra, replaced)['sha256']
    with pytest.raises(exception.Invalid) as refused:
        _import(tmp_path, tar, sha256)
    assert not os.path.exists(tmp_path / 'imported' / 'li-2')
    return refused.value.message


def _rebase(directory, name, *args):
    _qemu_img('rebase', '-u', *args, os.path.join(directory, name))


@pytest.mark.parametrize('change, refusal', [
    (lambda d: _rebase(d, 'vda.qcow2', '-F', 'raw', '-b', '/etc/hostname'),
     'backing file that is not part of the live image'),
    (lambda d: _rebase(d, 'vda.qcow2', '-F', 'raw', '-b', '../../etc/hostname'),
     'backing file that is not part of the live image'),
    (lambda d: _qemu_img('create', '-q', '-f', 'qcow2', '-o',
                         'data_file=%s/outside.raw' % os.path.dirname(d),
                         os.path.join(d, 'vdb.qcow2'), '1M'),
     'external data file'),
    (lambda d: (_qemu_img('create', '-q', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b',
                          'backing-2.qcow2', os.path.join(d, 'backing-1.qcow2'), '1M'),
                _qemu_img('create', '-q', '-u', '-f', 'qcow2', '-F', 'qcow2', '-b',
                          'backing-1.qcow2', os.path.join(d, 'backing-2.qcow2'), '1M'),
                _rebase(d, 'vda.qcow2', '-F', 'qcow2', '-b', 'backing-1.qcow2')),
     'form a loop'),
    (lambda d: open(os.path.join(d, 'vdb.qcow2'), 'wb').write(b'raw bytes' * 512),
     'vdb.qcow2 is not a qcow2 image'),
    (lambda d: open(os.path.join(d, 'run.sh'), 'w').close(),
     'run.sh is not part of a Nova live image'),
    (lambda d: os.truncate(os.path.join(d, 'ram'), 4 << 20), 'its RAM is not 8 MiB'),
    (lambda d: {'domain.xml': b'<domain><devices>'}, 'domain.xml is not XML'),
    (lambda d: {'domain.xml': b'<domain/>'}, 'domain.xml has no devices'),
    (lambda d: {'domain.xml': b"<domain type='xen'><devices/></domain>"},
     'its domain type is not one of kvm, qemu'),
])
def test_a_hostile_export_is_refused_with_nothing_left(tmp_path, change, refusal):
    assert refusal in _hostile(tmp_path, change)


def test_a_standalone_export_is_not_a_nova_live_image(tmp_path):
    directory = tmp_path / 'standalone'
    directory.mkdir()
    for name in ('ram', 'state'):
        (directory / name).write_bytes(b'x' * (MEMORY_MB << 20 if name == 'ram' else 4))
    (directory / 'layout.json').write_text('{"layout": {}}')
    artifacts = virt.LiveImageArtifacts(
        live_image_id='li-1', directory=str(directory), memory_path=str(directory / 'ram'),
        state_path=str(directory / 'state'), memory_mb=MEMORY_MB, vcpus=1, disks=[],
        extra={'kind': 'qemu'})
    tar = tmp_path / 'export.tar'
    sha256 = live_image_export.pack(artifacts, str(tar))['sha256']
    with pytest.raises(exception.Invalid, match='it has no domain.xml'):
        _import(tmp_path, tar, sha256)
    assert not os.path.exists(tmp_path / 'imported' / 'li-2')


def test_an_import_never_replaces_a_live_image(tmp_path):
    artifacts = _blessed_directory(str(tmp_path / 'blessed'))
    tar = tmp_path / 'export.tar'
    sha256 = _pack(artifacts, tar)
    _import(tmp_path, tar, sha256)
    with pytest.raises(exception.Conflict):
        _import(tmp_path, tar, sha256)
    assert dataclasses.asdict(manifest.read(str(tmp_path / 'imported'), 'li-2'))[
        'project_id'] == 'proj-b'
