"""How much faster and smaller is a live-image clone than booting the same VM?

One run, side by side, on this host (KVM if the driver's probe says it works,
else TCG), with the test guest of tools/build-test-guest.sh (256 MiB):

* cold boot: ``spawn()`` to the guest's first ``COUNTER`` line;
* bless: pause time and total, with the RAM reflinked (XFS loop mount, when
  this host can mount one) and sparse-copied (live images on another file
  system); the bless call as its caller times it, of a running VM and of one
  the caller paused first (to snapshot disks), beside what writing the guest
  RAM out in full takes (a plain copy of the RAM file, and a full-state
  save), each also as a multiple of the pause;
* full-state restore: the same VM saved *without* x-ignore-shared (all RAM in
  the state file) and restored into a fresh QEMU, as a plain snapshot would;
* clones: 1, 4 and 8 launched concurrently (threads) from one live image.
  Two times per clone, both from the ``launch()`` call: "running" = launch
  returned (QMP ``cont`` done, QMP status running) and "console" = the first
  console line the resumed guest printed;
* PSS (``/proc/<pid>/smaps_rollup``) of each QEMU once idle, against the
  guest's RAM size;

Then the ratios and whether the targets hold: one clone running < 150 ms from
the call, >= 20x faster than a cold boot, < 50 MB PSS per idle clone.

``--libvirt`` then does the bless and the single clone again through the
libvirt driver (a libvirtd must answer on qemu:///system: tools/libvirtd.sh
start) and prints its figures beside the QEMU driver's.

The warm pool (QEMU started ahead, cold vs warm, driver and API) is
``bench/warm_pool_bench.py``'s.

Run (root for the XFS loop mount): ``PYTHONPATH=. python bench/live_image_bench.py``
"""

import argparse
import concurrent.futures
import contextlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from gridcentric_storage.virt import base, qemu_cmdline, qmp
from gridcentric_storage.virt.qemu import QemuDriver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_MB = 256
CLONE_COUNTS = (1, 4, 8)
TARGET_RUNNING_MS = 150.0
TARGET_SPEEDUP = 20.0
TARGET_PSS_MB = 50.0


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             interval: float = 0.001) -> float:
    """Poll until ``predicate``; return time.monotonic() when it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit('timed out waiting for %s' % what)
        time.sleep(interval)
    return time.monotonic()


def read(path: str) -> str:
    try:
        with open(path, errors='replace') as f:
            return f.read()
    except FileNotFoundError:
        return ''


def pss_mb(pid: int) -> dict[str, float]:
    values = {}
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('Pss', 'Pss_Anon', 'Pss_File', 'Pss_Shmem', 'Rss'):
                values[key] = int(rest.split()[0]) / 1024
    return values


@contextlib.contextmanager
def scratch(use_xfs: bool) -> Iterator[tuple[str, str]]:
    """(work dir on XFS with reflink or plain, description)."""
    base_dir = tempfile.mkdtemp(prefix='gc-live-bench-')
    try:
        if use_xfs:
            from tests.fixtures import loopfs
            try:
                with loopfs.loop_mounted('xfs', base_dir, size_mib=4096) as mnt:
                    yield mnt, 'XFS loop mount (reflink)'
                    return
            except loopfs.LoopUnavailable as e:
                print('(no XFS loop mount: %s; RAM is copied, not reflinked)' % e)
        yield base_dir, 'plain directory'
    finally:
        subprocess.run(['rm', '-rf', base_dir], check=False)


def full_state_restore(template: str, work: str, accel: str) -> dict[str, float]:
    """Save the template with all its RAM and restore it into a fresh QEMU."""
    state = os.path.join(work, 'full.state')
    with qmp.connect(os.path.join(template, 'qmp.sock')) as mon:
        mon.cmd('stop')
        saving = time.monotonic()
        try:
            mon.cmd('migrate-set-capabilities', capabilities=[
                {'capability': 'x-ignore-shared', 'state': False}])
            mon.cmd('migrate', uri='exec:cat > %s' % shlex.quote(state))
            qmp.wait_for_migration(mon, 300)
            saved = time.monotonic()
        finally:
            mon.cmd('cont')
    vm = os.path.join(work, 'full')
    os.mkdir(vm)
    layout = qemu_cmdline.Layout(id='full', name='full', memory_mb=MEMORY_MB, vcpus=1,
                                 accel=accel)
    argv = qemu_cmdline.build_argv(
        'qemu-system-x86_64', layout, ram_path=os.path.join(vm, 'ram'), share=False,
        qmp_path=os.path.join(vm, 'qmp.sock'), console_path=os.path.join(vm, 'console.log'),
        incoming=True)
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with qmp.connect(os.path.join(vm, 'qmp.sock'), wait=30,
                         alive=lambda: proc.poll() is None) as mon:
            mon.cmd('migrate-incoming', uri='exec:cat %s' % shlex.quote(state))
            qmp.wait_for_migration(mon, 300)
            mon.cmd('cont')
        running = time.monotonic()
        console = wait_for(lambda: '\n' in read(os.path.join(vm, 'console.log')), 30,
                           'the restored VM to print')
        time.sleep(3)
        pss = pss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return {'running': running - start, 'console': console - start, 'save': saved - saving,
            'state_mb': os.path.getsize(state) / 2**20, 'pss': pss['Pss']}


def bless_as_called(driver: QemuDriver, template: str, work: str) -> dict[str, Any]:
    """The template blessed while running (its ``artifacts``) and while paused by the
    caller, each call timed from outside; then its RAM file copied byte for byte."""
    start = time.monotonic()
    artifacts = driver.bless('template', 'li-bench', [])
    running_call = time.monotonic() - start
    driver.pause('template')
    try:
        start = time.monotonic()
        paused = driver.bless('template', 'li-paused', [])
        paused_call = time.monotonic() - start
    finally:
        driver.unpause('template')
    driver.discard(paused)
    copy = os.path.join(work, 'ram-copy')
    start = time.monotonic()
    with open(os.path.join(template, 'ram'), 'rb') as fin, open(copy, 'wb') as fout:
        shutil.copyfileobj(fin, fout, 16 << 20)       # every byte, holes too
    ram_copy = time.monotonic() - start
    os.unlink(copy)
    return {'artifacts': artifacts, 'running_call': running_call, 'paused_call': paused_call,
            'ram_copy': ram_copy}


def launch_many(driver: base.VirtDriver, art: base.LiveImageArtifacts, count: int,
                prefix: str) -> list[dict[str, float]]:
    def one(i: int) -> dict[str, float]:
        clone = base.CloneSpec(id='%s-%d' % (prefix, i), name='clone', guest={'n': str(i)})
        start = time.monotonic()
        info = driver.launch(art, clone)
        running = time.monotonic()
        path = info.console_path or ''
        console = wait_for(lambda: '\n' in read(path), 30, '%s to print' % clone.id)
        return {'running': running - start, 'console': console - start,
                'pid': float(info.pid or 0), 'process': info.extra['process_seconds'],
                'restore': info.extra['restore_seconds'],
                'warm': float(bool(info.extra.get('warm'))), 'start': start, 'end': running}

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def all_running(results: list[dict[str, float]]) -> float:
    """From the first launch call to the last clone running."""
    return max(r['end'] for r in results) - min(r['start'] for r in results)


def ms(seconds: float) -> str:
    return '%7.0f ms' % (seconds * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--no-xfs', action='store_true', help='do not loop-mount XFS')
    parser.add_argument('--repeat', type=int, default=5, help='runs of the single clone')
    parser.add_argument('--libvirt', action='store_true',
                        help='bless and launch through the libvirt driver too')
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from tests.fixtures import guest  # same guest (and cache) as the tests
    guest_dir = os.path.dirname(guest.build().kernel)
    use_xfs = not args.no_xfs and os.geteuid() == 0
    with scratch(use_xfs) as work, tempfile.TemporaryDirectory(prefix='gc-copy-') as other:
        work_dir, where = work
        driver = QemuDriver(instances_path=os.path.join(work_dir, 'i'),
                            live_images_path=os.path.join(work_dir, 'li'), accel='auto')
        copier = QemuDriver(instances_path=os.path.join(work_dir, 'i'),
                            live_images_path=os.path.join(other, 'li'), accel=driver.accel)
        print('accel: %s (%s)' % (driver.accel, driver.accel_reason))
        print('files: %s; guest RAM %d MiB; %d CPUs; load %.2f\n'
              % (where, MEMORY_MB, os.cpu_count() or 0, os.getloadavg()[0]))
        try:
            code, figures = run(driver, copier, guest_dir, work_dir, args.repeat)
        finally:
            for instance_id in driver.list_instances():
                driver.destroy(instance_id)
    if args.libvirt:
        through_libvirt(guest_dir, figures, args.repeat)
    return code


def through_libvirt(guest_dir: str, qemu: dict[str, float], repeat: int) -> None:
    """Bless and single-clone figures of the libvirt driver, beside ``qemu``'s."""
    from gridcentric_storage.virt.libvirt import LibvirtDriver

    work = tempfile.mkdtemp(prefix='gc-', dir='/tmp')      # short: QEMU's unix sockets
    os.chmod(work, 0o711)                                   # QEMU runs as libvirt-qemu
    driver = LibvirtDriver(instances_path=os.path.join(work, 'i'),
                           live_images_path=os.path.join(work, 'l'), accel='auto')
    try:
        driver.init_host('bench')
        info = driver.spawn(template_spec(guest_dir))
        wait_for(lambda: 'COUNTER 5 ' in read(info.console_path or ''), 300,
                 'the libvirt template to count', 0.05)
        start = time.monotonic()
        art = driver.bless('template', 'li-bench', [])
        call = time.monotonic() - start
        single = [launch_many(driver, art, 1, 'single%d' % r)[0] for r in range(repeat)]
    finally:
        for instance_id in driver.list_instances():
            driver.destroy(instance_id)
        subprocess.run(['rm', '-rf', work], check=False)
    libvirt = {'pause': art.extra['paused_seconds'], 'call': call,
               'running': statistics.median(r['running'] for r in single),
               'restore': statistics.median(r['restore'] for r in single)}
    print('\n%-44s %10s %10s %10s' % ('the same through libvirt', 'libvirt', 'QEMU drv',
                                       'ratio'))
    for key, label in (('pause', 'bless pause of a running VM'),
                       ('call', 'bless call, running VM'),
                       ('running', '1 clone running (median of %d)' % repeat),
                       ('restore', '  of which device state loaded')):
        print('%-44s %s %s %9.1fx' % (label, ms(libvirt[key]), ms(qemu[key]),
                                      libvirt[key] / qemu[key]))


def template_spec(guest_dir: str) -> base.InstanceSpec:
    return base.InstanceSpec(
        id='template', name='template', memory_mb=MEMORY_MB,
        kernel=os.path.join(guest_dir, 'vmlinuz'), initrd=os.path.join(guest_dir, 'initrd.img'),
        cmdline='console=ttyS0 quiet panic=-1')


def run(driver: QemuDriver, copier: QemuDriver, guest_dir: str, work: str,
        repeat: int) -> tuple[int, dict[str, float]]:
    """Print the QEMU driver's figures; the exit code and what libvirt is compared to."""
    start = time.monotonic()
    info = driver.spawn(template_spec(guest_dir))
    console_path = info.console_path or ''
    cold = wait_for(lambda: 'COUNTER 0 ' in read(console_path), 300, 'the cold boot',
                    0.005) - start
    wait_for(lambda: 'COUNTER 5 ' in read(console_path), 60, 'the template to count', 0.05)
    template_pss = pss_mb(info.pid or 0)['Pss']

    bless = bless_as_called(driver, info.instance_dir or '', work)
    art = bless.pop('artifacts')
    art_copy = copier.bless('template', 'li-copy', [])
    ram_allocated = os.stat(art_copy.memory_path).st_blocks * 512 / 2**20
    copier.discard(art_copy)
    full = full_state_restore(info.instance_dir or '', work, driver.accel)

    single = [launch_many(driver, art, 1, 'single%d' % r)[0] for r in range(repeat)]
    for r in range(repeat):
        driver.destroy('single%d-0' % r)
    rounds = {1: single}
    for count in CLONE_COUNTS[1:]:
        rounds[count] = launch_many(driver, art, count, 'c%d' % count)
        if count != CLONE_COUNTS[-1]:
            for i in range(count):
                driver.destroy('c%d-%d' % (count, i))
    time.sleep(3)                                        # the last round idles
    idle = [pss_mb(int(c['pid'])) for c in rounds[CLONE_COUNTS[-1]]]
    for i in range(CLONE_COUNTS[-1]):
        driver.destroy('c%d-%d' % (CLONE_COUNTS[-1], i))

    print('%-44s %10s %10s' % ('cold boot and restore (from the call)', 'running', 'console'))
    print('%-44s %10s %s' % ('cold boot of the guest', '', ms(cold)))
    print('  (running: QMP cont done, status running; console: first line the resumed guest\n'
          '   printed; the guest prints every ~200 ms, so console adds 0-200 ms of guest time)')
    print('%-44s %s %s   (state file %.1f MB)' % ('full-state restore (no x-ignore-shared)',
                                                   ms(full['running']), ms(full['console']),
                                                   full['state_mb']))
    print('\n%-44s %10s %10s %10s %10s %10s' % (
        'live-image clones launched concurrently', 'running', 'console', 'worst run',
        'QEMU up', 'restore'))
    for count, results in rounds.items():
        label = ('1 clone (median of %d runs)' % len(results) if count == 1
                 else '%d clones (median per clone)' % count)
        print('%-44s %s %s %s %s %s' % (
            label, *(ms(statistics.median(r[k] for r in results)) for k in ('running', 'console')),
            ms(max(r['running'] for r in results)),
            *(ms(statistics.median(r[k] for r in results)) for k in ('process', 'restore'))))
    print('  (QEMU up: process start to its first QMP session; restore: device state loaded)')
    print('\n%-44s %10s %10s %10s %10s' % ('bless (device state + RAM)', 'paused', 'total',
                                              'state', 'RAM'))
    for label, extra in (('RAM on the same FS as the VM', art.extra),
                         ('RAM to another file system', art_copy.extra)):
        print('%-44s %s %s %s %s   %s of %.0f MB allocated, state file %.0f KB' % (
            label, ms(extra['paused_seconds']), ms(extra['bless_seconds']),
            ms(extra['state_seconds']), ms(extra['ram_copy_seconds']), extra['ram_copy'],
            ram_allocated, extra['state_size'] / 1024))

    pause = art.extra['paused_seconds']
    print('\n%-44s %10s %10s' % ('bless, and writing the guest RAM out in full', 'time',
                                  '/ pause'))
    for label, seconds, note in (
            ('bless pause of a running VM (VM stopped)', pause, ''),
            ('bless call, running VM', bless['running_call'],
             'the rest: RAM sha256 after resume'),
            ('bless call, VM the caller paused', bless['paused_call'], ''),
            ('plain copy of the RAM file (every byte)', bless['ram_copy'], ''),
            ('full-state save (no x-ignore-shared)', full['save'],
             'state file %.1f MB' % full['state_mb'])):
        print('%-44s %s %9.1fx   %s' % (label, ms(seconds), seconds / pause, note))

    clone_pss = statistics.median(p['Pss'] for p in idle)
    print('\n%-44s %10s' % ('PSS when idle (guest RAM %d MiB)' % MEMORY_MB, 'MB'))
    print('%-44s %10.1f' % ('cold-booted template (share=on RAM file)', template_pss))
    print('%-44s %10.1f' % ('full-state restore', full['pss']))
    print('%-44s %10.1f   (anon %.1f, file %.1f; min %.1f, max %.1f)' % (
        'clone, %d idle (median)' % len(idle), clone_pss,
        statistics.median(p.get('Pss_Anon', 0) for p in idle),
        statistics.median(p.get('Pss_File', 0) for p in idle),
        min(p['Pss'] for p in idle), max(p['Pss'] for p in idle)))
    print('%-44s %10.1f' % ('8 clones together', sum(p['Pss'] for p in idle)))

    one_running = statistics.median(r['running'] for r in single)
    one_console = statistics.median(r['console'] for r in single)
    print('\nratios')
    print('  cold boot / clone running      %6.1fx' % (cold / one_running))
    print('  cold boot / clone console      %6.1fx' % (cold / one_console))
    print('  full restore / clone running   %6.1fx' % (full['running'] / one_running))
    print('  clone PSS / guest RAM          %6.1f%%' % (100 * clone_pss / MEMORY_MB))
    print('  full-restore PSS / clone PSS   %6.1fx' % (full['pss'] / clone_pss))
    print('  RAM file copy / bless pause    %6.1fx' % (bless['ram_copy'] / pause))
    checks = [('one clone running < %.0f ms' % TARGET_RUNNING_MS,
               one_running * 1000 < TARGET_RUNNING_MS, ms(one_running).strip()),
              ('>= %.0fx faster than a cold boot' % TARGET_SPEEDUP,
               cold / one_running >= TARGET_SPEEDUP, '%.1fx' % (cold / one_running)),
              ('< %.0f MB PSS per idle clone' % TARGET_PSS_MB, clone_pss < TARGET_PSS_MB,
               '%.1f MB' % clone_pss)]
    print('\ntargets')
    for name, ok, value in checks:
        print('  %-36s %-5s (%s)' % (name, 'yes' if ok else 'NO', value))
    figures = {'pause': pause, 'call': bless['running_call'], 'running': one_running,
               'restore': statistics.median(r['restore'] for r in single)}
    return (0 if all(ok for _, ok, _ in checks) else 1), figures


if __name__ == '__main__':
    sys.exit(main())
