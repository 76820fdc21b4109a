"""The operator's flow with ``gc-api`` on the real Nova stack of tools/nova.sh.

Keystone credentials only (an openrc): gc-api finds Nova's endpoint in the
catalog for its live-image commands, and what it makes is Nova's own.
"""

import json
import os
import subprocess
import sys
from typing import Any

from tests.fixtures.services import wait_for
from tests.functional.nova import conftest as stack

stack.require_stack()

GC_API = os.path.join(os.path.dirname(sys.executable), 'gc-api')


def gc_api(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith('OS_ENDPOINT')}
    environ.pop('OS_GRIDCENTRIC_SERVICE_TYPE', None)
    return subprocess.run([GC_API, *args], env=dict(environ, **env), capture_output=True,
                          text=True, timeout=600, check=False)


def ok_json(result: subprocess.CompletedProcess) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_bless_launch_list_delete_discard(admin: Any) -> None:
    source = stack.boot(admin, 'gc-api-src')
    try:
        blessed = ok_json(gc_api('--json', 'bless', 'gc-api-src', '--name', 'gc-api-gold',
                                 '--wait'))
        assert (blessed['name'], blessed['status']) == ('gc-api-gold', 'BLESSED')
        assert blessed['metadata'] == {'blessed_from': source.id}
        clones = ok_json(gc_api('--json', 'launch', 'gc-api-gold', '--name', 'gc-api-web',
                                '--num-instances', '2', '--wait'))
        assert [c['name'] for c in clones] == ['gc-api-web'] * 2
        ids = {c['id'] for c in clones}
        # Nova's own records: listed, ACTIVE, and deleted by Nova
        listed = {s.id: s for s in admin.servers.list(search_opts={'name': '^gc-api-web$'})}
        assert set(listed) == ids and all(s.status == 'ACTIVE' for s in listed.values())
        assert {c['id'] for c in ok_json(gc_api('--json', 'list-launched',
                                                'gc-api-gold'))} == ids
        assert [i['id'] for i in ok_json(gc_api('--json', 'list-blessed', 'gc-api-src'))] == [
            blessed['id']]
        exported = gc_api('live-image-export', 'gc-api-gold')
        assert exported.returncode == 0, exported.stderr
        imported = ok_json(subprocess.run(
            [GC_API, '--json', 'live-image-import', '-'], input=exported.stdout,
            env={k: v for k, v in os.environ.items() if not k.startswith('OS_ENDPOINT')},
            capture_output=True, text=True, timeout=600, check=False))
        assert (imported['name'], imported['status']) == ('gc-api-gold', 'BLESSED')
        # With the live image store, an import is published in the background and a
        # discard is refused until that ends ("wait until its publish finishes").
        if os.environ.get('GC_TEST_CEPH_CONF'):
            wait_for(lambda: admin.client.get('/servers/%s' % imported['id'])[1]['server']
                     .get('publish_status') in ('published', 'error'), timeout=300,
                     interval=1, what='the imported live image to be published')
        discarded = gc_api('discard', imported['id'], '--wait')
        assert discarded.returncode == 0, discarded.stderr
        refused = gc_api('discard', 'gc-api-gold')
        assert refused.returncode == 1 and refused.stderr.count('\n') == 1, refused
        assert '2 server(s) launched from it' in refused.stderr
        for clone_id in ids:
            stack.delete(admin, clone_id)
        assert gc_api('discard', 'gc-api-gold', '--wait').returncode == 0
        assert not os.path.exists(os.path.join(stack.live_images_path(), blessed['id']))
        assert 'num-instances' in gc_api('capabilities').stdout.split()
    finally:
        stack.delete(admin, source.id)


def test_mistakes_are_one_line(admin: Any) -> None:
    for args, text in ((('bless', 'no-such-server'), "No server or live image"),
                       (('launch',), 'name the live image'),
                       (('live-image-list',), 'BLESSED')):
        result = gc_api(*args)
        assert result.returncode == 1, result
        assert result.stderr.count('\n') == 1 and 'Traceback' not in result.stderr
        assert text in result.stderr, result.stderr


def test_a_member_cannot_reach_the_admins_server_or_live_image(admin: Any) -> None:
    source = stack.boot(admin, 'gc-api-private')
    try:
        member = {'OS_USERNAME': os.environ['GC_NOVA_MEMBER_USERNAME'],
                  'OS_PASSWORD': os.environ['GC_NOVA_MEMBER_PASSWORD'],
                  'OS_PROJECT_NAME': os.environ['GC_NOVA_MEMBER_PROJECT_NAME']}
        refused = gc_api('bless', source.id, **member)
        assert refused.returncode == 1 and 'No server or live image' in refused.stderr
        blessed = ok_json(gc_api('--json', 'bless', source.id, '--wait'))
        for command in ('list-launched', 'discard', 'launch'):
            refused = gc_api(command, blessed['id'], **member)
            assert refused.returncode == 1, refused
            assert 'No server or live image' in refused.stderr, refused.stderr
        wait_for(lambda: gc_api('discard', blessed['id']).returncode == 0, 60, interval=1,
                 what='the live image to be discarded')
    finally:
        stack.delete(admin, source.id)
