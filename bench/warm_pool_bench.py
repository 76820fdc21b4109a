"""How fast is a launch from the QEMU driver's warm pool, against a cold one?

One run, side by side, on this host (KVM if the driver's probe says it works,
else TCG), with the test guest of tools/build-test-guest.sh (256 MiB), one
live image blessed from it:

* driver level: one clone (median of ``--repeat``) and 8 at once launched
  cold (QEMU started by the launch), then again each from a warm pool of 8
  QEMU processes started ahead (the pool full before each round), then from
  a pool restored ahead (machine built, state loaded; ``[qemu]
  warm_pool_restore_ahead``): "running" = ``launch()`` returned (QEMU
  announced RESUME after ``cont``), "console" = the first line the resumed guest printed;
  what a waiting pooled QEMU costs (PSS);
* through the API (``--no-api`` skips it): one clone and 8 at once through
  the REST API of ``gridcentric-all-in-one``, request sent to the moment the
  service wrote ACTIVE (the row's ``updated_at``), without a warm pool, with
  one, with one restored ahead.

Targets: a warm clone running <= 50 ms from the call, 8 warm clones all
running within 0.5 s.

Run: ``PYTHONPATH=. python bench/warm_pool_bench.py``
"""

import argparse
import contextlib
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from live_image_bench import (  # noqa: E402
    CLONE_COUNTS,
    MEMORY_MB,
    ROOT,
    all_running,
    launch_many,
    ms,
    pss_mb,
    read,
    template_spec,
    wait_for,
)

from gridcentric_storage.virt import base, qemu_pool  # noqa: E402
from gridcentric_storage.virt.qemu import QemuDriver  # noqa: E402

WARM_POOL = 8
TARGET_WARM_MS = 50.0
TARGET_WARM_ALL = 0.5


def cold_rounds(driver: QemuDriver, art: base.LiveImageArtifacts,
                repeat: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """The single clone ``repeat`` times and 8 at once, each QEMU started by the launch."""
    single = []
    for r in range(repeat):
        single += launch_many(driver, art, 1, 'single%d' % r)
        driver.destroy('single%d-0' % r)
    count = CLONE_COUNTS[-1]
    many = launch_many(driver, art, count, 'c%d' % count)
    for i in range(count):
        driver.destroy('c%d-%d' % (count, i))
    return single, many


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=5, help='runs of the single clone')
    parser.add_argument('--no-api', action='store_true',
                        help='skip the clones launched through gridcentric-all-in-one')
    parser.add_argument('--api-only', action='store_true',
                        help='only the clones launched through gridcentric-all-in-one')
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    from tests.fixtures import guest  # same guest (and cache) as the tests
    guest_dir = os.path.dirname(guest.build().kernel)
    if args.api_only:
        through_api(guest_dir, args.repeat)
        return 0
    work = tempfile.mkdtemp(prefix='gc-', dir='/tmp')         # short: QMP socket paths
    driver = QemuDriver(instances_path=os.path.join(work, 'i'),
                        live_images_path=os.path.join(work, 'l'), accel='auto')
    print('accel: %s (%s); %d CPUs; load %.2f' % (driver.accel, driver.accel_reason,
                                                  os.cpu_count() or 0, os.getloadavg()[0]))
    try:
        info = driver.spawn(template_spec(guest_dir))
        wait_for(lambda: 'COUNTER 5 ' in read(info.console_path or ''), 300,
                 'the template to count', 0.05)
        art = driver.bless('template', 'li-bench', [])
        driver.destroy('template')
        single, many = cold_rounds(driver, art, args.repeat)
        warm = warm_rounds(driver, art, args.repeat, False)
        ahead = warm_rounds(driver, art, args.repeat, True)
    finally:
        for instance_id in driver.list_instances():
            driver.destroy(instance_id)
        shutil.rmtree(work, ignore_errors=True)
    print_warm(single, many, warm, 'warm pool (%d QEMU started ahead)' % WARM_POOL)
    code = print_warm(single, many, ahead,
                      'restored ahead (%d QEMU, state loaded)' % WARM_POOL)
    if not args.no_api:
        through_api(guest_dir, args.repeat)
    return code


def warm_rounds(cold: QemuDriver, art: base.LiveImageArtifacts,
                repeat: int, restore_ahead: bool) -> dict[str, Any]:
    """The single clone and the concurrent round again, each clone from a warm pool
    of WARM_POOL processes (a driver over the same directories, pool full first),
    their state loaded ahead when ``restore_ahead``."""
    driver = QemuDriver(instances_path=cold.instances_path,
                        live_images_path=cold.live_images_path, accel=cold.accel,
                        warm_pool_size=WARM_POOL, warm_pool_restore_ahead=restore_ahead)
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
               warm: dict[str, Any], title: str) -> int:
    """Print cold beside warm; 0 when both targets hold, else 1."""
    single, many = warm['single'], warm['many']
    count = len(many)
    print('\n%-44s %10s %10s %10s' % (title, 'cold', 'warm', 'ratio'))
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
    for label, cold, hot in rows:      # (nothing left to load once restored ahead)
        print('%-44s %s %s %10s' % (label, ms(cold), ms(hot),
                                    '%9.1fx' % (cold / hot) if hot else '-'))
    print('  (claimed: a pooled QEMU given the clone\'s files, disks and NIC, its machine '
          'built, or,\n   restored ahead, its identity; warm launches: %d of %d single, '
          '%d of %d concurrent)'
          % (sum(r['warm'] for r in single), len(single), sum(r['warm'] for r in many),
             count))
    if warm['pooled_pss']:
        print('%-44s %10.1f   (median of %d; RAM mapped, untouched)' % (
            'PSS of a pooled QEMU waiting (MB)',
            statistics.median(p['Pss'] for p in warm['pooled_pss']), len(warm['pooled_pss'])))
    one = statistics.median(r['running'] for r in single)
    ok = one * 1000 <= TARGET_WARM_MS and all_running(many) <= TARGET_WARM_ALL
    print('  warm clone running <= %.0f ms: %s (%s); %d clones all running <= %.1f s: %s (%s)'
          % (TARGET_WARM_MS, 'yes' if one * 1000 <= TARGET_WARM_MS else 'NO', ms(one).strip(),
             count, TARGET_WARM_ALL, 'yes' if all_running(many) <= TARGET_WARM_ALL else 'NO',
             ms(all_running(many)).strip()))
    return 0 if ok else 1




class AllInOne:
    """gridcentric-all-in-one over a state directory of its own (loopback, noauth)."""

    def __init__(self, state: str, warm_pool_size: int, restore_ahead: bool = False) -> None:
        import socket
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            self.port = int(sock.getsockname()[1])
        self.state = state
        name = 'aio-%d%s' % (warm_pool_size, '-ahead' if restore_ahead else '')
        self.config = os.path.join(state, name + '.conf')
        with open(self.config, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n[api]\nport = %d\n[compute]\n'
                    'report_interval = 1\n[qemu]\nwarm_pool_size = %d\n'
                    'warm_pool_restore_ahead = %s\n'
                    % (state, self.port, warm_pool_size, restore_ahead))
        self.log = open(os.path.join(state, name + '.log'), 'w')
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), 'gridcentric-all-in-one'),
             '--config-file', self.config], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.up, 120, 'gridcentric-all-in-one to answer', 0.2)
        # Statuses are read from the service's own SQLite file (read-only): polling
        # its API every millisecond would take the CPU the launch needs.
        import sqlite3
        self.db = sqlite3.connect('file:%s?mode=ro' % os.path.join(state, 'gridcentric.sqlite'),
                                  uri=True, isolation_level=None)

    def status_rows(self, ids: list[str]) -> list[tuple[str, float]]:
        """(status, when the service last wrote the row, epoch seconds) of each."""
        return [(status, 0.0 if updated is None else  # written in UTC
                 datetime.datetime.fromisoformat(updated).replace(
                     tzinfo=datetime.UTC).timestamp())
                for status, updated in self.db.execute(
                    'SELECT status, updated_at FROM servers WHERE id IN (%s)'
                    % ','.join('?' * len(ids)), ids)]

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
        if hasattr(self, 'db'):
            self.db.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def api_launch(aio: AllInOne, live_image_id: str, count: int) -> float:
    """Seconds from the launch request until the service wrote the last of the
    ``count`` clones ACTIVE (the rows' own ``updated_at``, read back every 5 ms:
    polling faster would take the CPU the launch needs); the clones are deleted
    again."""
    start = time.time()
    response = aio.call('POST', '/v1/live-images/%s/action' % live_image_id,
                        json={'launch': {'num_instances': count, 'name': 'bench'}})
    if response.status_code != 202:
        raise SystemExit('launch refused: %s' % response.text)
    ids = [s['id'] for s in response.json()['servers']]

    rows: list[tuple[str, float]] = []

    def settled() -> bool:
        rows[:] = aio.status_rows(ids)
        return len(rows) == len(ids) and all(r in ('ACTIVE', 'ERROR') for r, _ in rows)
    wait_for(settled, 120, 'the clones to run', 0.005)
    if any(aio.statuses()[i] == 'ERROR' for i in ids):
        raise SystemExit('a clone went to ERROR')
    for server_id in ids:
        aio.call('DELETE', '/v1/servers/%s' % server_id)
    wait_for(lambda: not set(ids) & set(aio.statuses()), 120, 'the clones to go', 0.1)
    return max(when for _, when in rows) - start


def through_api(guest_dir: str, repeat: int) -> None:
    """One clone and CLONE_COUNTS[-1] at once through the REST API of an all-in-one
    service, without a warm pool, with one, and with one restored ahead (the same
    state directory, restarted)."""
    state = tempfile.mkdtemp(prefix='gc-', dir='/tmp')        # short: QMP socket paths
    figures: dict[str, dict[str, float]] = {}
    count = CLONE_COUNTS[-1]
    try:
        images = os.path.join(state, 'images', 'public')
        os.makedirs(images)
        for name in ('vmlinuz', 'initrd.img'):
            shutil.copyfile(os.path.join(guest_dir, name), os.path.join(images, name))
        live_image_id = ''
        for variant, pool, ahead in (('cold', 0, False), ('warm', WARM_POOL, False),
                                     ('ahead', WARM_POOL, True)):
            aio = AllInOne(state, pool, ahead)
            try:
                if not live_image_id:
                    live_image_id = api_template(aio)
                one = []
                for _ in range(repeat):
                    pool_filled(state, pool)
                    one.append(api_launch(aio, live_image_id, 1))
                pool_filled(state, pool)
                figures[variant] = {'one': statistics.median(one),
                                 'many': api_launch(aio, live_image_id, count)}
                if ahead:                             # discard drains the pool
                    api_cleanup(aio, live_image_id)
            finally:
                aio.stop()
    finally:
        kill_under(state)
        subprocess.run(['rm', '-rf', state], check=False)
    cold, warm, ahead = figures['cold'], figures['warm'], figures['ahead']
    print('\n%-40s %10s %10s %10s %10s' % ('through the API (all-in-one), to ACTIVE', 'cold',
                                           'warm', 'ahead', 'cold/ahead'))
    for label, key in (('1 clone (median of %d)' % repeat, 'one'),
                       ('%d clones at once: all ACTIVE' % count, 'many')):
        print('%-40s %s %s %s %9.1fx' % (label, ms(cold[key]), ms(warm[key]), ms(ahead[key]),
                                         cold[key] / ahead[key]))
    print('  (request sent to the moment the service wrote ACTIVE, the row\'s updated_at;'
          '\n   ACTIVE is written once QEMU announced RESUME: the clone runs)')
    print('  API: warm clone running <= %.0f ms: %s (%s)' % (
        TARGET_WARM_MS, 'yes' if ahead['one'] * 1000 <= TARGET_WARM_MS else 'NO',
        ms(ahead['one']).strip()))


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




if __name__ == '__main__':
    sys.exit(main())
