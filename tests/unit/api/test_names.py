"""User-given names and Cobalt action bodies are checked before anything is written.

A name reaches a clone's identity data as one ``name=...`` line (fw_cfg for
QEMU and libvirt), so a control character there could inject a line; the
schemas refuse them (Nova's name rule) and the identity writer refuses them
again.
"""

import pytest

from gridcentric_storage.api import validation
from gridcentric_storage.api.schemas import common
from gridcentric_storage.common import context, exception
from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.virt import base, qemu_live
from tests.unit.api.test_live_images import (
    _server,
    _settle_image,
    boot_files,  # noqa: F401 (autouse fixture)
)

BAD_NAMES = ['web\nid=evil', 'a\rb', 'tab\there', 'esc\x1b[2J', 'del\x7f', 'c1\x85',
             'line\u2028sep', ' lead', 'trail ', 'end\n']
GOOD_NAMES = ['web', 'a b', 'Zürich 東京', 'x-1.2_3', 'd\u00e9j\u00e0 vu', 'a' * 255]


@pytest.mark.parametrize('name', BAD_NAMES)
def test_name_pattern_refuses_control_characters_and_outer_spaces(name):
    with pytest.raises(exception.Invalid, match='not a valid name'):
        validation.validate(name, common.NAME)


@pytest.mark.parametrize('name', GOOD_NAMES)
def test_name_pattern_takes_printable_names(name):
    validation.validate(name, common.NAME)
    validation.validate(name, common.OPTIONAL_NAME)


def test_optional_names_may_be_null_or_empty():
    for value in (None, ''):
        validation.validate(value, common.OPTIONAL_NAME)
    with pytest.raises(exception.Invalid):
        validation.validate('', common.NAME)
    with pytest.raises(exception.Invalid, match='too long'):
        validation.validate('a' * 256, common.NAME)


def test_a_final_newline_does_not_pass_any_pattern():
    """Python's "$" also matches before a final newline; schema patterns mean the end."""
    for schema in (common.HOST, common.TAG, common.IDENTIFIER, common.UUID):
        with pytest.raises(exception.Invalid):
            validation.validate('a0000000-0000-0000-0000-000000000000\n', schema)


def test_names_with_control_characters_are_400_everywhere(cloud, make_backend):
    backend = make_backend()
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()
    cases = [
        ('POST', '/v1/volumes', {'volume': {'size': 1, 'name': 'v\n'}}),
        ('POST', '/v1/volumes', {'volume': {'size': 1, 'availability_zone': 'az\x00'}}),
        ('POST', '/v1/snapshots', {'snapshot': {'volume_id': volume['volume']['id'],
                                                'name': 's\x1b'}}),
        ('POST', '/v1/backends', {'backend': {'name': 'b\n', 'driver': 'fake'}}),
        ('PUT', '/v1/backends/%s' % backend['id'], {'backend': {'name': 'b\nx'}}),
        ('POST', '/v1/servers', {'server': {'name': 'web\nid=evil', 'memory_mb': 256,
                                            'kernel': 'vmlinuz'}}),
    ]
    for method, path, body in cases:
        response = cloud.request(method, path, json=body)
        assert response.status_code == 400, (path, body, response.text)
    names = [v['name'] for v in cloud.request('GET', '/v1/volumes').json()['volumes']]
    assert names == [None]


@pytest.mark.parametrize('body', [
    {'co_bless': 'x'},
    {'co_bless': {'name': {'a': 1}}},
    {'gc_bless': {'name': 'gold\nid=evil'}},
    {'co_bless': {'name': 'gold', 'extra': 1}},
    {'co_bless': []},
    {'co_launch': 'x'},
    {'co_discard': 'x'},
    {'gc_discard': {'force': True}},
    {'co_list_launched': [1]},
    {'gc_list_blessed': {'a': 1}},
])
def test_cobalt_actions_with_bad_arguments_are_400_and_write_nothing(cloud, body):
    source = _server(cloud)
    response = cloud.request('POST', '/v2.1/servers/%s/action' % source['id'], json=body)
    assert response.status_code == 400, response.text
    assert response.json()['badRequest']['code'] == 400
    server = cloud.request('GET', '/v1/servers/%s' % source['id']).json()['server']
    assert (server['status'], server['task_state']) == ('ACTIVE', None)
    assert cloud.request('GET', '/v1/live-images').json()['live_images'] == []


def test_cobalt_actions_take_null_arguments(cloud):
    source = _server(cloud)
    path = '/v2.1/servers/%s/action' % source['id']
    assert cloud.request('POST', path, json={'co_list_blessed': None}).status_code == 200
    blessed = cloud.request('POST', path, json={'gc_bless': None})
    assert blessed.status_code == 200, blessed.text
    image_id = blessed.json()[0]['id']
    _settle_image(cloud, image_id)
    listed = cloud.request('POST', '/v2.1/servers/%s/action' % image_id,
                           json={'gc_list_launched': None})
    assert listed.status_code == 200 and listed.json() == []


@pytest.mark.parametrize('launch', [
    {'name': 'web\nid=evil'},
    {'name': 'web\r'},
    {'key_name': 'k\x00'},
    {'guest': {'role': 'web\nid=evil'}},
    {'guest': {'bad key': 'x'}},
    {'guest': {'role\n': 'x'}},
    {'num_instances': 'two'},
])
def test_launches_with_control_characters_are_400_and_launch_nothing(cloud, launch):
    source = _server(cloud)
    image = cloud.request('POST', '/v1/live-images', json={
        'live_image': {'server_id': source['id']}}).json()['live_image']
    _settle_image(cloud, image['id'])
    for path, body in (('/v1/live-images/%s/action' % image['id'], {'launch': launch}),
                       ('/v2.1/servers/%s/action' % image['id'], {'co_launch': launch})):
        response = cloud.request('POST', path, json=body)
        assert response.status_code == 400, (path, response.text)
    assert [s['id'] for s in cloud.request('GET', '/v1/servers').json()['servers']] == [
        source['id']]


def test_bless_name_with_a_newline_is_400_on_v1(cloud):
    source = _server(cloud)
    response = cloud.request('POST', '/v1/live-images', json={
        'live_image': {'server_id': source['id'], 'name': 'gold\nid=evil'}})
    assert response.status_code == 400, response.text
    server = cloud.request('GET', '/v1/servers/%s' % source['id']).json()['server']
    assert server['task_state'] is None


def test_a_bless_that_cannot_record_its_image_does_not_leave_the_server_blessing(
        cloud, monkeypatch):
    source = db_servers.server_get(_server(cloud)['id'])

    def broken(values):
        raise RuntimeError('the database refused the row')

    monkeypatch.setattr(db_servers, 'live_image_create', broken)
    ctxt = context.RequestContext(user_id='admin', project_id='admin', is_admin=True)
    with pytest.raises(RuntimeError):
        compute_api.ComputeAPI().bless(ctxt, source, 'gold')
    assert db_servers.server_get(source['id'])['task_state'] is None


# ---- the identity-data writer (virt/qemu_live.guest_files), defence in depth
def _files(tmp_path, **fields):
    clone = base.CloneSpec(**dict({'id': 'c1', 'name': 'web'}, **fields))
    return qemu_live.guest_files(str(tmp_path), clone, 'fa:16:3e:00:00:01')


def test_identity_data_is_one_line_per_field(tmp_path):
    files = _files(tmp_path, guest={'role': 'web\tblue'})
    with open(files['instance']) as f:
        assert f.read() == 'id=c1\nname=web\nmac=fa:16:3e:00:00:01\n'
    with open(files['guest']) as f:
        assert f.read() == 'role=web\tblue\n'


@pytest.mark.parametrize('fields', [
    {'name': 'web\nid=evil'},
    {'name': 'web\r'},
    {'name': 'a\x1bb'},
    {'name': 'a\u2028b'},
    {'id': 'c1\nname=x'},
    {'guest': {'role': 'web\rid=evil'}},
    {'guest': {'role': 'a\x0bb'}},
    {'guest': {'ro\tle': 'x'}},
    {'guest': {'a=b': 'x'}},
    {'guest': {'': 'x'}},
])
def test_identity_writer_refuses_control_characters(tmp_path, fields):
    with pytest.raises(exception.Invalid):
        _files(tmp_path, **fields)
    assert not (tmp_path / 'fw-instance').exists()
