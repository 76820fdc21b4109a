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
* warm pool: the single clone and the 8 at once again, each taking a QEMU the
  driver started ahead (``warm_pool_size`` 8, the pool full before each
  round), beside the cold figures: per clone, and from the first call until
  all 8 run; and what a waiting pooled QEMU costs (PSS).

Then the ratios and whether the targets hold: one clone running < 150 ms from
the call, >= 20x faster than a cold boot, < 50 MB PSS per idle clone.

``--libvirt`` then does the bless and the single clone again through the
libvirt driver (a libvirtd must answer on qemu:///system: tools/libvirtd.sh
start) and prints its figures beside the QEMU driver's.

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

from gridcentric_storage.virt import base, qemu_cmdline, qemu_pool, qmp
from gridcentric_storage.virt.qemu import QemuDriver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_MB = 256
CLONE_COUNTS = (1, 4, 8)
TARGET_RUNNING_MS = 150.0
TARGET_SPEEDUP = 20.0
TARGET_PSS_MB = 50.0
WARM_POOL = 8
TARGET_WARM_MS = 50.0
TARGET_WARM_ALL = 0.5


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


def warm_rounds(cold: QemuDriver, art: base.LiveImageArtifacts,
                repeat: int) -> dict[str, Any]:
    """The single clone and the concurrent round again, each clone from a warm pool
    of WARM_POOL processes (a driver over the same directories, pool full first)."""
    driver = QemuDriver(instances_path=cold.instances_path,
                        live_images_path=cold.live_images_path, accel=cold.accel,
                        warm_pool_size=WARM_POOL)
    driver.init_host('bench')

    def full() -> None:
        wait_for(lambda: driver.warm_processes(art.live_image_id) == WARM_POOL, 300,
                 'the warm pool to fill', 0.05)
        time.sleep(1)                                    # the last one's start settles

    try:
        full()
        pooled = [pss_mb(pid) for pid in pooled_pids(driver)]
        single = []
        for r in range(repeat):
            full()
            single += launch_many(driver, art, 1, 'warm%d' % r)
            driver.destroy('warm%d-0' % r)
        full()
        many = launch_many(driver, art, CLONE_COUNTS[-1], 'w%d' % CLONE_COUNTS[-1])
        for i in range(CLONE_COUNTS[-1]):
            driver.destroy('w%d-%d' % (CLONE_COUNTS[-1], i))
    finally:
        driver.cleanup_host()
    return {'single': single, 'many': many, 'pooled_pss': pooled}


def pooled_pids(driver: QemuDriver) -> list[int]:
    pids = []
    for slot_id in qemu_pool.unclaimed(driver.instances_path):
        pids.append(int(read(os.path.join(driver.instances_path, slot_id, 'pid')) or 0))
    return [p for p in pids if p]


def print_warm(cold_single: list[dict[str, float]], cold_many: list[dict[str, float]],
               warm: dict[str, Any]) -> None:
    single, many = warm['single'], warm['many']
    count = len(many)
    print('\n%-44s %10s %10s %10s' % ('warm pool (%d QEMU started ahead)' % WARM_POOL,
                                       'cold', 'warm', 'ratio'))
    rows = [('1 clone running (median of %d)' % len(single),
             statistics.median(r['running'] for r in cold_single),
             statistics.median(r['running'] for r in single)),
            ('  of which QEMU up / claimed (median)',
             statistics.median(r['process'] for r in cold_single),
             statistics.median(r['process'] for r in single)),
            ('  of which device state loaded (median)',
             statistics.median(r['restore'] for r in cold_single),
             statistics.median(r['restore'] for r in single)),
            ('1 clone console (median)', statistics.median(r['console'] for r in cold_single),
             statistics.median(r['console'] for r in single)),
            ('%d clones at once: all running' % count, all_running(cold_many),
             all_running(many)),
            ('%d clones at once: median running' % count,
             statistics.median(r['running'] for r in cold_many),
             statistics.median(r['running'] for r in many))]
    for label, cold, hot in rows:
        print('%-44s %s %s %9.1fx' % (label, ms(cold), ms(hot), cold / hot))
    print('  (claimed: a pooled QEMU given the clone\'s files, disks and NIC, its machine '
          'built;\n   warm launches: %d of %d single, %d of %d concurrent)'
          % (sum(r['warm'] for r in single), len(single), sum(r['warm'] for r in many),
             count))
    if warm['pooled_pss']:
        print('%-44s %10.1f   (median of %d; RAM mapped, untouched)' % (
            'PSS of a pooled QEMU waiting (MB)',
            statistics.median(p['Pss'] for p in warm['pooled_pss']), len(warm['pooled_pss'])))
    one = statistics.median(r['running'] for r in single)
    print('  warm clone running <= %.0f ms: %s (%s); %d clones all running <= %.1f s: %s (%s)'
          % (TARGET_WARM_MS, 'yes' if one * 1000 <= TARGET_WARM_MS else 'NO', ms(one).strip(),
             count, TARGET_WARM_ALL, 'yes' if all_running(many) <= TARGET_WARM_ALL else 'NO',
             ms(all_running(many)).strip()))


def ms(seconds: float) -> str:
    return '%7.0f ms' % (seconds * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--no-xfs', action='store_true', help='do not loop-mount XFS')
    parser.add_argument('--repeat', type=int, default=5, help='runs of the single clone')
    parser.add_argument('--libvirt', action='store_true',
                        help='bless and launch through the libvirt driver too')
    parser.add_argument('--no-api', action='store_true',
                        help='skip the clones launched through gridcentric-all-in-one')
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
    if not args.no_api:
        through_api(guest_dir, args.repeat)
    return code


class AllInOne:
    """gridcentric-all-in-one over a state directory of its own (loopback, noauth)."""

    def __init__(self, state: str, warm_pool_size: int) -> None:
        import socket
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            self.port = int(sock.getsockname()[1])
        self.state = state
        self.config = os.path.join(state, 'aio-%d.conf' % warm_pool_size)
        with open(self.config, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n[api]\nport = %d\n[compute]\n'
                    'report_interval = 1\n[qemu]\nwarm_pool_size = %d\n'
                    % (state, self.port, warm_pool_size))
        self.log = open(os.path.join(state, 'aio-%d.log' % warm_pool_size), 'w')
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), 'gridcentric-all-in-one'),
             '--config-file', self.config], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.up, 120, 'gridcentric-all-in-one to answer', 0.2)

    def up(self) -> bool:
        import requests
        try:
            return self.call('GET', '/v1/servers').status_code == 200
        except requests.ConnectionError:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests
        return requests.request(method, 'http://127.0.0.1:%d%s' % (self.port, path),
                                headers={'X-Auth-Token': 'admin:admin'}, timeout=60,
                                **kwargs)

    def statuses(self) -> dict[str, str]:
        return {s['id']: s['status'] for s in self.call('GET', '/v1/servers').json()['servers']}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def api_launch(aio: AllInOne, live_image_id: str, count: int) -> float:
    """Seconds from the launch request until GET /v1/servers shows all ``count``
    clones ACTIVE (polled every 2 ms); the clones are deleted again."""
    start = time.monotonic()
    response = aio.call('POST', '/v1/live-images/%s/action' % live_image_id,
                        json={'launch': {'num_instances': count, 'name': 'bench'}})
    if response.status_code != 202:
        raise SystemExit('launch refused: %s' % response.text)
    ids = [s['id'] for s in response.json()['servers']]
    done = wait_for(lambda: all(aio.statuses().get(i) in ('ACTIVE', 'ERROR') for i in ids),
                    120, 'the clones to run', 0.002)
    if any(aio.statuses()[i] == 'ERROR' for i in ids):
        raise SystemExit('a clone went to ERROR')
    for server_id in ids:
        aio.call('DELETE', '/v1/servers/%s' % server_id)
    wait_for(lambda: not set(ids) & set(aio.statuses()), 120, 'the clones to go', 0.1)
    return done - start


def through_api(guest_dir: str, repeat: int) -> None:
    """One clone and CLONE_COUNTS[-1] at once through the REST API of an all-in-one
    service, without and with a warm pool (the same state directory, restarted)."""
    state = tempfile.mkdtemp(prefix='gc-', dir='/tmp')        # short: QMP socket paths
    figures: dict[int, dict[str, float]] = {}
    count = CLONE_COUNTS[-1]
    try:
        images = os.path.join(state, 'images', 'public')
        os.makedirs(images)
        for name in ('vmlinuz', 'initrd.img'):
            shutil.copyfile(os.path.join(guest_dir, name), os.path.join(images, name))
        live_image_id = ''
        for pool in (0, WARM_POOL):
            aio = AllInOne(state, pool)
            try:
                if not live_image_id:
                    live_image_id = api_template(aio)
                one = []
                for _ in range(repeat):
                    pool_filled(state, pool)
                    one.append(api_launch(aio, live_image_id, 1))
                pool_filled(state, pool)
                figures[pool] = {'one': statistics.median(one),
                                 'many': api_launch(aio, live_image_id, count)}
                if pool:                              # discard drains the pool
                    api_cleanup(aio, live_image_id)
            finally:
                aio.stop()
    finally:
        kill_under(state)
        subprocess.run(['rm', '-rf', state], check=False)
    cold, warm = figures[0], figures[WARM_POOL]
    print('\n%-44s %10s %10s %10s' % ('through the API (all-in-one), to ACTIVE', 'cold',
                                       'warm', 'ratio'))
    print('%-44s %s %s %9.1fx' % ('1 clone (median of %d)' % repeat, ms(cold['one']),
                                  ms(warm['one']), cold['one'] / warm['one']))
    print('%-44s %s %s %9.1fx' % ('%d clones at once: all ACTIVE' % count, ms(cold['many']),
                                  ms(warm['many']), cold['many'] / warm['many']))
    print('  (request sent to the status ACTIVE seen by GET /v1/servers, polled every 2 ms)')


def api_cleanup(aio: AllInOne, live_image_id: str) -> None:
    """Delete every server, then discard the live image."""
    for server_id in aio.statuses():
        aio.call('DELETE', '/v1/servers/%s' % server_id)
    wait_for(lambda: not aio.statuses(), 120, 'the servers to go', 0.2)
    aio.call('DELETE', '/v1/live-images/%s' % live_image_id)
    wait_for(lambda: aio.call('GET', '/v1/live-images/%s' % live_image_id).status_code == 404,
             120, 'the discard', 0.2)


def kill_under(state: str) -> None:
    """SIGKILL what still runs with ``state`` in its command line (after a failure)."""
    for name in os.listdir('/proc'):
        if name.isdigit():
            with contextlib.suppress(OSError):
                with open('/proc/%s/cmdline' % name, 'rb') as f:
                    if (state + '/').encode() in f.read():
                        os.kill(int(name), 9)


def pool_filled(state: str, size: int) -> None:
    """Wait until the service's warm pool holds ``size`` processes (0: at once)."""
    def listening() -> int:                             # QEMU up: its QMP socket is there
        instances = os.path.join(state, 'instances')
        return sum(os.path.exists(os.path.join(instances, s, 'qmp.sock'))
                   for s in qemu_pool.unclaimed(instances))

    if size:
        wait_for(lambda: listening() >= size, 300, 'the warm pool to fill', 0.1)
        time.sleep(1)                                    # the last one's start settles


def api_template(aio: AllInOne) -> str:
    """Boot the test guest through the API, bless it; the live image id."""
    response = aio.call('POST', '/v1/servers', json={'server': {
        'name': 'template', 'memory_mb': MEMORY_MB, 'kernel': 'vmlinuz',
        'initrd': 'initrd.img', 'cmdline': 'console=ttyS0 quiet panic=-1'}})
    server_id = response.json()['server']['id']
    wait_for(lambda: aio.statuses().get(server_id) == 'ACTIVE', 300, 'the template', 0.2)

    def counted() -> bool:
        out = aio.call('POST', '/v1/servers/%s/action' % server_id,
                       json={'os-getConsoleOutput': {}}).json().get('output', '')
        return out.count('COUNTER') >= 3
    wait_for(counted, 300, 'the template to count', 0.5)
    image = aio.call('POST', '/v1/live-images',
                     json={'live_image': {'server_id': server_id}}).json()['live_image']
    wait_for(lambda: aio.call('GET', '/v1/live-images/%s' % image['id']).json()
             ['live_image']['status'] == 'blessed', 120, 'the bless', 0.2)
    return str(image['id'])


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
    for i in range(CLONE_COUNTS[-1]):                    # the warm rounds run alone
        driver.destroy('c%d-%d' % (CLONE_COUNTS[-1], i))
    warm = warm_rounds(driver, art, repeat)

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
    print_warm(single, rounds[CLONE_COUNTS[-1]], warm)
    print('\ntargets')
    for name, ok, value in checks:
        print('  %-36s %-5s (%s)' % (name, 'yes' if ok else 'NO', value))
    figures = {'pause': pause, 'call': bless['running_call'], 'running': one_running,
               'restore': statistics.median(r['restore'] for r in single)}
    return (0 if all(ok for _, ok, _ in checks) else 1), figures


if __name__ == '__main__':
    sys.exit(main())
