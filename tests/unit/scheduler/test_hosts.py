"""scheduler.hosts.select_host: where new servers and clones run, from the services table.

The rows are what compute services write (a heartbeat with the host's
capabilities) and the servers each host runs, in a real SQLite DB.
"""

import datetime
import uuid

import pytest
from oslo_config import cfg

from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db import models
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.scheduler import hosts

CONF = cfg.CONF
NO_QEMU = {'hypervisor': False, 'hypervisor_reason': 'qemu-system-x86_64 not found'}
QEMU = {'hypervisor': True, 'hypervisor_reason': None}


def _service(host, capabilities=QEMU, topic=None, down=False):
    """A compute service's heartbeat (``capabilities`` None: an older service)."""
    db.service_heartbeat(host, topic or CONF.compute.topic, 'gridcentric-compute',
                         capabilities=capabilities)
    if down:
        long_ago = db.utcnow() - datetime.timedelta(seconds=CONF.compute.service_down_time + 60)
        with db.writer() as session:
            session.query(models.Service).filter_by(host=host).update(
                {'last_seen_at': long_ago}, synchronize_session=False)


def _servers(host, count):
    for index in range(count):
        db_servers.server_create({'id': str(uuid.uuid4()), 'name': '%s-%d' % (host, index),
                                  'host': host, 'status': 'ACTIVE', 'memory_mb': 64,
                                  'vcpus': 1, 'guest': {}, 'extra': {}})


@pytest.fixture
def cloud(gc_db):
    """Three hosts: h1 runs two servers, h2 one, h3 none but has no QEMU."""
    for host in ('h1', 'h2'):
        _service(host)
    _service('h3', NO_QEMU)
    _servers('h1', 2)
    _servers('h2', 1)


def test_the_host_with_a_hypervisor_running_fewest_servers_wins(cloud):
    assert hosts.select_host(None) == 'h2'
    _servers('h2', 2)
    assert hosts.select_host('nova') == 'h1'


def test_a_tie_goes_to_the_first_host_by_name(gc_db):
    for host in ('hb', 'ha', 'hc'):
        _service(host)
    assert hosts.select_host(None) == 'ha'


def test_a_service_without_capabilities_has_a_hypervisor(gc_db):
    _service('old', capabilities=None)
    _service('new', NO_QEMU)
    assert hosts.select_host(None) == 'old'


def test_down_hosts_and_other_topics_are_not_chosen(cloud):
    _service('idle-but-down', down=True)
    _service('idle-other-topic', topic='not-compute')
    assert hosts.select_host(None) == 'h2'


def test_a_forced_host_is_used_whatever_its_load(cloud):
    assert hosts.select_host('nova:h1') == 'h1'
    assert hosts.select_host('nova:') == 'h2'  # no host after the colon: placed as usual


def test_a_forced_host_must_be_up(cloud):
    _service('h4', down=True)
    for host in ('h4', 'nowhere'):
        error = pytest.raises(exception.Invalid, hosts.select_host, 'nova:%s' % host).value
        assert 'no compute service is up on host %s' % host in error.message


def test_a_forced_host_without_hypervisor_is_a_409_saying_why(cloud):
    error = pytest.raises(exception.NoHypervisor, hosts.select_host, 'nova:h3').value
    assert error.code == 409
    assert 'h3' in error.message and 'qemu-system-x86_64 not found' in error.message


def test_a_required_host_is_used_whatever_its_load(cloud):
    assert hosts.select_host(None, required='h1') == 'h1'
    assert hosts.select_host('nova:h1', required='h1') == 'h1'


def test_a_required_host_refuses_another_forced_one(cloud):
    error = pytest.raises(exception.Invalid, hosts.select_host, 'nova:h2',
                          required='h1').value
    assert error.code == 400 and 'on host h1, not h2' in error.message


def test_a_required_host_without_hypervisor_is_a_409(cloud):
    error = pytest.raises(exception.NoHypervisor, hosts.select_host, None,
                          required='h3').value
    assert error.code == 409 and 'qemu-system-x86_64 not found' in error.message


def test_a_required_host_that_is_down_is_a_409(cloud):
    _service('h1', down=True)
    error = pytest.raises(exception.Conflict, hosts.select_host, None,
                          required='h1').value
    assert error.code == 409
    assert 'host h1, which holds the live image, is down' in error.message


def test_no_host_with_a_hypervisor_is_a_409_naming_them(gc_db):
    _service('a', NO_QEMU)
    _service('b', {'hypervisor': False, 'hypervisor_reason': 'no /dev/kvm and no TCG'})
    error = pytest.raises(exception.NoHypervisor, hosts.select_host, None).value
    assert error.code == 409
    for text in ('a, b', 'qemu-system-x86_64 not found', 'no /dev/kvm and no TCG'):
        assert text in error.message


def test_no_host_up_is_a_409(gc_db):
    error = pytest.raises(exception.NoComputeService, hosts.select_host, None).value
    assert error.code == 409
    _service('h1', down=True)
    error = pytest.raises(exception.NoComputeService, hosts.select_host, 'nova').value
    assert error.code == 409 and 'no compute service is up' in error.message
