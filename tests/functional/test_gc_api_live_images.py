"""`gc-api` live-image commands and the `gridcentric` Python manager, real API.

The compute service uses the fake virt driver here (the QEMU paths are in
test_live_images_qemu.py); what is checked is the CLI and client behaviour,
except for the export/import round trip, which runs a real QEMU guest.
"""

import json
import os
import stat
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


def test_export_import_of_a_real_qemu_live_image_keeps_its_memory(tmp_path):
    """co_export, discard of the original, co-import-server, co_launch: the clone
    resumes the exported memory (its boot token, its counter) under real QEMU."""
    from tests.fixtures import guest
    from tests.fixtures.services import wait_for
    from tests.functional.test_live_images_qemu import AllInOne

    if guest.missing() is not None:
        pytest.skip(guest.missing() or '')
    aio = AllInOne(tmp_path)
    aio.start()
    try:
        source = aio.boot()
        token = guest.boot_token(aio.console(source['id']))
        before = guest.counters(aio.console(source['id']))[-1][0]
        blessed = aio.call('POST', '/v2.1/servers/%s/action' % source['id'],
                           json={'co_bless': {'name': 'gold'}}).json()[0]
        wait_for(lambda: aio.live_image(blessed['id'])['status'] == 'blessed', timeout=60)
        after = guest.counters(aio.console(source['id']))[-1][0]
        document = aio.call('POST', '/v2.1/servers/%s/action' % blessed['id'],
                            json={'co_export': {}}).json()
        assert aio.call('DELETE', '/v1/servers/%s' % source['id']).status_code == 204
        assert aio.call('POST', '/v2.1/servers/%s/action' % blessed['id'],
                        json={'co_discard': {}}).status_code == 200
        wait_for(lambda: aio.live_image(blessed['id'])['status'] == 'gone', timeout=60)

        imported = aio.call('POST', '/v2.1/co-import-server', json={'data': document})
        assert imported.status_code == 200, imported.text
        image_id = imported.json()['server']['id']
        ram = os.path.join(aio.state, 'live-images', image_id, 'ram')
        assert stat.S_IMODE(os.stat(ram).st_mode) == 0o444
        clone = aio.call('POST', '/v2.1/servers/%s/action' % image_id,
                         json={'co_launch': {'name': 'copy'}}).json()[0]
        assert aio.settled_server(clone['id'])['status'] == 'ACTIVE'
        wait_for(lambda: len(guest.counters(aio.console(clone['id']))) >= 12, timeout=120,
                 interval=0.5)
        text = aio.console(clone['id'])
        assert 'BOOT-TOKEN' not in text and token in guest.tokens(text)
        assert before <= guest.counters(text)[0][0] <= after + 1
        assert aio.call('DELETE', '/v1/servers/%s' % clone['id']).status_code == 204
        wait_for(lambda: aio.server(clone['id'])['status'] == 'DELETED', timeout=60)
    finally:
        aio.stop()
