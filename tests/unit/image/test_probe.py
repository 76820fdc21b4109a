"""Probing images: only self-contained raw and qcow2 files pass, with real qemu-img."""

import json
import subprocess

import pytest

from gridcentric_storage.common import exception, processutils
from gridcentric_storage.image import probe

MiB = 1 << 20


def qemu_img_create(path, fmt='qcow2', *options):
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, *options, str(path), '1M'],
                   check=True)
    return str(path)


class Recorder:
    """The real executor, recording argv lists."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, **kwargs):
        self.calls.append(list(argv))
        return processutils.execute(argv, **kwargs)


def test_raw_and_qcow2(tmp_path):
    raw = tmp_path / 'disk.raw'
    raw.write_bytes(b'\1' * MiB)
    assert probe.probe(str(raw), 'disk.raw') == {'disk_format': 'raw', 'virtual_size': MiB}
    qcow2 = qemu_img_create(tmp_path / 'disk.qcow2')
    assert probe.probe(qcow2, 'disk.qcow2') == {'disk_format': 'qcow2',
                                                'virtual_size': MiB}


def test_format_given_only_when_known(tmp_path):
    qcow2 = qemu_img_create(tmp_path / 'disk.qcow2')
    run = Recorder()
    probe.probe(qcow2, 'disk.qcow2', execute=run)
    assert '-f' not in run.calls[0]
    probe.probe(qcow2, 'disk.qcow2', 'qcow2', execute=run)
    assert run.calls[1][run.calls[1].index('-f') + 1] == 'qcow2'
    assert all('--backing-chain' not in argv for argv in run.calls)


@pytest.mark.parametrize('options,message', [
    (('-F', 'raw', '-b', '/etc/passwd'), 'has a backing file'),
    (('-o', 'data_file=DATA'), 'external data file'),
    (('-o', 'data_file=DATA,data_file_raw=on'), 'external data file'),
])
def test_images_naming_other_files_are_refused_before_qemu_img_runs(tmp_path, options,
                                                                    message):
    options = tuple(o.replace('DATA', str(tmp_path / 'data')) for o in options)
    image = qemu_img_create(tmp_path / 'evil.qcow2', 'qcow2', '-u', *options) \
        if '-b' in options else qemu_img_create(tmp_path / 'evil.qcow2', 'qcow2', *options)
    run = Recorder()
    with pytest.raises(exception.Invalid) as error:
        probe.probe(image, 'evil.qcow2', execute=run)
    assert message in error.value.message and error.value.code == 400
    assert run.calls == []


def test_qemu_img_verdict_alone_refuses_a_data_file(tmp_path):
    """Also when the header check would miss it: qemu-img's answer is checked too."""
    image = tmp_path / 'plain.raw'
    image.write_bytes(b'\0' * 512)
    answer = {'format': 'qcow2', 'virtual-size': MiB,
              'format-specific': {'type': 'qcow2', 'data': {'data-file': '/etc/shadow'}}}
    with pytest.raises(exception.Invalid, match='external data file'):
        probe.probe(str(image), 'plain.raw', execute=lambda argv, **kw: json.dumps(answer))
    answer = {'format': 'qcow2', 'virtual-size': MiB, 'backing-filename': '/etc/shadow'}
    with pytest.raises(exception.Invalid, match='backing file'):
        probe.probe(str(image), 'plain.raw', execute=lambda argv, **kw: json.dumps(answer))


def test_other_formats_are_refused(tmp_path):
    vmdk = qemu_img_create(tmp_path / 'disk.vmdk', 'vmdk')
    with pytest.raises(exception.Invalid, match='disk.vmdk is vmdk; only raw and qcow2'):
        probe.probe(vmdk, 'disk.vmdk')


def test_unreadable_image_is_a_400_without_the_host_path(tmp_path):
    broken = tmp_path / 'broken.qcow2'
    broken.write_bytes(b'QFI\xfb\0\0\0\x63' + b'\0' * 504)  # qcow2 "version 99"
    with pytest.raises(exception.Invalid) as error:
        probe.probe(str(broken), 'broken.qcow2')
    assert 'broken.qcow2 cannot be read' in error.value.message
    assert str(tmp_path) not in error.value.message
