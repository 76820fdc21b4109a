"""What a host checks before QEMU maps a published live image's RAM."""

import os

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.compute import live_image_mounts as mounts
from gridcentric_storage.compute import live_image_publish as publish
from tests.fixtures.services import wait_for

ID = '3cf79ff2-f7ea-4ca6-accf-7554510e4c26'


def test_a_file_outside_fuse_is_refused(tmp_path):
    """The mount gone, QEMU would create an empty file and start from zeros."""
    ram = tmp_path / 'ram'
    ram.write_bytes(b'\0' * 4096)
    with pytest.raises(exception.LiveImageFilesMissing, match='not the FUSE mount'):
        mounts.check_ram_file(ID, str(ram), 4096)


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(exception.LiveImageFilesMissing, match='not mounted'):
        mounts.check_ram_file(ID, str(tmp_path / 'mnt' / 'ram'), 4096)


def test_fs_type_reads_the_filesystem_magic():
    assert mounts.fs_type('/proc') == 0x9fa0  # PROC_SUPER_MAGIC
    assert mounts.fs_type('/dev/fuse') != mounts.FUSE_SUPER_MAGIC


def _live_image(**values):
    return dict({'id': ID, 'host': 'other', 'artifacts': {}, 'publish_status': None,
                 'publish_location': None}, **values)


def test_an_unpublished_live_image_of_another_host_cannot_be_launched_here():
    with pytest.raises(exception.LiveImageFilesMissing, match='not published'):
        mounts.MountManager().artifacts(_live_image())


def test_a_host_without_the_store_refuses_a_published_one(monkeypatch):
    monkeypatch.setattr(publish, 'enabled', lambda: False)
    image = _live_image(publish_status=publish.PUBLISHED,
                        publish_location={'image': 'gc-live-%s' % ID})
    with pytest.raises(exception.LiveImageFilesMissing, match='no access'):
        mounts.MountManager().artifacts(image)


def test_a_state_that_does_not_match_its_sha256_is_refused(tmp_path, monkeypatch):
    from oslo_config import cfg

    monkeypatch.setattr(publish, 'enabled', lambda: True)
    cfg.CONF.set_override('mount_root', str(tmp_path), group='live_image_store')
    objects = {'s': b'state bytes', 'l': b'{}'}

    class Store:
        def get_object(self, name):
            return objects[name]

        def close(self):
            pass

    monkeypatch.setattr(publish, 'StoreClient', Store)
    location = {'image': 'gc-live-%s' % ID, 'ram_size': 4096, 'state_object': 's',
                'layout_object': 'l', 'state_sha256': publish.sha256_of(b'other state'),
                'layout_sha256': publish.sha256_of(b'{}')}
    try:
        with pytest.raises(exception.LiveImageFilesMissing, match='sha256'):
            mounts.MountManager().artifacts(_live_image(publish_status=publish.PUBLISHED,
                                                        publish_location=location))
    finally:
        cfg.CONF.clear_override('mount_root', group='live_image_store')
    assert not os.path.exists(tmp_path / 'cache' / ID / 'state')


def test_a_daemon_left_without_its_mount_is_stopped_at_start(tmp_path):
    """What a crashed service left: a daemon whose mount point holds no mount."""
    import subprocess
    import sys

    from oslo_config import cfg

    cfg.CONF.set_override('mount_root', str(tmp_path), group='live_image_store')
    directory = tmp_path / 'mnt' / ID
    directory.mkdir(parents=True)
    stray = subprocess.Popen(['rbd-fuse', '-c', 'import time; time.sleep(60)', '-r',
                              'gc-live-%s' % ID, str(directory)], executable=sys.executable)
    try:
        # its argv is in /proc once it has exec'd
        wait_for(lambda: any(pid == stray.pid and argv[:1] == ['rbd-fuse']
                             for pid, argv in mounts._processes()), timeout=15)
        manager = mounts.MountManager()
        manager.adopt()
        assert manager.mounts() == {}
        assert stray.wait(timeout=15) is not None
    finally:
        stray.kill()
        stray.wait()
        cfg.CONF.clear_override('mount_root', group='live_image_store')
