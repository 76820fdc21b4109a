"""An operator's whole flow with Cobalt's clients on a real Nova (tools/nova.sh).

Everything goes through Nova's own endpoint with Keystone tokens: the test
guest boots as a Nova server, Cobalt's client (the ``CobaltManager`` that
copies its wire behaviour) blesses it through the gridcentric filter in
nova-api, launches three clones that Nova itself lists, and the clones'
consoles (Nova's ``os-getConsoleOutput``) show the blessed guest's memory
going on. Deleting through Nova removes their domains, discarding removes the
live image's files; another project's member neither blesses nor sees any of
it; killing gridcentric-compute in the middle of a bless leaves the Nova
server running and the live image in error. The stack publishes live images to
the test Ceph (its ``[live_image_store]``): a clone launched where the live
image's directory is absent resumes from the published copy, and discard
removes that copy.
"""

import configparser
import functools
import os
import signal
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.nova.conftest import (
    active,
    boot,
    console,
    delete,
    domain_name,
    gone,
    live_images_path,
    nova_sh,
    pidfile,
    require_stack,
)
from tests.unit.api.test_cobalt_clients import CobaltManager

require_stack('GC_NOVA_GC_CONFIG', 'GC_NOVA_DIR')

CLONES = 3
BLESS_TIMEOUT = 120
LAUNCH_TIMEOUT = 180
PUBLISH_TIMEOUT = 120
STORE_CONF = os.environ.get('GC_NOVA_STORE_CEPH_CONF')


def store_names(live_image_id: str) -> set[str]:
    """The RBD images and RADOS objects of the live image in the stack's Ceph pool."""
    names = set()
    for tool in (['rbd', 'ls'], ['rados', 'ls']):
        out = subprocess.run([tool[0], '--conf', str(STORE_CONF), '-p', 'rbd', *tool[1:]],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        names |= {n for n in out.split() if live_image_id in n and not n.startswith('rbd_')}
    return names


def store_root() -> str:
    """Where gridcentric-compute mounts and caches published live images."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.environ['GC_NOVA_GC_CONFIG'])
    return parser['live_image_store']['mount_root']


def published(client: Any, live_image_id: str) -> dict[str, Any] | None:
    view = live_image(client, live_image_id)
    if view.get('publish_status') == 'error':
        raise AssertionError('publish failed: %s' % view.get('publish_reason'))
    return view if view.get('publish_status') == 'published' else None


def cobalt_of(client: Any) -> CobaltManager:
    return CobaltManager(client)


def live_image(client: Any, live_image_id: str) -> dict[str, Any]:
    """The live image as Cobalt's clients read it: a server on Nova's endpoint."""
    return client.client.get('/servers/%s' % live_image_id)[1]['server']  # type: ignore


def settled(client: Any, live_image_id: str) -> dict[str, Any] | None:
    image = live_image(client, live_image_id)
    return None if image['status'] == 'BUILD' or image.get('OS-EXT-STS:task_state') else image


def console_counting(client: Any, server_id: str, lines: int) -> str | None:
    """The server's console once it shows ``lines`` counter lines and a token
    (the guest re-prints its boot token every 10th counter)."""
    text = console(client, server_id)
    return text if len(guest.counters(text)) >= lines and guest.tokens(text) else None


def counted_past(client: Any, server_id: str, n: int) -> bool:
    found = guest.counters(console(client, server_id))
    return bool(found) and found[-1][0] > n


def discard_quietly(client: Any, live_image_id: str) -> None:
    """Clean-up after a failed test: discard unless already gone."""
    from novaclient import exceptions as nova_exc

    try:
        cobalt_of(client).discard(live_image_id)
    except nova_exc.NotFound:
        pass


def http_status(call: Any) -> int | None:
    """The HTTP status of the error ``call`` raised (200 when it raised none)."""
    try:
        call()
    except Exception as e:
        return getattr(e, 'code', None)
    return 200


@pytest.fixture(scope='module')
def source(admin: Any) -> Iterator[dict[str, Any]]:
    """vm1, booted through Nova, counting on its console."""
    server = boot(admin, 'vm1')
    try:
        text = wait_for(functools.partial(console_counting, admin, server.id, 3), 120,
                        interval=0.5, what='vm1 to count')
        token = guest.boot_token(text)
        assert token, text
        yield {'id': server.id, 'token': token}
    finally:
        delete(admin, server.id)


@pytest.fixture(scope='module')
def blessed(admin: Any, source: dict[str, Any]) -> Iterator[dict[str, Any]]:
    before = guest.counters(console(admin, source['id']))[-1][0]
    [image] = cobalt_of(admin).bless(source['id'], name='gold')
    done = wait_for(lambda: settled(admin, image.id), BLESS_TIMEOUT, interval=0.5,
                    what='the bless to finish')
    # the guest's RAM was saved between these two counters
    after = guest.counters(console(admin, source['id']))[-1][0]
    try:
        yield {'id': image.id, 'view': done, 'before': before, 'after': after}
    finally:
        discard_quietly(admin, image.id)


@pytest.fixture(scope='module')
def clones(admin: Any, blessed: dict[str, Any]) -> Iterator[list[str]]:
    launched = cobalt_of(admin).launch(blessed['id'], name='web', num_instances=CLONES)
    ids = [c.id for c in cobalt_of(admin).list_launched(blessed['id'])]
    try:
        assert launched and len(ids) == CLONES, (launched, ids)
        for server_id in ids:
            wait_for(functools.partial(active, admin, server_id), LAUNCH_TIMEOUT,
                     interval=0.5, what='clone %s to become ACTIVE' % server_id)
        yield ids
    finally:
        for server_id in ids:   # what a failed test left
            if not gone(admin, server_id):
                delete(admin, server_id)


def test_bless_makes_a_live_image_and_the_server_goes_on(
        admin: Any, source: dict[str, Any], blessed: dict[str, Any], libvirt_conn: Any) -> None:
    view = blessed['view']
    assert view['status'] == 'BLESSED' and view['name'] == 'gold', view
    assert view['metadata'].get('blessed_from') == source['id'], view
    cobalt = cobalt_of(admin)
    assert [b.id for b in cobalt.list_blessed(source['id'])] == [blessed['id']]
    assert cobalt.list_launched(blessed['id']) == []
    assert {'user-data', 'launch-name', 'num-instances'} <= set(cobalt.capabilities())
    # the source stays a running Nova server and keeps counting
    assert active(admin, source['id'])
    assert libvirt_conn.lookupByUUIDString(source['id']).isActive()
    wait_for(functools.partial(counted_past, admin, source['id'], blessed['before'] + 3), 60,
             interval=0.5, what='vm1 to keep counting after the bless')
    assert os.path.isdir(os.path.join(live_images_path(), blessed['id']))


def test_another_projects_member_cannot_bless_or_see(
        admin: Any, member: Any, source: dict[str, Any], blessed: dict[str, Any]) -> None:
    cobalt = cobalt_of(member)
    assert http_status(lambda: cobalt.bless(source['id'])) in (403, 404)
    assert http_status(lambda: live_image(member, blessed['id'])) == 404
    assert http_status(lambda: cobalt.list_blessed(source['id'])) in (403, 404)
    assert http_status(lambda: cobalt.launch(blessed['id'])) in (403, 404)
    assert blessed['id'] not in [s.id for s in cobalt.find_by_name('gold')]
    assert [b.id for b in cobalt_of(admin).list_blessed(source['id'])] == [blessed['id']]


def test_nova_lists_the_clones_active_with_the_launch_name(
        admin: Any, blessed: dict[str, Any], clones: list[str]) -> None:
    listed = {s.id: (s.name, s.status) for s in admin.servers.list()}
    assert {listed.get(c) for c in clones} == {('web', 'ACTIVE')}, listed
    assert sorted(c.id for c in cobalt_of(admin).list_launched(blessed['id'])) == sorted(clones)


def test_the_clones_resume_the_blessed_memory(
        admin: Any, source: dict[str, Any], blessed: dict[str, Any], clones: list[str],
        libvirt_conn: Any) -> None:
    for server_id in clones:
        assert libvirt_conn.lookupByUUIDString(server_id).isActive()
        text = wait_for(functools.partial(console_counting, admin, server_id, 2), 90,
                        interval=0.5, what='clone %s to count' % server_id)
        assert guest.tokens(text) == {source['token']}, text     # the blessed guest's RAM
        assert 'BOOT-TOKEN' not in text, text                     # resumed, never booted
        first = guest.counters(text)[0][0]
        assert blessed['before'] <= first <= blessed['after'] + 1, (first, blessed)
        # and goes on from there
        wait_for(functools.partial(counted_past, admin, server_id, first + 3), 60, interval=0.5,
                 what='clone %s to keep counting' % server_id)


def test_export_then_import_makes_a_live_image_that_launches(
        admin: Any, source: dict[str, Any], blessed: dict[str, Any]) -> None:
    cobalt = cobalt_of(admin)
    document = cobalt.export(blessed['id'])
    assert document['fields']['image_id'] == blessed['view']['image']['id']
    assert document['flavor_name'] == os.environ.get('GC_NOVA_FLAVOR', 'gc-tiny')
    imported = cobalt.import_instance(document)
    try:
        assert imported.id != blessed['id'] and imported.status == 'BLESSED'
        assert imported.name == 'gold'
        [clone] = cobalt.launch(imported.id, name='imported-web')
        try:
            wait_for(functools.partial(active, admin, clone.id), LAUNCH_TIMEOUT,
                     interval=0.5, what='the clone of the import to become ACTIVE')
            text = wait_for(functools.partial(console_counting, admin, clone.id, 2), 90,
                            interval=0.5, what='the clone of the import to count')
            assert guest.tokens(text) == {source['token']}, text
            assert 'BOOT-TOKEN' not in text, text
        finally:
            delete(admin, clone.id)
    finally:
        discard_quietly(admin, imported.id)


def test_migrate_is_novas_and_refused_for_live_images_and_clones(
        admin: Any, member: Any, source: dict[str, Any], blessed: dict[str, Any],
        clones: list[str]) -> None:
    cobalt = cobalt_of(admin)
    assert http_status(lambda: cobalt.migrate(blessed['id'])) == 400
    assert http_status(lambda: cobalt.migrate(clones[0])) == 400
    assert http_status(lambda: cobalt_of(member).migrate(source['id'])) == 404
    # one compute host: Nova's scheduler finds nowhere to go, and says so
    assert http_status(lambda: cobalt.migrate(source['id'])) == 400
    assert http_status(lambda: cobalt.migrate(source['id'], dest='no-such-host')) == 400
    assert active(admin, source['id'])


def test_a_clone_where_the_live_images_directory_is_absent_resumes_the_published_copy(
        admin: Any, source: dict[str, Any], blessed: dict[str, Any], libvirt_conn: Any
) -> None:
    """The stack has one compute host: renaming the live image's directory away
    makes it what a second host with the store is to nova-compute, a host that
    never blessed it (nova-compute finds no directory; its gridcentric-compute
    mounts and fetches the published copy). The clone's RAM then maps the
    rbd-fuse file, not the blessed one. First, a copy changed in Ceph is refused."""
    if not STORE_CONF:
        pytest.skip('the stack has no live image store (no tools/ceph.sh)')
    view = wait_for(lambda: published(admin, blessed['id']), PUBLISH_TIMEOUT, interval=0.5,
                    what='the live image to be published')
    assert view['launch_anywhere'] is True
    names = store_names(blessed['id'])
    image = 'gc-live-%s' % blessed['id']
    assert {image, image + '.state', image + '.domain.xml', image + '.nova.json'} <= names
    assert any(n.endswith('.qcow2') for n in names), names       # the disk chain too
    directory = os.path.join(live_images_path(), blessed['id'])
    os.rename(directory, directory + '.away')
    clone = None
    try:
        refused_with_a_changed_copy(admin, blessed['id'], image + '.domain.xml')
        [clone] = cobalt_of(admin).launch(blessed['id'], name='from-store')
        wait_for(functools.partial(active, admin, clone.id), LAUNCH_TIMEOUT, interval=0.5,
                 what='the clone from the store to become ACTIVE')
        xml = libvirt_conn.lookupByUUIDString(clone.id).XMLDesc(0)
        args = [a.get('value', '') for a in ET.fromstring(xml).iter(
            '{http://libvirt.org/schemas/domain/qemu/1.0}arg')]
        assert any('mem-path=' in a and '/mnt/%s/%s' % (blessed['id'], image) in a
                   for a in args), args
        text = wait_for(functools.partial(console_counting, admin, clone.id, 2), 90,
                        interval=0.5, what='the clone from the store to count')
        assert guest.tokens(text) == {source['token']}, text      # the blessed guest's RAM
        assert 'BOOT-TOKEN' not in text, text                      # resumed, never booted
        first = guest.counters(text)[0][0]
        assert blessed['before'] <= first <= blessed['after'] + 1, (first, blessed)
        wait_for(functools.partial(counted_past, admin, clone.id, first + 3), 60,
                 interval=0.5, what='the clone from the store to keep counting')
    finally:
        if clone is not None and not gone(admin, clone.id):
            delete(admin, clone.id)
        os.rename(directory + '.away', directory)


def refused_with_a_changed_copy(admin: Any, live_image_id: str, obj: str) -> None:
    """A published file that no longer matches its sha256: the clone goes to ERROR
    saying so, and this host keeps no mount or cache of it."""
    rados = ['rados', '--conf', str(STORE_CONF), '-p', 'rbd']
    original = subprocess.run([*rados, 'get', obj, '-'], capture_output=True, timeout=60,
                              check=True).stdout
    subprocess.run([*rados, 'put', obj, '-'], input=original + b'<!-- changed -->',
                   capture_output=True, timeout=60, check=True)
    clone = None
    try:
        [clone] = cobalt_of(admin).launch(live_image_id, name='changed-copy')
        server = wait_for(lambda: (lambda s: s if s.status == 'ERROR' else None)(
            admin.servers.get(clone.id)), LAUNCH_TIMEOUT, interval=0.5,
            what='the clone of a changed copy to go to ERROR')
        message = server.fault['message']
        assert 'domain.xml does not match the sha256' in message, server.fault
        assert not os.path.exists(os.path.join(store_root(), 'cache', live_image_id))
        assert not os.path.exists(os.path.join(store_root(), 'mnt', live_image_id))
    finally:
        subprocess.run([*rados, 'put', obj, '-'], input=original, capture_output=True,
                       timeout=60, check=True)
        if clone is not None:
            delete(admin, clone.id)


def test_clones_deleted_through_nova_and_the_live_image_discarded(
        admin: Any, blessed: dict[str, Any], clones: list[str], libvirt_conn: Any) -> None:
    for server_id in clones:
        delete(admin, server_id)
        assert domain_name(server_id) not in [d.name() for d in libvirt_conn.listAllDomains()]
    assert cobalt_of(admin).list_launched(blessed['id']) == []
    resp, body = cobalt_of(admin).discard(blessed['id'])
    assert resp.status_code == 200 and body is None
    directory = os.path.join(live_images_path(), blessed['id'])
    wait_for(lambda: http_status(lambda: live_image(admin, blessed['id'])) == 404
             and not os.path.exists(directory), 60, interval=0.5,
             what='the live image and its directory to go')
    if STORE_CONF:  # and its published copy in Ceph, and this host's copy of that
        assert store_names(blessed['id']) == set()
        assert not os.path.exists(os.path.join(store_root(), 'cache', blessed['id']))


def test_compute_killed_mid_bless_leaves_the_server_running(
        admin: Any, source: dict[str, Any], libvirt_conn: Any) -> None:
    import libvirt

    domain = libvirt_conn.lookupByUUIDString(source['id'])
    with open(pidfile('gridcentric-compute')) as f:
        pid = int(f.read())
    [image] = cobalt_of(admin).bless(source['id'], name='interrupted')
    # bless pauses the domain while it saves and copies: kill it there
    wait_for(lambda: domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED, BLESS_TIMEOUT,
             interval=0.005, what='bless to pause vm1')
    os.kill(pid, signal.SIGKILL)
    nova_sh('restart', 'gridcentric-compute')
    view = wait_for(lambda: (lambda v: v if v['status'] == 'ERROR' else None)(
        live_image(admin, image.id)), 120, interval=0.5, what='the live image to be in error')
    assert view['name'] == 'interrupted'
    assert active(admin, source['id'])
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    last = guest.counters(console(admin, source['id']))[-1][0]
    wait_for(functools.partial(counted_past, admin, source['id'], last + 2), 60, interval=0.5,
             what='vm1 to count again')
    resp, _ = cobalt_of(admin).discard(image.id)
    assert resp.status_code == 200
