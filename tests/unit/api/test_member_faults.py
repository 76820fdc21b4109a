"""A failure's reason reaches members without the cloud's host paths and host names."""

import shutil

from tests.fixtures.services import wait_for

ALICE = 'alice:proj-a'
ADMIN = 'admin:admin'


def _failed_volume(cloud, make_backend, tmp_path):
    directory = tmp_path / 'gone'
    make_backend(name='files', driver='file', options={'path': str(directory)})
    shutil.rmtree(directory)  # the backend's directory vanishes under it
    response = cloud.request('POST', '/v1/volumes', token=ALICE,
                             json={'volume': {'size': 1}})
    assert response.status_code == 202, response.text
    volume_id = response.json()['volume']['id']

    def settled():
        volume = cloud.request('GET', '/v1/volumes/%s' % volume_id,
                               token=ADMIN).json()['volume']
        return volume if volume['status'] != 'creating' else None
    return wait_for(settled, timeout=20, what='volume %s to fail' % volume_id)


def test_a_member_reads_why_without_the_host_path(cloud, make_backend, tmp_path):
    as_admin = _failed_volume(cloud, make_backend, tmp_path)
    assert as_admin['status'] == 'error'
    assert str(tmp_path) in as_admin['status_reason']  # the operator sees the place
    as_member = cloud.request('GET', '/v1/volumes/%s' % as_admin['id'],
                              token=ALICE).json()['volume']
    assert as_member['status'] == 'error'
    assert str(tmp_path) not in as_member['status_reason']
    assert as_admin['host'] not in as_member['status_reason']
    assert '<path>' in as_member['status_reason']
    listed = cloud.request('GET', '/v1/volumes', token=ALICE).json()['volumes']
    assert [v['status_reason'] for v in listed] == [as_member['status_reason']]
