"""The cinder driver's option mapping, what the conformance suite (which runs Cinder's
RBD driver on the test Ceph) does not cover: the options a backend accepts, how
they become one backend's Cinder configuration without changing this service's
own, secrets, stats, and a host without Cinder."""

import os
import stat
import subprocess
import sys
import uuid
from typing import Any

import pytest
from oslo_config import cfg

from gridcentric_storage.api.controllers import backends as backends_api
from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import cinder, cinder_config, cinder_maps
from tests.conformance.volume.backends_cinder import RBD_DRIVER, cinder_or_skip

CONF = cfg.CONF
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))))


def make(options: dict[str, Any], backend_id: str | None = None) -> cinder.CinderDriver:
    return cinder.CinderDriver(backend_id or str(uuid.uuid4()), 'c1', options)


# ---- options (no Cinder needed: the API host may not have it)
@pytest.mark.parametrize('options, reason', [
    ({}, "'volume_driver' is a required property"),
    ({'volume_driver': 'os.system'}, 'does not match'),
    ({'volume_driver': 'cinder.volume.drivers.rbd.RBDDriver; rm'}, 'does not match'),
    ({'volume_driver': RBD_DRIVER, 'driver_options': {'RBD_POOL': 'x'}}, 'does not match'),
    ({'volume_driver': RBD_DRIVER, 'driver_options': {'rbd_pool': None}}, 'not valid'),
    ({'volume_driver': RBD_DRIVER, 'pool': 'x'}, 'Additional properties'),
    ({'volume_driver': 'cinder.volume.drivers.acme.AcmeDriver'}, 'give driver_volume_type'),
])
def test_bad_options_are_refused(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(exception.InvalidDriverOptions, match=reason):
        make(options)


def test_connection_type_is_known_before_connecting() -> None:
    rbd = make({'volume_driver': RBD_DRIVER})
    acme = make({'volume_driver': 'cinder.volume.drivers.acme.AcmeDriver',
                 'driver_volume_type': 'iscsi'})
    # hosts read it from the class (transfer.prepare, compute): one per backend
    assert (type(rbd).DRIVER_VOLUME_TYPE, type(acme).DRIVER_VOLUME_TYPE) == ('rbd', 'iscsi')
    assert isinstance(rbd, cinder.CinderDriver) and isinstance(acme, cinder.CinderDriver)
    assert cinder.CinderDriver.DRIVER_VOLUME_TYPE == 'cinder'


def test_the_api_checks_options_before_anything_is_written(gc_conf: Any) -> None:
    gc_conf.set_override('enabled_drivers', ['cinder'], group='volume')
    good = {'volume_driver': RBD_DRIVER, 'driver_options': {'rbd_pool': 'volumes'}}
    assert backends_api.validated_options('cinder', 'b1', good) == good
    for bad in ({'volume_driver': 'cinder.volume.drivers.rbd.RBDDriver', 'x': 1},
                {'volume_driver': RBD_DRIVER, 'driver_options': {'../etc': 'x'}},
                {'driver_options': {'rbd_pool': 'volumes'}}):
        with pytest.raises(exception.InvalidDriverOptions):
            backends_api.validated_options('cinder', 'b1', bad)


def test_driver_secrets_are_masked_by_the_api(gc_conf: Any) -> None:
    gc_conf.set_override('enabled_drivers', ['cinder'], group='volume')
    shown = backends_api._mask('cinder', {
        'volume_driver': RBD_DRIVER, 'driver_options': {'rbd_pool': 'volumes'},
        'driver_secrets': {'chap_password': 'hunter2'}})
    assert shown == {'volume_driver': RBD_DRIVER, 'driver_options': {'rbd_pool': 'volumes'},
                     'driver_secrets': '***'}


def test_service_start_does_not_import_cinder() -> None:
    """Loading the driver class (stevedore, at service start) needs no Cinder."""
    code = ('import sys; from gridcentric_storage.volume.drivers import cinder; '
            "cinder.CinderDriver('b', 'n', {'volume_driver': %r}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'cinder'))"
            % RBD_DRIVER)
    out = subprocess.run([sys.executable, '-c', code], cwd=TOP, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == '[]'


def test_setup_without_cinder_says_what_to_install(monkeypatch: Any) -> None:
    monkeypatch.setattr(cinder_config, '_imported', False)
    monkeypatch.setitem(sys.modules, 'cinder', None)  # import cinder: ImportError
    driver = make({'volume_driver': RBD_DRIVER})
    with pytest.raises(exception.DriverError, match=r'driver cinder needs the cinder '
                       r'package \(PyPI cinder >= 29\) on this host'):
        driver.do_setup(None)


# ---- stats and connections (pure mappings)
def test_stats_in_our_keys() -> None:
    raw = {'vendor_name': 'Open Source', 'driver_version': '1.3.0',
           'storage_protocol': 'ceph', 'reserved_percentage': 0,
           'max_over_subscription_ratio': '20.0', 'qos_support': True,
           'location_info': 'ceph:/etc/ceph/ceph.conf:fsid:admin:rbd',
           'volume_backend_name': 'RBD', 'replication_enabled': False,
           'pools': [{'pool_name': 'fast', 'total_capacity_gb': 'infinite',
                      'free_capacity_gb': 'unknown', 'thin_provisioning_support': True}]}
    stats = cinder_maps.stats(raw, 'c1', '1.0', RBD_DRIVER, 'rbd')
    assert stats['volume_backend_name'] == 'c1'
    assert (stats['driver_version'], stats['cinder_driver_version']) == ('1.0', '1.3.0')
    assert (stats['total_capacity_gb'], stats['free_capacity_gb']) == (0.0, 0.0)
    assert stats['cinder_total_capacity'] == 'infinite'
    # no volume types to read QoS from: no limits through Cinder's drivers
    assert stats['QoS_support'] is False and stats['cinder_qos_support'] is True
    assert 'qos_support' not in stats
    assert stats['thin_provisioning_support'] is True
    assert stats['thick_provisioning_support'] is False
    assert stats['max_over_subscription_ratio'] == 20.0
    assert stats['pool_name'] == 'fast'
    assert 'location_info' not in stats  # host paths stay out
    assert stats['replication_enabled'] is False  # other capabilities stay


def test_free_never_exceeds_total() -> None:
    stats = cinder_maps.stats({'total_capacity_gb': 10, 'free_capacity_gb': 12.5}, 'c1',
                              '1.0', RBD_DRIVER, 'rbd')
    assert (stats['total_capacity_gb'], stats['free_capacity_gb']) == (10.0, 10.0)


def test_rbd_connection_as_qemu_spec() -> None:
    data = {'name': 'volumes/volume-1', 'hosts': ['10.0.0.1', '::1'], 'ports': ['6789', '3300'],
            'auth_enabled': True, 'auth_username': 'cinder',
            'keyring': '[client.cinder]\n\tkey = AQBx==\n'}
    with cinder_maps.qemu_rbd(data) as spec:
        head, _, keyring = spec.partition(':keyring=')
        assert head == ('rbd:volumes/volume-1:mon_host=10.0.0.1\\:6789\\;\\:\\:1\\:3300'
                        ':id=cinder')
        assert 'AQBx' not in spec  # the key is in a file, not on a command line
        with open(keyring) as f:
            assert f.read() == data['keyring']
        assert stat.S_IMODE(os.stat(keyring).st_mode) == 0o600
    assert not os.path.exists(keyring)


# ---- one backend's Cinder configuration (needs Cinder: the PyPI lane)
@pytest.fixture
def rbd_opts(gc_conf: Any) -> dict[str, cfg.Opt]:
    cinder_or_skip()
    cls = cinder_config.import_cinder(RBD_DRIVER)
    return cinder_config.driver_opts(RBD_DRIVER, cls)


def test_options_are_checked_against_the_drivers_own(rbd_opts: dict[str, cfg.Opt]) -> None:
    cinder_config.check_options(rbd_opts, {'rbd_pool': 'volumes', 'rbd_max_clone_depth': 3,
                                           'rbd_keyring_conf': '/etc/ceph/k'}, {})
    bad = [({'rbd_pol': 'volumes'}, {}, 'has no option rbd_pol'),
           ({'rbd_max_clone_depth': 'deep'}, {}, 'rbd_max_clone_depth='),
           ({'chap_password': 'hunter2'}, {}, 'chap_password is a secret'),
           ({'rbd_pool': ['a', 'b']}, {}, 'rbd_pool=.*takes one value'),
           ({}, {'rbd_max_clone_depth': 'deep'}, r'rbd_max_clone_depth=\*\*\*')]
    for values, secrets, reason in bad:
        with pytest.raises(exception.InvalidDriverOptions, match=reason):
            cinder_config.check_options(rbd_opts, values, secrets)


def test_each_backend_has_its_own_configuration(rbd_opts: dict[str, cfg.Opt],
                                                gc_conf: Any) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    one = cinder_config.configuration(first, '/srv/gc', rbd_opts,
                                      {'rbd_pool': 'one', 'rbd_max_clone_depth': 2})
    two = cinder_config.configuration(second, '/srv/gc', rbd_opts, {'rbd_pool': 'two'})
    try:
        assert (one.rbd_pool, one.rbd_max_clone_depth) == ('one', 2)
        assert (two.rbd_pool, two.rbd_max_clone_depth) == ('two', 5)  # Cinder's default
        assert one.volumes_dir == f'/srv/gc/cinder/{first}/volumes'
        assert one.config_group == f'cinder_backend_{first}'
        # options changed and the backend set up again: the dropped one is gone
        again = cinder_config.configuration(first, '/srv/gc', rbd_opts, {'rbd_pool': 'one'})
        assert (again.rbd_pool, again.rbd_max_clone_depth) == ('one', 5)
    finally:
        cinder_config.forget(first)
        cinder_config.forget(second)
    assert one.rbd_pool == 'rbd'  # a deleted backend's values are gone


def test_importing_cinder_leaves_this_process_alone() -> None:
    """Cinder's modules re-register [DEFAULT] state_path and host and set oslo.db's
    default connection at import: ours stay; our [nova] keystoneauth adapter still
    loads (Cinder's [nova] interface beside valid_interfaces broke it). Its
    eventlet imports leave a green ``http.server`` on the ``http`` package: a
    threaded HTTP server made from it after (the StorPool simulator's)
    deadlocked; it is the real one again. A fresh process: what was imported
    before matters."""
    cinder_or_skip()
    code = '\n'.join([
        'from oslo_config import cfg',
        'from gridcentric_storage import conf',
        'from gridcentric_storage.volume.drivers import cinder_config',
        "conf.parse_args(['--config-file', '/dev/null'])",
        'CONF = cfg.CONF',
        'before = (CONF.state_path, CONF.host, CONF.database.connection)',
        f'cinder_config.import_cinder({RBD_DRIVER!r})',
        'after = (CONF.state_path, CONF.host, CONF.database.connection)',
        'assert before == after, (before, after)',
        "assert after[0] == '/var/lib/gridcentric-storage', after",
        "assert after[2].endswith('/gridcentric.sqlite'), after",
        'import http.server, socketserver, threading',
        'assert http.server.socketserver is socketserver, http.server.socketserver',
        'assert socketserver.threading is threading',
        # gridcentric-api's Nova client still loads its keystoneauth adapter
        'from gridcentric_storage.conf import nova as nova_conf',
        'from keystoneauth1 import loading as ks_loading, session as ks_session',
        'nova_conf.register_opts(CONF)',
        "assert 'interface' not in CONF.nova",
        "ks_loading.load_adapter_from_conf_options(CONF, 'nova', session=ks_session.Session())",
        "print(CONF.volume_name_template)"])  # Cinder's own options are there too
    proc = subprocess.run([sys.executable, '-c', code], cwd=TOP, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == 'volume-%s'


def test_an_unknown_driver_class_is_a_setup_error(gc_conf: Any) -> None:
    cinder_or_skip()
    driver = make({'volume_driver': 'cinder.volume.drivers.acme.AcmeDriver',
                   'driver_volume_type': 'iscsi'})
    with pytest.raises(exception.DriverError, match='cannot load Cinder driver '
                       'cinder.volume.drivers.acme.AcmeDriver'):
        driver.do_setup(None)

