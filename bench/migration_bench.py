"""How fast does a host-assisted volume migration move the bytes, next to ``dd``?

One run, through the real API (InProcessCloud, in-process compute service
over fake:// RPC), on this host:

1. A 1 GiB volume on a ``file`` backend (ext4, qcow2 mode) is filled with
   random bytes (PUT /v1/volumes/{id}/data), then migrated to a second
   ``file`` backend on the same filesystem: timed from the POST to the volume
   being ``available`` on the destination (create of the destination, the
   copy through os-brick and the destination's data server, the switch).
   Beside it: ``dd bs=16M conv=fsync`` of a raw file of the same bytes from
   the first backend's directory to the second's.
2. The same volume migrated from that ``file`` backend to ``rbd`` (the Ceph
   of GC_TEST_CEPH_CONF, else a private throw-away one from tools/ceph.sh),
   beside ``rbd import`` (librbd in C++) of the same bytes.

``--force-host-copy`` makes no difference here (file and file->rbd have no
driver-assisted path); it is what a rbd->rbd move within one cluster avoids.
No assertions: the ratios are printed for the reader.

Run: ``.venv/bin/python bench/migration_bench.py``
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'bench'))

from volume_api_bench import ceph_cluster, cloud  # noqa: E402
from volume_common import GiB, MiB, chunk, random_pool, run  # noqa: E402

POLL = 0.02


def _ok(response: Any, code: int) -> Any:
    if response.status_code != code:
        raise SystemExit('%s %s: %s' % (response.request.method, response.url,
                                        response.text[:300]))
    return response.json() if response.content else None


def _backend(api: Any, name: str, driver: str, options: dict[str, Any]) -> dict[str, Any]:
    body = {'backend': {'name': name, 'driver': driver, 'options': options}}
    return _ok(api.request('POST', '/v1/backends', json=body), 201)['backend']


def _settled(api: Any, volume_id: str, away: tuple[str, ...]) -> dict[str, Any]:
    while True:
        volume = _ok(api.request('GET', '/v1/volumes/%s' % volume_id), 200)['volume']
        if volume['status'] not in away:
            return volume
        time.sleep(POLL)


def migrate(api: Any, volume_id: str, backend: dict[str, Any]) -> float:
    """Seconds from the POST to the volume settled on ``backend``."""
    started = time.perf_counter()
    _ok(api.request('POST', '/v1/volumes/%s/action' % volume_id,
                    json={'migrate': {'backend': backend['id']}}), 202)
    volume = _settled(api, volume_id, ('migrating',))
    took = time.perf_counter() - started
    if volume['backend_id'] != backend['id']:
        raise SystemExit('migration to %s failed: %s' % (backend['name'],
                                                         volume['status_reason']))
    return took


def timed_run(argv: list[str]) -> float:
    os.sync()
    started = time.perf_counter()
    run(argv)
    return time.perf_counter() - started


@contextlib.contextmanager
def ceph(scratch: str) -> Iterator[str | None]:
    shared = os.environ.get('GC_TEST_CEPH_CONF')
    if shared and os.path.isfile(shared):
        yield shared
        return
    with ceph_cluster(scratch) as conf:
        yield conf


def rate(seconds: float | None, size: int) -> str:
    return '%8s' % ('n/a' if not seconds else '%.0f' % (size / MiB / seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--no-rbd', action='store_true', help='Skip the file -> rbd row.')
    args = parser.parse_args()
    warnings.simplefilter('ignore')
    size = GiB
    pool = random_pool()
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix='gc-migration-bench-') as scratch:
        payload = os.path.join(scratch, 'one', 'bench-dd-source.raw')
        os.makedirs(os.path.dirname(payload))
        with open(payload, 'wb') as f:
            for i in range(size // MiB):
                f.write(chunk(pool, i))
        os.makedirs(os.path.join(scratch, 'state'))
        with cloud(os.path.join(scratch, 'state')) as api:
            one = _backend(api, 'one', 'file', {'path': os.path.join(scratch, 'one')})
            two = _backend(api, 'two', 'file', {'path': os.path.join(scratch, 'two')})
            volume = _ok(api.request('POST', '/v1/volumes', json={'volume': {
                'size': 1, 'backend_id': one['id']}}), 202)['volume']
            _settled(api, volume['id'], ('creating',))
            with open(payload, 'rb') as f:
                _ok(api.request('PUT', '/v1/volumes/%s/data' % volume['id'], data=f), 200)
            _settled(api, volume['id'], ('downloading',))

            moved = migrate(api, volume['id'], two)
            dd = timed_run(['dd', 'if=' + payload, 'of=' + os.path.join(scratch, 'two',
                                                                        'bench-dd'),
                            'bs=16M', 'conv=fsync'])
            os.unlink(os.path.join(scratch, 'two', 'bench-dd'))
            rows.append(('file -> file (ext4 qcow2)', moved, dd))

            if not args.no_rbd:
                with ceph(scratch) as conf:
                    if conf is None:
                        rows.append(('file -> rbd', 0.0, None))
                    else:
                        rbd = _backend(api, 'ceph', 'rbd', {
                            'pool': 'rbd', 'ceph_conf': conf,
                            'keyring_in_connection_info': True})
                        moved = migrate(api, volume['id'], rbd)
                        # memstore holds ~2 GiB: the volume goes before dd's copy
                        api.request('DELETE', '/v1/volumes/%s' % volume['id'])
                        with contextlib.suppress(SystemExit):
                            while api.request('GET', '/v1/volumes/%s'
                                              % volume['id']).status_code != 404:
                                time.sleep(POLL)
                        name = 'rbd/gc-migration-bench-%d' % os.getpid()
                        imported = timed_run(['rbd', 'import', '--no-progress', '--conf',
                                              conf, payload, name])
                        subprocess.run(['rbd', 'rm', '--no-progress', '--conf', conf, name],
                                       capture_output=True, check=False)
                        rows.append(('file -> rbd', moved, imported))

    print('migration of a 1 GiB volume of random bytes, POST to available, beside dd '
          '(file) or rbd import (rbd) of the same bytes between the same places')
    print('%-26s %9s %9s %9s %9s %7s' % ('', 'migrate s', 'MiB/s', 'dd s', 'MiB/s',
                                         'ratio'))
    for label, moved, baseline in rows:
        if not moved:
            print('%-26s skipped (no Ceph here)' % label)
            continue
        ratio = '%6.0f%%' % (100 * baseline / moved) if baseline else '    n/a'
        print('%-26s %9.2f %s %9s %s %s' % (label, moved, rate(moved, size),
                                            '%.2f' % baseline if baseline else 'n/a',
                                            rate(baseline, size), ratio))


if __name__ == '__main__':
    main()
