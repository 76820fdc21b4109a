"""The StorPool API simulator, checked with the clients that talk to StorPool:
os-brick's ``StorPoolAPI`` (Cinder's driver and ours use it) and its
``StorPoolConnector``, plus plain HTTP for the wire format they parse."""

import http.client
import json
import os
import types
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest

from tests.fixtures import storpool as sp_fixture

GiB, MiB = 1 << 30, 1 << 20


@pytest.fixture
def sim(tmp_path: Any) -> Iterator[Any]:
    templates = [{'name': 'fast', 'replication': 2, 'placeAll': 'ssd', 'iops': 900, 'bw': 40}]
    with sp_fixture.cluster(tmp_path, templates=templates) as simulator:
        yield simulator


def api(sim: Any, token: str | None = None) -> Any:
    return sp_fixture.storpool_utils.StorPoolAPI('127.0.0.1', sim.port, token or sim.token,
                                                 timeout=10, transient_retries=2)


def raw(sim: Any, method: str, path: str, body: Any = None,
        auth: str | None = 'ok') -> tuple[int, Any]:
    conn = http.client.HTTPConnection('127.0.0.1', sim.port, timeout=10)
    headers = {} if auth is None else {
        'Authorization': f'Storpool v1:{sim.token if auth == "ok" else auth}'}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    answer = (response.status, json.load(response))
    conn.close()
    return answer


def error(sim: Any, call: Any, *args: Any) -> Any:
    with pytest.raises(sp_fixture.storpool_utils.StorPoolAPIError) as raised:
        call(*args)
    return raised.value


def test_envelopes_and_both_paths(sim: Any) -> None:
    status, answer = raw(sim, 'POST', '/ctrl/1.0/MultiCluster/VolumeCreate',
                         {'name': 'v1', 'size': GiB})
    assert status == 200 and set(answer) == {'generation', 'data'}
    assert answer['data']['ok'] is True and answer['data']['globalId']
    generation = answer['generation']
    for path in ('/ctrl/1.0/VolumesList', '/ctrl/1.0/MultiCluster/VolumesList'):
        status, listed = raw(sim, 'GET', path)
        assert status == 200 and listed['generation'] == generation
        assert [v['name'] for v in listed['data']] == ['v1']
    status, answer = raw(sim, 'GET', '/ctrl/1.0/NoSuchCall')
    assert status != 200 and set(answer['error']) == {'name', 'descr', 'transient'}


def test_authorization_is_checked(sim: Any) -> None:
    e = error(sim, api(sim, token='wrong').volumes_list)
    assert (e.status, e.name, e.transient) == (401, 'authError', False)
    status, answer = raw(sim, 'GET', '/ctrl/1.0/VolumesList', auth=None)
    assert status == 401 and answer['error']['name'] == 'authError'
    assert api(sim).volumes_list() == []


def test_error_names_clients_test_for(sim: Any) -> None:
    client = api(sim)
    client.volume_create({'name': 'v1', 'size': GiB})
    assert error(sim, client.volume_create, {'name': 'v1', 'size': GiB}).name == 'objectExists'
    assert error(sim, client.volume_get_info, 'v2').name == 'objectDoesNotExist'
    assert error(sim, client.snapshot_delete, 's9').name == 'objectDoesNotExist'
    assert error(sim, client.volumes_reassign,
                 [{'volume': 'v1', 'rw': ['x']}]).name == 'invalidParam'
    assert error(sim, client.volume_update, 'v1', {'size': MiB}).name == 'invalidParam'


def test_global_ids_address_objects(sim: Any) -> None:
    client = api(sim)
    client.volume_create({'name': 'v1', 'size': GiB})
    gid = client.volume_get_info('v1')['globalId']
    assert client.volume(f'~{gid}')[0]['name'] == 'v1'
    client.volume_update(f'~{gid}', {'size': 2 * GiB})
    assert client.volume('v1')[0]['size'] == 2 * GiB
    assert sp_fixture.storpool_connector.path_to_volname(
        sp_fixture.storpool_connector.DEV_STORPOOL_BYID / gid) == f'~{gid}'


def test_transient_errors_are_retried_by_os_brick(sim: Any) -> None:
    from tests.fixtures.storpool_sim import APIError

    client, slept = api(sim), list[float]()
    sim.cluster.fail_next.append(APIError('busy', 'cluster busy', transient=True))
    with mock.patch.object(sp_fixture.storpool_utils, 'time',
                           types.SimpleNamespace(sleep=slept.append)):
        assert client.volumes_list() == []
    assert slept == [1]
    sim.cluster.fail_next.append(APIError('busy', 'not this time'))
    assert error(sim, client.volumes_list).transient is False


def test_templates_and_disks(sim: Any) -> None:
    client = api(sim)
    [template] = client.volume_templates_list()
    assert (template['name'], template['iops'], template['bw']) == ('fast', 900, 40)
    client.volume_create({'name': 'v1', 'size': GiB, 'template': 'fast'})
    info = client.volume_get_info('v1')
    assert (info['templateName'], info['replication'], info['placeAll']) == ('fast', 2, 'ssd')
    assert error(sim, client.volume_create, {'name': 'v2', 'size': GiB,
                                             'template': 'nope'}).name == 'objectDoesNotExist'
    disks = client.disks_list()
    assert len(disks) == 4 and [d['generationLeft'] for d in disks.values()].count(-1) == 3
    for disk in disks.values():
        assert disk['agAllocated'] + disk['agFree'] == disk['agCount']


def test_snapshots_clones_and_revert_hold_real_bytes(sim: Any) -> None:
    client, cluster = api(sim), sim.cluster

    def write(name: str, data: bytes) -> None:
        with open(cluster.path(name), 'r+b') as f:
            f.write(data)

    def read(name: str) -> bytes:
        with open(cluster.path(name), 'rb') as f:
            return f.read(4)

    client.volume_create({'name': 'v1', 'size': GiB})
    write('v1', b'AAAA')
    client.snapshot_create('v1', {'name': 's1'})
    write('v1', b'BBBB')
    client.volume_create({'name': 'c1', 'baseOn': 'v1'})         # copy of v1 now
    client.volume_create({'name': 'c2', 'parent': 's1', 'size': 2 * GiB})
    assert [read(n) for n in ('v1', 's1', 'c1', 'c2')] == [b'BBBB', b'AAAA', b'BBBB', b'AAAA']
    write('c1', b'CCCC')
    assert read('v1') == b'BBBB'
    client.volume_update('v1', {'size': 3 * GiB})
    client.volume_revert('v1', {'toSnapshot': 's1'})
    assert read('v1') == b'AAAA' and client.volume('v1')[0]['size'] == GiB
    # a deleted snapshot stays, nameless, while volumes are based on it
    client.snapshot_delete('s1')
    [kept] = [s for s in cluster.snapshots.values() if s['onVolume'] == 'v1' and
              s['parentName'] == '']
    assert kept['deleted'] and kept['name'] == '*' + kept['globalId']
    assert error(sim, client.volume_create, {'name': 'c3', 'parent': 's1'}).name == \
        'objectDoesNotExist'
    for name in ('c2', 'v1', 'c1'):
        client.volumes_reassign([{'volume': name, 'detach': 'all'}])
        client.volume_delete(name)
    assert cluster.names() == set() and cluster.snapshots == {}
    assert os.listdir(cluster.dir) == []   # no backing file left


def test_os_brick_connector_attaches_and_detaches(sim: Any) -> None:
    """The connector sends SP_OURID as a string; its device path is the backing
    file here (StorPool's /dev/storpool-byid cannot exist on this machine)."""
    from os_brick.initiator import connector as brick_connector

    from tests.fixtures.storpool_sim import APIError

    client = api(sim)
    client.volume_create({'name': 'os--volume-vol1', 'size': GiB})
    conn = brick_connector.InitiatorConnector.factory('STORPOOL', None)
    data = {'client_id': 1, 'volume': 'vol1', 'access_mode': 'rw'}
    device = conn.connect_volume(data)
    assert device['path'] == sim.cluster.path('os--volume-vol1')
    attach = [b for _, call, b in sim.calls if call == 'VolumesReassignWait'][-1]
    assert attach == {'reassign': [{'volume': 'os--volume-vol1',
                                    'rw': [str(sp_fixture.OUR_ID)]}]}
    assert [(a['client'], a['rights']) for a in sim.cluster.attachments()] == [
        (sp_fixture.OUR_ID, 'rw')]
    with open(device['path'], 'r+b') as f:
        f.write(b'data')
    assert error(sim, client.volume_delete, 'os--volume-vol1').name == 'invalidParam'
    # "is open at" while the kernel closes the device: the connector retries
    sim.cluster.fail_next.append(APIError('busy', "'os--volume-vol1' is open at client 1"))
    conn.disconnect_volume(data, device)
    assert sim.cluster.attachments() == []
    client.volume_delete('os--volume-vol1')
