"""The embedded default: `gridcentric-all-in-one` as a user starts it."""

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
import requests

from tests.fixtures.services import wait_for

BIN = os.path.dirname(sys.executable)

#: The all-in-one's noauth API refuses requests without a token.
API = requests.Session()
API.headers['X-Auth-Token'] = 'admin:admin'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log_path) -> subprocess.Popen:
    log = open(log_path, 'w')
    return subprocess.Popen([os.path.join(BIN, 'gridcentric-all-in-one'), *args],
                            stdout=log, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return API.get(url + '/v1/backends', timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_all_in_one_serves_volumes_on_the_default_backend(tmp_path):
    port = _free_port()
    config = tmp_path / 'aio.conf'
    config.write_text('[DEFAULT]\nstate_path = %s\n[api]\nport = %d\n' % (tmp_path, port))
    url = 'http://127.0.0.1:%d' % port
    proc = _start(['--config-file', str(config)], tmp_path / 'aio.log')
    try:
        wait_for(lambda: _up(url), timeout=60, interval=0.2)
        backends = API.get(url + '/v1/backends', timeout=10).json()['backends']
        assert [(b['name'], b['driver'], b['status']) for b in backends] == [
            ('default', 'file', 'up')]
        assert (tmp_path / 'gridcentric.sqlite').exists()
        volume = API.post(url + '/v1/volumes', json={'volume': {'size': 1}},
                               timeout=10).json()['volume']
        wait_for(lambda: API.get(url + '/v1/volumes/%s' % volume['id'], timeout=10)
                 .json()['volume']['status'] == 'available', timeout=30)
        path = tmp_path / 'volumes' / backends[0]['id'] / ('volume-%s' % volume['id'])
        assert path.exists()
    finally:
        assert _stop(proc) == 0, (tmp_path / 'aio.log').read_text()

    # A restart keeps the state and does not register a second default backend.
    proc = _start(['--config-file', str(config)], tmp_path / 'aio2.log')
    try:
        wait_for(lambda: _up(url), timeout=60, interval=0.2)
        backends = API.get(url + '/v1/backends', timeout=10).json()['backends']
        assert [b['name'] for b in backends] == ['default']
        assert backends[0]['volume_count'] == 1
    finally:
        assert _stop(proc) == 0


def test_all_in_one_refuses_noauth_on_a_public_address(tmp_path):
    config = tmp_path / 'aio.conf'
    config.write_text('[DEFAULT]\nstate_path = %s\n[api]\nlisten = 0.0.0.0\n' % tmp_path)
    result = subprocess.run([os.path.join(BIN, 'gridcentric-all-in-one'), '--config-file',
                             str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert 'only allowed when [api] listen is a loopback address' in result.stderr
    assert 'Traceback' not in result.stderr


def test_all_in_one_without_any_config_file(tmp_path):
    default_state = '/var/lib/gridcentric-storage' if os.geteuid() == 0 else os.path.join(
        os.path.expanduser('~/.local/share'), 'gridcentric-storage')
    with socket.socket() as s:
        if s.connect_ex(('127.0.0.1', 8779)) == 0:
            pytest.skip('port 8779 is in use, so the no-config defaults cannot be tried')
    if os.path.exists(default_state):
        pytest.skip('%s exists; not touching a real installation' % default_state)
    proc = _start([], tmp_path / 'aio.log')
    try:
        wait_for(lambda: _up('http://127.0.0.1:8779'), timeout=60, interval=0.2)
        assert os.path.exists(os.path.join(default_state, 'gridcentric.sqlite'))
    finally:
        code = _stop(proc)
        shutil.rmtree(default_state, ignore_errors=True)
    assert code == 0
