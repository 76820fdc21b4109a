"""A host without QEMU: volumes work, servers and live images answer 409.

A fresh Debian with only qemu-utils used to crash the compute service at
start (the KVM probe ran a missing qemu-system-x86_64). Here the binary is
really missing: a name that does not exist, or a PATH that lacks it.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import requests
from oslo_config import cfg

from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from tests.fixtures.services import InProcessCloud, wait_for

BIN = os.path.dirname(sys.executable)
ADMIN = {'X-Auth-Token': 'admin:admin'}


@pytest.fixture
def qemuless_cloud(gc_db, tmp_path):
    """The real QEMU driver, configured with a binary that is not installed."""
    conf = cfg.CONF
    conf.set_override('virt_driver', 'qemu', group='compute')
    conf.set_override('qemu_binary', 'gc-no-such-qemu', group='qemu')
    instance = InProcessCloud()
    yield instance
    instance.stop()
    conf.clear_override('qemu_binary', group='qemu')


def _available_volume(cloud, tmp_path) -> str:
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'files', 'driver': 'file', 'options': {'path': str(tmp_path / 'files')}}})
    assert response.status_code == 201, response.text
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()
    volume_id = volume['volume']['id']
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume_id)
             .json()['volume']['status'] == 'available', what='the volume')
    return volume_id


def _blessed_live_image(host: str) -> str:
    """A live image as a bless on ``host`` would have left it (its host now has no QEMU)."""
    live_image_id = str(uuid.uuid4())
    db_servers.live_image_create({
        'id': live_image_id, 'name': 'gold', 'project_id': 'admin', 'user_id': 'admin',
        'server_id': str(uuid.uuid4()), 'host': host, 'status': 'blessed',
        'memory_mb': 64, 'vcpus': 1, 'artifacts': {'disks': []}})
    return live_image_id


MESSAGE = 'No hypervisor on host test-host: gc-no-such-qemu not found'


def test_the_service_publishes_that_it_has_no_hypervisor(qemuless_cloud):
    [service] = db.service_get_all()
    assert service['capabilities'] == {'hypervisor': False,
                                       'hypervisor_reason': 'gc-no-such-qemu not found'}


def test_volumes_work_and_servers_answer_409(qemuless_cloud, tmp_path):
    cloud = qemuless_cloud
    volume_id = _available_volume(cloud, tmp_path)
    response = cloud.request('POST', '/v1/servers', json={'server': {
        'name': 'vm', 'memory_mb': 64, 'volume_id': volume_id}})
    assert response.status_code == 409, response.text
    assert MESSAGE in response.text
    assert cloud.request('GET', '/v1/servers').json()['servers'] == []

    live_image_id = _blessed_live_image('test-host')
    response = cloud.request('POST', '/v1/live-images/%s/action' % live_image_id,
                             json={'launch': {'name': 'web'}})
    assert response.status_code == 409, response.text
    assert MESSAGE in response.text
    response = cloud.request('POST', '/v2.1/servers/%s/action' % live_image_id,
                             json={'co_launch': {}})
    assert response.status_code == 409, response.text
    assert MESSAGE in response.text
    assert cloud.request('GET', '/v1/servers').json()['servers'] == []


def test_servers_go_to_the_host_that_has_a_hypervisor(qemuless_cloud, tmp_path):
    cfg.CONF.set_override('virt_driver', 'fake', group='compute')
    other = InProcessCloud('other-host')
    try:
        cloud = qemuless_cloud
        response = cloud.request('POST', '/v1/backends', json={'backend': {
            'name': 'files', 'driver': 'file', 'host': 'test-host',
            'options': {'path': str(tmp_path / 'files')}}})
        assert response.status_code == 201, response.text
        volume_id = cloud.request('POST', '/v1/volumes',
                                  json={'volume': {'size': 1}}).json()['volume']['id']
        wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume_id)
                 .json()['volume']['status'] == 'available', what='the volume')
        response = cloud.request('POST', '/v1/servers', json={'server': {
            'name': 'vm', 'memory_mb': 64, 'volume_id': volume_id}})
        assert response.status_code == 202, response.text
        assert response.json()['server']['host'] == 'other-host'
        response = cloud.request('POST', '/v1/servers', json={'server': {
            'name': 'vm2', 'memory_mb': 64, 'volume_id': volume_id,
            'availability_zone': 'nova:test-host'}})
        assert response.status_code == 409, response.text
        assert MESSAGE in response.text
    finally:
        other.stop()


# ---- the all-in-one as a user starts it, with qemu-system-x86_64 not on PATH

def _path_without(tmp_path, hidden: str) -> str:
    """A PATH that has every command of this one but ``hidden``."""
    shadow = tmp_path / 'bin'
    shadow.mkdir()
    for directory in os.environ.get('PATH', '').split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            target = os.path.join(directory, name)
            if name != hidden and not (shadow / name).exists() \
                    and os.access(target, os.X_OK) and not os.path.isdir(target):
                (shadow / name).symlink_to(target)
    return str(shadow)


def test_all_in_one_without_qemu_on_path(tmp_path):
    path = _path_without(tmp_path, 'qemu-system-x86_64')
    assert shutil.which('qemu-system-x86_64', path=path) is None
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    config = tmp_path / 'aio.conf'
    config.write_text('[DEFAULT]\nstate_path = %s\n[api]\nport = %d\n'
                      % (tmp_path / 'state', port))
    url = 'http://127.0.0.1:%d' % port
    log_path = tmp_path / 'aio.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([os.path.join(BIN, 'gridcentric-all-in-one'),
                                 '--config-file', str(config)],
                                stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PATH=path))

    def up():
        assert proc.poll() is None, log_path.read_text()
        try:
            return requests.get(url + '/v1/backends', headers=ADMIN, timeout=5).json()
        except requests.ConnectionError:
            return None
    try:
        backends = wait_for(up, timeout=60, interval=0.2, what='the all-in-one')['backends']
        assert [b['status'] for b in backends] == ['up']
        volume = requests.post(url + '/v1/volumes', json={'volume': {'size': 1}},
                               headers=ADMIN, timeout=10).json()['volume']
        wait_for(lambda: requests.get(url + '/v1/volumes/%s' % volume['id'], headers=ADMIN,
                                      timeout=10).json()['volume']['status'] == 'available',
                 what='the volume')
        response = requests.post(url + '/v1/servers', headers=ADMIN, timeout=10, json={
            'server': {'name': 'vm', 'memory_mb': 64, 'volume_id': volume['id']}})
        assert response.status_code == 409, response.text
        assert 'No hypervisor on host ' in response.text
        assert 'qemu-system-x86_64 not found' in response.text
        # The hint it prints names the real endpoint, and works as printed.
        [hint] = [line for line in log_path.read_text().splitlines()
                  if line.startswith('gridcentric-all-in-one: try: ')]
        assert '--os-endpoint %s ' % url in hint
        listed = subprocess.run(hint.split('try: ', 1)[1].split(), capture_output=True,
                                text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        assert 'default' in listed.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()
    assert 'Traceback' not in log_path.read_text()
