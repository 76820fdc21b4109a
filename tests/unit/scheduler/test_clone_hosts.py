"""scheduler.hosts.select_clone_host: where clones of a live image run.

Unpublished, on the host that holds its files; published, on that host while
it is not much busier than the least loaded host with the live image store,
else there. Rows as compute services write them, in a real SQLite DB.
"""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.scheduler import hosts
from tests.unit.scheduler.test_hosts import QEMU, _servers, _service

STORE = dict(QEMU, live_image_store=True)


@pytest.fixture
def cloud(gc_db):
    """'bless' holds the live image; 'store' can map published ones; 'plain' cannot."""
    _service('bless', STORE)
    _service('store', STORE)
    _service('plain', QEMU)


def test_an_unpublished_live_image_launches_on_its_host_only(cloud):
    _servers('bless', 10)
    assert hosts.select_clone_host(None, 'bless', published=False) == 'bless'


def test_a_published_one_keeps_the_local_fast_path_while_its_host_has_room(cloud):
    _servers('bless', 3)
    assert hosts.select_clone_host(None, 'bless', published=True) == 'bless'


def test_a_busy_blessing_host_sends_clones_to_a_host_with_the_store(cloud):
    _servers('bless', 4)  # the default local_slack
    assert hosts.select_clone_host(None, 'bless', published=True) == 'store'


def test_a_down_blessing_host_is_no_obstacle_once_published(gc_db):
    _service('bless', STORE, down=True)
    _service('store', STORE)
    assert hosts.select_clone_host(None, 'bless', published=True) == 'store'
    with pytest.raises(exception.Conflict, match='down'):
        hosts.select_clone_host(None, 'bless', published=False)


def test_a_forced_host_must_have_the_store(cloud):
    assert hosts.select_clone_host('nova:store', 'bless', published=True) == 'store'
    with pytest.raises(exception.Invalid, match='no access to the live image store'):
        hosts.select_clone_host('nova:plain', 'bless', published=True)
