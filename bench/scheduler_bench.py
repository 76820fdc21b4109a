"""How long does placing one volume take as the pool grows?

Builds synthetic pools of 10, 1,000 and 10,000 backends (mixed state, status,
role, zone, tags, capacity and cost; most of them pass), then times
``Scheduler.select`` for a realistic request with tags, a zone, a requirements
expression and a rank expression. Prints the median per pool size, the growth
ratios against the size ratios (linear scaling gives about 100 and 10), and
whether 10,000 backends fit the 30 ms target.

Run: ``PYTHONPATH=. python bench/scheduler_bench.py``
"""

import datetime
import random
import statistics
import time
from typing import Any

from gridcentric_storage.conf import CONF
from gridcentric_storage.scheduler import RequestSpec, Scheduler

SIZES = (10, 1000, 10000)
TARGET_MS = 30.0
TAGS = ('ssd', 'hdd', 'nvme', 'replicated', 'encrypted')


def make_pool(size: int, seed: int = 42) -> list[dict[str, Any]]:
    """``size`` backend dicts shaped like ``db.api.backend_get_all`` rows."""
    rng = random.Random(seed)
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    pool = []
    for i in range(size):
        total = rng.choice((1000.0, 4000.0, 16000.0, None if rng.random() < 0.02 else 2000.0))
        free = None if total is None else round(total * rng.uniform(0.0, 0.9), 1)
        thin = rng.random() < 0.5
        up = rng.random() > 0.03
        pool.append({
            'id': 'backend-%05d' % i, 'name': 'pool-%05d' % i, 'driver': 'fake',
            'options': {}, 'state': 'disabled' if rng.random() < 0.03 else 'enabled',
            'disabled_reason': 'maintenance', 'role': 'repository' if i % 20 == 0 else 'san',
            'cost': rng.randint(0, 9),
            'tags': ['ssd' if rng.random() < 0.9 else 'hdd']
            + rng.sample(TAGS[2:], rng.randint(0, 2)),
            'availability_zone': 'az1' if rng.random() < 0.95 else 'az2',
            'host': 'host-%d' % (i % 50), 'total_capacity_gb': total,
            'free_capacity_gb': free, 'max_over_subscription_ratio': 4.0 if thin else 1.0,
            'reserved_percentage': rng.choice((0, 5, 10)),
            'capabilities': {'thin_provisioning_support': thin, 'multiattach': True,
                             'storage_protocol': 'ceph'},
            'stats_updated_at': now if up else now - datetime.timedelta(minutes=10),
            'status': 'up' if up else 'down', 'volume_count': rng.randint(0, 500),
            'provisioned_capacity_gb': rng.uniform(0, 4000), 'created_at': now,
            'updated_at': now})
    return pool


def time_select(scheduler: Scheduler, request: RequestSpec, pool: list[dict[str, Any]],
                runs: int) -> tuple[float, float]:
    """Median and best wall time of ``select`` in milliseconds."""
    scheduler.select(request, pool)                     # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        scheduler.select(request, pool)
        samples.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(samples), min(samples)


def main() -> None:
    CONF([], project='gridcentric-storage', default_config_files=[])
    scheduler = Scheduler()
    request = RequestSpec.from_volume_request({
        'size': 100, 'role': 'san', 'tags': ['ssd'], 'availability_zone': 'az1',
        'capabilities': {'multiattach': True},
        'requirements': 'free_capacity_gb > 200 and cost <= 8 || "nvme" in tags',
        'rank': 'free_capacity_gb / 100 - volume_count / 10'})
    print('request: size=%d role=%s tags=%s az=%s requirements=%r rank=%r' % (
        request.size, request.role, request.tags, request.availability_zone,
        request.requirements, request.rank))
    print('%10s %12s %12s %12s' % ('backends', 'median ms', 'best ms', 'candidates'))
    timings = {}
    for size in SIZES:
        pool = make_pool(size)
        timings[size], best = time_select(scheduler, request, pool,
                                          runs=51 if size < 10000 else 31)
        placement = scheduler.select(request, pool)
        print('%10d %12.3f %12.3f %12d' % (size, timings[size], best, placement.candidates))
    print('growth: time(1000)/time(10) = %.1f (size ratio 100); '
          'time(10000)/time(1000) = %.1f (size ratio 10)'
          % (timings[1000] / timings[10], timings[10000] / timings[1000]))
    verdict = 'under' if timings[10000] < TARGET_MS else 'OVER'
    print('10,000 backends: %.2f ms, %s the %.0f ms target' % (timings[10000], verdict,
                                                              TARGET_MS))


if __name__ == '__main__':
    main()
