"""QoS end to end with real QEMU: specs set through the API reach a running guest's disk,
and a change of the specs reaches it while it stays attached (QEMU's ``query-block``).
(Per-GB limits that follow an extend: tests/unit/api/test_qos_specs.py; a ``file``
backend in qcow2 mode cannot extend an attached volume.)

The API and a compute service run in this process (InProcessCloud) with the QEMU
virt driver and a ``file`` backend; the guest is tools/build-test-guest.sh's.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.virt import qmp
from tests.fixtures import guest
from tests.fixtures import qemu_cloud as qemu_cloud_fixture
from tests.fixtures.services import InProcessCloud, file_backend, wait_for

MiB = 1 << 20
pytestmark = pytest.mark.skipif(guest.missing() is not None, reason=guest.missing() or '')


@pytest.fixture
def qemu_cloud(gc_db: Any) -> Iterator[InProcessCloud]:
    with qemu_cloud_fixture.running('gc-hI-') as cloud:
        yield cloud


def throttle(state: str, server_id: str) -> dict[str, int]:
    """QEMU's limits on the server's one disk (it boots a kernel, so the volume is it)."""
    sock = os.path.join(state, 'instances', server_id, 'qmp.sock')
    with qmp.connect(sock) as mon:
        disks = [b['inserted'] for b in mon.cmd('query-block') if b.get('inserted')]
    assert len(disks) == 1, disks
    return {k: disks[0][k] for k in ('iops', 'iops_rd', 'iops_wr', 'bps', 'bps_rd', 'bps_wr')
            if disks[0][k]}


def test_specs_reach_the_guests_disk_and_change_live(qemu_cloud: InProcessCloud,
                                                     tmp_path: Any) -> None:
    from oslo_config import cfg
    state, cloud = cfg.CONF.state_path, qemu_cloud
    backend = file_backend(cloud, tmp_path / 'volumes')
    specs = cloud.request('POST', '/v1/qos-specs', json={'qos_specs': {
        'name': 'gold', 'consumer': 'front-end', 'total_iops_sec': 150,
        'read_bytes_sec_per_gb': 2 * MiB}}).json()['qos_specs']
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {
        'size': 2, 'backend_id': backend['id']}}).json()['volume']
    path = '/v1/volumes/%s' % volume['id']
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'available')
    cloud.request('POST', path + '/action', json={'qos': {'qos_specs_id': specs['id']}})
    server = cloud.request('POST', '/v1/servers', json={'server': {
        'name': 'vm', 'memory_mb': 256, 'kernel': os.path.basename(guest.build().kernel),
        'initrd': os.path.basename(guest.build().initrd)}}).json()['server']
    wait_for(lambda: cloud.request('GET', '/v1/servers/%s' % server['id'])
             .json()['server']['status'] == 'ACTIVE', 120)
    attached = cloud.request('POST', '/v1/servers/%s/os-volume_attachments' % server['id'],
                             json={'volumeAttachment': {'volumeId': volume['id']}})
    assert attached.status_code == 202, attached.text
    wait_for(lambda: cloud.request('GET', path).json()['volume']['status'] == 'in-use', 60)
    assert throttle(state, server['id']) == {'iops': 150, 'bps_rd': 4 * MiB}   # 2 GiB

    cloud.request('PUT', '/v1/qos-specs/%s' % specs['id'],
                  json={'qos_specs': {'total_iops_sec': 40}})
    wait_for(lambda: throttle(state, server['id']) == {'iops': 40, 'bps_rd': 4 * MiB}, 30,
             what='the new limit in query-block')
    cloud.request('POST', path + '/action', json={'qos': {'qos_specs_id': None}})
    wait_for(lambda: throttle(state, server['id']) == {}, 30, what='no limits')
