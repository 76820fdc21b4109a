"""Live volume migration in the QEMU driver (``virt/qemu_mirror.py``), on a real guest.

A running test guest (tools/build-test-guest.sh, TCG here) has a ``file``-style
volume attached; while the driver mirrors it onto a second file (qcow2, then
back onto a raw one), a writer keeps writing patterns through the guest's own
disk (HMP ``qemu-io`` on the device's block backend, the path a guest write
takes) and checks that QEMU says ``running``. Afterwards: the destination holds
every last write and the untouched data, QEMU no longer holds the source file,
``query-block`` names the new node and file with the throttle values the disk
had, and the instance's saved layout names the new connection. A destination
that cannot be opened, or a migration stopped before the pivot, leaves the
guest running on its source disk.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_mirror, qmp
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

MiB = 1 << 20
SIZE = 64 * MiB
SLOT = 64 << 10
SLOTS = 16                      # the writer's region: the first MiB
VM = 'gc-hB-mirror'
VOLUME = 'vol-mirror'
LIMITS = {'total_iops_sec': 150, 'read_bytes_sec': 4 * MiB}
BACKEND = '/machine/peripheral/disk0/virtio-backend'


def local(path: str, fmt: str, limits: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {'device_path': path, 'format': fmt}
    if limits:
        data['qos_specs'] = dict(limits)
    return {'driver_volume_type': 'local', 'data': data}


def make_file(path: str, fmt: str, content: bytes | None = None) -> str:
    if fmt == 'qcow2':
        guest.qcow2(path, str(SIZE))
    else:
        with open(path, 'wb') as f:
            f.write(content) if content else f.truncate(SIZE)
    return path


class Guest:
    def __init__(self, driver: QemuDriver, directory: str, content: bytes) -> None:
        self.driver = driver
        self.directory = directory
        self.content = content
        self.sock = os.path.join(driver.instances_path, VM, 'qmp.sock')

    def cmd(self, name: str, **arguments: Any) -> Any:
        # sessions come and go beside the driver's: retried as the driver's are
        with qemu_mirror.session(lambda: qmp.connect(self.sock)) as mon:
            return mon.cmd(name, **arguments)

    def disk(self) -> dict[str, Any]:
        disks = [b for b in self.cmd('query-block') if b.get('inserted')]
        assert len(disks) == 1, disks
        return dict(disks[0]['inserted'])

    def counter(self) -> int:
        found = guest.counters(self.driver.get_console_output(VM))
        return found[-1][0] if found else -1

    def holds(self, path: str) -> bool:
        """Whether QEMU has ``path`` open (what lsof would say)."""
        pid = self.driver.get_info(VM).pid
        fds = '/proc/%d/fd' % pid
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)) == path:
                    return True
            except FileNotFoundError:
                continue
        return False

    def saved_disk(self) -> dict[str, Any]:
        with open(os.path.join(self.driver.instances_path, VM, 'vm.json')) as f:
            return dict(json.load(f)['disks'][0])


class Writer(threading.Thread):
    """Writes patterns through the guest's disk until stopped; notes QEMU's run state."""

    def __init__(self, vm: Guest) -> None:
        super().__init__(daemon=True)
        self.vm = vm
        self.stop = threading.Event()
        self.last: dict[int, int] = {}
        self.states: set[str] = set()
        self.writes = 0
        self.error: BaseException | None = None

    def write(self, slot: int, pattern: int) -> None:
        out = self.vm.cmd('human-monitor-command', **{
            'command-line': 'qemu-io -d %s "write -P %d %d %d"' % (BACKEND, pattern,
                                                                  slot * SLOT, SLOT)})
        # qemu-io reports to QEMU's stdout; only a refusal comes back (the data
        # check afterwards tells whether the writes landed)
        assert out == '', out
        self.last[slot] = pattern
        self.writes += 1

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                self.write(n % SLOTS, n % 250 + 1)
                self.states.add(self.vm.cmd('query-status')['status'])
                n += 1
                self.stop.wait(0.02)
        except BaseException as e:
            self.error = e


def destination_bytes(path: str, fmt: str, scratch: str) -> bytes:
    raw = os.path.join(scratch, 'check.raw')
    # -U: QEMU holds the destination's write lock; a shared read is what we want
    subprocess.run(['qemu-img', 'convert', '-U', '-f', fmt, '-O', 'raw', path, raw],
                   check=True, timeout=120)
    with open(raw, 'rb') as f:
        data = f.read()
    os.unlink(raw)
    return data


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The percentages the driver reports for the volume (no volume side here)."""
    seen: list[int] = []
    monkeypatch.setattr(qemu_mirror, 'default_progress',
                        lambda volume_id: seen.append if volume_id == VOLUME else None)
    return seen


@pytest.fixture
def vm(request: pytest.FixtureRequest) -> Iterator[Guest]:
    """The running guest; its disk is read-only when the test's param says so."""
    read_only = bool(getattr(request, 'param', False))
    boot = guest.build_or_skip()
    # QMP sockets live under the instances path: keep it short (108-byte limit)
    directory = tempfile.mkdtemp(prefix='gc-hB-', dir='/tmp')
    driver = QemuDriver(instances_path=os.path.join(directory, 'i'),
                        live_images_path=os.path.join(directory, 'l'))
    driver.init_host('test-host')
    content = os.urandom(SIZE)
    source = make_file(os.path.join(directory, 'source.raw'), 'raw', content)
    try:
        driver.spawn(base.InstanceSpec(
            id=VM, name=VM, memory_mb=128, kernel=boot.kernel, initrd=boot.initrd,
            cmdline=guest.CMDLINE,
            disks=[base.Disk(VOLUME, local(source, 'raw', LIMITS), read_only)]))
        running = Guest(driver, directory, content)
        wait_for(lambda: running.counter() >= 2, 180, 0.2, 'the guest to count')
        yield running
    finally:
        driver.destroy(VM)
        shutil.rmtree(directory, ignore_errors=True)


def migrate_while_writing(vm: Guest, path: str, fmt: str) -> Writer:
    writer = Writer(vm)
    writer.start()
    wait_for(lambda: writer.writes >= 3 or writer.error, 60, what='writes before the mirror')
    before = vm.counter()
    try:
        vm.driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(path, fmt)))
        # the guest keeps writing onto the destination after the pivot
        seen = writer.writes
        wait_for(lambda: writer.writes >= seen + 3 or writer.error, 60,
                 what='writes after the pivot')
    finally:
        writer.stop.set()
        writer.join(60)
    assert writer.error is None, writer.error
    assert writer.states == {'running'}
    wait_for(lambda: vm.counter() > before + 2, 60, 0.2, 'the guest to keep counting')
    return writer


def check_on(vm: Guest, writer: Writer, path: str, fmt: str, old: str) -> None:
    inserted = vm.disk()
    assert inserted['file'] == path
    assert inserted['node-name'].startswith('drive0-m')
    assert (inserted['iops'], inserted['bps_rd']) == (150, 4 * MiB)
    assert not vm.holds(old) and vm.holds(path)
    assert vm.saved_disk()['connection_info']['data']['device_path'] == path
    assert vm.saved_disk()['connection_info']['data']['qos_specs'] == LIMITS
    data = destination_bytes(path, fmt, vm.directory)
    for slot, pattern in writer.last.items():
        assert data[slot * SLOT:(slot + 1) * SLOT] == bytes([pattern]) * SLOT, slot
    assert data[SLOTS * SLOT:] == vm.content[SLOTS * SLOT:]
    assert vm.driver.get_info(VM).state == 'running'
    assert vm.cmd('query-jobs') == []


def test_mirror_moves_a_busy_disk_onto_qcow2_then_raw_without_stopping(
        vm: Guest, reports: list[int]) -> None:
    source = os.path.join(vm.directory, 'source.raw')
    qcow = make_file(os.path.join(vm.directory, 'dest.qcow2'), 'qcow2')
    writer = migrate_while_writing(vm, qcow, 'qcow2')
    check_on(vm, writer, qcow, 'qcow2', source)
    assert reports[-1] == 100 and reports == sorted(reports)

    raw = make_file(os.path.join(vm.directory, 'dest.raw'), 'raw')
    writer = migrate_while_writing(vm, raw, 'raw')
    check_on(vm, writer, raw, 'raw', qcow)

    # a restarted compute service finds the disk on its new connection
    restarted = QemuDriver(instances_path=vm.driver.instances_path,
                           live_images_path=vm.driver.live_images_path)
    restarted.set_volume_qos(VM, VOLUME, {'total_iops_sec': 90})
    assert (vm.disk()['file'], vm.disk()['iops']) == (raw, 90)
    assert vm.saved_disk()['connection_info']['data'] == {
        'device_path': raw, 'format': 'raw', 'qos_specs': {'total_iops_sec': 90}}

    # the migrated disk is an ordinary disk: it grows and it detaches
    node = vm.disk()['node-name']
    assert vm.saved_disk()['node_name'] == node
    vm.driver.extend_volume(VM, VOLUME, 2 * SIZE)
    assert os.path.getsize(raw) == 2 * SIZE
    vm.driver.detach_volume(VM, VOLUME)
    assert [b for b in vm.cmd('query-block') if b.get('inserted')] == []
    assert not vm.holds(raw)


def on_source(vm: Guest, destination: str) -> None:
    inserted = vm.disk()
    source = os.path.join(vm.directory, 'source.raw')
    assert (inserted['node-name'], inserted['file']) == ('drive0', source)
    assert (inserted['iops'], inserted['bps_rd']) == (150, 4 * MiB)
    assert vm.saved_disk()['connection_info']['data']['device_path'] == source
    assert vm.cmd('query-jobs') == []
    nodes = {n['node-name'] for n in vm.cmd('query-named-block-nodes', flat=True)}
    assert not [n for n in nodes if n.startswith('drive0-m')], nodes
    assert not vm.holds(destination)
    assert vm.cmd('query-status')['status'] == 'running'
    counted = vm.counter()
    wait_for(lambda: vm.counter() > counted + 2, 60, 0.2, 'the guest to keep counting')


def test_a_destination_that_cannot_be_opened_leaves_the_guest_on_its_source(
        vm: Guest, reports: list[int]) -> None:
    missing = os.path.join(vm.directory, 'missing.qcow2')
    with pytest.raises(exception.DriverError) as failed:
        vm.driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(missing, 'qcow2')))
    assert 'stays on its source disk' in failed.value.message
    assert 'No such file' in failed.value.message
    on_source(vm, missing)


def test_a_migration_stopped_before_the_pivot_leaves_the_guest_on_its_source(
        vm: Guest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The volume side gives up (its progress report raises) while the job copies or
    waits ready: the job is cancelled and the destination let go."""
    reports: list[int] = []

    def give_up(percent: int) -> None:
        reports.append(percent)
        assert vm.cmd('query-jobs')[0]['id'] == qemu_mirror.job_id(VOLUME)
        raise RuntimeError('migration aborted by the volume side')

    monkeypatch.setattr(qemu_mirror, 'default_progress', lambda volume_id: give_up)
    dest = make_file(os.path.join(vm.directory, 'dest.raw'), 'raw')
    with pytest.raises(exception.DriverError) as failed:
        vm.driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(dest, 'raw')))
    assert 'aborted by the volume side' in failed.value.message
    assert len(reports) == 1
    on_source(vm, dest)


def test_a_mirror_left_by_an_interrupted_migration_is_replaced(vm: Guest,
                                                                reports: list[int]) -> None:
    """The compute service died mid-way; QEMU still runs the old job and holds its
    target: the next migration of the volume cancels both and goes through."""
    stale = make_file(os.path.join(vm.directory, 'stale.raw'), 'raw')
    vm.cmd('blockdev-add', **{'driver': 'raw', 'node-name': 'drive0-mdead',
                              'file': {'driver': 'file', 'filename': stale}})
    vm.cmd('blockdev-mirror', **{'job-id': qemu_mirror.job_id(VOLUME), 'device': 'drive0',
                                 'target': 'drive0-mdead', 'sync': 'full',
                                 'auto-dismiss': False, 'speed': 1})
    dest = make_file(os.path.join(vm.directory, 'dest.qcow2'), 'qcow2')
    writer = migrate_while_writing(vm, dest, 'qcow2')
    check_on(vm, writer, dest, 'qcow2', os.path.join(vm.directory, 'source.raw'))
    nodes = {n['node-name'] for n in vm.cmd('query-named-block-nodes', flat=True)}
    assert 'drive0-mdead' not in nodes and not vm.holds(stale)


@pytest.mark.parametrize('vm', [True], indirect=True)
def test_a_read_only_disk_moves_and_stays_read_only(vm: Guest, reports: list[int]) -> None:
    dest = make_file(os.path.join(vm.directory, 'dest.raw'), 'raw')
    vm.driver.migrate_volume(VM, VOLUME, base.Disk(VOLUME, local(dest, 'raw'), True))
    inserted = vm.disk()
    assert (inserted['file'], inserted['ro']) == (dest, True)
    assert vm.saved_disk()['read_only'] is True
    assert destination_bytes(dest, 'raw', vm.directory) == vm.content
    assert vm.cmd('query-status')['status'] == 'running'
