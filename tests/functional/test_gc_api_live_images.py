"""`gc-api` live-image commands and the `gridcentric` Python manager, real API.

The compute service uses the fake virt driver here (the QEMU paths are in
test_live_images_qemu.py); what is checked is the CLI and client behaviour.
"""

import json
import subprocess

import pytest
from keystoneauth1 import noauth, session

from gridcentric_storage import client
from tests.fixtures.images import store_file
from tests.fixtures.services import gc_api


@pytest.fixture(autouse=True)
def kernel(gc_conf):
    """A kernel in the public image store (the fake virt driver boots nothing)."""
    store_file('vmlinuz', b'kernel')


def ok_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_bless_launch_discard(cloud):
    server = ok_json(gc_api(cloud, '--json', 'server-create', 'tmpl', '--memory-mb', '256',
                            '--kernel', 'vmlinuz', '--wait'))
    assert server['status'] == 'ACTIVE'
    image = ok_json(gc_api(cloud, '--json', 'bless', 'tmpl', 'gold', '--wait'))
    assert (image['status'], image['name'], image['server_id']) == (
        'blessed', 'gold', server['id'])
    clones = ok_json(gc_api(cloud, '--json', 'launch', '--live-image', 'gold', 'web',
                            '--num-instances', '2', '--params', 'role=web', '--wait'))
    assert [c['name'] for c in clones] == ['web', 'web']  # Cobalt's: the name, unchanged
    assert all(c['status'] == 'ACTIVE' for c in clones)
    listed = ok_json(gc_api(cloud, '--json', 'list-launched', 'gold'))
    assert sorted(c['id'] for c in listed) == sorted(c['id'] for c in clones)
    blessed = ok_json(gc_api(cloud, '--json', 'live-image-list', 'tmpl'))
    assert [i['id'] for i in blessed] == [image['id']]

    refused = gc_api(cloud, 'discard', 'gold')
    assert refused.returncode == 1 and refused.stderr.count('\n') == 1
    assert '2 server(s) launched from it' in refused.stderr
    assert gc_api(cloud, 'server-delete', *[c['id'] for c in clones],
                  '--wait').returncode == 0
    assert gc_api(cloud, 'discard', 'gold', '--wait').returncode == 0
    assert ok_json(gc_api(cloud, '--json', 'live-image-list')) == []
    assert 'num-instances' in gc_api(cloud, 'capabilities').stdout
    assert 'booted %s (tmpl)' % server['id'] in gc_api(cloud, 'server-console', 'tmpl').stdout


def test_cli_errors(cloud):
    for args, text in [(('bless', 'nothing'), "No server with a name or ID of 'nothing'"),
                       (('launch', '--live-image', 'nothing'), 'No liveimage'),
                       (('launch', '--live-image', 'x', '--params', 'novalue'), None)]:
        result = gc_api(cloud, *args)
        assert result.returncode == 1, result
        assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
        if text:
            assert text in result.stderr, result.stderr


def test_python_manager_reads_like_cobalts(cloud):
    nova = client.get_client(session.Session(auth=noauth.NoAuth(endpoint=cloud.url)))
    server = nova.gc_servers.wait(nova.gc_servers.create('t', 256, kernel='vmlinuz'))
    blessed = nova.gridcentric.bless(server, name='snap')
    assert blessed.status in ('BUILD', 'BLESSED')
    assert blessed.metadata == {'blessed_from': server.id}
    nova.gridcentric.wait(blessed)
    first = nova.gridcentric.launch(blessed, num_instances=2, user_data=b'#cloud-config\n')
    assert first.metadata == {'launched_from': blessed.id}
    assert len(nova.gridcentric.list_launched(blessed)) == 2
    assert [b.id for b in nova.gridcentric.list_blessed(server)] == [blessed.id]
    assert 'bless-name' in nova.gridcentric.capabilities()
