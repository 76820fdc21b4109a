"""Clone of a clone through the API: `gc-api bless` of a launched clone.

`gridcentric-all-in-one` runs the QEMU driver (TCG here). The clone stays
ACTIVE while it is blessed, the grandchild resumes the clone's memory, and
the grandparent's live image can go once its own clone is deleted. Where
the host's driver cannot bless a clone (the fake driver here, like libvirt),
the live image ends in error with the reason and the clone stays ACTIVE.
"""

import json
import os
import subprocess

import pytest

from tests.fixtures import all_in_one, guest
from tests.fixtures.all_in_one import AllInOne
from tests.fixtures.images import store_file
from tests.fixtures.services import gc_api, wait_for

needs_qemu = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')


@pytest.fixture
def aio(tmp_path):
    yield from all_in_one.running(tmp_path)


def ok_json(result: subprocess.CompletedProcess):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def last_counter(aio: AllInOne, server_id: str) -> int:
    return guest.counters(aio.console(server_id))[-1][0]


def resumed(aio: AllInOne, server_id: str, token: str) -> list[tuple[int, str]]:
    def ready():
        text = aio.console(server_id)
        numbers = guest.counters(text)
        return numbers if token in guest.tokens(text) and len(numbers) >= 4 else None
    numbers = wait_for(ready, timeout=120, interval=0.5)
    assert 'BOOT-TOKEN' not in aio.console(server_id)
    return numbers


@needs_qemu
def test_gc_api_blesses_a_clone_and_launches_a_grandchild(aio):
    source = aio.boot()
    token = guest.boot_token(aio.console(source['id']))
    first = ok_json(gc_api(aio, '--json', 'bless', source['id'], 'gold', '--wait'))
    assert first['status'] == 'blessed'
    grandparent_at = last_counter(aio, source['id'])
    assert aio.call('DELETE', '/v1/servers/%s' % source['id']).status_code == 204

    child = ok_json(gc_api(aio, '--json', 'launch', '--live-image', first['id'], 'child',
                           '--wait'))[0]
    assert child['status'] == 'ACTIVE'
    resumed(aio, child['id'], token)
    wait_for(lambda: last_counter(aio, child['id']) > grandparent_at + 10, timeout=60,
             interval=0.5)

    before = last_counter(aio, child['id'])
    blessing = aio.call('POST', '/v1/live-images', json={'live_image': {
        'server_id': child['id'], 'name': 'silver'}})
    assert blessing.status_code == 202, blessing.text
    second_id = blessing.json()['live_image']['id']
    seen = set()

    def blessed() -> bool:
        seen.add(aio.server(child['id'])['status'])
        return aio.live_image(second_id)['status'] != 'blessing'
    wait_for(blessed, timeout=120, interval=0.1)
    second = aio.live_image(second_id)
    assert second['status'] == 'blessed', second
    assert seen == {'ACTIVE'}                    # never ERROR, never anything else
    after = last_counter(aio, child['id'])
    settled = aio.server(child['id'])
    assert (settled['status'], settled['task_state']) == ('ACTIVE', None)
    wait_for(lambda: last_counter(aio, child['id']) > after + 2, timeout=60, interval=0.5)

    grandchild = ok_json(gc_api(aio, '--json', 'launch', '--live-image', second_id,
                                'grandchild', '--wait'))[0]
    assert grandchild['status'] == 'ACTIVE'
    first_count = resumed(aio, grandchild['id'], token)[0][0]
    assert before <= first_count <= after + 1           # the clone's memory
    assert first_count > grandparent_at + 10             # not the grandparent's

    # The grandparent's image goes once its clone is deleted; the grandchild,
    # blessed from that clone's flattened memory, runs on.
    assert gc_api(aio, 'server-delete', child['id'], '--wait').returncode == 0
    assert gc_api(aio, 'discard', first['id'], '--wait').returncode == 0
    running = last_counter(aio, grandchild['id'])
    wait_for(lambda: last_counter(aio, grandchild['id']) > running + 2, timeout=60,
             interval=0.5)
    refused = gc_api(aio, 'discard', second_id)
    assert refused.returncode == 1 and '1 server(s) launched from it' in refused.stderr


def test_a_driver_that_cannot_bless_a_clone_leaves_it_active(cloud, gc_conf):
    store_file('vmlinuz', b'kernel')             # the fake virt driver boots nothing
    ok_json(gc_api(cloud, '--json', 'server-create', 'tmpl', '--memory-mb', '256',
                   '--kernel', 'vmlinuz', '--wait'))
    ok_json(gc_api(cloud, '--json', 'bless', 'tmpl', 'gold', '--wait'))
    clone = ok_json(gc_api(cloud, '--json', 'launch', '--live-image', 'gold', 'web',
                           '--wait'))[0]
    gc_api(cloud, 'bless', clone['id'], 'silver', '--wait')
    images = {i['name']: i for i in ok_json(gc_api(cloud, '--json', 'live-image-list'))}
    assert images['silver']['status'] == 'error'
    assert 'clone of live image %s' % images['gold']['id'] in \
        images['silver']['status_reason']
    server = ok_json(gc_api(cloud, '--json', 'server-show', clone['id']))
    assert (server['status'], server['task_state']) == ('ACTIVE', None)


def _volume(aio: AllInOne, volume_id: str) -> dict:
    return aio.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']


def _attached(aio: AllInOne, server_id: str) -> list[str]:
    listed = aio.call('GET', '/v1/servers/%s/os-volume_attachments' % server_id).json()
    return [a['volumeId'] for a in listed['volumeAttachments']]


def _same_data(aio: AllInOne, volume_id: str, data) -> bool:
    """An outside witness: qemu-img reads the volume as QEMU would."""
    path = os.path.join(aio.state, 'volumes', _volume(aio, volume_id)['backend_id'],
                        'volume-' + volume_id)
    fmt = 'qcow2' if open(path, 'rb').read(4) == b'QFI\xfb' else 'raw'
    return subprocess.run(['qemu-img', 'compare', '-U', '-f', fmt, '-F', 'raw', path,
                           str(data)], capture_output=True, check=False).returncode == 0


@needs_qemu
def test_a_clone_with_a_volume_is_blessed_with_a_snapshot_of_its_own_volume(aio, tmp_path):
    """The embedded `file` backend: the clone's volume is a copy-on-write volume
    of the grandparent's snapshot; the clone's bless snapshots it while it is
    attached, and the grandchild gets a volume of that snapshot."""
    source = aio.boot()
    volume = aio.call('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()['volume']
    wait_for(lambda: _volume(aio, volume['id'])['status'] == 'available', timeout=60)
    data = tmp_path / 'data.raw'
    data.write_bytes(os.urandom(2 << 20))
    with open(data, 'rb') as body:
        assert aio.call('PUT', '/v1/volumes/%s/data' % volume['id'],
                        data=body).status_code == 200
    assert aio.call('POST', '/v1/servers/%s/os-volume_attachments' % source['id'],
                    json={'volumeAttachment': {'volumeId': volume['id']}}
                    ).status_code == 202
    wait_for(lambda: _volume(aio, volume['id'])['status'] == 'in-use', timeout=60)
    token = guest.boot_token(aio.console(source['id']))

    first = ok_json(gc_api(aio, '--json', 'bless', source['id'], 'gold', '--wait'))
    child = ok_json(gc_api(aio, '--json', 'launch', '--live-image', first['id'], 'child',
                           '--wait'))[0]
    assert child['status'] == 'ACTIVE'
    assert aio.call('DELETE', '/v1/servers/%s' % source['id']).status_code == 204
    resumed(aio, child['id'], token)

    second = ok_json(gc_api(aio, '--json', 'bless', child['id'], 'silver', '--wait'))
    assert second['status'] == 'blessed', second
    assert aio.server(child['id'])['status'] == 'ACTIVE'
    grandchild = ok_json(gc_api(aio, '--json', 'launch', '--live-image', second['id'],
                                'grandchild', '--wait'))[0]
    assert grandchild['status'] == 'ACTIVE'
    resumed(aio, grandchild['id'], token)
    [child_volume] = _attached(aio, child['id'])
    [grandchild_volume] = _attached(aio, grandchild['id'])
    assert len({volume['id'], child_volume, grandchild_volume}) == 3
    assert _same_data(aio, grandchild_volume, data)
    # The child's disks go with it, snapshots and all: not while "silver" uses them.
    refused = aio.call('DELETE', '/v1/servers/%s' % child['id'])
    assert refused.status_code == 409, refused.text
    assert second['id'] in refused.json()['conflict']['message']
    assert aio.server(child['id'])['status'] == 'ACTIVE'
    assert gc_api(aio, 'server-delete', grandchild['id'], '--wait').returncode == 0
    assert gc_api(aio, 'discard', second['id'], '--wait').returncode == 0
    assert aio.call('DELETE', '/v1/servers/%s' % child['id']).status_code == 204


def test_rbd_disks_of_a_clone_of_a_clone_outlive_the_grandparents(cloud):
    """The volume side of clone of a clone on rbd, in the order the API allows:
    the clone's disk is a COW clone of the grandparent's snapshot, the clone's
    bless snapshots it, the grandchild's disk clones that; the grandparent's
    snapshot then goes (its image discarded) and every disk keeps its data."""
    from tests.fixtures import ceph
    from tests.functional.test_volume_lifecycle import (
        create_volume,
        download,
        settle,
        snapshot,
        upload,
    )

    conf = ceph.ceph_conf()
    ceph.bindings_or_skip()
    made = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'ceph-coc', 'driver': 'rbd', 'options': {
            'pool': 'rbd', 'ceph_conf': conf, 'keyring_in_connection_info': True}}})
    assert made.status_code == 201, made.text
    backend_id = made.json()['backend']['id']
    grandparent_data, clone_data = os.urandom(1 << 20), os.urandom(1 << 20)
    made_ids: list[str] = []
    try:
        source = create_volume(cloud, size=1, backend_id=backend_id)
        upload(cloud, source['id'], grandparent_data)
        first = snapshot(cloud, source['id'])
        child = create_volume(cloud, size=1, snapshot_id=first['id'])
        upload(cloud, child['id'], clone_data)            # the clone wrote its disk
        second = snapshot(cloud, child['id'])
        grandchild = create_volume(cloud, size=1, snapshot_id=second['id'])
        made_ids += [source['id'], child['id'], grandchild['id'], first['id'], second['id']]
        assert cloud.request('DELETE', '/v1/snapshots/%s' % first['id']).status_code == 202
        assert settle(cloud, 'snapshots', first['id'])['status'] == 'deleted'
        assert download(cloud, grandchild['id'], len(clone_data)) == clone_data
        assert download(cloud, child['id'], len(clone_data)) == clone_data
        assert download(cloud, source['id'], len(grandparent_data)) == grandparent_data
    finally:
        for volume in cloud.request('GET', '/v1/volumes').json()['volumes']:
            cloud.request('DELETE', '/v1/volumes/%s?cascade=true&force=true' % volume['id'])
        wait_for(lambda: cloud.request('GET', '/v1/volumes').json()['volumes'] == [],
                 timeout=120)
    # Nothing of the chain is left in the shared pool, hidden or not.
    left = ceph.CephCLI(conf).images()
    assert made_ids and not [n for n in left if any(i in n for i in made_ids)], left

