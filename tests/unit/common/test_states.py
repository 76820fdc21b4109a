"""The state tables: what may follow what, and that anything else raises."""

import pytest

from gridcentric_storage.common import exception, states
from gridcentric_storage.common.states import (
    AttachmentStatus,
    LiveImageStatus,
    SnapshotStatus,
    VolumeStatus,
)

MACHINES = [(states.VOLUME, VolumeStatus), (states.SNAPSHOT, SnapshotStatus),
            (states.ATTACHMENT, AttachmentStatus), (states.LIVE_IMAGE, LiveImageStatus),
            (states.SERVER, states.ServerStatus), (states.SERVER_TASK, states.ServerTask),
            (states.CACHE_ENTRY, states.CacheEntryStatus)]


@pytest.mark.parametrize('machine,names', MACHINES, ids=lambda m: getattr(m, 'resource', ''))
def test_every_named_state_is_in_the_table_and_nothing_else(machine, names):
    assert machine.states == set(names)


def test_a_volume_is_created_used_and_deleted_through_the_table():
    path = ['creating', 'available', 'attaching', 'in-use', 'extending', 'in-use',
            'available', 'uploading', 'available', 'deleting']
    for current, new in zip(path, path[1:], strict=False):
        states.VOLUME.check('v', current, new)


@pytest.mark.parametrize('current,new', [('creating', 'in-use'), ('deleting', 'available'),
                                         ('error', 'available'), ('reverting', 'in-use'),
                                         ('in-use', 'reverting')])
def test_a_move_outside_the_table_raises_a_409(current, new):
    with pytest.raises(exception.IllegalTransition) as err:
        states.VOLUME.check('vol-1', current, new)
    assert err.value.code == 409
    assert 'vol-1' in err.value.message and current in err.value.message


def test_staying_in_a_state_is_not_a_move():
    states.SNAPSHOT.check('s', 'deleting', 'deleting')


def test_several_current_states_must_all_allow_the_move():
    states.VOLUME.check('v', ('available', 'in-use'), 'extending')
    with pytest.raises(exception.IllegalTransition):
        states.VOLUME.check('v', ('available', 'creating'), 'deleting')


def test_sources_lists_where_a_move_may_start():
    assert states.VOLUME.sources('deleting') == ('available', 'deleting', 'error',
                                                 'error_deleting', 'in-use')


def test_states_are_plain_strings_on_the_wire():
    import json
    assert json.dumps({'status': VolumeStatus.IN_USE}) == '{"status": "in-use"}'
    assert VolumeStatus.AVAILABLE == 'available'
