"""Where the time of one clone launch through the REST API goes, QEMU aside.

``gridcentric-all-in-one`` with the fake virt driver (``[compute] virt_driver
= fake``: the driver's launch costs nothing, so what is left is the API, the
bus, the database and the compute manager), one live image blessed from a
kernel-booted server, then ``--count`` launches of one clone, one after the
other, each deleted before the next. Per launch:

* POST answered: ``POST /v1/live-images/{id}/action {"launch": ...}`` sent
  until its 202 is read;
* compute side: the clone's ``extra.workflow_seconds`` (the compute
  manager's own clock from the cast's arrival: ``before_driver`` are the
  steps before the virt driver is called, ``total`` up to the ACTIVE write);
* ACTIVE seen: POST sent until the bench, reading the service's SQLite file
  every 0.5 ms, sees the row ``ACTIVE``;
* bus and commit (derived): ACTIVE seen - POST answered - compute total,
  the cast's wait for its listener plus the ACTIVE commit (the cast is sent
  before the POST answers, so this can be below zero).

Median and p90 of each. A before/after comparison is two runs: check out the
older tree elsewhere and run this file with ``PYTHONPATH`` naming it (the
service is started from this interpreter's directory and imports from
``PYTHONPATH`` first); ``--transport fake://`` shows the polling bus alone.

Run: ``PYTHONPATH=. .venv/bin/python bench/api_launch_bench.py [--count 30]``
"""

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import requests

HEADERS = {'X-Auth-Token': 'admin:admin'}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit('timed out waiting for %s' % what)
        time.sleep(interval)


class Service:
    """gridcentric-all-in-one over a state directory of its own, fake virt driver."""

    def __init__(self, state: str, transport: str | None) -> None:
        with socket.socket() as sock:
            sock.bind(('127.0.0.1', 0))
            self.port = int(sock.getsockname()[1])
        self.db_path = os.path.join(state, 'gridcentric.sqlite')
        config = os.path.join(state, 'aio.conf')
        with open(config, 'w') as f:
            f.write('[DEFAULT]\nstate_path = %s\n%s[api]\nport = %d\n'
                    '[compute]\nvirt_driver = fake\nreport_interval = 1\n'
                    % (state, 'transport_url = %s\n' % transport if transport else '',
                       self.port))
        public = os.path.join(state, 'images', 'public')
        os.makedirs(public)
        for name in ('vmlinuz', 'initrd.img'):
            with open(os.path.join(public, name), 'wb') as f:
                f.write(b'\0' * 4096)
        self.log = open(os.path.join(state, 'aio.log'), 'w')
        self.proc = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), 'gridcentric-all-in-one'),
             '--config-file', config], stdout=self.log, stderr=subprocess.STDOUT)
        self.http = requests.Session()
        wait_for(self.up, 120, 'gridcentric-all-in-one to answer', 0.2)
        self.db = sqlite3.connect('file:%s?mode=ro' % self.db_path, uri=True,
                                  isolation_level=None, check_same_thread=False)

    def up(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit('gridcentric-all-in-one exited; see %s' % self.log.name)
        try:
            return bool(self.call('GET', '/v1/servers').status_code == 200)
        except requests.ConnectionError:
            return False

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.http.request(method, 'http://127.0.0.1:%d%s' % (self.port, path),
                                 headers=HEADERS, timeout=60, **kwargs)

    def row(self, server_id: str) -> tuple[str, str] | None:
        """(status, extra) of the server's row, read from the file, not the API."""
        return self.db.execute('SELECT status, extra FROM servers WHERE id = ?',
                               (server_id,)).fetchone()

    def stop(self) -> None:
        self.db.close()
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.log.close()


def live_image(service: Service) -> str:
    """A server booted from the store's (dummy) kernel, blessed; the live image id."""
    response = service.call('POST', '/v1/servers', json={'server': {
        'name': 'template', 'memory_mb': 256, 'kernel': 'vmlinuz',
        'initrd': 'initrd.img', 'cmdline': 'console=ttyS0'}})
    if response.status_code != 202:
        raise SystemExit('server refused: %s' % response.text)
    server_id = response.json()['server']['id']
    wait_for(lambda: (service.row(server_id) or ('',))[0] == 'ACTIVE', 60, 'the server', 0.05)
    image = service.call('POST', '/v1/live-images',
                         json={'live_image': {'server_id': server_id}}).json()['live_image']
    wait_for(lambda: service.call('GET', '/v1/live-images/%s' % image['id']).json()
             ['live_image']['status'] == 'blessed', 60, 'the bless', 0.05)
    return str(image['id'])


def launch_once(service: Service, image_id: str) -> dict[str, float]:
    start = time.monotonic()
    response = service.call('POST', '/v1/live-images/%s/action' % image_id,
                            json={'launch': {'name': 'bench'}})
    answered = time.monotonic()
    if response.status_code != 202:
        raise SystemExit('launch refused: %s' % response.text)
    clone_id = response.json()['servers'][0]['id']

    def settled() -> tuple[str, str] | None:
        row = service.row(clone_id)
        return row if row and row[0] in ('ACTIVE', 'ERROR') else None
    status, extra = wait_for(settled, 60, 'the clone', 0.0005)
    seen = time.monotonic()
    if status != 'ACTIVE':
        raise SystemExit('the clone went to %s' % status)
    took = json.loads(extra).get('workflow_seconds') or {}
    service.call('DELETE', '/v1/servers/%s' % clone_id)
    wait_for(lambda: service.row(clone_id) is None, 60, 'the clone to go', 0.01)
    return {'post': answered - start, 'active': seen - start,
            'before_driver': float(took.get('before_driver', 0.0)),
            'compute': float(took.get('total', 0.0)),
            'bus': (seen - start) - (answered - start) - float(took.get('total', 0.0))}


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=30, help='launches measured')
    parser.add_argument('--warmup', type=int, default=3, help='launches not measured')
    parser.add_argument('--transport', help='transport_url (default: the service\'s)')
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix='gc-api-bench-', dir='/tmp')
    try:
        service = Service(state, args.transport)
        try:
            image_id = live_image(service)
            for _ in range(args.warmup):
                launch_once(service, image_id)
            runs = [launch_once(service, image_id) for _ in range(args.count)]
        finally:
            service.stop()
        with open(os.path.join(state, 'aio.log')) as f:
            errors = [line for line in f if ' ERROR ' in line]
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print('one clone through the REST API, fake virt driver, %d launches (%d CPUs, '
          'load %.2f)' % (len(runs), os.cpu_count() or 0, os.getloadavg()[0]))
    print('%-52s %9s %9s' % ('', 'median', 'p90'))
    for key, label in (('post', 'POST answered'),
                       ('before_driver', 'compute: cast arrived -> driver called'),
                       ('compute', 'compute: cast arrived -> ACTIVE written'),
                       ('bus', 'bus + commit (derived; see the docstring)'),
                       ('active', 'POST sent -> ACTIVE seen')):
        values = [r[key] * 1000 for r in runs]
        print('%-52s %7.1fms %7.1fms' % (label, statistics.median(values), p90(values)))
    if errors:
        print('the service logged %d errors, e.g. %s' % (len(errors), errors[0].strip()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
