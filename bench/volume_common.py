"""Shared pieces of bench/volume_bench.py: run profiles, timing and payload helpers.

Imported by volume_bench.py (which puts the repo root and bench/ on sys.path)
and by its sibling modules volume_backends.py and volume_api_bench.py.
"""

import dataclasses
import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB, GiB = 1 << 20, 1 << 30
POOL_MIB = 64  # random bytes drawn from; no backend here compresses or dedups


@dataclasses.dataclass(frozen=True)
class Profile:
    sizes: tuple[tuple[int, int], ...]       # (volume GiB, MiB of data written)
    rbd_sizes: tuple[tuple[int, int], ...]
    lvm_sizes: tuple[tuple[int, int], ...]
    image_mib: int                            # template image: size, random head
    image_data_mib: int
    volumes: int                              # volumes made from the image
    stream_mib: int


FULL = Profile(sizes=((1, 256), (32, 1024)), rbd_sizes=((1, 64), (32, 256)),
               lvm_sizes=((1, 256), (8, 1024)),
               image_mib=512, image_data_mib=256, volumes=10, stream_mib=1024)
QUICK = Profile(sizes=((1, 32), (4, 128)), rbd_sizes=((1, 16), (4, 64)),
                lvm_sizes=((1, 32), (2, 64)),
                image_mib=64, image_data_mib=32, volumes=4, stream_mib=64)


# ---- small helpers
def run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)
    if proc.returncode:
        raise RuntimeError('%s failed: %s' % (' '.join(argv), proc.stderr.strip()[-500:]))
    return proc.stdout


def timed(fn: Callable[[], Any]) -> float:
    """Seconds ``fn`` took, after flushing earlier writes so they are not charged to it."""
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


def gib(n: float) -> str:
    return '%.2f GiB' % (n / GiB) if n >= GiB else '%.0f MiB' % (n / MiB)


def secs(t: float | None) -> str:
    return '%9s' % ('n/a' if t is None else '%.3f' % t)


def random_pool() -> bytes:
    return os.urandom(POOL_MIB * MiB)


def chunk(pool: bytes, i: int) -> bytes:
    """The i-th 1 MiB chunk: a different 4 KiB-aligned slice of the pool each time."""
    start = (i * 4096 * 257) % ((POOL_MIB - 1) * MiB)
    return pool[start:start + MiB]


def make_payload(path: str, size: int, data: int, pool: bytes) -> None:
    """Sparse raw file of ``size`` bytes with ``data`` bytes of random 1 MiB chunks
    spread evenly over it (the rest are holes, i.e. zeros)."""
    count = data // MiB
    stride = size // count
    with open(path, 'wb') as f:
        f.truncate(size)
        for i in range(count):
            os.pwrite(f.fileno(), chunk(pool, i), i * stride)
        os.fsync(f.fileno())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])

