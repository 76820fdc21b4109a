"""A live image as one tar of the image store, and back (compute.live_image_export).

The live image directories here hold what the QEMU driver's bless leaves
(``ram``, ``state``, ``layout.json``), written by :class:`FilesFakeDriver`,
the fake driver with real files.
"""

import dataclasses
import hashlib
import io
import json
import os
import stat
import tarfile

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.compute import live_image_export as lie
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.virt import base
from gridcentric_storage.virt.fake import FakeVirtDriver

RAM_MB = 4


class FilesFakeDriver(FakeVirtDriver):
    """The fake driver, with a live image's files on disk as the QEMU driver writes
    them, and ``import_`` registering an unpacked live image."""

    def __init__(self, live_images_path: str) -> None:
        super().__init__()
        self.live_images_path = live_images_path

    def bless(self, instance_id, live_image_id, snapshot_disks):
        artifacts = super().bless(instance_id, live_image_id, snapshot_disks)
        directory = os.path.join(self.live_images_path, live_image_id)
        os.makedirs(directory)
        write_qemu_files(directory, artifacts.memory_mb, artifacts.vcpus,
                         b'guest memory of %s' % instance_id.encode())
        artifacts = dataclasses.replace(
            artifacts, directory=directory, memory_path=os.path.join(directory, 'ram'),
            state_path=os.path.join(directory, 'state'))
        self.images[live_image_id] = artifacts
        return artifacts

    def import_(self, data):
        artifacts = base.LiveImageArtifacts(**data['artifacts'])
        self.images[artifacts.live_image_id] = artifacts
        return artifacts


def write_qemu_files(directory, memory_mb, vcpus, marker, layout=None):
    """ram (sparse: a marker at 1 MiB, holes elsewhere), state and layout.json."""
    with open(os.path.join(directory, 'ram'), 'wb') as f:
        f.truncate(memory_mb << 20)
        f.seek(1 << 20)
        f.write(marker)
    os.chmod(os.path.join(directory, 'ram'), 0o444)
    with open(os.path.join(directory, 'state'), 'wb') as f:
        f.write(b'QEVM device state')
    layout = layout or {'id': 'src', 'name': 'src', 'memory_mb': memory_mb, 'vcpus': vcpus,
                        'accel': 'tcg', 'machine': 'pc', 'cpu': None, 'disks': [],
                        'mac': '52:54:00:12:34:56', 'netdev': 'user', 'kernel': None,
                        'initrd': None, 'cmdline': None, 'live_image_id': None}
    with open(os.path.join(directory, 'layout.json'), 'w') as f:
        json.dump({'layout': layout, 'extra': {'accel': 'tcg'}}, f)


@pytest.fixture
def store(tmp_path):
    return ImageStore(root=str(tmp_path / 'store'), allowed_paths=[])


@pytest.fixture
def ctxt():
    return context.RequestContext(user_id='u1', project_id='p1', is_admin=False)


@pytest.fixture
def blessed(tmp_path):
    driver = FilesFakeDriver(str(tmp_path / 'live-images'))
    driver.spawn(base.InstanceSpec(id='src', name='src', memory_mb=RAM_MB))
    return driver, driver.bless('src', 'li-1', [])


def _import(ctxt, store, driver, tmp_path, exported, new_id='li-2'):
    return lie.import_(ctxt, store, driver, str(tmp_path / 'live-images'), exported['image'],
                       exported['sha256'], new_id, RAM_MB, 1)


def test_round_trip_gives_a_new_live_image_with_the_same_files(ctxt, store, blessed, tmp_path):
    driver, artifacts = blessed
    exported = lie.export(ctxt, store, artifacts)
    assert exported['image'] == 'live-image-li-1.tar'
    tar_path = os.path.join(store.root, 'projects', 'p1', exported['image'])
    with open(tar_path, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == exported['sha256']
    # Sparse: the 4 MiB of mostly-hole RAM does not take 4 MiB of disk in the tar.
    assert os.stat(tar_path).st_blocks * 512 < (RAM_MB << 20) // 2

    imported = _import(ctxt, store, driver, tmp_path, exported)
    assert imported.live_image_id == 'li-2' and imported.disks == []
    assert imported.directory == str(tmp_path / 'live-images' / 'li-2')
    for name in ('ram', 'state', 'layout.json'):
        with open(os.path.join(artifacts.directory, name), 'rb') as a, \
                open(os.path.join(imported.directory, name), 'rb') as b:
            assert a.read() == b.read(), name
    ram = os.stat(imported.memory_path)
    assert stat.S_IMODE(ram.st_mode) == 0o444          # read-only, as bless leaves it
    assert ram.st_blocks * 512 < (RAM_MB << 20) // 2   # holes stay holes
    # The driver knows it: a clone launches from it.
    info = driver.launch(imported, base.CloneSpec(id='clone', name='clone'))
    assert info.state == 'running'


def test_checksum_mismatch_is_refused_and_leaves_nothing(ctxt, store, blessed, tmp_path):
    driver, artifacts = blessed
    exported = dict(lie.export(ctxt, store, artifacts), sha256='0' * 64)
    with pytest.raises(exception.Invalid, match='sha256'):
        _import(ctxt, store, driver, tmp_path, exported)
    assert sorted(os.listdir(tmp_path / 'live-images')) == ['li-1']
    assert 'li-2' not in driver.images


def test_another_projects_export_is_not_found(store, blessed, tmp_path, ctxt):
    driver, artifacts = blessed
    exported = lie.export(ctxt, store, artifacts)
    other = context.RequestContext(user_id='u2', project_id='p2', is_admin=False)
    with pytest.raises(exception.Invalid, match='not found'):
        _import(other, store, driver, tmp_path, exported)
    assert sorted(os.listdir(tmp_path / 'live-images')) == ['li-1']


def test_a_second_export_of_the_same_image_is_a_conflict(ctxt, store, blessed):
    _driver, artifacts = blessed
    lie.export(ctxt, store, artifacts)
    with pytest.raises(exception.Conflict):
        lie.export(ctxt, store, artifacts)


def test_live_images_with_volumes_are_not_exported_and_nothing_is_reserved(ctxt, store, blessed):
    _driver, artifacts = blessed
    with_disk = dataclasses.replace(artifacts, disks=[base.Disk('snap-1', {})])
    with pytest.raises(exception.Invalid, match='volume'):
        lie.export(ctxt, store, with_disk)
    assert store.list(ctxt) == []


def _hostile(store, ctxt, build):
    """A tar in p1's store made by ``build(tar)``; its export document."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    data = buf.getvalue()
    directory = os.path.join(store.root, 'projects', 'p1')
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, 'evil.tar'), 'wb') as f:
        f.write(data)
    return {'image': 'evil.tar', 'sha256': hashlib.sha256(data).hexdigest()}


def _add(tar, name, data=b'', **fields):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _manifest(**changes):
    manifest = {'format': lie.FORMAT, 'live_image_id': 'li-x', 'memory_mb': RAM_MB,
                'vcpus': 1, 'memory_file': 'ram', 'state_file': 'state', 'extra': {},
                'files': ['layout.json', 'ram', 'state']}
    return json.dumps(dict(manifest, **changes)).encode()


def _layout(**changes):
    layout = {'memory_mb': RAM_MB, 'vcpus': 1, 'accel': 'tcg', 'machine': 'pc',
              'netdev': 'user', 'disks': []}
    return json.dumps({'layout': dict(layout, **changes)}).encode()


def _good_files(tar, layout=None):
    _add(tar, 'manifest.json', _manifest())
    _add(tar, 'files/ram', b'\0' * 4096)
    _add(tar, 'files/state', b'state')
    _add(tar, 'files/layout.json', layout or _layout())


HOSTILE = {
    'absolute name': lambda tar: (_good_files(tar), _add(tar, '/etc/cron.d/x', b'x')),
    'dot-dot': lambda tar: (_good_files(tar), _add(tar, 'files/../../x', b'x')),
    'symlink': lambda tar: (_add(tar, 'manifest.json', _manifest()),
                            _add(tar, 'files/ram', type=tarfile.SYMTYPE,
                                 linkname='/etc/shadow'),
                            _add(tar, 'files/state', b's'),
                            _add(tar, 'files/layout.json', _layout())),
    'hard link': lambda tar: (_add(tar, 'manifest.json', _manifest()),
                              _add(tar, 'files/ram', type=tarfile.LNKTYPE,
                                   linkname='etc/passwd'),
                              _add(tar, 'files/state', b's'),
                              _add(tar, 'files/layout.json', _layout())),
    'device': lambda tar: (_good_files(tar), _add(tar, 'files/sda', type=tarfile.BLKTYPE)),
    'directory': lambda tar: (_good_files(tar), _add(tar, 'files/sub', type=tarfile.DIRTYPE)),
    'a libvirt domain': lambda tar: (_good_files(tar), _add(tar, 'files/domain.xml', b'<x/>')),
    'no manifest': lambda tar: (_add(tar, 'files/ram', b'r'), _add(tar, 'files/state', b's')),
    'duplicate member': lambda tar: (_good_files(tar), _add(tar, 'files/state', b'again')),
    'qemu options in the layout': lambda tar: _good_files(
        tar, _layout(netdev='tap,script=/tmp/evil.sh')),
    'a machine with options': lambda tar: _good_files(tar, _layout(machine='pc,x=1')),
    'a disk in the layout': lambda tar: _good_files(
        tar, _layout(disks=[{'connection_info': {'data': {'device_path': '/dev/sda'}}}])),
    'a kernel in the layout': lambda tar: _good_files(tar, _layout(kernel='/etc/shadow')),
    'another size': lambda tar: _good_files(tar, _layout(memory_mb=RAM_MB * 2)),
    'not a tar': lambda tar: None,
}


@pytest.mark.parametrize('kind', sorted(HOSTILE))
def test_hostile_exports_are_refused_and_leave_nothing(kind, ctxt, store, blessed, tmp_path):
    driver, _artifacts = blessed
    exported = _hostile(store, ctxt, HOSTILE[kind])
    if kind == 'not a tar':
        path = os.path.join(store.root, 'projects', 'p1', 'evil.tar')
        with open(path, 'wb') as f:
            f.write(b'garbage' * 100)
        exported['sha256'] = hashlib.sha256(b'garbage' * 100).hexdigest()
    with pytest.raises(exception.Invalid, match='not an importable live image'):
        _import(ctxt, store, driver, tmp_path, exported)
    assert sorted(os.listdir(tmp_path / 'live-images')) == ['li-1']
    assert not os.path.exists('/etc/cron.d/x')
    assert 'li-2' not in driver.images


def test_a_ram_that_does_not_match_its_recorded_checksum_is_refused(ctxt, store, blessed,
                                                                     tmp_path):
    driver, _artifacts = blessed

    def build(tar):
        _add(tar, 'manifest.json', _manifest(extra={'ram_sha256': 'a' * 64}))
        _add(tar, 'files/ram', b'\0' * 4096)
        _add(tar, 'files/state', b'state')
        _add(tar, 'files/layout.json', _layout())

    with pytest.raises(exception.Invalid, match='recorded sha256'):
        _import(ctxt, store, driver, tmp_path, _hostile(store, ctxt, build))
    assert sorted(os.listdir(tmp_path / 'live-images')) == ['li-1']


def test_a_well_formed_hand_made_export_imports(ctxt, store, blessed, tmp_path):
    """The refusals above are of the hostile part alone: the same tar without it works."""
    driver, _artifacts = blessed
    imported = _import(ctxt, store, driver, tmp_path, _hostile(store, ctxt, _good_files))
    with open(imported.state_path, 'rb') as f:
        assert f.read() == b'state'


def test_another_kind_of_directory_round_trips_with_its_own_check(ctxt, store, tmp_path):
    """Pack and unpack are generic (a Nova live image's nova.json, domain.xml and a
    disks/ subdirectory); the default check refuses what is not the QEMU driver's."""
    directory = tmp_path / 'live-images' / 'nova-1'
    (directory / 'disks').mkdir(parents=True)
    for name, data in {'nova.json': b'{}', 'domain.xml': b'<domain/>', 'ram': b'\1' * 100,
                       'state': b's', 'disks/disk': b'qcow2'}.items():
        (directory / name).write_bytes(data)
    artifacts = base.LiveImageArtifacts('nova-1', str(directory), str(directory / 'ram'),
                                        str(directory / 'state'), RAM_MB, 1)
    exported = lie.export(ctxt, store, artifacts)
    driver = FakeVirtDriver()
    with pytest.raises(exception.Invalid, match='files must be exactly'):
        _import(ctxt, store, driver, tmp_path, exported)
    assert sorted(os.listdir(tmp_path / 'live-images')) == ['nova-1']

    seen = []
    imported = lie.import_(ctxt, store, driver, str(tmp_path / 'live-images'),
                           exported['image'], exported['sha256'], 'nova-2', RAM_MB, 1,
                           check=lambda read, files, mb, cpus: seen.append(
                               (read('nova.json'), sorted(files))))
    assert seen == [({}, ['disks/disk', 'domain.xml', 'nova.json', 'ram', 'state'])]
    assert (tmp_path / 'live-images' / 'nova-2' / 'disks' / 'disk').read_bytes() == b'qcow2'
    assert imported.directory == str(tmp_path / 'live-images' / 'nova-2')
