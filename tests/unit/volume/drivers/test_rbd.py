"""The RBD driver without a cluster: options, error messages, the qemu-img command
lines and keyrings. What talks to Ceph is in tests/functional/test_rbd_driver.py
(the RBD driver's own behaviour) and tests/conformance/volume (the scenarios every
driver shares), against tools/ceph.sh."""

import os
import stat
import sys
import types

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume.drivers import rbd as rbd_driver
from gridcentric_storage.volume.drivers import rbd_client
from gridcentric_storage.volume.objects import VolumeRef

GiB = 1 << 30
VOL = VolumeRef({'id': '5b2c3f4e-0d1a-4a57-9c1e-2f3a4b5c6d7e', 'size': 1})


class FakeError(Exception):
    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class FakeImageBusy(FakeError):
    pass


class FakeTimeout(FakeError):
    pass


@pytest.fixture
def fake_bindings(monkeypatch):
    """rados/rbd stand-ins with the exception classes the driver looks at."""
    rados = types.SimpleNamespace(Error=FakeError, TimedOut=FakeTimeout,
                                  ObjectNotFound=type('ObjectNotFound', (FakeError,), {}))
    rbd = types.SimpleNamespace(Error=FakeError, Timeout=FakeTimeout, ImageBusy=FakeImageBusy,
                                ImageNotFound=type('ImageNotFound', (FakeError,), {}))
    monkeypatch.setattr(rbd_client, 'rados', rados)
    monkeypatch.setattr(rbd_client, 'rbd', rbd)


def make(execute=None, **options) -> rbd_driver.RBDDriver:
    driver = rbd_driver.RBDDriver('b1', 'ceph', {'pool': 'rbd', **options}, execute=execute)
    driver._ready = True  # as if do_setup had run (no cluster is touched below)
    return driver


@pytest.mark.parametrize('options, message', [
    ({}, "'pool' is a required property"),
    ({'pool': 'a/b'}, 'does not match'),
    ({'pool': 'rbd', 'ceph_conf': 'relative.conf'}, 'does not match'),
    ({'pool': 'rbd', 'key': 'not base64!'}, 'does not match'),
    ({'pool': 'rbd', 'max_clone_depth': -1}, 'less than the minimum'),
    ({'pool': 'rbd', 'connect_timeout': 0}, 'less than the minimum'),
    ({'pool': 'rbd', 'flatten_on_clone': 'yes'}, "is not of type 'boolean'"),
    ({'pool': 'rbd', 'secret_uuid': 'x'}, 'does not match'),
    ({'pool': 'rbd', 'connect_timeout': 2.5}, "is not of type 'integer'"),
    ({'pool': 'rbd', 'rbd_pool': 'x'}, 'Additional properties'),
])
def test_bad_options(options, message):
    with pytest.raises(exception.InvalidDriverOptions, match=message):
        rbd_driver.RBDDriver('b1', 'ceph', options)


def test_defaults_and_secrets():
    assert rbd_driver.RBDDriver.default_options('b1', '/var/lib/gc') == {
        'ceph_conf': '/etc/ceph/ceph.conf', 'user': 'admin', 'max_clone_depth': 5,
        'flatten_on_clone': False, 'connect_timeout': 10}
    assert rbd_driver.RBDDriver.SECRET_OPTIONS == frozenset({'key'})
    driver = rbd_driver.RBDDriver('b1', 'ceph', {'pool': 'volumes', 'user': 'cinder'})
    assert (driver.pool, driver.user, driver.conf_path, driver.timeout,
            driver.max_depth) == ('volumes', 'cinder', '/etc/ceph/ceph.conf', 10, 5)


def test_missing_bindings_are_a_clear_driver_error(monkeypatch):
    monkeypatch.setattr(rbd_client, 'rbd', None)
    monkeypatch.setattr(rbd_client, 'rados', None)
    monkeypatch.setitem(sys.modules, 'rados', None)  # import rados -> ImportError
    driver = rbd_driver.RBDDriver('b1', 'ceph', {'pool': 'rbd'})
    with pytest.raises(exception.DriverError) as e:
        driver.do_setup(None)
    assert 'python3-rados and python3-rbd' in str(e.value)
    assert 'tools/link-ceph-bindings.sh' in str(e.value)
    with pytest.raises(exception.DriverError, match='do_setup has not run'):
        driver.create_volume(VOL)


@pytest.mark.parametrize('error, message', [
    (FakeTimeout('[errno 110] RBD operation timeout', 110),
     'x: the Ceph cluster did not answer within 10 s'),
    (FakeError('[errno 110] Connection timed out', 110), 'did not answer within 10 s'),
    (FakeImageBusy('[errno 16] image busy', 16),
     'x: the image is in use (attached?); a client that crashed'),
    (FakeError('[errno 2] RBD image not found', 2), 'x: [errno 2] RBD image not found'),
])
def test_backend_errors_become_driver_errors(fake_bindings, error, message):
    def fail():
        raise error
    with pytest.raises(exception.DriverError) as e:
        make()._run('x', fail)
    assert message in str(e.value)
    assert e.value.__cause__ is error


def test_qemu_target_names_the_image_and_timeouts(fake_bindings):
    driver = make(ceph_conf='/etc/ceph/odd:name.conf', user='cinder', connect_timeout=7,
                  keyring='/etc/ceph/ceph.client.cinder.keyring')
    with driver._qemu_target(VOL.name) as target:
        assert target == (f'rbd:rbd/{VOL.name}:id=cinder:conf=/etc/ceph/odd\\:name.conf'
                          ':client_mount_timeout=7:rados_osd_op_timeout=7'
                          ':rados_mon_op_timeout=7'
                          ':keyring=/etc/ceph/ceph.client.cinder.keyring')


def test_qemu_target_puts_a_key_in_a_private_keyring(fake_bindings):
    driver = make(key='QVFBZHZBRnJJMjBIQ2hBQUpMZTd2TXRrU3VhOExJQTZQWDZuSlE9PQ==')
    with driver._qemu_target(VOL.name) as target:
        assert 'QVFB' not in target  # never on a command line
        keyring = target.rsplit(':keyring=', 1)[1]
        assert stat.S_IMODE(os.stat(keyring).st_mode) == 0o600
        with open(keyring) as f:
            assert f.read() == ('[client.admin]\n\tkey = QVFBZHZBRnJJMjBIQ2hBQUpMZTd2TXRr'
                                'U3VhOExJQTZQWDZuSlE9PQ==\n')
    assert not os.path.exists(keyring)


class FakeImages:
    def __init__(self, path, fmt='qcow2', virtual_size=64 << 20):
        self.details = {'id': path, 'disk_format': fmt, 'virtual_size': virtual_size}

    def info(self, context, image_id):
        return self.details

    def path(self, context, image_id):
        return self.details['id']


def test_copy_image_to_volume_command_line(fake_bindings, monkeypatch):
    calls = []

    def execute(argv, **kwargs):
        calls.append((argv, kwargs))
        return ''
    driver = make(execute=execute)
    monkeypatch.setattr(driver, '_on_image', lambda *args, **kwargs: GiB)
    driver.copy_image_to_volume(None, VOL, FakeImages('/srv/img.qcow2'), '/srv/img.qcow2')
    driver.copy_image_to_volume(None, VOL, FakeImages('/srv/img.raw', 'raw', GiB),
                                '/srv/img.raw', disable_sparse=True)
    (argv, kwargs), (thick, _) = calls
    assert argv[0].endswith('qemu-img') and argv[1:10] == [
        'convert', '-f', 'qcow2', '-O', 'raw', '-n', '-t', 'none', '/srv/img.qcow2']
    assert argv[10].startswith(f'rbd:rbd/{VOL.name}:id=admin:conf=/etc/ceph/ceph.conf:')
    assert kwargs['timeout'] >= 600
    assert thick[1:12] == ['convert', '-f', 'raw', '-O', 'raw', '-n', '-t', 'none',
                           '-S', '0', '/srv/img.raw']
    with pytest.raises(exception.DriverError, match='does not fit in volume-'):
        driver.copy_image_to_volume(None, VOL, FakeImages('/srv/big', 'raw', GiB + 1),
                                    '/srv/big')


def test_qemu_img_without_rbd_support_is_explained(fake_bindings, monkeypatch, tmp_path):
    def execute(argv, **kwargs):
        raise exception.DriverError(reason="qemu-img: Unknown protocol 'rbd'")
    driver = make(execute=execute)
    monkeypatch.setattr(driver, '_on_image', lambda *args, **kwargs: GiB)
    with pytest.raises(exception.DriverError, match='apt-get install qemu-block-extra'):
        driver.copy_image_to_volume(None, VOL, FakeImages('/srv/i'), '/srv/i')
    out = tmp_path / 'out.qcow2'
    with pytest.raises(exception.DriverError, match='qemu-block-extra'):
        driver.copy_volume_to_image(None, VOL, None, {'path': str(out),
                                                      'disk_format': 'qcow2'})
    assert os.listdir(tmp_path) == []


def test_copy_volume_to_image_appears_whole(fake_bindings, monkeypatch, tmp_path):
    calls = []

    def execute(argv, **kwargs):
        calls.append(argv)
        assert not os.path.exists(tmp_path / 'out.raw')  # not before it is complete
        open(argv[-1], 'w').close()
        return ''
    driver = make(execute=execute)
    monkeypatch.setattr(driver, '_on_image', lambda *args, **kwargs: GiB)
    driver.copy_volume_to_image(None, VOL, None, {'path': str(tmp_path / 'out.raw'),
                                                  'disk_format': 'raw'})
    assert calls[0][1:6] == ['convert', '-f', 'raw', '-O', 'raw']
    assert calls[0][-1] == str(tmp_path / 'out.raw.part')
    assert os.listdir(tmp_path) == ['out.raw']
    with pytest.raises(exception.DriverError, match='cannot write a vmdk image'):
        driver.copy_volume_to_image(None, VOL, None, {'path': str(tmp_path / 'x'),
                                                      'disk_format': 'vmdk'})


KEYRING = """[mon.]
\tkey = AQAmonmonmonmonmonmonmonmonmonmonmonmon==
\tcaps mon = "allow *"
[client.admin]
\tkey = AQAadminadminadminadminadminadminadmin==
\tcaps mon = "allow *"
[client.cinder]
    key = AQAcindercindercindercindercindercinder==
"""


@pytest.mark.parametrize('user, key', [
    ('admin', 'AQAadminadminadminadminadminadminadmin=='),
    ('cinder', 'AQAcindercindercindercindercindercinder=='),
])
def test_keyring_text_holds_only_the_users_key(fake_bindings, tmp_path, user, key):
    path = tmp_path / 'keyring'
    path.write_text(KEYRING)
    driver = make(user=user, keyring=str(path))
    assert driver._keyring_text() == f'[client.{user}]\n\tkey = {key}\n'


def test_keyring_text_from_key_or_nothing(fake_bindings, tmp_path):
    assert make(key='AQAkey==')._keyring_text() == '[client.admin]\n\tkey = AQAkey==\n'
    path = tmp_path / 'keyring'
    path.write_text(KEYRING)
    with pytest.raises(exception.DriverError, match='no key of client.glance was found'):
        make(user='glance', keyring=str(path))._keyring_text()

