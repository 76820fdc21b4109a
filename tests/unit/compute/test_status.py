"""Status writes of servers (compute.status.set_server) on a real SQLite file:
one compare-and-swap against the state tables, so a move another writer made
first is refused, never overwritten."""

import uuid

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.common.states import ServerStatus, ServerTask
from gridcentric_storage.compute.status import set_server
from gridcentric_storage.db import servers as db_servers


@pytest.fixture
def server(gc_db):
    return db_servers.server_create({
        'id': str(uuid.uuid4()), 'name': 's', 'project_id': 'p', 'user_id': 'u',
        'host': 'h', 'status': ServerStatus.BUILD, 'memory_mb': 64, 'vcpus': 1,
        'extra': {}, 'guest': {}})


def _row(server):
    row = db_servers.server_get(server['id'])
    return row['status'], row['task_state']


def test_a_launch_that_ends_makes_the_server_active(server):
    set_server(server['id'], {'status': ServerStatus.ACTIVE, 'task_state': None,
                              'vmgenid': 'g1'})
    assert _row(server) == ('ACTIVE', None)
    assert db_servers.server_get(server['id'])['vmgenid'] == 'g1'


def test_an_active_write_after_a_failure_is_refused_and_the_error_stays(server):
    set_server(server['id'], {'status': ServerStatus.ERROR, 'fault': 'the disk failed'})
    with pytest.raises(exception.IllegalTransition, match='from ERROR to ACTIVE'):
        set_server(server['id'], {'status': ServerStatus.ACTIVE, 'task_state': None})
    row = db_servers.server_get(server['id'])
    assert (row['status'], row['fault']) == ('ERROR', 'the disk failed')


def test_a_task_starts_from_none_and_a_second_task_is_refused(server):
    set_server(server['id'], {'status': ServerStatus.ACTIVE})
    set_server(server['id'], {'task_state': ServerTask.BLESSING})
    with pytest.raises(exception.IllegalTransition, match='from blessing to migrating'):
        set_server(server['id'], {'task_state': ServerTask.MIGRATING})
    assert _row(server) == ('ACTIVE', 'blessing')
    set_server(server['id'], {'task_state': None})
    assert _row(server) == ('ACTIVE', None)


def test_a_write_without_a_move_changes_only_its_columns(server):
    set_server(server['id'], {'fault': 'noted'})
    assert _row(server) == ('BUILD', None)
    assert db_servers.server_get(server['id'])['fault'] == 'noted'


def test_a_server_that_is_gone_is_not_found(server):
    db_servers.server_destroy(server['id'])
    with pytest.raises(exception.ServerNotFound):
        set_server(server['id'], {'status': ServerStatus.ACTIVE})
