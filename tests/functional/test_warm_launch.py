"""Warm launches through `gridcentric-all-in-one`'s API, its pool restored ahead.

The all-in-one keeps one QEMU process per live image with the machine built
and the state loaded (``[qemu] warm_pool_size = 1``,
``warm_pool_restore_ahead = true``). A clone launched through the API takes
it, and must still be its own VM: the guest reads its server id, guest
parameters and user data from the identity port, prints the slot's
generation id (what makes it warm), and resumes the blessed memory.
"""

import base64
import hashlib
import os
import re
import uuid

import pytest

from gridcentric_storage.virt import qemu_pool
from tests.fixtures import all_in_one, guest
from tests.fixtures.services import wait_for

pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')

USER_DATA = b'#cloud-config\nhostname: warm\n'


@pytest.fixture
def aio(tmp_path):
    yield from all_in_one.running(
        tmp_path, '[qemu]\nwarm_pool_size = 1\nwarm_pool_restore_ahead = true\n')


def _ready_slots(aio: all_in_one.AllInOne) -> list[str]:
    """Slots the service says are ready with their state loaded (its log)."""
    log = ''.join((aio.tmp / name).read_text() for name in os.listdir(aio.tmp)
                  if name.startswith('aio-') and name.endswith('.log'))
    alive = set(qemu_pool.unclaimed(os.path.join(aio.state, 'instances')))
    return [s for s in re.findall(r'Pooled QEMU (\S+) of live image \S+ is ready '
                                  r'\(state loaded ahead\)', log) if s in alive]


def test_a_clone_launched_through_the_api_from_a_slot_restored_ahead_is_its_own(aio):
    source = aio.boot()
    token = guest.boot_token(aio.console(source['id']))
    image = aio.call('POST', '/v1/live-images',
                     json={'live_image': {'server_id': source['id']}}).json()['live_image']
    wait_for(lambda: aio.live_image(image['id'])['status'] == 'blessed', timeout=60)
    slot = wait_for(lambda: _ready_slots(aio), timeout=120, what='a slot restored ahead')[0]

    launched = aio.call('POST', '/v1/live-images/%s/action' % image['id'], json={'launch': {
        'name': 'warm', 'guest': {'role': 'web'},
        'user_data': base64.b64encode(USER_DATA).decode()}})
    assert launched.status_code == 202, launched.text
    clone = launched.json()['servers'][0]
    assert aio.settled_server(clone['id'])['status'] == 'ACTIVE'
    text = wait_for(lambda: 'INSTANCE-ID' in aio.console(clone['id'])
                    and len(guest.counters(aio.console(clone['id']))) >= 3
                    and aio.console(clone['id']), timeout=60, what='the clone to count')
    assert 'BOOT-TOKEN' not in text and guest.tokens(text) <= {token}
    # the slot's generation id: the clone is the process that waited restored
    assert 'VMGENID-CHANGED %s' % uuid.UUID(qemu_pool.slot_vmgenid(slot)).bytes_le.hex() \
        in text
    assert 'IDENTITY-VIA port' in text
    assert 'INSTANCE-ID %s' % clone['id'] in text
    assert 'GUEST-PARAM role=web' in text
    assert 'USER-DATA %s %d' % (hashlib.md5(USER_DATA).hexdigest(), len(USER_DATA)) in text
