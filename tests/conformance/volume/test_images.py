"""The contract's image methods on every driver: an image store file (raw or qcow2)
into a volume, and a volume out to a new image file in raw or qcow2."""

import hashlib
import os
import subprocess

from tests.conformance.volume.backends import Backend, GiB, MiB, new_volume, qemu_read, qemu_region
from tests.fixtures.images import ADMIN


def make_image(path: str, fmt: str, size: int, writes: list[tuple[int, int, int]]) -> str:
    subprocess.run(['qemu-img', 'create', '-q', '-f', fmt, path, str(size)], check=True)
    for byte, offset, length in writes:
        subprocess.run(['qemu-io', '-f', fmt, '-c', f'write -P {byte:#x} {offset} {length}',
                        path], check=True, capture_output=True)
    return path


def image_bytes(path: str, fmt: str, offset: int, length: int) -> bytes:
    return qemu_read(qemu_region(fmt, {'driver': 'file', 'filename': path}, offset, length))


def digest(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_copy_image_to_volume(backend: Backend, images, tmp_path) -> None:
    driver, before = backend.driver, backend.objects()
    volume = new_volume(1)
    driver.create_volume(volume)
    for fmt in ('raw', 'qcow2'):
        image = make_image(str(tmp_path / f'image.{fmt}'), fmt, 64 * MiB,
                           [(0x5a, 0, MiB), (0xa5, 40 * MiB, 3 * MiB)])
        original = digest(image)
        # stale data where the image has zeros must not survive the copy
        backend.write(volume, 8 * MiB, b'\xee' * MiB)
        driver.copy_image_to_volume(ADMIN, volume, images, image)
        assert backend.read(volume, 0, MiB) == b'\x5a' * MiB, fmt
        assert backend.read(volume, 8 * MiB, MiB) == bytes(MiB), fmt
        assert backend.read(volume, 40 * MiB, 3 * MiB) == b'\xa5' * 3 * MiB, fmt
        assert backend.read(volume, 63 * MiB, MiB) == bytes(MiB), fmt
        assert digest(image) == original, fmt  # the image is only read
        assert backend.size(volume) == GiB
    driver.delete_volume(volume)
    assert backend.objects() == before


def test_copy_volume_to_image(backend: Backend, images, tmp_path) -> None:
    driver, before = backend.driver, backend.objects()
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 0, b'\x11' * MiB)
    backend.write(volume, 512 * MiB, b'\x22' * MiB)
    backend.write(volume, GiB - MiB, b'\x33' * MiB)
    existing = set(os.listdir(tmp_path))
    for fmt in ('raw', 'qcow2'):
        path = str(tmp_path / f'out.{fmt}')
        driver.copy_volume_to_image(ADMIN, volume, images,
                                    {'path': path, 'disk_format': fmt})
        info = images.info(ADMIN, path)
        assert (info['disk_format'], info['virtual_size']) == (fmt, GiB)
        assert image_bytes(path, fmt, 0, 2 * MiB) == b'\x11' * MiB + bytes(MiB), fmt
        assert image_bytes(path, fmt, 512 * MiB, MiB) == b'\x22' * MiB, fmt
        assert image_bytes(path, fmt, GiB - MiB, MiB) == b'\x33' * MiB, fmt
        existing.add(f'out.{fmt}')
        assert set(os.listdir(tmp_path)) == existing, fmt  # no work files left
    assert backend.read(volume, 0, MiB) == b'\x11' * MiB  # the volume is only read
    driver.delete_volume(volume)
    assert backend.objects() == before
