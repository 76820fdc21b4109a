"""Parts 2 and 3 of bench/volume_bench.py: through the real API (InProcessCloud).

The template cache (volumes from one raw image, POST to 'available') and the
data streams (PUT/GET /v1/volumes/{id}/data) against dd into the same backend
directory, with their printed tables.
"""

import contextlib
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from volume_common import GiB, MiB, Profile, chunk, run, timed

STREAM_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             'stream_client.py')


@contextlib.contextmanager
def cloud(state: str) -> Iterator[Any]:
    from oslo_config import cfg

    from gridcentric_storage import conf
    from gridcentric_storage.api import policy
    from gridcentric_storage.common import rpc
    from gridcentric_storage.db import api as db
    from gridcentric_storage.db import migration
    from tests.fixtures.services import InProcessCloud

    CONF = cfg.CONF
    conf.register_all()
    CONF([], project='gridcentric-storage', default_config_files=[])
    CONF.set_override('state_path', state)
    CONF.set_override('connection', 'sqlite:///%s/gc.sqlite' % state, group='database')
    CONF.set_override('transport_url', 'fake://')
    CONF.set_override('auth_strategy', 'noauth', group='api')
    CONF.set_override('report_interval', 1, group='compute')
    CONF.set_override('rpc_call_timeout', 120, group='compute')
    CONF.set_override('host', 'bench-host')
    CONF.set_override('virt_driver', 'fake', group='compute')
    CONF.set_override('enabled_drivers', ['file', 'rbd'], group='volume')
    CONF.set_override('hooks_dir', os.path.join(state, 'hooks.d'), group='compute')
    db.reset_engine()
    policy.reset()
    migration.db_sync(db.get_engine())
    instance = InProcessCloud('bench-host')
    try:
        yield instance
    finally:
        instance.stop()
        rpc.cleanup()
        db.reset_engine()


def settle(api: Any, kind: str, res_id: str, timeout: float = 300) -> dict[str, Any]:
    busy = ('creating', 'deleting', 'uploading', 'downloading')
    deadline = time.monotonic() + timeout
    while True:
        response = api.request('GET', '/v1/%s/%s' % (kind, res_id))
        if response.status_code == 404:
            return {'status': 'deleted'}
        item: dict[str, Any] = next(iter(response.json().values()))
        if item['status'] not in busy:
            return item
        if time.monotonic() > deadline:
            raise SystemExit('%s %s still %s after %d s' % (kind, res_id, item['status'],
                                                            timeout))
        time.sleep(0.005)


class VolumeFailed(Exception):
    """A volume ended in error; the message is its status_reason."""

    def __init__(self, volume: dict[str, Any]) -> None:
        super().__init__(volume.get('status_reason') or volume['status'])
        self.volume = volume


def api_volume(api: Any, **fields: Any) -> dict[str, Any]:
    response = api.request('POST', '/v1/volumes', json={'volume': fields})
    if response.status_code != 202:
        raise SystemExit('POST /v1/volumes: %s %s' % (response.status_code, response.text))
    volume = settle(api, 'volumes', response.json()['volume']['id'])
    if volume['status'] != 'available':
        raise VolumeFailed(volume)
    return volume


def api_delete(api: Any, volume_id: str) -> None:
    api.request('DELETE', '/v1/volumes/%s' % volume_id)
    settle(api, 'volumes', volume_id)


def template_cache(api: Any, backend: dict[str, Any], image: str, count: int
                   ) -> dict[str, Any]:
    times: list[float] = []
    ids = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            try:
                ids.append(api_volume(api, imageRef=image, backend_id=backend['id'])['id'])
            except VolumeFailed as e:
                ids.append(e.volume['id'])
                return {'error': str(e), 'times': times}
            times.append(time.perf_counter() - start)
        entries = api.request('GET', '/v1/image-cache', params={
            'backend_id': backend['id']}).json()['image_cache']
    finally:
        for volume_id in ids:
            api_delete(api, volume_id)
    return {'times': times, 'hits': sum(e['hits'] for e in entries), 'entries': len(entries)}


def _put(api: Any, path: str, source: str) -> None:
    """A client that costs the stream nothing: its body goes with sendfile (a
    Python client copying 8 KiB writes, as requests does, would be timed)."""
    conn = http.client.HTTPConnection(api.url.split('//')[1], timeout=300)
    with contextlib.closing(conn), open(source, 'rb') as f:
        conn.putrequest('PUT', path)
        for key, value in (('X-Auth-Token', 'admin:admin'), ('Content-Length',
                           str(os.fstat(f.fileno()).st_size)),
                           ('Content-Type', 'application/octet-stream')):
            conn.putheader(key, value)
        conn.endheaders()
        assert conn.sock is not None
        conn.sock.sendfile(f)
        response = conn.getresponse()
        if response.status != 200:
            raise SystemExit('PUT %s: %s %s' % (path, response.status, response.read()))
        response.read()


def _read_out(address: tuple[str, int], path: str, sink: str = 'copy'
              ) -> tuple[float, int]:
    """Seconds and bytes of a GET (``path``; ``-``: a bare TCP stream) read to its
    end by bench/stream_client.py, a process of its own."""
    proc = subprocess.Popen([sys.executable, STREAM_CLIENT, address[0], str(address[1]),
                             path, sink], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != 'ready':
        proc.kill()
        raise SystemExit('the stream client did not start')
    out, _ = proc.communicate('go\n', timeout=900)
    if proc.returncode:
        raise SystemExit('the stream client failed')
    seconds, got = out.split()
    return float(seconds), int(got)


def _get(api: Any, volume: dict[str, Any], evict: str | None = None,
         sink: str = 'copy') -> float:
    """Seconds to read the whole volume, and for it to be available again."""
    if evict:
        _evict(evict)
    os.sync()
    host, port = api.url.split('//')[1].rsplit(':', 1)
    seconds, got = _read_out((host, int(port)), '/v1/volumes/%s/data' % volume['id'],
                             sink)
    if got != volume['size'] * GiB:
        raise SystemExit('GET: %d of %d bytes' % (got, volume['size'] * GiB))
    start = time.perf_counter()
    settle(api, 'volumes', volume['id'])
    return seconds + time.perf_counter() - start


def _gc_api(api: Any, *argv: str) -> None:
    """The gc-api command, as a user runs it (its own process, noauth endpoint)."""
    local = os.path.join(os.path.dirname(sys.executable), 'gc-api')
    run([local if os.path.exists(local) else 'gc-api', '--os-auth-type', 'none',
         '--os-endpoint', api.url, *argv])


def _evict(path: str) -> None:
    """Drop one file's pages from the page cache (only its own: the host is shared)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _best(runs: int, fn: Any) -> float:
    return min(timed(fn) for _ in range(runs))  # best of: the host is shared


class FileDd:
    """dd on a backend directory; a file's pages can be dropped (cold reads)."""

    def __init__(self, directory: str, source: str) -> None:
        self.target = os.path.join(directory, 'bench-dd')
        self.source = source

    def write(self, fsync: bool) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.target)
        run(['dd', 'if=' + self.source, 'of=' + self.target, 'bs=16M',
             *(['conv=fsync'] if fsync else [])])

    def read(self, cold: bool) -> None:
        if cold:
            _evict(self.target)
        run(['dd', 'if=' + self.target, 'of=/dev/null', 'bs=16M'])

    def cleanup(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.target)


class RbdDd:
    """dd's counterpart on RBD: rbd import/export (librbd in C++) of the same bytes.
    Every write is acknowledged once stored; memstore has no page cache to drop."""

    def __init__(self, conf: str, source: str, volume_bytes: int) -> None:
        self.conf, self.source = conf, source
        # Reads: the shape of the volume a GET reads (the data, then unallocated)
        self.sparse = source + '.sparse'
        with open(source, 'rb') as f, open(self.sparse, 'wb') as out:
            out.write(f.read())
            out.truncate(volume_bytes)
        self._read_image = False

    def _rbd(self, *argv: str) -> None:
        subprocess.run(['rbd', *argv, '--no-progress', '--conf', self.conf], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)

    def write(self, fsync: bool) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._rbd('rm', 'rbd/bench-dd')
        self._rbd('import', self.source, 'rbd/bench-dd')

    def read(self, cold: bool) -> None:
        if not self._read_image:
            self._rbd('import', self.sparse, 'rbd/bench-dd-read')  # skips the zeros
            self._read_image = True
        self._rbd('export', 'rbd/bench-dd-read', '-')

    def cleanup(self) -> None:
        for name in ('bench-dd', 'bench-dd-read'):
            with contextlib.suppress(subprocess.CalledProcessError):
                self._rbd('rm', 'rbd/' + name)
        self._read_image = False


def tcp_ceiling(path: str, hops: int) -> float:
    """Seconds to carry a warm file over ``hops`` bare loopback TCP hops (sendfile,
    then splice relays) into the GET client's buffer: what the transport alone
    costs on this host, with no HTTP, API or volume."""
    from gridcentric_storage.volume import transfer_io
    size = os.path.getsize(path)
    listeners = [socket.create_server(('127.0.0.1', 0)) for _ in range(hops)]

    def serve() -> None:
        conn, _ = listeners[0].accept()
        with conn, open(path, 'rb', buffering=0) as f:
            transfer_io.copy(f, conn, size)

    def relay(i: int) -> None:
        conn, _ = listeners[i].accept()
        with conn, socket.create_connection(listeners[i - 1].getsockname()) as up:
            transfer_io.copy(up, conn, size)

    threads = [threading.Thread(target=serve)] + [
        threading.Thread(target=relay, args=(i,)) for i in range(1, hops)]
    for thread in threads:
        thread.start()
    took, _ = _read_out(listeners[-1].getsockname(), '-')
    for thread in threads:
        thread.join()
    for listener in listeners:
        listener.close()
    return took


def streams(api: Any, backend: dict[str, Any], source: str, scratch: str,
            dd: FileDd | RbdDd) -> dict[str, Any]:
    out: dict[str, Any] = {'length': os.path.getsize(source)}
    volume = api_volume(api, size=1, backend_id=backend['id'])
    data = '/v1/volumes/%s/data' % volume['id']
    path = (os.path.join(backend['options']['path'], 'volume-%s' % volume['id'])
            if isinstance(dd, FileDd) else None)
    empty = os.path.join(scratch, 'empty')
    open(empty, 'wb').close()

    def stream(fn: Any) -> Any:
        def timed_stream() -> None:
            fn()
            settle(api, 'volumes', volume['id'])
        return timed_stream

    try:
        out['put'] = _best(3, stream(lambda: _put(api, data, source)))
        out['get_bytes'] = volume['size'] * GiB
        out['get'] = min(_get(api, volume) for _ in range(3))
        out['get_cold'] = min(_get(api, volume, evict=path) for _ in range(3))
        out['get_splice'] = min(_get(api, volume, sink='splice') for _ in range(3))
        out['fixed'] = _best(3, stream(lambda: _put(api, data, empty)))
        out['cli_put'] = _best(3, stream(lambda: _gc_api(
            api, 'volume-upload', volume['id'], '--file', source)))
        out['cli_get'] = _best(3, stream(lambda: _gc_api(
            api, 'volume-download', volume['id'], '--file', '/dev/null')))
        out['cli_fixed'] = _best(3, lambda: _gc_api(api, 'volume-show', volume['id']))
    finally:
        api_delete(api, volume['id'])
    try:
        out['dd_write'] = _best(3, lambda: dd.write(False))
        out['dd_write_fsync'] = _best(3, lambda: dd.write(True))
        out['dd_read'] = _best(3, lambda: dd.read(False))
        out['dd_read_cold'] = _best(3, lambda: dd.read(True))
        if isinstance(dd, FileDd):
            dd.read(False)
            out['tcp'] = [_best(3, lambda hops=hops: tcp_ceiling(dd.target, hops))
                          for hops in (1, 2)]
    finally:
        dd.cleanup()
    return out


@contextlib.contextmanager
def ceph_cluster(scratch: str) -> Iterator[str | None]:
    """A private throw-away Ceph (its own directory and ports) for the rbd row;
    None when it cannot run here."""
    from volume_backends import CEPH_SH
    from volume_common import free_port
    env = dict(os.environ, GC_CEPH_DIR=os.path.join(scratch, 'ceph'),
               GC_CEPH_MON_PORT=str(free_port()), GC_CEPH_MON_V2_PORT=str(free_port()))
    try:
        conf = run(['bash', CEPH_SH, 'start'], env=env, timeout=300).strip()
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print('(no Ceph: %s; the rbd row is skipped)' % str(e)[:200])
        yield None
        return
    try:
        yield conf
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            run(['bash', CEPH_SH, 'stop'], env=env, timeout=300)


def rbd_streams(api: Any, profile: Profile, scratch: str, pool: bytes
                ) -> dict[str, dict[str, Any]]:
    """The rbd row: memstore keeps everything in RAM (~2 GiB), so a quarter of the
    bytes."""
    source = os.path.join(scratch, 'stream-rbd.bin')
    with open(source, 'wb') as f:
        for i in range(profile.stream_mib // 4):
            f.write(chunk(pool, 7000 + i))
    with ceph_cluster(scratch) as conf:
        if conf is None:
            return {}
        response = api.request('POST', '/v1/backends', json={'backend': {
            'name': 'bench-rbd', 'driver': 'rbd', 'options': {
                'pool': 'rbd', 'ceph_conf': conf, 'keyring_in_connection_info': True}}})
        if response.status_code != 201:
            print('(rbd backend refused: %s)' % response.text[:200])
            return {}
        return {'rbd (memstore)': streams(api, response.json()['backend'], source, scratch,
                                          RbdDd(conf, source, GiB))}


def through_api(profile: Profile, scratch: str, xfs_dir: str | None, pool: bytes,
                cache: bool = True, rbd: bool = False
                ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    state = os.path.join(scratch, 'state')
    # The image goes where the operator puts images every project may use.
    public = os.path.join(state, 'images', 'public')
    os.makedirs(public)
    image = 'template.raw'
    with open(os.path.join(public, image), 'wb') as f:
        for i in range(profile.image_data_mib):
            f.write(chunk(pool, 1000 + i))
        f.truncate(profile.image_mib * MiB)
    source = os.path.join(scratch, 'stream.bin')
    with open(source, 'wb') as f:
        for i in range(profile.stream_mib):
            f.write(chunk(pool, 5000 + i))
    caches: dict[str, dict[str, Any]] = {}
    stream: dict[str, dict[str, Any]] = {}
    with cloud(state) as api:
        dirs = [('ext4 (qcow2)', os.path.join(scratch, 'api-files'))]
        if xfs_dir:
            dirs.append(('XFS (reflink)', os.path.join(xfs_dir, 'api-files')))
        backends = {}
        for label, path in dirs:
            response = api.request('POST', '/v1/backends', json={'backend': {
                'name': 'bench-%d' % len(backends), 'driver': 'file',
                'options': {'path': path}}})
            if response.status_code != 201:
                raise SystemExit('POST /v1/backends: %s' % response.text)
            backends[label] = response.json()['backend']
        try:
            for label, backend in backends.items():
                if cache:
                    caches[label] = template_cache(api, backend, image, profile.volumes)
                stream[label] = streams(api, backend, source, scratch,
                                        FileDd(backend['options']['path'], source))
            if rbd:
                stream.update(rbd_streams(api, profile, scratch, pool))
        finally:
            api.request('POST', '/v1/image-cache/action', json={'purge': {}})
    return caches, stream


def print_part2(profile: Profile, cache: dict[str, dict[str, Any]]) -> None:
    n = profile.volumes
    print('\n2. template cache through the API: %d volumes (1 GiB) from one raw image of '
          '%d MiB (random first %d MiB), POST to available'
          % (n, profile.image_mib, profile.image_data_mib))
    print('%-16s %9s %13s %9s %9s %10s %6s' % ('backend', '1st s', 'median 2-%d' % n,
                                             '%dth s' % n, 'worst', '1st/median', 'hits'))
    for label, c in cache.items():
        t = c['times']
        if 'error' in c:
            print('%-16s FAILED after %d volumes: %s'
                  % (label, len(t), c['error'].split(': /usr/bin')[0]))
            if 'not in qcow2 format' in c['error']:
                print('%-16s   (FileDriver.copy_image_to_volume runs its qcow2 lock probe, '
                      'qemu-img info -f qcow2, on a raw reflink volume: "Image is not in '
                      'qcow2 format")' % '')
            continue
        rest = statistics.median(t[1:])
        print('%-16s %9.3f %13.3f %9.3f %9.3f %9.1fx %6d' % (
            label, t[0], rest, t[-1], max(t[1:]), t[0] / rest, c['hits']))
    print('  (1st: copy the image into a hidden cache volume + snapshot + clone of it;\n'
          '   the rest: a copy-on-write clone of the cached snapshot; hits from GET\n'
          '   /v1/image-cache for that backend, %d expected)' % (n - 1))


def mb_of(s: dict[str, Any]) -> float:
    return float(s['length'] / MiB)


def print_part3(stream: dict[str, dict[str, Any]]) -> None:
    print('\n3. streams through the API (client -> API -> data server of the owner host ->\n'
          '   volume) vs dd on the same backend directory, MiB/s')
    print('%-14s %6s %6s %5s %6s %6s %5s %6s %6s %5s %6s %5s %6s %5s' % (
        'backend', 'PUT', 'dd fs', 'ratio', 'GET c', 'dd c', 'ratio', 'GET w', 'dd w',
        'ratio', 'CLI P', 'ratio', 'CLI G', 'ratio'))
    for label, s in stream.items():
        mb = s['length'] / MiB
        put, cli_put = mb / s['put'], mb / s['cli_put']
        get, get_warm, cli_get = (s['get_bytes'] / MiB / s[k]
                                  for k in ('get_cold', 'get', 'cli_get'))
        dd_f, dd_r, dd_rc = (mb / s[k] for k in ('dd_write_fsync', 'dd_read',
                                                 'dd_read_cold'))
        print('%-14s %6.0f %6.0f %4.0f%% %6.0f %6.0f %4.0f%% %6.0f %6.0f %4.0f%% %6.0f '
              '%4.0f%% %6.0f %4.0f%%' % (
                  label, put, dd_f, 100 * put / dd_f, get, dd_rc, 100 * get / dd_rc,
                  get_warm, dd_r, 100 * get_warm / dd_r, cli_put, 100 * cli_put / dd_f,
                  cli_get, 100 * cli_get / dd_r))
    sample = next(iter(stream.values()))
    print('  PUT: %d MiB of random bytes, from the request to the volume available again;\n'
          '  the data server answers once the bytes are on disk (fsync, or qemu-nbd\'s\n'
          '  flush for qcow2), so it is set against dd conv=fsync ("dd fs"). GET c(old):\n'
          '  the whole volume (%d MiB, the rest zeros) with the volume\'s pages dropped\n'
          '  from the page cache first (fadvise), against dd reading the %d MiB file\n'
          '  likewise; GET w(arm): both from the page cache. dd bs=16M; the GET client\n'
          '  (a process of its own, as dd) recv_into()s one 16 MiB buffer, one copy per\n'
          '  byte as dd\'s read(); the PUT client sends with sendfile. The API\n'
          '  runs on the data server\'s host here, so a GET is handed to the data server\n'
          '  (one TCP hop). CLI P/G: the gc-api command (its own process) uploading the\n'
          '  file / downloading the warm volume to /dev/null, against dd fsync / dd warm.\n'
          '  Best of 3 each. Every stream also pays a fixed cost (policy, RPC to the owner\n'
          '  host, os-brick connection, qemu-img map or qemu-nbd for qcow2, status\n'
          '  moves), timed alone as an empty PUT, and the CLI its start (gc-api\n'
          '  volume-show):'
          % (sample['length'] // MiB, sample['get_bytes'] // MiB, sample['length'] // MiB))
    for label, s in stream.items():
        print('    %-14s %.2f s; gc-api start %.2f s' % (label, s['fixed'], s['cli_fixed']))
    print('  gc-api without its start (the time less a volume-show\'s), against dd:')
    for label, s in stream.items():
        put = mb_of(s) / max(s['cli_put'] - s['cli_fixed'], 1e-3)
        get = s['get_bytes'] / MiB / max(s['cli_get'] - s['cli_fixed'], 1e-3)
        print('    %-14s PUT %5.0f MiB/s (%.0f%% of dd fs), GET %5.0f MiB/s (%.0f%% of dd w)'
              % (label, put, 100 * put * s['dd_write_fsync'] / mb_of(s), get,
                 100 * get * s['dd_read'] / mb_of(s)))
    print('  GET w into a client that splices to /dev/null (no copy at all, so less\n'
          '  work than dd\'s read()):')
    for label, s in stream.items():
        splice = s['get_bytes'] / MiB / s['get_splice']
        print('    %-14s %5.0f MiB/s, %.0f%% of dd w' % (label, splice,
                                                     100 * splice * s['dd_read'] / mb_of(s)))
    print('  The same warm bytes over bare loopback TCP (sendfile, splice relays; no\n'
          '  HTTP, API or volume), the transport\'s own ceiling on this host:')
    for label, s in stream.items():
        if 'tcp' in s:
            one, two = (s['length'] / MiB / t for t in s['tcp'])
            warm = s['get_bytes'] / MiB / s['get']
            print('    %-14s one hop %5.0f, two hops %5.0f MiB/s: the GET (one hop) is at '
                  '%.0f%% of one' % (label, one, two, 100 * warm / one))
    for label, s in stream.items():
        if s['length'] != sample['length']:
            print('  %s: %d MiB put; the GET reads the whole volume, the data then\n'
                  '  unallocated space, as rbd export reads an image of that shape; dd is\n'
                  '  rbd import/export (librbd), durable when acknowledged.'
                  % (label, s['length'] // MiB))
