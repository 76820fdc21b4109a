"""Live images of Nova instances once published to the live image store (API side).

Same stand-ins as test_api: a stand-in Nova, the real database and policy.
"""

import pytest
from oslo_config import cfg

from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from tests.unit.nova.test_api import (  # noqa: F401
    ADMIN,
    ALICE,
    ROOT,
    _blessed,
    cobalt,
    ctx,
    hinted_hosts,
)

CONF = cfg.CONF


def _hosts_hint(nova):
    return hinted_hosts(nova.created[-1])


def _store_hosts(*hosts, store=True):
    for host in hosts:
        db.service_heartbeat(host, CONF.compute.topic, 'gridcentric-compute',
                             capabilities={'live_image_store': store})


def test_a_published_live_images_clones_may_run_on_every_host_with_the_store(
        cobalt, nova, compute):  # noqa: F811
    _, live_image = _blessed(cobalt, nova, compute)
    _store_hosts('nova-host-1', 'nova-host-3')
    _store_hosts('nova-host-2', store=False)
    cobalt.launch(ctx(ALICE), live_image, None, ROOT)
    assert _hosts_hint(nova) == ['nova-host-1']         # not published yet
    db_servers.live_image_set_publish(live_image, 'published',
                                      publish_location={'image': 'gc-live-x'})
    cobalt.launch(ctx(ALICE), live_image, None, ROOT)
    # the blessing host first, then the others with the store; never one without
    assert _hosts_hint(nova) == ['nova-host-1', 'nova-host-3']


def test_the_publish_status_shows_as_on_gridcentrics_own_api(cobalt, nova, compute):  # noqa: F811
    _, live_image = _blessed(cobalt, nova, compute)
    shown = cobalt.show(ctx(ALICE), live_image, ROOT)
    assert shown['launch_anywhere'] is False and 'publish_status' not in shown
    db_servers.live_image_set_publish(live_image, 'error',
                                      publish_reason='pool rbd does not exist')
    admin = cobalt.show(ctx(ADMIN), live_image, ROOT)
    assert (admin['publish_status'], admin['publish_reason']) == (
        'error', 'pool rbd does not exist')
    db_servers.live_image_set_publish(live_image, 'published', publish_reason=None)
    shown = cobalt.show(ctx(ALICE), live_image, ROOT)
    assert shown['launch_anywhere'] is True
    assert 'publish_status' not in shown and 'publish_reason' not in shown


def test_without_the_hint_key_no_clone_is_created(cobalt, nova, compute):  # noqa: F811
    _, live_image = _blessed(cobalt, nova, compute)
    CONF.clear_override('scheduler_hint_key', group='nova')
    with pytest.raises(exception.Conflict, match='no \\[nova\\] scheduler_hint_key'):
        cobalt.launch(ctx(ALICE), live_image, None, ROOT)
    assert nova.created == []


def test_a_discard_waits_for_a_publish_under_way(cobalt, nova, compute):  # noqa: F811
    _, live_image = _blessed(cobalt, nova, compute)
    db_servers.live_image_set_publish(live_image, 'publishing')
    with pytest.raises(exception.InvalidState, match='wait until its publish finishes'):
        cobalt.discard(ctx(ALICE), live_image, None)
    assert db_servers.live_image_get(live_image)['status'] == 'blessed'
    db_servers.live_image_set_publish(live_image, 'published')
    cobalt.discard(ctx(ALICE), live_image, None)
    assert compute.calls.get(timeout=10) == ('discard_live_image', live_image)
