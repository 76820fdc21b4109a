"""What do copy-on-write snapshots, clones and the template cache buy on each backend?

One run, side by side, on this host:

1. Driver objects directly: a 1 GiB and a 32 GiB volume per backend, each
   first given real data (1 MiB chunks of random bytes spread evenly over the
   volume: 256 MiB over the 1 GiB one, 1 GiB over the 32 GiB one) through the
   driver's own data path (``copy_image_to_volume`` of a sparse raw payload
   file). Then, timed: a full copy of the same data, ``create_snapshot`` and
   ``create_cloned_volume``. Backends: ``file`` on this machine's ext4 (qcow2
   mode), ``file`` on a loop-mounted XFS made with reflink=1 (reflink mode),
   ``lvm`` thick on a loop-device VG (no device-mapper here: its clone IS a
   full copy of every byte, so its big volume is 8 GiB, not 32, to keep the run
   short; COW snapshots cannot exist), ``rbd`` on the throw-away Ceph
   of tools/ceph.sh (memstore holds ~2 GiB: its data is scaled down to a
   quarter) when it starts here.
2. Template cache, through the real API (InProcessCloud, in-process compute
   service over fake:// RPC): 10 volumes from one raw image (512 MiB, random
   first 256 MiB) on a file backend on ext4 and one on XFS reflink, each timed
   from POST to 'available'.
3. Streams through the API (PUT/GET /v1/volumes/{id}/data of a 1 GiB volume,
   the whole GiB each way, and the gc-api CLI doing the same) against
   ``dd bs=16M`` on the same backend
   directory: the PUT (durable when answered) against dd conv=fsync, the GET
   with the volume out of the page cache against dd reading cold, and both
   warm. ``--streams`` runs only this part.

No timed assertions: the checks at the end only say whether the expected
shapes hold (copy-on-write time independent of size, cache hits).

Run (root: loop mounts, a loop VG, Ceph): ``/tmp/venv/bin/python bench/volume_bench.py
[--quick]``
"""

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# the sibling modules, also when bench/ is not sys.path[0] (not run as a script)
sys.path.insert(0, os.path.join(ROOT, 'bench'))

from volume_api_bench import print_part2, print_part3, through_api  # noqa: E402
from volume_backends import (  # noqa: E402
    Backend,
    Row,
    file_backend,
    lvm_backend,
    measure,
    print_part1,
    rbd_backend,
)
from volume_common import FULL, QUICK, random_pool, run  # noqa: E402

NOISE_S = 0.05  # below this a ratio of two times says more about the host's load


# ---- main
@contextlib.contextmanager
def xfs_mount(scratch: str, size_gib: int) -> Iterator[str | None]:
    from tests.fixtures import loopfs
    try:
        with loopfs.loop_mounted('xfs', scratch, size_mib=size_gib * 1024) as mnt:
            yield mnt
    except loopfs.LoopUnavailable as e:
        print('(no XFS loop mount: %s; the reflink backend is skipped)' % e)
        yield None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or '').split('\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='small sizes (1 and 4 GiB volumes, fewer MiB) for CI smoke runs')
    parser.add_argument('--streams', action='store_true',
                        help='only part 3: the data streams against dd')
    args = parser.parse_args()
    if os.geteuid() != 0:
        print('needs root (loop mounts, a loop VG, Ceph)')
        return 2
    profile = QUICK if args.quick else FULL
    # the services' own logs (a failed volume's traceback, eventlet's deprecation
    # notice) would bury the tables: failures are reported in them instead
    logging.getLogger().addHandler(logging.NullHandler())
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    began = time.monotonic()
    print('host: %d CPUs, load %.2f; root fs %s; profile %s\n' % (
        os.cpu_count() or 0, os.getloadavg()[0],
        run(['findmnt', '-no', 'FSTYPE', '/']).strip(), 'quick' if args.quick else 'full'))
    pool = random_pool()
    rows: list[Row] = []
    backends: list[Backend] = []
    skipped: dict[str, str] = {}
    checks: list[tuple[str, bool, str]] = []
    with tempfile.TemporaryDirectory(prefix='gc-volume-bench-', dir='/var/tmp') as scratch:
        if args.streams:
            with xfs_mount(scratch, 4) as xfs_dir:
                print_part3(through_api(profile, scratch, xfs_dir, pool, cache=False,
                                        rbd=True)[1])
            print('\nwhole run: %.0f s' % (time.monotonic() - began))
            return 0
        big = profile.sizes[-1][0]
        with xfs_mount(scratch, 3 * big + 8) as xfs_dir:
            ext4_files = os.path.join(scratch, 'files')
            candidates = [file_backend(ext4_files, 'qcow2', profile.sizes)]
            if xfs_dir:
                candidates.append(file_backend(os.path.join(xfs_dir, 'files'), 'reflink',
                                               profile.sizes))
            else:
                skipped['file reflink'] = 'no XFS loop mount'
            for backend in candidates:
                rows += measure(backend, scratch, pool)
                backends.append(backend)
            try:
                with lvm_backend(scratch, profile.lvm_sizes) as backend:
                    rows += measure(backend, scratch, pool)
                    backends.append(backend)
            except Exception as e:  # noqa: BLE001 - report any reason, run the rest
                skipped['lvm thick'] = str(e)
            with rbd_backend(profile.rbd_sizes, profile.sizes) as got:
                if isinstance(got, str):
                    skipped['rbd'] = got
                else:
                    rows += measure(got, scratch, pool)
                    backends.append(got)
            print_part1(rows, backends, skipped)
            cache, stream = through_api(profile, scratch, xfs_dir, pool)
            print_part2(profile, cache)
            print_part3(stream)

    for b in backends:
        small, big_row = [r for r in rows if r.backend == b.name][:2]
        if b.cow:
            growth = big_row.clone / small.clone
            checks.append(('%s: clone time independent of size' % b.name,
                           growth < 3 or big_row.clone < NOISE_S,
                           '%d/%d GiB: %.1fx, %.0f ms' % (big_row.size_gib, small.size_gib,
                                                          growth, 1000 * big_row.clone)))
            if big_row.copy:
                speed = big_row.copy / big_row.clone
                checks.append(('%s: clone >= 10x faster than a full copy at %d GiB'
                               % (b.name, big_row.size_gib), speed >= 10, '%.0fx' % speed))
    for label, c in cache.items():
        if 'error' in c:
            checks.append(('%s: volumes from an image' % label, False, 'failed'))
            continue
        n = len(c['times'])
        checks.append(('%s: %d cache hits for %d volumes' % (label, n - 1, n),
                       c['hits'] == n - 1, '%d hits' % c['hits']))
        speed = c['times'][0] / statistics.median(c['times'][1:])
        checks.append(('%s: cached volumes >= 2x faster than the 1st' % label, speed >= 2,
                       '%.1fx' % speed))
    print('\nchecks (size-independent: under 3x from 1 GiB to the big size, or under '
          '%.0f ms,\nwhere a ratio of two times measures the host\'s load more than the '
          'backend)' % (1000 * NOISE_S))
    for name, ok, value in checks:
        print('  %-62s %-4s (%s)' % (name, 'yes' if ok else 'NO', value))
    print('\nwhole run: %.0f s' % (time.monotonic() - began))
    if args.quick:  # a smoke run: it ran end to end; its sizes are too small for the checks
        print('(--quick: the checks are informational, the exit status only says it ran)')
        return 0
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
