"""The storpool driver against the StorPool API simulator, for what the conformance
suite does not cover: options, configuration, templates and placement, QoS,
capacity, attachments and the os-brick it needs. The cluster's state is read
through the simulator (what an operator's ``storpool`` CLI would show)."""

import pathlib
import subprocess
import types
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from oslo_config import cfg

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import storpool
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from tests.fixtures import storpool as sp_fixture
from tests.fixtures.images import ADMIN, host_images

GiB, MiB = 1 << 30, 1 << 20
TEMPLATES = [{'name': 'ssd', 'replication': 2, 'placeAll': 'ssd', 'iops': 5000, 'bw': 200},
             {'name': 'hdd', 'replication': 3, 'placeAll': 'hdd'}]


@pytest.fixture
def sim(tmp_path: Any) -> Iterator[Any]:
    with sp_fixture.cluster(tmp_path, templates=TEMPLATES) as simulator:
        yield simulator


def make(options: dict[str, Any] | None = None) -> storpool.StorPoolDriver:
    driver = storpool.StorPoolDriver('b1', 'sp', options or {})
    driver.do_setup(None)
    driver.check_for_setup_error()
    return driver


def vol(size: int = 1) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size})


def sp_volume(sim: Any, volume: VolumeRef) -> dict[str, Any]:
    with sim.cluster.lock:
        return dict(sim.cluster.volume(f'os--volume-{volume.id}'))


def test_options_are_checked() -> None:
    with pytest.raises(exception.InvalidDriverOptions, match='template decides replication'):
        storpool.StorPoolDriver('b1', 'sp', {'template': 'ssd', 'replication': 2})
    with pytest.raises(exception.InvalidDriverOptions):
        storpool.StorPoolDriver('b1', 'sp', {'pool': 'x'})
    with pytest.raises(exception.InvalidDriverOptions):
        storpool.StorPoolDriver('b1', 'sp', {'replication': 4})
    assert 'auth_token' in storpool.StorPoolDriver.SECRET_OPTIONS


def test_old_os_brick_fails_clearly_at_load(tmp_path: Any) -> None:
    """Debian 12's os-brick 6.1.0 has no StorPool API client: the driver says which
    os-brick it needs (in that lane for real, elsewhere with the module hidden)."""
    driver = storpool.StorPoolDriver('b1', 'sp', {'auth_token': 'x'})
    with mock.patch.object(storpool, 'storpool_utils', None):
        with pytest.raises(exception.DriverError, match=r'StorPool needs os-brick >= 6\.10'):
            driver.do_setup(None)
    if sp_fixture.storpool_utils is None:
        with pytest.raises(exception.DriverError, match=r'StorPool needs os-brick >= 6\.10'):
            driver.do_setup(None)


def test_setup_without_storpool_conf_needs_the_options(tmp_path: Any) -> None:
    sp_fixture.client_or_skip()
    with sp_fixture.cluster(tmp_path / 'a') as sim, sp_fixture.conf_at(tmp_path / 'none'):
        with pytest.raises(exception.DriverError, match='no StorPool API token.*does not exist'):
            make()
        # the options alone reach the cluster
        driver = make({'api_host': '127.0.0.1', 'api_port': sim.port,
                       'auth_token': sim.token})
        volume = vol()
        driver.create_volume(volume)
        assert sp_volume(sim, volume)['size'] == GiB
        wrong = storpool.StorPoolDriver('b1', 'sp', {'auth_token': 'wrong'})
        wrong.do_setup(None)    # no /etc/storpool.conf: the default 127.0.0.1:81
        with mock.patch.object(wrong._api, 'url', f'127.0.0.1:{sim.port}'), \
                pytest.raises(exception.DriverError, match='authError'):
            wrong.check_for_setup_error()


def test_unreachable_api_is_a_driver_error(sim: Any) -> None:
    driver = storpool.StorPoolDriver('b1', 'sp', {'api_port': 1})   # nothing listens
    driver.do_setup(None)
    no_sleep = types.SimpleNamespace(sleep=lambda s: None)  # os-brick retries 5 times
    with mock.patch.object(sp_fixture.storpool_utils, 'time', no_sleep), \
            pytest.raises(exception.DriverError, match='does not answer'):
        driver.check_for_setup_error()


def test_template_decides_placement_and_qos(sim: Any) -> None:
    driver = make({'template': 'ssd'})
    volume = vol()
    driver.create_volume(volume)
    created = sp_volume(sim, volume)
    assert (created['templateName'], created['replication'], created['placeAll'],
            created['iops'], created['bw']) == ('ssd', 2, 'ssd', 5000, 200)
    stats = driver.get_volume_stats(refresh=True)
    assert (stats['storpool_template'], stats['storpool_replication'],
            stats['storpool_placeall'], stats['storpool_iops'], stats['storpool_bw']) == (
        'ssd', 2, 'ssd', 5000, 200)
    assert stats['storpool_templates'] == ['hdd', 'ssd']
    # a clone and a volume from a snapshot stay in the backend's template
    clone = vol(2)
    driver.create_cloned_volume(clone, volume)
    assert sp_volume(sim, clone)['templateName'] == 'ssd'
    with pytest.raises(exception.DriverError, match='template nope does not exist'):
        make({'template': 'nope'})


def test_placement_and_qos_without_template(sim: Any) -> None:
    driver = make({'replication': 2, 'placeall': 'hdd', 'placetail': 'ssd', 'iops': 300})
    volume = vol()
    driver.create_volume(volume)
    created = sp_volume(sim, volume)
    assert (created['templateName'], created['replication'], created['placeAll'],
            created['placeTail'], created['iops'], created['bw']) == (
        None, 2, 'hdd', 'ssd', 300, None)
    driver.update_qos(volume, iops=1000, bw=50)
    assert (sp_volume(sim, volume)['iops'], sp_volume(sim, volume)['bw']) == (1000, 50)
    with pytest.raises(exception.DriverError, match='placement group nowhere does not'):
        make({'placeall': 'nowhere'}).create_volume(vol())


def test_capacity_from_disks_list(sim: Any) -> None:
    """Live disks' allocation groups divided by the replication; the ejected disk
    does not count; written data takes free space."""
    driver = make({'template': 'hdd'})
    ratio = 4096 / (4096 + 128)
    stats = driver.get_volume_stats(refresh=True)
    assert stats['total_capacity_gb'] == pytest.approx(3 * 200 * 0.5 * ratio / 3, abs=0.01)
    assert stats['free_capacity_gb'] == stats['total_capacity_gb']
    volume = vol(2)
    driver.create_volume(volume)
    with open(sim.cluster.path(f'os--volume-{volume.id}'), 'r+b') as f:
        f.write(b'x' * 500 * MiB)
    after = driver.get_volume_stats(refresh=True)
    assert after['provisioned_capacity_gb'] == stats['provisioned_capacity_gb'] + 2
    # 500 MiB x replication 3: 3 allocation groups of 512 MiB, seen through / 3
    assert after['free_capacity_gb'] == pytest.approx(
        stats['free_capacity_gb'] - 0.5 * ratio, abs=0.01)


def test_connection_names_the_hosts_client_id(sim: Any) -> None:
    driver = make()
    volume = vol()
    driver.create_volume(volume)
    mine = driver.initialize_connection(volume, {'host': cfg.CONF.host})  # this host
    assert mine == {'driver_volume_type': 'storpool',
                    'data': {'client_id': sp_fixture.OUR_ID, 'volume': volume.id,
                             'access_mode': 'rw', 'volume_id': volume.id}}
    other = driver.initialize_connection(volume, {'host': sp_fixture.OTHER_HOST})
    assert other['data']['client_id'] == sp_fixture.OTHER_ID
    with pytest.raises(exception.DriverError) as raised:
        driver.initialize_connection(volume, {'host': 'secret-host-name'})
    assert 'SP_OURID' in str(raised.value) and 'secret-host-name' not in str(raised.value)
    with pytest.raises(exception.DriverError, match='objectDoesNotExist'):
        driver.initialize_connection(vol(), {'host': cfg.CONF.host})


def test_terminate_and_delete_detach(sim: Any) -> None:
    driver = make()
    volume = vol()
    driver.create_volume(volume)
    name = f'os--volume-{volume.id}'
    with sim.cluster.lock:
        sim.cluster.reassign([{'volume': name, 'rw': [str(sp_fixture.OUR_ID),
                                                      str(sp_fixture.OTHER_ID)]}])
    # one attachment ends: the host's own os-brick detaches, a second
    # attachment on that host keeps the volume
    driver.terminate_connection(volume, {'host': sp_fixture.OTHER_HOST})
    assert [a['client'] for a in sim.cluster.attachments()] == [
        sp_fixture.OUR_ID, sp_fixture.OTHER_ID]
    driver.terminate_connection(volume, None)   # every access ends
    assert sim.cluster.attachments() == []
    with sim.cluster.lock:   # attached elsewhere: StorPool refuses a plain delete
        sim.cluster.reassign([{'volume': name, 'ro': [sp_fixture.OTHER_ID]}])
    driver.delete_volume(volume)    # Cinder's order: detach from all, then delete
    assert name not in sim.cluster.names()


def test_deleted_snapshot_is_kept_for_its_children(sim: Any) -> None:
    driver = make()
    volume = vol()
    driver.create_volume(volume)
    snapshot = SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id})
    driver.create_snapshot(snapshot)
    child = vol()
    driver.create_volume_from_snapshot(child, snapshot)
    driver.delete_snapshot(snapshot)
    kept = [s for s in sim.cluster.snapshots.values() if s['deleted']]
    assert len(kept) == 1 and kept[0]['name'] == '*' + kept[0]['globalId']
    with pytest.raises(exception.DriverError, match='objectDoesNotExist'):
        driver.create_volume_from_snapshot(vol(), snapshot)  # its name is gone
    driver.delete_volume(child)
    # the volume itself is based on its snapshot (StorPool's chain): still kept
    assert [s['deleted'] for s in sim.cluster.snapshots.values()] == [True]
    driver.delete_volume(volume)
    assert not sim.cluster.snapshots and sim.cluster.names() == set()


def test_revert_to_another_volumes_snapshot_is_refused(sim: Any) -> None:
    driver = make()
    first, second = vol(), vol()
    driver.create_volume(first)
    driver.create_volume(second)
    snapshot = SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': first.id})
    driver.create_snapshot(snapshot)
    with pytest.raises(exception.DriverError, match='not in the chain'):
        driver.revert_to_snapshot(None, second, snapshot)


def test_image_copies_leave_no_attachment(sim: Any, tmp_path: Any) -> None:
    driver = make()
    volume = vol()
    driver.create_volume(volume)
    image = tmp_path / 'image.raw'
    image.write_bytes(b'\x42' * MiB)
    images = host_images(str(tmp_path))
    driver.copy_image_to_volume(ADMIN, volume, images, str(image))
    assert sim.cluster.attachments() == []
    out = str(tmp_path / 'out.qcow2')
    driver.copy_volume_to_image(ADMIN, volume, images, {'path': out, 'disk_format': 'qcow2'})
    assert sim.cluster.attachments() == []
    # the connector attached it to this host read-write, then read-only
    reassigns = [body for method, call, body in sim.calls if call == 'VolumesReassignWait']
    assert [list(r['reassign'][0]) for r in reassigns] == [
        ['volume', 'rw'], ['volume', 'detach', 'force'], ['volume', 'ro'],
        ['volume', 'detach', 'force']]
    raw = tmp_path / 'out.raw'
    subprocess.run(['qemu-img', 'convert', '-O', 'raw', out, str(raw)], check=True)
    with open(raw, 'rb') as f:
        assert f.read(2 * MiB) == b'\x42' * MiB + bytes(MiB)
    assert raw.stat().st_size == GiB


def test_conf_file_is_os_bricks(tmp_path: Any) -> None:
    """The driver's configuration is os-brick's get_conf: sections, .d files, prefix."""
    sp_fixture.client_or_skip()
    with sp_fixture.cluster(tmp_path) as sim:
        extra = pathlib.Path(tmp_path, 'etc', 'storpool.conf.d')
        extra.mkdir()
        (extra / 'openstack.conf').write_text('SP_OPENSTACK_VOLUME_PREFIX=gc\n')
        driver = make()
        volume = vol()
        driver.create_volume(volume)
        assert f'gc--volume-{volume.id}' in sim.cluster.names()


def test_registered_as_storpool(gc_conf: Any) -> None:
    from gridcentric_storage.volume import drivers

    gc_conf.set_override('enabled_drivers', ['storpool'], group='volume')
    assert drivers.get_driver_class('storpool') is storpool.StorPoolDriver
    assert storpool.StorPoolDriver.DRIVER_VOLUME_TYPE == 'storpool'
