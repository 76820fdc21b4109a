"""Live images of a Nova instance against plain Nova boots, on the tools/nova.sh stack.

Everything goes through Nova's endpoint with Keystone tokens, as an operator
would: the figures include Nova's API, scheduler, conductor and compute.

* plain boot: ``POST /servers`` of the test flavor (1 and 3 servers in one
  request) to ACTIVE, and to the guest's first ``COUNTER`` console line;
* bless (Cobalt's ``co_bless`` through nova-api's filter): how long the
  source's domain was paused (libvirt lifecycle events, SUSPENDED to
  RESUMED) and the call to BLESSED;
* launch (``co_launch``) of 1 and 3 clones to ACTIVE, and to a counter line
  on every clone's console;
* PSS (``/proc/<pid>/smaps_rollup``) of each clone's QEMU once running,
  beside the source's.

It prints figures and ratios; it asserts nothing. Run on a started stack::

    eval "$(tools/nova.sh start)"
    PYTHONPATH=. .venv/bin/python bench/bench_nova.py
"""

import concurrent.futures
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import libvirt  # noqa: E402

from tests.fixtures import guest  # noqa: E402
from tests.functional.nova import conftest as stack  # noqa: E402
from tests.unit.api.test_cobalt_clients import CobaltManager  # noqa: E402

TIMEOUT = 300.0


def until(predicate: Callable[[], Any], what: str, interval: float = 0.05) -> float:
    """Poll ``predicate``; time.monotonic() when it first held."""
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit('timed out waiting for %s' % what)
        time.sleep(interval)
    return time.monotonic()


def counting(nova: Any, server_id: str) -> bool:
    return bool(guest.counters(stack.console(nova, server_id)))


def settle(nova: Any, ids: list[str], t0: float) -> tuple[float, float]:
    """Seconds from t0 until every server is ACTIVE, and until every console counts."""
    def each(server_id: str) -> tuple[float, float]:
        active = until(lambda: stack.active(nova, server_id), 'ACTIVE %s' % server_id)
        counted = until(lambda: counting(nova, server_id), 'console %s' % server_id)
        return active, counted

    with concurrent.futures.ThreadPoolExecutor(len(ids)) as pool:
        done = list(pool.map(each, ids))
    return max(a for a, _ in done) - t0, max(c for _, c in done) - t0


def pss_mb(server_id: str) -> float:
    with open('/run/libvirt/qemu/%s.pid' % stack.domain_name(server_id)) as f:
        pid = int(f.read())
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.startswith('Pss:'):
                return int(line.split()[1]) / 1024
    raise SystemExit('no Pss in smaps_rollup of %d' % pid)


class PauseClock:
    """Time a domain spends paused, from libvirt's lifecycle events."""

    def __init__(self, conn: Any, domain: Any) -> None:
        self.suspended: float | None = None
        self.resumed: float | None = None
        self._id = conn.domainEventRegisterAny(
            domain, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._event, None)
        self._conn = conn

    def _event(self, _conn: Any, _dom: Any, event: int, _detail: int, _opaque: Any) -> None:
        now = time.monotonic()
        if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and self.suspended is None:
            self.suspended = now
        elif event == libvirt.VIR_DOMAIN_EVENT_RESUMED and self.suspended is not None:
            self.resumed = self.resumed or now

    def seconds(self) -> float | None:
        self._conn.domainEventDeregisterAny(self._id)
        if self.suspended is None or self.resumed is None:
            return None
        return self.resumed - self.suspended


def run_libvirt_events() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def boot_plain(nova: Any, count: int) -> tuple[float, float, list[str]]:
    name = 'bench-plain-%d' % count
    t0 = time.monotonic()
    nova.servers.create(name, stack.image_id(nova), stack.flavor(nova), nics='none',
                        min_count=count, max_count=count)
    # Nova names the servers of a multi-server request name-1, name-2, ...
    ids = [s.id for s in nova.servers.list(search_opts={'name': '^%s' % name})]
    assert len(ids) == count, ids
    active, counted = settle(nova, ids, t0)
    return active, counted, ids


def main() -> int:
    missing = stack.stack_missing('GC_NOVA_GC_CONFIG')
    if missing:
        print(missing, file=sys.stderr)
        return 2
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=run_libvirt_events, daemon=True).start()
    conn = libvirt.open('qemu:///system')
    nova = stack.nova(os.environ['OS_USERNAME'], os.environ['OS_PASSWORD'],
                      os.environ['OS_PROJECT_NAME'])
    cobalt = CobaltManager(nova)
    made: list[str] = []
    live_image = None
    rows: list[tuple[str, str]] = []
    try:
        plain: dict[int, tuple[float, float]] = {}
        for count in (1, 3):
            active, counted, ids = boot_plain(nova, count)
            made += ids
            plain[count] = (active, counted)
            rows.append(('plain boot x%d: ACTIVE / console counting' % count,
                         '%.1f s / %.1f s' % (active, counted)))
        source = made[0]
        for server_id in made[1:]:
            stack.delete(nova, server_id)
        made = [source]
        # the guest has been counting a while: its RAM is what a clone resumes
        until(lambda: len(guest.counters(stack.console(nova, source))) >= 5, 'source counting')

        clock = PauseClock(conn, conn.lookupByUUIDString(source))
        t0 = time.monotonic()
        [image] = cobalt.bless(source, name='bench-gold')
        live_image = image.id
        blessed = until(lambda: nova.client.get('/servers/%s' % image.id)[1]['server'][
            'status'] == 'BLESSED', 'BLESSED', interval=0.02) - t0
        pause = clock.seconds()
        rows.append(('bless: source paused', '%.0f ms' % (pause * 1000) if pause else 'n/a'))
        rows.append(('bless: call to BLESSED', '%.2f s' % blessed))

        clones: dict[int, tuple[float, float]] = {}
        for count in (1, 3):
            t0 = time.monotonic()
            cobalt.launch(image.id, name='bench-web', num_instances=count)
            ids = [c.id for c in cobalt.list_launched(image.id) if c.id not in made]
            made += ids
            clones[count] = settle(nova, ids, t0)
            rows.append(('launch x%d: ACTIVE / console counting' % count,
                         '%.1f s / %.1f s' % clones[count]))
        for count in (1, 3):
            rows.append(('plain boot / launch x%d, to ACTIVE' % count,
                         '%.1fx' % (plain[count][0] / clones[count][0])))
            rows.append(('plain boot / launch x%d, to console counting' % count,
                         '%.1fx' % (plain[count][1] / clones[count][1])))

        source_pss = pss_mb(source)
        clone_pss = [pss_mb(s) for s in made[1:]]
        rows.append(('PSS of the source QEMU', '%.1f MB' % source_pss))
        rows.append(('PSS per clone QEMU (median of %d)' % len(clone_pss),
                     '%.1f MB (%.2fx the source)' % (statistics.median(clone_pss),
                                                     statistics.median(clone_pss)
                                                     / source_pss)))
    finally:
        for server_id in made:
            stack.delete(nova, server_id)
        if live_image:
            cobalt.discard(live_image)
        conn.close()
    width = max(len(k) for k, _ in rows)
    # tools/nova.sh runs nova-compute with virt_type = qemu: TCG, even where KVM works
    print('Nova live images (flavor %s, the test guest, TCG)' % (
        os.environ.get('GC_NOVA_FLAVOR', 'gc-tiny')))
    for key, value in rows:
        print('  %-*s  %s' % (width, key, value))
    return 0


if __name__ == '__main__':
    sys.exit(main())
