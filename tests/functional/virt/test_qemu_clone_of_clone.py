"""Clone of a clone under the QEMU driver (real QEMU, TCG here).

A VM is blessed, a clone launched from it counts on, the clone is blessed in
turn (its private copy-on-write RAM flattened into a new live image) and a
grandchild launched from that resumes the clone's memory: the guest's
counter goes on from where the clone was, well past the grandparent's.
"""

import os
import stat
import subprocess
from collections.abc import Iterator

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_live
from gridcentric_storage.virt.qemu import QemuDriver
from tests.fixtures import guest
from tests.fixtures.guest import local_disk
from tests.fixtures.services import wait_for
from tests.functional.virt.drivers import (
    BOOT_TIMEOUT,
    MEMORY_MB,
    console,
    counter_past,
    destroy_all,
    make_driver,
    snapshot,
    work_dir,
)

#: How far the clone counts past the grandparent's moment before it is blessed.
DRIFT = 15


@pytest.fixture
def driver(request: pytest.FixtureRequest) -> Iterator[QemuDriver]:
    with work_dir() as root:
        drv = make_driver('qemu', root, request)
        assert isinstance(drv, QemuDriver)
        try:
            yield drv
        finally:
            destroy_all(drv)


def last_counter(driver: QemuDriver, instance_id: str) -> int:
    return guest.counters(console(driver, instance_id))[-1][0]


def standalone_copy(path: str, dest: str) -> str:
    """A snapshot of a running clone's overlay that needs no other file."""
    subprocess.run(['qemu-img', 'convert', '-U', '-O', 'qcow2', path, dest], check=True,
                   timeout=120)
    return dest


def resumed_from(driver: QemuDriver, instance_id: str, token: str) -> list[tuple[int, str]]:
    def ready() -> list[tuple[int, str]] | None:
        text = console(driver, instance_id)
        numbers = guest.counters(text)
        return numbers if token in guest.tokens(text) and len(numbers) >= 4 else None
    numbers: list[tuple[int, str]] = wait_for(ready, 90, interval=0.2,
                                              what='%s to resume and count' % instance_id)
    assert 'BOOT-TOKEN' not in console(driver, instance_id)      # resumed, never booted
    return numbers


def test_grandchild_resumes_the_blessed_clone_and_outlives_the_grandparent(
        driver: QemuDriver) -> None:
    boot = guest.build_or_skip()
    with work_dir() as work:
        disk = guest.qcow2(os.path.join(work, 'src.qcow2'))
        driver.spawn(base.InstanceSpec(
            id='src', name='template', memory_mb=MEMORY_MB, kernel=boot.kernel,
            initrd=boot.initrd, cmdline=guest.CMDLINE, disks=[local_disk('vol-src', disk)]))
        wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
                 what='the template VM to boot and count')
        token = guest.boot_token(console(driver, 'src'))
        assert token

        driver.pause('src')
        grandparent_at = last_counter(driver, 'src')
        snap = snapshot(disk, os.path.join(work, 'snap.qcow2'))
        first = driver.bless('src', 'li-1', [local_disk('vol-snap', snap)])
        driver.destroy('src')                        # two guests at most on this host

        child_disk = guest.qcow2(os.path.join(work, 'child.qcow2'), backing=snap)
        driver.launch(first, base.CloneSpec(id='child', name='child',
                                            disks=[local_disk('vol-child', child_disk)]))
        resumed_from(driver, 'child', token)
        wait_for(counter_past(driver, 'child', grandparent_at + DRIFT), 60,
                 what='the clone to count on')

        # Blessed while running, as a server without disks is: bless pauses it
        # for the capture only and leaves it running.
        before = last_counter(driver, 'child')
        child_snap = standalone_copy(child_disk, os.path.join(work, 'child-snap.qcow2'))
        second = driver.bless('child', 'li-2', [local_disk('vol-child-snap', child_snap)])
        after = last_counter(driver, 'child')
        assert second.extra['ram_copy'] == 'flatten' and second.extra['resumed'] is True
        assert second.extra['flattened_from'] == 'li-1'
        assert driver.get_info('child').state == 'running'
        wait_for(counter_past(driver, 'child', after + 2), 30,
                 what='the blessed clone to keep counting')

        # A caller that paused the clone to snapshot its disks finds it as it had
        # it, or running once its memory is captured if it asked for that.
        driver.pause('child')
        kept = driver.bless('child', 'li-paused', [local_disk('vol-child-snap', child_snap)])
        assert driver.get_info('child').state == 'paused' and kept.extra['resumed'] is False
        driver.unpause('child')
        driver.pause('child')
        early = driver.bless('child', 'li-early', [local_disk('vol-child-snap', child_snap)],
                             resume_after_capture=True)
        assert driver.get_info('child').state == 'running' and early.extra['resumed'] is True
        driver.unpause('child')                  # the caller's unpause: no harm done
        wait_for(counter_past(driver, 'child', last_counter(driver, 'child') + 2), 30,
                 what='the clone to count on after the caller resumed it')
        for extra_image in (kept, early):
            driver.discard(extra_image)

        # A live image like any other: read-only RAM of the guest's size and its
        # checksum, a device state without RAM, nothing left of the helper.
        assert sorted(os.listdir(second.directory)) == ['layout.json', 'ram', 'state']
        assert stat.S_IMODE(os.stat(second.memory_path).st_mode) == \
            qemu_live.frozen_ram_mode()
        assert os.path.getsize(second.memory_path) == MEMORY_MB << 20
        assert qemu_live.sha256(second.memory_path) == second.extra['ram_sha256']
        assert os.path.getsize(second.state_path) < 4 << 20
        assert qemu_live.image_layout(second).live_image_id is None

        grandchild_disk = guest.qcow2(os.path.join(work, 'grandchild.qcow2'),
                                      backing=child_snap)
        info = driver.launch(second, base.CloneSpec(
            id='grandchild', name='grandchild', guest={'role': 'grandchild'},
            disks=[local_disk('vol-grandchild', grandchild_disk)]))
        assert info.extra['live_image_id'] == 'li-2'
        numbers = resumed_from(driver, 'grandchild', token)
        # The clone's memory, not the grandparent's: the counter goes on from
        # the clone's moment of bless, far past where the grandparent was.
        assert before <= numbers[0][0] <= after + 1, (numbers[0][0], before, after)
        assert numbers[0][0] > grandparent_at + DRIFT
        wait_for(lambda: 'GUEST-PARAM role=grandchild' in console(driver, 'grandchild'), 30,
                 what='the grandchild to read its parameters')
        driver.destroy('child')

        # The grandparent's live image goes; what was blessed from its clone stays
        # whole: the grandchild runs on and a new one launches from it.
        driver.discard(first)
        assert not os.path.exists(first.directory)
        wait_for(counter_past(driver, 'grandchild', last_counter(driver, 'grandchild') + 2),
                 30, what='the grandchild to keep counting')
        driver.destroy('grandchild')
        again_disk = guest.qcow2(os.path.join(work, 'again.qcow2'), backing=child_snap)
        driver.launch(second, base.CloneSpec(id='again', name='again',
                                             disks=[local_disk('vol-again', again_disk)]))
        assert before <= resumed_from(driver, 'again', token)[0][0] <= after + 1
        driver.destroy('again')
        driver.discard(second)


def test_a_failed_flatten_leaves_the_clone_running_and_no_files(
        driver: QemuDriver) -> None:
    boot = guest.build_or_skip()
    driver.spawn(base.InstanceSpec(id='src', name='template', memory_mb=MEMORY_MB,
                                   kernel=boot.kernel, initrd=boot.initrd,
                                   cmdline=guest.CMDLINE))
    wait_for(lambda: len(guest.counters(console(driver, 'src'))) >= 3, BOOT_TIMEOUT,
             what='the template VM to boot and count')
    token = guest.boot_token(console(driver, 'src'))
    assert token
    first = driver.bless('src', 'li-1', [])
    driver.destroy('src')
    driver.launch(first, base.CloneSpec(id='child', name='child'))
    resumed_from(driver, 'child', token)
    driver.qemu_binary = '/nonexistent/qemu-system-x86_64'    # the helper cannot start
    with pytest.raises(exception.DriverError, match='cannot run'):
        driver.bless('child', 'li-2', [])
    assert driver.get_info('child').state == 'running'
    wait_for(counter_past(driver, 'child', last_counter(driver, 'child') + 2), 30,
             what='the clone to keep counting')
    assert sorted(os.listdir(driver.live_images_path)) == ['li-1']
