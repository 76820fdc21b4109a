"""/v1/images through the real API and RPC: a project's own images and the public ones."""

import os

from tests.fixtures.images import store_file

MEMBER, OTHER, ADMIN = 'alice:projA', 'bob:projB', 'admin:admin'


def names(cloud, token):
    response = cloud.request('GET', '/v1/images', token=token)
    assert response.status_code == 200, response.text
    return [(i['name'], i['visibility']) for i in response.json()['images']]


def test_listing_shows_the_projects_and_the_public_images(cloud):
    store_file('debian.qcow2', b'public')
    store_file('shared', b'public')
    store_file('shared', b'mine', project='projA')
    store_file('secret', b'theirs', project='projB')
    store_file('pending', b'', project='projA')  # an export that is being written
    assert names(cloud, MEMBER) == [('debian.qcow2', 'public'), ('shared', 'private')]
    assert names(cloud, OTHER) == [('debian.qcow2', 'public'), ('secret', 'private'),
                                   ('shared', 'public')]
    member = cloud.request('GET', '/v1/images', token=MEMBER).json()['images']
    assert all('hosts' not in i for i in member)  # members see no hosts
    admin = cloud.request('GET', '/v1/images', token=ADMIN).json()['images']
    assert [(i['name'], i['hosts']) for i in admin] == [('debian.qcow2', ['test-host']),
                                                       ('shared', ['test-host'])]


def test_members_delete_their_projects_images_only(cloud, gc_conf):
    public = store_file('shared', b'public')
    mine = store_file('shared', b'mine', project='projA')
    theirs = store_file('secret', b'theirs', project='projB')
    store_file('pending', b'', project='projA')
    assert cloud.request('DELETE', '/v1/images/shared', token=MEMBER).status_code == 204
    assert not os.path.exists(mine) and os.path.exists(public)
    assert names(cloud, MEMBER) == [('shared', 'public')]
    for name in ('shared', 'secret', 'missing'):
        response = cloud.request('DELETE', '/v1/images/%s' % name, token=MEMBER)
        assert response.status_code == 404, response.text
    assert os.path.exists(public) and os.path.exists(theirs)
    assert cloud.request('DELETE', '/v1/images/pending', token=MEMBER).status_code == 409
    assert cloud.request('DELETE', '/v1/images/.hidden', token=MEMBER).status_code == 400


def test_a_host_that_does_not_answer_is_left_out(cloud, gc_conf):
    """Up by its last heartbeat, but nothing serves its RPC: no 500 for the others."""
    from gridcentric_storage.db import api as db

    db.service_heartbeat('ghost-host', gc_conf.compute.topic, 'gridcentric-compute')
    gc_conf.set_override('rpc_call_timeout', 1, group='compute')  # gc_conf clears it
    store_file('mine', b'mine', project='projA')
    assert names(cloud, MEMBER) == [('mine', 'private')]
    assert cloud.request('DELETE', '/v1/images/mine', token=MEMBER).status_code == 204
    assert cloud.request('DELETE', '/v1/images/mine', token=MEMBER).status_code == 404
