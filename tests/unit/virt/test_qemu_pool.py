"""The warm pool's bookkeeping (virt/qemu_pool.py) with fake processes, and the
pieces of a pooled QEMU that need no QEMU: its argv, its slot files, and how a
renamed slot's process is found again."""

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_cmdline, qemu_pool, qemu_process
from tests.fixtures.services import wait_for


class FakeProcesses:
    """What the driver gives the pool: start, check and kill of slot processes."""

    def __init__(self, images: list[str]) -> None:
        self.images = images
        self.running: dict[str, str] = {}       # slot id -> live image
        self.killed: list[str] = []
        self.fail: set[str] = set()
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def prestart(self, slot_id: str, live_image_id: str) -> None:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if live_image_id in self.fail:
            raise RuntimeError('no QEMU for %s' % live_image_id)
        self.running[slot_id] = live_image_id

    def alive(self, slot_id: str) -> bool:
        return slot_id in self.running

    def kill(self, slot_id: str) -> None:
        self.running.pop(slot_id, None)
        self.killed.append(slot_id)

    def pool(self, size: int = 2) -> qemu_pool.WarmPool:
        return qemu_pool.WarmPool(size, lambda: list(self.images), self.prestart, self.alive,
                                  self.kill, interval=0.01, quiet=0)


@pytest.fixture
def procs() -> FakeProcesses:
    return FakeProcesses(['li-a', 'li-b'])


def test_refill_starts_size_processes_per_live_image_and_no_more(procs: FakeProcesses
                                                                 ) -> None:
    pool = procs.pool(2)
    assert pool.refill_once() == 4
    assert pool.ready('li-a') == pool.ready('li-b') == 2
    assert sorted(procs.running.values()) == ['li-a', 'li-a', 'li-b', 'li-b']
    assert pool.refill_once() == 0


def test_a_claim_takes_the_oldest_slot_and_the_refill_replaces_it(procs: FakeProcesses
                                                                  ) -> None:
    pool = procs.pool(2)
    pool.refill_once()
    first = [s for s, image in procs.running.items() if image == 'li-a'][0]
    assert pool.claim('li-a') == first
    assert pool.ready('li-a') == 1
    assert first in procs.running and first not in procs.killed   # the caller's now
    assert pool.refill_once() == 1 and pool.ready('li-a') == 2


def test_a_claim_never_waits_and_drops_dead_slots(procs: FakeProcesses) -> None:
    pool = procs.pool(2)
    assert pool.claim('li-a') is None                # empty: the launch goes cold
    pool.refill_once()
    dead = [s for s, image in list(procs.running.items()) if image == 'li-a']
    procs.running.pop(dead[0])
    assert pool.claim('li-a') == dead[1]
    assert procs.killed == [dead[0]]                 # dropped, its directory removed
    procs.running.pop(dead[1])
    assert pool.claim('li-a') is None


def test_drain_kills_a_live_images_slots_and_starts_no_more(procs: FakeProcesses) -> None:
    pool = procs.pool(2)
    pool.refill_once()
    pool.drain('li-a')
    assert sorted(procs.running.values()) == ['li-b', 'li-b']
    assert pool.ready('li-a') == 0 and pool.claim('li-a') is None
    assert pool.refill_once() == 0
    procs.images.remove('li-a')                      # its files went: forgotten
    pool.refill_once()
    procs.images.append('li-a')                      # a new live image of that id
    assert pool.refill_once() == 2


def test_drain_waits_for_a_start_under_way_and_kills_it(procs: FakeProcesses) -> None:
    pool = procs.pool(1)
    procs.images[:] = ['li-a']
    procs.gate = threading.Event()
    refill = threading.Thread(target=pool.refill_once)
    refill.start()
    assert procs.entered.wait(10)
    drained = threading.Event()
    drainer = threading.Thread(target=lambda: (pool.drain('li-a'), drained.set()))
    drainer.start()
    assert not drained.wait(0.2)                     # still starting: drain waits
    procs.gate.set()
    drainer.join(10)
    refill.join(10)
    assert drained.is_set()
    assert procs.running == {} and len(procs.killed) == 1


def test_a_failed_start_is_cleaned_up_and_not_retried_at_once(
        procs: FakeProcesses, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = procs.pool(2)
    procs.fail.add('li-a')
    assert pool.refill_once() == 2                   # li-b only
    assert len(procs.killed) == 1 and pool.ready('li-a') == 0
    procs.fail.clear()
    assert pool.refill_once() == 0                   # backing off
    monkeypatch.setattr(qemu_pool, 'RETRY_SECONDS', 0.0)
    procs.fail.add('li-a')
    pool._retry_at.clear()
    pool.refill_once()
    procs.fail.clear()
    assert pool.refill_once() == 2


def test_the_thread_refills_after_a_claim_and_stop_kills_the_slots(procs: FakeProcesses
                                                                   ) -> None:
    pool = procs.pool(1)
    pool.start()
    try:
        _wait(lambda: pool.ready('li-a') == 1 and pool.ready('li-b') == 1)
        claimed = pool.claim('li-a')
        _wait(lambda: pool.ready('li-a') == 1)
    finally:
        pool.stop()
    assert set(procs.running) == {claimed}           # only the claimed one lives on


def test_stop_without_kill_leaves_the_slots(procs: FakeProcesses) -> None:
    pool = procs.pool(1)
    pool.refill_once()
    pool.stop(kill=False)
    assert len(procs.running) == 2 and procs.killed == []
    assert pool.claim('li-a') is not None            # still claimable
    assert pool.refill_once() == 0                   # stopped: no replacement


def test_replacements_wait_for_a_quiet_moment(procs: FakeProcesses) -> None:
    pool = qemu_pool.WarmPool(1, lambda: ['li-a'], procs.prestart, procs.alive, procs.kill,
                              quiet=0.3)
    pool.refill_once()
    claimed_at = time.monotonic()
    pool.claim('li-a')
    assert pool.refill_once() == 1
    assert time.monotonic() - claimed_at >= 0.3          # not while launches run


def test_a_pool_of_size_zero_starts_nothing(procs: FakeProcesses) -> None:
    pool = procs.pool(0)
    pool.start()
    assert pool.refill_once() == 0 and pool._thread is None
    pool.stop()


def _wait(predicate: Any, timeout: float = 10) -> None:
    wait_for(predicate, timeout, interval=0.01, what='the pool')


# ---- files, argv, the renamed process


def test_unclaimed_slots_are_the_directories_with_the_marker(tmp_path: Any) -> None:
    for name, marker in (('pool-1', True), ('clone-1', False), ('pool-2', True)):
        (tmp_path / name).mkdir()
        if marker:
            (tmp_path / name / qemu_pool.MARKER).write_text('li-a\n')
    (tmp_path / 'clone-1' / qemu_process.STARTED_AS).write_text('pool-3\n')
    assert qemu_pool.unclaimed(str(tmp_path)) == ['pool-1', 'pool-2']
    assert qemu_pool.unclaimed(str(tmp_path / 'missing')) == []


def test_complete_live_images_only(tmp_path: Any) -> None:
    for name in ('li-a', 'li-b.blessing', 'li-c'):
        (tmp_path / name).mkdir()
        if name != 'li-c':
            (tmp_path / name / 'layout.json').write_text('{}')
    assert qemu_pool.live_image_ids(str(tmp_path)) == ['li-a']


def test_a_slot_has_its_own_vmgenid_and_empty_guest_files(tmp_path: Any) -> None:
    slot_id = qemu_pool.new_slot_id()
    assert qemu_process.check_id('slot', slot_id)
    vmgenid = qemu_pool.slot_vmgenid(slot_id)
    assert uuid.UUID(vmgenid).hex == slot_id.removeprefix('pool-')
    assert qemu_pool.slot_vmgenid(qemu_pool.new_slot_id()) != vmgenid
    files = qemu_pool.slot_guest_files(str(tmp_path))
    assert set(files) == {'instance', 'guest', 'user_data'}
    assert all(os.path.getsize(path) == 0 for path in files.values())
    assert os.stat(files['user_data']).st_mode & 0o077 == 0


def test_a_pooled_argv_waits_in_preconfig_without_the_clones_parts() -> None:
    disk = qemu_cmdline.DiskSlot('v1', 0, 4, {'driver_volume_type': 'local',
                                              'data': {'device_path': '/v/1'}})
    layout = qemu_cmdline.Layout(id='pool-x', name='pool-x', memory_mb=64, vcpus=1,
                                 accel='tcg', disks=[disk], mac='52:54:00:00:00:01')
    kwargs: dict[str, Any] = {'ram_path': '/l/ram', 'share': False, 'qmp_path': '/i/q',
                              'console_path': '/i/c', 'vmgenid': 'g', 'incoming': True}
    cold = qemu_cmdline.build_argv('qemu', layout, **kwargs)
    warm = qemu_cmdline.build_argv('qemu', layout, pooled=True, **kwargs)
    assert '--preconfig' in warm and '--preconfig' not in cold
    assert '-blockdev' in cold and '-blockdev' not in warm    # blockdev-add at claim
    assert any('virtio-blk-pci' in a for a in warm)           # the device waits for it
    assert any('virtio-net-pci' in a for a in cold)
    assert not any('virtio-net-pci' in a for a in warm)       # device_add with its MAC
    assert '-netdev' in warm
    assert 'vmgenid,guid=g,id=vmgenid0' in warm


@pytest.fixture
def sleeper(tmp_path: Any) -> Iterator[tuple[qemu_process.Processes, str, int]]:
    """A process whose command line names slot ``pool-s``'s QMP socket, as QEMU's does."""
    processes = qemu_process.Processes(str(tmp_path), 5, 5, 5)
    os.mkdir(processes.dir('pool-s'))
    proc = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)',
                             processes.file('pool-s', 'qmp.sock')])
    with open(processes.file('pool-s', 'pid'), 'w') as f:
        f.write('%d\n' % proc.pid)
    try:
        # /proc/<pid>/cmdline reads empty for a moment after the spawn
        wait_for(lambda: processes.pid('pool-s') == proc.pid, 10, 0.01, 'the exec')
        yield processes, str(tmp_path), proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_renamed_slot_is_found_by_a_restarted_service(
        sleeper: tuple[qemu_process.Processes, str, int]) -> None:
    processes, root, pid = sleeper
    processes.rename('pool-s', 'clone-1')
    fresh = qemu_process.Processes(root, 5, 5, 5)            # no memory of the start
    assert fresh.pid('clone-1') == pid
    assert fresh.pid('pool-s') is None
    with open(fresh.file('clone-1', qemu_process.STARTED_AS), 'w') as f:
        f.write('pool-other\n')                              # names another socket
    assert fresh.pid('clone-1') is None


def test_a_rename_onto_an_existing_instance_conflicts(
        sleeper: tuple[qemu_process.Processes, str, int]) -> None:
    processes, root, pid = sleeper
    os.mkdir(os.path.join(root, 'clone-1'))                  # empty: rename(2) would replace
    with pytest.raises(exception.Conflict):
        processes.rename('pool-s', 'clone-1')
    assert processes.pid('pool-s') == pid
