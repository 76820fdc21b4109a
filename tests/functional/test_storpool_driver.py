"""The storpool driver and os-brick's StorPool connector reading the real
``/etc/storpool.conf``, unpatched, against the StorPool API simulator.

No StorPool cluster can run here (tests/fixtures/storpool_sim.py), and this
machine's /etc must not change: the child process gets a private mount
namespace (``unshare -m``) where an overlay on /etc adds storpool.conf. The
connector's device, ``/dev/storpool-byid/<globalId>``, needs StorPool's kernel
module: the child checks the path it is given and the attachment the cluster
records, not bytes (the conformance suite reads those through the simulator).
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.fixtures import storpool as sp_fixture
from tests.fixtures.storpool_sim import Cluster, Simulator

CHILD = textwrap.dedent('''
    import json, subprocess, sys, uuid
    upper, work = sys.argv[1:3]
    subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o',
                    f'lowerdir=/etc,upperdir={upper},workdir={work}', '/etc'], check=True)
    from os_brick.initiator import connector
    from gridcentric_storage import conf
    from gridcentric_storage.volume.drivers.storpool import StorPoolDriver
    from gridcentric_storage.volume.objects import VolumeRef
    conf.register_all()   # as a service does
    driver = StorPoolDriver('b1', 'sp', {'template': 'ssd'})
    driver.do_setup(None)
    driver.check_for_setup_error()
    volume = VolumeRef({'id': str(uuid.uuid4()), 'size': 1})
    driver.create_volume(volume)
    info = driver.initialize_connection(volume, {'host': sys.argv[3]})
    brick = connector.InitiatorConnector.factory('STORPOOL', None)
    device = brick.connect_volume(info['data'])
    print(json.dumps({'volume': volume.id, 'connection': info, 'device': device,
                      'stats': driver.get_volume_stats(refresh=True)}))
    brick.disconnect_volume(info['data'], device)
''')


def test_driver_and_connector_read_etc_storpool_conf(tmp_path: Any) -> None:
    sp_fixture.client_or_skip()
    if os.geteuid() != 0 or not shutil.which('unshare'):
        pytest.skip('needs root and unshare(1) for a private mount namespace')
    token = secrets.token_hex(8)
    sim = Simulator(Cluster(str(tmp_path / 'byid'), templates=[
        {'name': 'ssd', 'replication': 2, 'iops': 700}]), token).start()
    try:
        upper, work = tmp_path / 'upper', tmp_path / 'work'
        work.mkdir()
        sp_fixture.write_conf(upper, sim.port, token, {'peer-host': 12})
        script = tmp_path / 'child.py'
        script.write_text(CHILD)
        env = {k: v for k, v in os.environ.items() if not k.startswith('SP_')}
        proc = subprocess.run(['unshare', '-m', '--', sys.executable, str(script), str(upper),
                               str(work), 'peer-host'], capture_output=True, text=True,
                              timeout=120, env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        name = f"os--volume-{out['volume']}"
        gid = sim.cluster.volume(name)['globalId']
        assert out['connection'] == {'driver_volume_type': 'storpool', 'data': {
            'client_id': 12, 'volume': out['volume'], 'access_mode': 'rw',
            'volume_id': out['volume']}}
        # the connector attached it to its own host (SP_OURID of its section)
        assert out['device'] == {'type': 'block', 'path': f'/dev/storpool-byid/{gid}'}
        attach = [b for _, call, b in sim.calls if call == 'VolumesReassignWait']
        assert attach[0] == {'reassign': [{'volume': name, 'rw': [str(sp_fixture.OUR_ID)]}]}
        assert sim.cluster.attachments() == []      # and detached it again
        assert (out['stats']['storpool_template'], out['stats']['storpool_iops']) == (
            'ssd', 700)
        assert sim.cluster.volume(name)['templateName'] == 'ssd'
    finally:
        sim.stop()
