"""Live images end to end: `gridcentric-all-in-one` running real QEMU (TCG here) guests.

The guest (tools/build-test-guest.sh) prints a boot token once, then a counter
and fresh random bytes every ~0.2 s, and the token again every 10th line, so
a console shows whether a VM resumed the blessed memory or booted afresh.
"""

import os
import re
import subprocess

import pytest

from tests.fixtures import all_in_one, guest
from tests.fixtures.all_in_one import AllInOne  # noqa: F401 (other modules import it here)
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')


@pytest.fixture
def aio(tmp_path):
    yield from all_in_one.running(tmp_path)


def test_bless_and_launch_clones_that_resume_its_memory(aio):
    source = aio.boot()
    token = guest.boot_token(aio.console(source['id']))
    assert token

    # The source runs on after the bless, so the blessed counter lies between
    # the last one printed before the request and the last one after it settled.
    before_bless = guest.counters(aio.console(source['id']))[-1][0]
    blessed = aio.call('POST', '/v2.1/servers/%s/action' % source['id'],
                       json={'co_bless': {'name': 'gold'}})
    assert blessed.status_code == 200, blessed.text
    image_id = blessed.json()[0]['id']
    wait_for(lambda: aio.live_image(image_id)['status'] == 'blessed', timeout=60)
    last_before = guest.counters(aio.console(source['id']))[-1][0]

    launched = aio.call('POST', '/v2.1/servers/%s/action' % image_id,
                        json={'co_launch': {'num_instances': 3, 'name': 'clone',
                                            'guest': {'role': 'worker'}}})
    assert launched.status_code == 200, launched.text
    clones = aio.call('POST', '/v2.1/servers/%s/action' % image_id,
                      json={'co_list_launched': {}}).json()
    assert len(clones) == 3
    randoms = {}
    for clone in clones:
        assert aio.settled_server(clone['id'])['status'] == 'ACTIVE'
        wait_for(lambda c=clone: len(guest.counters(aio.console(c['id']))) >= 12,
                 timeout=120, interval=0.5)
        text = aio.console(clone['id'])
        assert 'BOOT-TOKEN' not in text             # resumed, not booted
        assert token in guest.tokens(text)          # the blessed memory
        counters = guest.counters(text)
        # the counter went on from the blessed moment, not from zero
        assert before_bless <= counters[0][0] <= last_before + 1
        assert 'GUEST-PARAM role=worker' in text
        randoms[clone['id']] = {rng for _, rng in counters[2:]}
    source_randoms = {rng for _, rng in guest.counters(aio.console(source['id']))}
    ids = list(randoms)
    for i, first in enumerate(ids):                 # clones reseeded: no shared output
        assert not randoms[first] & source_randoms
        for second in ids[i + 1:]:
            assert not randoms[first] & randoms[second]
    # the source kept running after bless
    wait_for(lambda: guest.counters(aio.console(source['id']))[-1][0] > last_before + 5,
             timeout=60, interval=0.5)

    assert aio.call('POST', '/v2.1/servers/%s/action' % image_id,
                    json={'co_discard': {}}).status_code == 400  # clones still exist
    for clone in clones:
        assert aio.call('DELETE', '/v1/servers/%s' % clone['id']).status_code == 204
        wait_for(lambda c=clone: aio.server(c['id'])['status'] == 'DELETED', timeout=60)
    assert aio.call('POST', '/v2.1/servers/%s/action' % image_id,
                    json={'co_discard': {}}).status_code == 200
    wait_for(lambda: aio.live_image(image_id)['status'] == 'gone', timeout=60)
    assert not os.path.exists(os.path.join(aio.state, 'live-images', image_id))


def test_sigkill_mid_bless_and_mid_launch_is_settled_at_restart(aio):
    source = aio.boot()
    aio.hook('pre_bless', 'sleep 30')
    image = aio.call('POST', '/v1/live-images',
                     json={'live_image': {'server_id': source['id']}}).json()['live_image']
    wait_for(lambda: aio.server(source['id'])['task_state'] == 'blessing', timeout=30)
    aio.kill()                                       # the compute service dies mid-bless
    (aio.hooks / 'pre_bless').unlink()
    aio.start()
    settled = wait_for(lambda: aio.live_image(image['id'])['status'] not in ('blessing',)
                       and aio.live_image(image['id']), timeout=60)
    assert settled['status'] == 'error' and 'interrupted' in settled['status_reason']
    after = aio.settled_server(source['id'])
    assert (after['status'], after['task_state']) == ('ACTIVE', None)
    before = guest.counters(aio.console(source['id']))[-1][0]
    wait_for(lambda: guest.counters(aio.console(source['id']))[-1][0] > before, timeout=60,
             interval=0.5)                           # the VM survived and still runs

    good = aio.call('POST', '/v1/live-images',
                    json={'live_image': {'server_id': source['id']}}).json()['live_image']
    wait_for(lambda: aio.live_image(good['id'])['status'] == 'blessed', timeout=60)
    aio.hook('pre_launch', 'sleep 30')
    clone = aio.call('POST', '/v1/live-images/%s/action' % good['id'],
                     json={'launch': {}}).json()['servers'][0]
    assert aio.server(clone['id'])['status'] == 'BUILD'
    aio.kill()                                       # the compute service dies mid-launch
    (aio.hooks / 'pre_launch').unlink()
    aio.start()
    failed = aio.settled_server(clone['id'], timeout=60)
    assert failed['status'] == 'ERROR' and 'interrupted' in failed['fault']
    assert not os.path.exists(os.path.join(aio.state, 'instances', clone['id']))


def _volume(aio: AllInOne, volume_id: str) -> dict:
    return aio.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']


def _volume_file(aio: AllInOne, volume: dict) -> str:
    return os.path.join(aio.state, 'volumes', volume['backend_id'], 'volume-' + volume['id'])


def test_bless_a_server_with_an_attached_qcow2_file_volume(aio, tmp_path):
    """The embedded default on ext4: QEMU holds the volume's qcow2 file open and
    locked, so bless freezes it while the guest is paused; the clone's volume
    holds the data of the blessed moment and the source keeps its own."""
    backend = aio.call('GET', '/v1/backends').json()['backends'][0]
    if backend['capabilities'].get('copy_on_write') != 'qcow2':
        pytest.skip('the state path is on a reflink filesystem; this test is about qcow2 mode')
    source = aio.boot()
    volume = aio.call('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()['volume']
    wait_for(lambda: _volume(aio, volume['id'])['status'] == 'available', timeout=60)
    data = tmp_path / 'data.raw'
    data.write_bytes(os.urandom(3 << 20))
    with open(data, 'rb') as body:
        uploaded = aio.call('PUT', '/v1/volumes/%s/data' % volume['id'], data=body)
    assert uploaded.status_code == 200, uploaded.text
    attached = aio.call('POST', '/v1/servers/%s/os-volume_attachments' % source['id'],
                        json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code == 202, attached.text
    wait_for(lambda: _volume(aio, volume['id'])['status'] == 'in-use', timeout=60)
    wait_for(lambda: re.search(r'virtio_blk \S+: \[vd[a-z]\]', aio.console(source['id'])),
             timeout=60, interval=0.5)                # the guest sees the disk

    image = aio.call('POST', '/v1/live-images', json={
        'live_image': {'server_id': source['id']}}).json()['live_image']
    settled = wait_for(lambda: aio.live_image(image['id'])['status'] != 'blessing'
                       and aio.live_image(image['id']), timeout=90)
    assert settled['status'] == 'blessed', settled
    clone = aio.call('POST', '/v1/live-images/%s/action' % image['id'],
                     json={'launch': {}}).json()['servers'][0]
    assert aio.settled_server(clone['id'])['status'] == 'ACTIVE'
    token = guest.boot_token(aio.console(source['id']))
    wait_for(lambda: token in guest.tokens(aio.console(clone['id'])), timeout=120,
             interval=0.5)

    listed = aio.call('GET', '/v1/servers/%s/os-volume_attachments' % clone['id'])
    clone_volumes = [a['volumeId'] for a in listed.json()['volumeAttachments']]
    assert len(clone_volumes) == 1 and clone_volumes[0] != volume['id']
    for volume_id in (clone_volumes[0], volume['id']):
        # an outside witness: qemu-img reads the qcow2 chain QEMU has open
        compared = subprocess.run(
            ['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F', 'raw',
             _volume_file(aio, _volume(aio, volume_id)), str(data)],
            capture_output=True, text=True)
        assert compared.returncode == 0, compared.stdout + compared.stderr
    assert _volume(aio, volume['id'])['status'] == 'in-use'
    assert aio.server(source['id'])['status'] == 'ACTIVE'


@pytest.fixture
def xfs_dir(tmp_path):
    from tests.fixtures import loopfs

    yield from loopfs.mounted_or_skip('xfs', tmp_path)


def test_extend_of_an_attached_volume_is_seen_by_the_guest(xfs_dir, aio):
    """Through the API on a reflink `file` backend (raw files, online extend); the
    all-in-one stops (its VMs deleted) before the filesystem is unmounted."""
    backend = aio.call('POST', '/v1/backends', json={'backend': {
        'name': 'xfs', 'driver': 'file',
        'options': {'path': os.path.join(xfs_dir, 'v'), 'cow_mode': 'reflink'}}})
    assert backend.status_code == 201, backend.text
    source = aio.boot()
    volume = aio.call('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backend.json()['backend']['id']}}).json()['volume']
    wait_for(lambda: _volume(aio, volume['id'])['status'] == 'available', timeout=60)
    seen = len(aio.console(source['id']))
    aio.call('POST', '/v1/servers/%s/os-volume_attachments' % source['id'],
             json={'volumeAttachment': {'volumeId': volume['id']}})
    found = wait_for(lambda: re.search(r'\[(vd[a-z])\] 2097152 512-byte',
                                       aio.console(source['id'])[seen:]),
                     timeout=60, interval=0.5)           # 1 GiB
    extended = aio.call('POST', '/v1/volumes/%s/action' % volume['id'],
                        json={'os-extend': {'new_size': 2}})
    assert extended.status_code == 202, extended.text
    wait_for(lambda: re.search(r'\[%s\] new size: 4194304 ' % found.group(1),
                               aio.console(source['id'])[seen:]),
             timeout=60, interval=0.5)                   # 2 GiB in the guest
    shown = _volume(aio, volume['id'])
    assert (shown['status'], shown['size']) == ('in-use', 2)
