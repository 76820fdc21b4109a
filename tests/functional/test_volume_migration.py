"""Volume migration across backends through the real API, RPC, os-brick and drivers.

Data written before a migration is read back after it through the same
volume id; the source's data is gone from its backend afterwards. Ceph and
the StorPool simulator run where tools/ceph.sh and the fixtures can start
them; each test says why it skips otherwise.
"""

import os

import pytest

from gridcentric_storage.common.states import VolumeStatus as V
from gridcentric_storage.db import api as db
from tests.fixtures import ceph, loopfs
from tests.fixtures.services import file_backend, wait_for
from tests.functional.test_multihost import deployment, pg_url  # noqa: F401 (fixtures)
from tests.functional.test_volume_lifecycle import create_volume, download, settle, upload

MiB = 1 << 20
MEMBER = 'member:project-a'


def _pattern(seed: bytes, size: int = 3 * MiB + 4096) -> bytes:
    """Data no backend would produce by itself: not zeros, not one repeated block."""
    block = (seed * 4096)[:4096]
    return b''.join(block[i % 7:] + block[:i % 7] for i in range(size // 4096))


def migrate(cloud, volume_id, token='admin:admin', **args):
    return cloud.request('POST', '/v1/volumes/%s/action' % volume_id, token=token,
                         json={'migrate': args})


def migrated(cloud, volume_id, backend):
    """Migrate, wait until settled, and check where the volume now is."""
    response = migrate(cloud, volume_id, backend=backend['name'])
    assert response.status_code == 202, response.text
    volume = settle(cloud, 'volumes', volume_id, away=('migrating',))
    assert volume['migration_status'] == 'success', volume
    assert volume['migration_progress'] == 100
    assert volume['backend_id'] == backend['id']
    return volume


def no_temporary_rows(volume_id):
    return not db.volume_migration_targets(volume_id)


def volume_files(path):
    return sorted(n for n in os.listdir(path) if n.startswith('volume-'))


def test_file_to_file_keeps_data_and_id(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'], name='db')
    data = _pattern(b'migrate me')
    upload(cloud, volume['id'], data)

    moved = migrated(cloud, volume['id'], two)
    assert moved['name'] == 'db' and moved['size'] == 1
    assert download(cloud, volume['id'], len(data)) == data
    wait_for(lambda: no_temporary_rows(volume['id']), what='the old data deleted')
    assert volume_files(tmp_path / 'one') == []
    assert len(volume_files(tmp_path / 'two')) == 1

    # and back again: the name the backend knows follows each move
    migrated(cloud, volume['id'], one)
    assert download(cloud, volume['id'], len(data)) == data
    wait_for(lambda: volume_files(tmp_path / 'two') == [], what='the old data deleted')
    # the volume is an ordinary volume afterwards: snapshot, extend, delete
    snap = cloud.request('POST', '/v1/snapshots', json={'snapshot': {
        'volume_id': volume['id']}})
    assert settle(cloud, 'snapshots', snap.json()['snapshot']['id'])['status'] == 'available'
    response = cloud.request('DELETE', '/v1/volumes/%s?cascade=true' % volume['id'])
    assert response.status_code == 202
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'deleted'
    assert volume_files(tmp_path / 'one') == []


def test_raw_reflink_to_qcow2(cloud, tmp_path):
    for mountpoint in loopfs.mounted_or_skip('xfs', tmp_path):
        raw = file_backend(cloud, os.path.join(mountpoint, 'files'), name='raw')
        qcow2 = file_backend(cloud, tmp_path / 'qcow2', name='qcow2')
        assert raw['capabilities']['copy_on_write'] == 'reflink'
        assert qcow2['capabilities']['copy_on_write'] == 'qcow2'
        volume = create_volume(cloud, size=1, backend_id=raw['id'])
        data = _pattern(b'raw to qcow2')
        upload(cloud, volume['id'], data)
        migrated(cloud, volume['id'], qcow2)
        assert download(cloud, volume['id'], len(data)) == data
        source_dir = os.path.join(mountpoint, 'files')
        wait_for(lambda d=source_dir: volume_files(d) == [], what='the raw source deleted')
        cloud.stop()  # release the files before the filesystem is unmounted


def test_migration_by_placement_tags(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    fast = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'fast', 'driver': 'file', 'options': {'path': str(tmp_path / 'fast')},
        'tags': ['ssd']}}).json()['backend']
    volume = create_volume(cloud, size=1, backend_id=one['id'])
    response = migrate(cloud, volume['id'], tags=['ssd'])
    assert response.status_code == 202, response.text
    moved = settle(cloud, 'volumes', volume['id'], away=('migrating',))
    assert moved['backend_id'] == fast['id'] and moved['migration_status'] == 'success'


def test_cinder_spelling(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'])
    response = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'], json={
        'os-migrate_volume': {'host': 'test-host@two#pool', 'force_host_copy': True}})
    assert response.status_code == 202, response.text
    moved = settle(cloud, 'volumes', volume['id'], away=('migrating',))
    assert moved['backend_id'] == two['id']


def test_refusals(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'])

    def refused(code, fragment, **args):
        response = migrate(cloud, volume['id'], **args)
        assert response.status_code == code, response.text
        assert fragment in response.text, response.text
        assert settle(cloud, 'volumes', volume['id'])['status'] == 'available'

    refused(400, 'already', backend='one')
    refused(404, 'could not be found', backend='nowhere')
    refused(400, 'either a backend or placement', backend='two', tags=['x'])
    refused(400, 'either a backend or placement')
    assert migrate(cloud, volume['id'], token=MEMBER, backend='two').status_code in (403, 404)

    response = cloud.request('POST', '/v1/backends/%s/action' % two['id'],
                             json={'disable': {'reason': 'maintenance'}})
    assert response.status_code in (200, 202, 204), response.text
    refused(400, 'No valid backend', backend='two')
    cloud.request('POST', '/v1/backends/%s/action' % two['id'], json={'enable': {}})

    snap = cloud.request('POST', '/v1/snapshots', json={'snapshot': {
        'volume_id': volume['id']}}).json()['snapshot']
    assert settle(cloud, 'snapshots', snap['id'])['status'] == 'available'
    refused(400, 'snapshot', backend='two')
    cloud.request('DELETE', '/v1/snapshots/%s' % snap['id'])
    settle(cloud, 'snapshots', snap['id'])

    small = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'small', 'driver': 'fake', 'options': {'capacity_gb': 0.5}}})
    assert small.status_code == 201, small.text
    refused(400, 'No valid backend', backend='small')

    # attached to a host (not a server): detach first
    attach = cloud.request('POST', '/v1/attachments', json={'attachment': {
        'volume_id': volume['id']}})
    if attach.status_code == 202:
        assert settle(cloud, 'volumes', volume['id'])['status'] == 'in-use'
        response = migrate(cloud, volume['id'], backend='two')
        assert response.status_code == 400 and 'not to a server' in response.text, \
            response.text


def test_members_see_status_only(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = cloud.request('POST', '/v1/volumes', token=MEMBER,
                           json={'volume': {'size': 1}}).json()['volume']
    settle(cloud, 'volumes', volume['id'])
    target = one if volume['backend_id'] != one['id'] else two
    migrated(cloud, volume['id'], target)
    mine = cloud.request('GET', '/v1/volumes/%s' % volume['id'], token=MEMBER).json()
    assert mine['volume']['status'] == 'available'
    assert not any('migrat' in key or 'mig-status' in key for key in mine['volume'])
    admin = cloud.request('GET', '/v1/volumes/%s' % volume['id']).json()['volume']
    assert admin['os-vol-mig-status-attr:migstat'] == 'success'


def test_restart_mid_migration_keeps_the_source(cloud, tmp_path):
    """A volume left ``migrating`` (the service died mid-copy) with a half-written
    destination: the restart removes the destination, the source is intact, and
    a second migration works."""
    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'])
    data = _pattern(b'survive a crash')
    upload(cloud, volume['id'], data)

    # What a stop mid-copy leaves: the volume migrating, the destination row
    # and its partly written data on backend two.
    from gridcentric_storage.common import context
    from gridcentric_storage.volume import migration, status
    status.move_volume(volume['id'], V.MIGRATING, V.AVAILABLE, migration_status='migrating',
                       migration_progress=40)
    migrator = cloud.compute.volumes.migrations
    target = migrator._create_target(context.get_admin_context(), db.volume_get(volume['id']),
                                     db.backend_get(two['id']))
    assert len(volume_files(tmp_path / 'two')) == 1
    with open(tmp_path / 'two' / volume_files(tmp_path / 'two')[0], 'r+b') as f:
        f.seek(1 << 20)
        f.write(b'partial' * 1000)
    assert migration.is_target(db.volume_get(target['id']))

    cloud.compute.volumes.init_host()
    settled = settle(cloud, 'volumes', volume['id'])
    assert settled['status'] == 'available' and settled['migration_status'] == 'error'
    assert settled['backend_id'] == one['id']
    wait_for(lambda: volume_files(tmp_path / 'two') == [], what='the destination removed')
    assert no_temporary_rows(volume['id'])
    assert download(cloud, volume['id'], len(data)) == data

    migrated(cloud, volume['id'], two)
    assert download(cloud, volume['id'], len(data)) == data


def test_failed_destination_leaves_source_usable(cloud, tmp_path):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    broken = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'broken', 'driver': 'fake', 'options': {'fail_on': ['create_volume']}}})
    assert broken.status_code == 201, broken.text
    volume = create_volume(cloud, size=1, backend_id=one['id'])
    data = _pattern(b'still here')
    upload(cloud, volume['id'], data)
    response = migrate(cloud, volume['id'], backend='broken')
    assert response.status_code == 202, response.text
    failed = settle(cloud, 'volumes', volume['id'], away=('migrating',))
    assert failed['status'] == 'available' and failed['migration_status'] == 'error'
    assert 'create_volume failed' in failed['status_reason']
    assert failed['backend_id'] == one['id']
    assert download(cloud, volume['id'], len(data)) == data
    wait_for(lambda: no_temporary_rows(volume['id']), what='the destination row removed')


# ---------------------------------------------------------------- Ceph RBD

MIGRATION_POOL = 'gc-migration'


@pytest.fixture(scope='module')
def cli():
    cli = ceph.cli_or_skip()
    if MIGRATION_POOL not in cli.run('ceph', 'osd', 'pool', 'ls').split():
        cli.run('ceph', 'osd', 'pool', 'create', MIGRATION_POOL, '8', '8')
        cli.run('ceph', 'osd', 'pool', 'application', 'enable', MIGRATION_POOL, 'rbd')
    return cli


def rbd_backend(cloud, cli, name, pool):
    response = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': name, 'driver': 'rbd', 'options': {
            'pool': pool, 'ceph_conf': cli.conf, 'keyring_in_connection_info': True}}})
    assert response.status_code == 201, response.text
    return response.json()['backend']


def images(cli, pool):
    return set(cli.rbd('ls', pool) or [])


def test_file_to_rbd_host_copy(cloud, tmp_path, cli):
    one = file_backend(cloud, tmp_path / 'one', name='one')
    ceph_backend = rbd_backend(cloud, cli, 'ceph', 'rbd')
    volume = create_volume(cloud, size=1, backend_id=one['id'])
    data = _pattern(b'file to ceph')
    upload(cloud, volume['id'], data)
    moved = migrated(cloud, volume['id'], ceph_backend)
    assert moved['os-vol-mig-status-attr:name_id'] not in (None, volume['id'])
    assert 'volume-%s' % moved['os-vol-mig-status-attr:name_id'] in images(cli, 'rbd')
    assert download(cloud, volume['id'], len(data)) == data
    wait_for(lambda: volume_files(tmp_path / 'one') == [], what='the file source deleted')
    response = cloud.request('DELETE', '/v1/volumes/%s' % volume['id'])
    assert response.status_code == 202
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'deleted'
    assert 'volume-%s' % moved['os-vol-mig-status-attr:name_id'] not in images(cli, 'rbd')


def test_rbd_to_rbd_driver_assisted(cloud, cli):
    """Same cluster, another pool: librbd copies it, no temporary volume, same name."""
    source = rbd_backend(cloud, cli, 'ceph-a', 'rbd')
    dest = rbd_backend(cloud, cli, 'ceph-b', MIGRATION_POOL)
    volume = create_volume(cloud, size=1, backend_id=source['id'])
    data = _pattern(b'ceph pool to pool')
    upload(cloud, volume['id'], data)
    name = 'volume-%s' % volume['id']
    moved = migrated(cloud, volume['id'], dest)
    assert moved['os-vol-mig-status-attr:name_id'] is None   # no temporary row was used
    assert name in images(cli, MIGRATION_POOL) and name not in images(cli, 'rbd')
    assert download(cloud, volume['id'], len(data)) == data
    # force_host_copy: the host-assisted path between the same two backends
    response = migrate(cloud, volume['id'], backend='ceph-a', force_host_copy=True)
    assert response.status_code == 202, response.text
    back = settle(cloud, 'volumes', volume['id'], away=('migrating',))
    assert back['backend_id'] == source['id'] and back['migration_status'] == 'success'
    assert back['os-vol-mig-status-attr:name_id'] not in (None, volume['id'])
    assert download(cloud, volume['id'], len(data)) == data
    wait_for(lambda: name not in images(cli, MIGRATION_POOL), what='the old image deleted')
    cloud.request('DELETE', '/v1/volumes/%s' % volume['id'])
    assert settle(cloud, 'volumes', volume['id'])['status'] == 'deleted'


# ---------------------------------------------------------------- StorPool

def test_storpool_same_cluster_changes_template(tmp_path):
    """StorPool moves the data itself: the volume takes the destination's template;
    a backend on another cluster (API endpoint) is refused (host copy)."""
    from gridcentric_storage.volume.drivers.storpool import StorPoolDriver
    from gridcentric_storage.volume.objects import VolumeRef
    from tests.fixtures import storpool

    templates = [{'name': 'hdd', 'replication': 3}, {'name': 'ssd', 'replication': 2}]
    with storpool.cluster(tmp_path, templates=templates) as sim:
        hdd = StorPoolDriver('b-hdd', 'hdd', {'template': 'hdd'})
        hdd.do_setup(None)
        ref = VolumeRef({'id': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e', 'size': 1})
        hdd.create_volume(ref)
        sp_name = hdd._vol(ref.id)
        path = os.path.join(sim.cluster.dir, sim.cluster.volume(sp_name)['globalId'])
        data = _pattern(b'storpool')
        with open(path, 'r+b') as f:
            f.write(data)
        moved, update = hdd.migrate_volume(None, ref, {
            'driver': 'storpool', 'backend_id': 'b-ssd', 'backend_name': 'ssd',
            'options': {'template': 'ssd'}})
        assert moved and update is None
        volume = sim.cluster.volume(sp_name)
        assert volume['templateName'] == 'ssd' and volume['replication'] == 2
        with open(path, 'rb') as f:
            assert f.read(len(data)) == data
        elsewhere = hdd.migrate_volume(None, ref, {
            'driver': 'storpool', 'backend_id': 'b-x', 'backend_name': 'x',
            'options': {'template': 'ssd', 'api_host': '192.0.2.1', 'api_port': 81}})
        assert elsewhere == (False, None)
        assert hdd.migrate_volume(None, ref, {'driver': 'rbd', 'options': {}}) == (False, None)


def test_cli_volume_migrate_waits(cloud, tmp_path):
    import json

    from tests.fixtures.services import gc_api

    one = file_backend(cloud, tmp_path / 'one', name='one')
    two = file_backend(cloud, tmp_path / 'two', name='two')
    volume = create_volume(cloud, size=1, backend_id=one['id'], name='cli-vol')
    result = gc_api(cloud, '--json', 'volume-migrate', 'cli-vol', 'two', '--wait')
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown['id'] == volume['id'] and shown['backend_id'] == two['id']
    assert shown['status'] == 'available' and shown['migration_status'] == 'success'
    refused = gc_api(cloud, 'volume-migrate', 'cli-vol', 'two')
    assert refused.returncode == 1 and 'already' in refused.stderr


# ---------------------------------------------------------------- LVM (iSCSI)

def test_lvm_to_file(cloud, tmp_path):
    """LVM exports over iSCSI (tgt): this host reads and writes its volumes through
    os-brick's kernel iSCSI login, for streams and migration alike."""
    from tests.fixtures import lvm as lvm_fixture
    from tests.fixtures import tgt as tgt_fixture

    if (not os.path.exists('/sys/module/iscsi_tcp')
            or os.environ.get('GC_TEST_ISCSI_KERNEL') != '1'):
        pytest.skip('an lvm volume is opened through os-brick ISCSIConnector, which logs '
                    'in with iscsiadm and needs the kernel iSCSI initiator (iscsi_tcp, '
                    'iscsid): not available on this machine (opt in with '
                    'GC_TEST_ISCSI_KERNEL=1 where it is)')
    tgt_fixture.tgtd_or_skip()
    for vg in lvm_fixture.vg_or_skip(tmp_path, size_mib=3072):
        lvm = cloud.request('POST', '/v1/backends', json={'backend': {
            'name': 'lvm', 'driver': 'lvm', 'options': {
                'volume_group': vg.vg, 'lvm_system_dir': vg.system_dir,
                'activation': False, 'targets_dir': str(tmp_path / 'targets')}}})
        assert lvm.status_code == 201, lvm.text
        files = file_backend(cloud, tmp_path / 'files', name='files')
        volume = create_volume(cloud, size=1, backend_id=lvm.json()['backend']['id'])
        data = _pattern(b'lvm to file')
        upload(cloud, volume['id'], data)
        migrated(cloud, volume['id'], files)
        assert download(cloud, volume['id'], len(data)) == data
        cloud.stop()


# ---------------------------------------------------------------- two hosts

def test_migration_between_two_hosts(deployment, tmp_path):  # noqa: F811
    """gridcentric-compute on two hosts (PostgreSQL, RabbitMQ): the source host reads
    its volume and writes it to the destination host's data server."""

    def _status(dep, volume_id, wanted):
        volume = dep.call('GET', '/v1/volumes/%s' % volume_id).json()['volume']
        return volume if volume['status'] == wanted else None

    dep = deployment
    dep.start_two_hosts()
    backends = {}
    for host in ('compute-a', 'compute-b'):
        response = dep.call('POST', '/v1/backends', json={'backend': {
            'name': 'file-' + host, 'driver': 'file', 'host': host,
            'options': {'path': str(tmp_path / ('store-' + host))}}})
        assert response.status_code == 201, response.text + dep.logs()
        backends[host] = response.json()['backend']
    response = dep.call('POST', '/v1/volumes', json={'volume': {
        'size': 1, 'backend_id': backends['compute-a']['id']}})
    volume_id = response.json()['volume']['id']
    wait_for(lambda: _status(dep, volume_id, 'available'), timeout=60)
    data = _pattern(b'across hosts')
    assert dep.call('PUT', '/v1/volumes/%s/data' % volume_id, data=data).status_code == 200
    wait_for(lambda: _status(dep, volume_id, 'available'), timeout=60)

    response = dep.call('POST', '/v1/volumes/%s/action' % volume_id, json={
        'migrate': {'backend': 'file-compute-b'}})
    assert response.status_code == 202, response.text
    moved = wait_for(lambda: _status(dep, volume_id, 'available'), timeout=120)
    assert moved['migration_status'] == 'success', moved['status_reason'] or dep.logs()
    assert moved['backend_id'] == backends['compute-b']['id']
    assert moved['host'] == 'compute-b'
    got = dep.call('GET', '/v1/volumes/%s/data' % volume_id, stream=True)
    assert got.raw.read(len(data)) == data
    got.close()
    wait_for(lambda: volume_files(tmp_path / 'store-compute-a') == [], timeout=60)
