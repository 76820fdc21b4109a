"""The LVM driver at command level: the exact lvm2/tgt/dd argv it runs.

What these tests cover cannot run on the test machines: they have no
device-mapper, so thin pools and thin volumes, COW snapshots (``lvcreate -s``),
``lvconvert --merge``, activation (``lvchange -ay``, ``/dev/<vg>/<lv>``) and
lvmlockd's shared VGs fail there in lvm2 itself ("Can't create snapshot without
using device-mapper kernel driver."). The recording executor
(``lvm_fakes.FakeHost``) answers in lvm2's real JSON report format, so parsing is
exercised too. The same driver runs against real lvm2 on a loop device and a
real tgtd in ``tests/functional/test_lvm_tgt.py`` (what only this driver does)
and ``tests/conformance/volume`` (the scenarios every driver shares).
"""

import os
import uuid

import pytest
from os_brick.initiator import connector as brick_connector

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import lvm as lvm_driver
from gridcentric_storage.volume.drivers import lvm_commands
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef
from gridcentric_storage.volume.targets import tgt
from tests.unit.volume.drivers.lvm_fakes import EXTENT, FakeHost, GiB, lvm_json

TAG = ['--yes', '--addtag', 'gridcentric-storage']


def new_volume(size: int = 1, **extra) -> VolumeRef:
    return VolumeRef({'id': str(uuid.uuid4()), 'size': size, 'name': 'data', **extra})


def new_snapshot(volume: VolumeRef) -> SnapshotRef:
    return SnapshotRef({'id': str(uuid.uuid4()), 'volume_id': volume.id,
                        'volume_size': volume.size})


def make(tmp_path, host: FakeHost | None = None, **options):
    host = host or FakeHost()
    opts = {'volume_group': 'vg0', 'targets_dir': str(tmp_path / 'targets'), **options}
    driver = lvm_driver.LVMDriver('b1', 'lvm-1', opts, execute=host)
    return driver, host


def copy(src: str, dst: str) -> str:
    return f'qemu-img convert -q -n -f raw -O raw -T none -t none {src} {dst}'


def dm(name: str) -> str:
    return name.replace('-', '--')


# ---------------------------------------------------------------- options
@pytest.mark.parametrize('options', [
    {}, {'volume_group': 'vg0'}, {'volume_group': '-vg', 'targets_dir': '/t'},
    {'volume_group': 'vg0', 'targets_dir': '/t', 'lvm_type': 'cow'},
    {'volume_group': 'vg0', 'targets_dir': '/t', 'volume_clear': 'shred'},
    {'volume_group': 'vg0', 'targets_dir': '/t', 'target_portal': '127.0.0.1'},
    {'volume_group': 'vg0', 'targets_dir': '/t', 'target_prefix': 'volume-'},
    {'volume_group': 'vg0', 'targets_dir': '/t', 'device_path_template': '/dev/%s'},
])
def test_bad_options_refused(options):
    with pytest.raises(exception.InvalidDriverOptions):
        lvm_driver.LVMDriver('b', 'b', options)


def test_defaults(tmp_path):
    assert lvm_driver.LVMDriver.default_options('b1', '/var/lib/gc') == {
        'targets_dir': '/var/lib/gc/targets/b1'}
    driver, _ = make(tmp_path)
    assert (driver.thin, driver.clear, driver.chap, driver.activation, driver.shared) == (
        False, True, True, True, False)
    assert driver.pool == 'vg0-pool'
    assert driver.portal == '127.0.0.1:3260'
    assert driver.prefix == 'iqn.2010-10.org.openstack:'


def test_environment_and_driverloaded(tmp_path):
    driver, host = make(tmp_path, lvm_system_dir='/etc/gc-lvm', activation=False)
    driver.create_volume(new_volume())
    assert all(c[1:3] == ['--driverloaded', 'n'] for c in host.calls if c[0] in (
        'lvs', 'lvcreate'))
    assert all(e['LVM_SYSTEM_DIR'] == '/etc/gc-lvm' and e['LVM_SUPPRESS_FD_WARNINGS'] == '1'
               for e in host.envs)
    driver, host = make(tmp_path)
    driver.create_volume(new_volume())
    assert not any('--driverloaded' in c for c in host.calls)
    assert all('LVM_SYSTEM_DIR' not in e or e['LVM_SYSTEM_DIR'] == os.environ.get(
        'LVM_SYSTEM_DIR') for e in host.envs)


# ---------------------------------------------------------------- thick
def test_thick_create_extend_delete(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(2)
    name = volume.name
    assert driver.create_volume(volume) is None
    driver.extend_volume(volume, 3)
    driver.delete_volume(volume)
    assert host.commands('lvcreate', 'lvextend', 'lvremove', 'blkdiscard') == [
        f'lvcreate -n {name} -L 2g --yes --addtag gridcentric-storage vg0',
        f'lvextend -L 3g vg0/{name}',
        f'blkdiscard --zeroout /dev/vg0/{name}',
        f'lvremove -f vg0/{name}']


def test_thick_without_device_mapper_stays_one_segment(tmp_path):
    driver, host = make(tmp_path, host=FakeHost(activation=False), activation=False)
    volume = new_volume(1)
    driver.create_volume(volume)
    assert host.commands('lvcreate') == [
        f'lvcreate --driverloaded n -n {volume.name} -L 1g --yes --addtag '
        'gridcentric-storage --alloc contiguous vg0']


def test_no_device_mapper_data_path_is_a_loop_over_the_extents(tmp_path):
    """Fallback data path: a loop device at pe_start + first_pe * extent_size."""
    driver, host = make(tmp_path, host=FakeHost(activation=False), activation=False)
    volume = new_volume(2)
    driver.create_volume(volume)
    host.calls.clear()
    driver.delete_volume(volume)
    offset = (1 << 20) + 10 * EXTENT   # the fake's LVs start at PE 10, pe_start 1 MiB
    assert host.commands('losetup', 'blkdiscard', 'lvremove') == [
        f'losetup --find --show --offset {offset} --sizelimit {2 * GiB} /dev/sdb',
        'blkdiscard --zeroout /dev/loop7',
        'losetup -d /dev/loop7',
        f'lvremove --driverloaded n -f vg0/{volume.name}']


def test_volume_clear_none_deletes_without_zeroing(tmp_path):
    driver, host = make(tmp_path, volume_clear='none')
    volume = new_volume(2)
    driver.create_volume(volume)
    driver.delete_volume(volume)
    assert host.commands('qemu-img', 'blkdiscard') == []


def test_thick_snapshot_clone_and_revert(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(1)
    driver.create_volume(volume)
    snap = new_snapshot(volume)
    driver.create_snapshot(snap)
    with pytest.raises(exception.DriverError, match='has snapshots'):
        driver.delete_volume(volume)
    clone, from_snap = new_volume(2), new_volume(1)
    driver.create_cloned_volume(clone, volume)
    driver.create_volume_from_snapshot(from_snap, snap)
    driver.revert_to_snapshot(None, volume, snap)
    driver.delete_snapshot(snap)
    v, s, c, f = volume.name, '_' + snap.name, clone.name, from_snap.name
    temp = f'clone-snap-{clone.id}'
    assert host.commands('lvcreate', 'lvremove', 'lvconvert', 'lvchange', 'qemu-img',
                         'blkdiscard') == [
        f'lvcreate -n {v} -L 1g --yes --addtag gridcentric-storage vg0',
        f'lvcreate -s -L 1g -n {s} --yes --addtag gridcentric-storage vg0/{v}',
        # clone: from a temporary COW snapshot, as Cinder does
        f'lvcreate -s -L 1g -n {temp} --yes --addtag gridcentric-storage vg0/{v}',
        f'lvcreate -n {c} -L 2g --yes --addtag gridcentric-storage vg0',
        copy(f'/dev/vg0/{temp}', f'/dev/vg0/{c}'),
        f'lvremove -f vg0/{temp}',
        f'lvcreate -n {f} -L 1g --yes --addtag gridcentric-storage vg0',
        copy(f'/dev/vg0/{s}', f'/dev/vg0/{f}'),
        # revert: merge, re-activate the origin, take the snapshot again
        f'lvconvert --merge vg0/{s}',
        f'lvchange -an vg0/{v}',
        f'lvchange -ay vg0/{v}',
        f'lvcreate -s -L 1g -n {s} --yes --addtag gridcentric-storage vg0/{v}',
        # delete_snapshot zeroes the COW store (dm name: dashes doubled)
        f'blkdiscard --zeroout /dev/mapper/vg0-{dm(s)}-cow',
        f'lvremove -f vg0/{s}']


def test_failed_copy_removes_the_new_volume(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(1)
    driver.create_volume(volume)
    snap = new_snapshot(volume)
    driver.create_snapshot(snap)
    host.fail['qemu-img'] = 'qemu-img: error while writing at byte 0: No space left on device'
    target = new_volume(1)
    with pytest.raises(exception.DriverError, match='No space left'):
        driver.create_volume_from_snapshot(target, snap)
    assert target.name not in host.lvs


# ---------------------------------------------------------------- thin
def test_thin_setup_makes_the_pool_once(tmp_path):
    driver, host = make(tmp_path, lvm_type='thin')
    driver.do_setup(None)
    driver.do_setup(None)
    assert host.commands('lvcreate') == [
        'lvcreate -T -l 95%FREE --yes --addtag gridcentric-storage vg0/vg0-pool']
    assert os.stat(tmp_path / 'targets').st_mode & 0o777 == 0o700
    driver, host = make(tmp_path, lvm_type='thin', thin_pool='fast')
    driver.do_setup(None)
    assert host.commands('lvcreate')[0].endswith('vg0/fast')


def test_thin_volume_snapshot_clone_revert(tmp_path):
    driver, host = make(tmp_path, lvm_type='thin')
    driver.do_setup(None)
    volume = new_volume(1)
    driver.create_volume(volume)
    snap = new_snapshot(volume)
    driver.create_snapshot(snap)
    clone, from_snap = new_volume(2), new_volume(1)
    driver.create_cloned_volume(clone, volume)
    driver.create_volume_from_snapshot(from_snap, snap)
    driver.revert_to_snapshot(None, volume, snap)
    driver.delete_snapshot(snap)
    driver.delete_volume(volume)
    v, s, c, f = volume.name, '_' + snap.name, clone.name, from_snap.name
    assert host.commands('lvcreate', 'lvremove', 'lvextend', 'lvchange', 'qemu-img')[1:] == [
        f'lvcreate -T vg0/vg0-pool -V 1g -n {v} --yes --addtag gridcentric-storage',
        f'lvcreate -s -n {s} --yes --addtag gridcentric-storage vg0/{v}',
        # clone: thin snapshot without the activation-skip flag, activated, grown
        f'lvcreate -s -n {c} -kn --yes --addtag gridcentric-storage vg0/{v}',
        f'lvchange -ay vg0/{c}',
        f'lvextend -L 2g vg0/{c}',
        f'lvcreate -s -n {f} -kn --yes --addtag gridcentric-storage vg0/{s}',
        f'lvchange -ay vg0/{f}',
        # revert: generic copy; the skip-flagged snapshot is activated with -K
        f'lvchange -ay -K vg0/{s}',
        copy(f'/dev/vg0/{s}', f'/dev/vg0/{v}'),
        f'lvchange -an vg0/{s}',
        f'lvremove -f vg0/{s}',   # thin: nothing to zero
        f'lvremove -f vg0/{v}']


def test_thin_revert_of_a_grown_volume_empties_the_new_part(tmp_path):
    driver, host = make(tmp_path, lvm_type='thin')
    driver.do_setup(None)
    volume = new_volume(1)
    driver.create_volume(volume)
    snap = new_snapshot(volume)
    driver.create_snapshot(snap)
    driver.extend_volume(volume, 3)
    host.calls.clear()
    driver.revert_to_snapshot(None, volume, snap)
    assert host.commands('qemu-img', 'blkdiscard') == [
        copy(f'/dev/vg0/_{snap.name}', f'/dev/vg0/{volume.name}'),
        f'blkdiscard --zeroout --offset {GiB} --length {2 * GiB} /dev/vg0/{volume.name}']


def test_thin_needs_device_mapper(tmp_path):
    driver, host = make(tmp_path, host=FakeHost(activation=False), lvm_type='thin',
                        activation=False)
    driver.do_setup(None)
    assert host.commands('lvcreate') == []
    with pytest.raises(exception.DriverError, match='thin needs device-mapper'):
        driver.check_for_setup_error()


def test_stats(tmp_path):
    driver, host = make(tmp_path)
    host.add_lv('volume-a', 10 * GiB)
    host.add_lv('snapshot-a', 10 * GiB, attr='swi-a-s---', origin='volume-a')
    host.add_lv('somebody-else', 5 * GiB, tags='')
    stats = driver.get_volume_stats()
    assert stats == {
        'volume_backend_name': 'lvm-1', 'vendor_name': 'Open Source', 'driver_version': '1.0',
        'storage_protocol': 'iSCSI', 'total_capacity_gb': 100.0, 'free_capacity_gb': 75.0,
        'provisioned_capacity_gb': 10.0, 'reserved_percentage': 0,
        'thin_provisioning_support': False, 'thick_provisioning_support': True,
        'max_over_subscription_ratio': 1.0, 'multiattach': False, 'QoS_support': False,
        'online_extend_support': True, 'copy_on_write': 'none'}

    driver, host = make(tmp_path, lvm_type='thin')
    host.add_lv('vg0-pool', 80 * GiB, attr='twi-aotz--', data_percent='25.00', tags='')
    host.add_lv('volume-b', 50 * GiB, attr='Vwi-a-tz--', pool_lv='vg0-pool',
                data_percent='40.00')
    host.add_lv('volume-c', 70 * GiB, attr='Vwi-a-tz--', pool_lv='vg0-pool',
                data_percent='0.00')
    stats = driver.get_volume_stats()
    assert (stats['total_capacity_gb'], stats['free_capacity_gb'],
            stats['provisioned_capacity_gb']) == (80.0, 60.0, 120.0)
    assert stats['thin_provisioning_support'] is True
    assert stats['max_over_subscription_ratio'] == 20.0
    assert stats['copy_on_write'] == 'lvm-thin'


# ---------------------------------------------------------------- shared VG
def test_shared_vg_uses_lvmlockd_commands(tmp_path):
    driver, host = make(tmp_path, host=FakeHost(lock_type='sanlock'), shared=True)
    driver.do_setup(None)
    driver.check_for_setup_error()
    volume, clone = new_volume(1), new_volume(1)
    driver.create_volume(volume)
    driver.create_cloned_volume(clone, volume)
    v, c = volume.name, clone.name
    temp = f'clone-snap-{clone.id}'
    assert host.commands('vgchange', 'lvcreate', 'lvchange', 'qemu-img', 'lvremove') == [
        'vgchange --lockstart vg0',
        f'lvcreate -n {v} -L 1g --yes --addtag gridcentric-storage -aey vg0',
        f'lvcreate -s -L 1g -n {temp} --yes --addtag gridcentric-storage -aey vg0/{v}',
        f'lvcreate -n {c} -L 1g --yes --addtag gridcentric-storage -aey vg0',
        copy(f'/dev/vg0/{temp}', f'/dev/vg0/{c}'),
        f'lvremove -f vg0/{temp}']
    host.lvs[v]['attr'] = '-wi-------'   # active on another host, not here
    # reading an LV that is not active here takes the shared lock, then lets go
    host.calls.clear()
    with driver.data_path(v, write=False) as path:
        assert path == f'/dev/vg0/{v}'
    with driver.data_path(v, write=True):
        pass
    assert host.commands('lvchange') == [f'lvchange -asy -K vg0/{v}', f'lvchange -an vg0/{v}',
                                         f'lvchange -aey -K vg0/{v}', f'lvchange -an vg0/{v}']


def test_shared_option_must_match_the_vg(tmp_path):
    driver, _ = make(tmp_path, host=FakeHost(lock_type='dlm'))
    with pytest.raises(exception.DriverError, match='is a shared VG'):
        driver.check_for_setup_error()
    driver, _ = make(tmp_path, shared=True)
    with pytest.raises(exception.DriverError, match='not a shared VG'):
        driver.check_for_setup_error()


# ---------------------------------------------------------------- data extents
def test_data_extent_math(tmp_path):
    host = FakeHost(activation=False)
    host.add_lv('volume-a', 2 * GiB)
    lvm = lvm_commands.LVM('vg0', execute=host, activation=False)
    extent = lvm.data_extent('volume-a')
    # the fake puts every LV at PE 10; pe_start is 1 MiB
    assert extent == lvm_commands.DataExtent('/dev/sdb', (1 << 20) + 10 * EXTENT, 2 * GiB)
    host.add_lv('thin-a', GiB, attr='Vwi-a-tz--', pool_lv='pool')
    with pytest.raises(exception.DriverError, match='not a linear LV'):
        lvm.data_extent('thin-a')


def test_data_extent_refuses_several_segments(tmp_path):
    rows = {'lvs': lvm_json('lv', [{'lv_name': 'v', 'lv_size': str(16 << 20),
                                   'lv_attr': '-wi-XX----', 'lv_tags': '', 'origin': '',
                                   'pool_lv': '', 'data_percent': ''}])}

    def execute(argv, **kwargs):
        if '--segments' in argv:
            return lvm_json('seg', [{'lv_name': 'v', 'seg_pe_ranges': '/dev/loop0:0-1'},
                                    {'lv_name': 'v', 'seg_pe_ranges': '/dev/loop0:6-7'}])
        return rows[argv[0]]

    with pytest.raises(exception.DriverError, match='one run of extents'):
        lvm_commands.LVM('vg0', execute=execute).data_extent('v')


def test_lvm_names_checked():
    for bad in ('-rf', '', 'a b', '..', 'x/y', 'snapshot-1', 'pvmove0', 'v_tmeta'):
        with pytest.raises(exception.DriverError):
            lvm_commands.check_name(bad)
    with pytest.raises(exception.DriverError):
        lvm_commands.LVM('--vg')


# ---------------------------------------------------------------- export
def test_export_connection_info_and_removal(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(1)
    driver.create_volume(volume)
    iqn = 'iqn.2010-10.org.openstack:' + volume.name
    update = driver.create_export(None, volume, {})
    auth = update['provider_auth'].split()
    assert update['provider_location'] == f'127.0.0.1:3260,1 {iqn} 1'
    assert auth[0] == 'CHAP' and len(auth[1]) == 20 and len(auth[2]) == 16
    conf = tmp_path / 'targets' / f'{volume.name}.conf'
    assert os.stat(conf).st_mode & 0o777 == 0o600
    assert conf.read_text() == (f'<target {iqn}>\n    backing-store /dev/vg0/{volume.name}\n'
                                f'    driver iscsi\n    incominguser {auth[1]} {auth[2]}\n'
                                '    write-cache on\n</target>\n')
    assert host.commands('tgt-admin') == [
        f'tgt-admin -C 0 -c {conf} --update {iqn}']
    # ensure_export keeps the same account; initialize_connection reads it
    assert driver.ensure_export(None, volume) == update
    info = driver.initialize_connection(volume, {'initiator': 'iqn.1993-08.org.debian:01:x'})
    assert info == {'driver_volume_type': 'iscsi', 'data': {
        'target_discovered': False, 'target_iqn': iqn, 'target_portal': '127.0.0.1:3260',
        'target_lun': 1, 'volume_id': volume.id, 'auth_method': 'CHAP',
        'auth_username': auth[1], 'auth_password': auth[2], 'discard': True}}
    assert driver.terminate_connection(volume, {}) is None
    assert iqn in host.targets
    driver.delete_volume(volume)  # removes the export first
    assert host.targets == {} and host.accounts == set()
    assert not conf.exists()
    assert host.commands('tgt-admin')[-1] == (
        f'tgt-admin -C 0 -c {conf} --force --delete {iqn}')


def test_export_reuses_provider_auth_and_can_go_without_chap(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(1, provider_auth='CHAP someuser123 somepassword')
    driver.create_volume(volume)
    assert driver.create_export(None, volume, {})['provider_auth'] == (
        'CHAP someuser123 somepassword')
    driver, host = make(tmp_path, chap=False)
    volume = new_volume(1)
    driver.create_volume(volume)
    info = driver.initialize_connection(volume, {})  # exports on demand
    assert 'auth_method' not in info['data']
    assert host.targets[info['data']['target_iqn']]['user'] is None


def test_online_extend_recreates_the_lun(tmp_path):
    driver, host = make(tmp_path)
    volume = new_volume(1)
    driver.create_volume(volume)
    driver.create_export(None, volume, {})
    host.calls.clear()
    driver.extend_volume(volume, 2)
    assert host.commands('lvextend', 'tgtadm')[0] == f'lvextend -L 2g vg0/{volume.name}'
    assert host.commands('tgtadm')[-2:] == [
        'tgtadm -C 0 --lld iscsi --op delete --mode logicalunit --tid 1 --lun 1',
        f'tgtadm -C 0 --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 '
        f'-b /dev/vg0/{volume.name}']


def test_parse_real_tgtadm_show():
    out = """Target 1: iqn.2010-10.org.openstack:volume-test
    System information:
        Driver: iscsi
        State: ready
    I_T nexus information:
    LUN information:
        LUN: 0
            Type: controller
            SCSI ID: IET     00010000
            Backing store type: null
            Backing store path: None
            Backing store flags:\x20
        LUN: 1
            Type: disk
            SCSI ID: IET     00010001
            Size: 8 MB, Block size: 512
            Backing store type: rdwr
            Backing store path: /dev/loop1
            Backing store flags:\x20
    Account information:
        user1
    ACL information:
        ALL
"""
    assert tgt.parse_show(out) == {'iqn.2010-10.org.openstack:volume-test': tgt.Target(
        1, 'iqn.2010-10.org.openstack:volume-test', ['/dev/loop1'], ['user1'], ['ALL'])}


def test_tgt_conf_refuses_odd_values(tmp_path):
    adm = tgt.TgtAdm(str(tmp_path))
    for iqn, path, chap in [('volume-1', '/dev/x', None),
                            ('iqn.2010-10.org.openstack:v', 'dev/x', None),
                            ('iqn.2010-10.org.openstack:v', '/dev/x\n<target', None),
                            ('iqn.2010-10.org.openstack:v', '/dev/x', ('us er', 'p' * 12))]:
        with pytest.raises(exception.DriverError):
            adm.write_conf('volume-1', iqn, path, chap)
    with pytest.raises(exception.DriverError):
        adm.conf_path('../etc/passwd')


# ---------------------------------------------------------------- os-brick
def test_os_brick_iscsi_login_commands_carry_the_chap_account(tmp_path):
    """The iscsiadm commands os-brick's ISCSIConnector (6.1 on Debian, 7.x from PyPI)
    runs to log in with the ``data`` dict, CHAP included. The login itself needs the
    kernel iSCSI initiator; tests/conformance/volume reads the LUN through QEMU's
    libiscsi with the same values."""
    driver, _ = make(tmp_path)
    volume = new_volume(1)
    driver.create_volume(volume)
    data = driver.initialize_connection(volume, {})['data']
    iqn = data['target_iqn']
    ran = []

    def iscsiadm(*cmd, **kwargs):
        ran.append(cmd)
        if cmd[:3] == ('iscsiadm', '-m', 'session'):
            return f'tcp: [3] 127.0.0.1:3260,1 {iqn} (non-flash)\n', ''
        return '', ''

    conn = brick_connector.InitiatorConnector.factory('ISCSI', root_helper=None,
                                                      execute=iscsiadm)
    assert conn._connect_to_iscsi_portal_unsafe(dict(data)) == ('3', True)
    node = ('iscsiadm', '-m', 'node', '-T', iqn, '-p', '127.0.0.1:3260', '--op', 'update', '-n')
    assert node + ('node.session.auth.authmethod', '-v', 'CHAP') in ran
    assert node + ('node.session.auth.username', '-v', data['auth_username']) in ran
    assert node + ('node.session.auth.password', '-v', data['auth_password']) in ran
