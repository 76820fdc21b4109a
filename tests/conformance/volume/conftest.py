"""The ``backend`` fixture: every scenario of this package runs once per volume driver
set-up (see backends.py and backends_lvm.py), each on fresh storage."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.volume import backends, backends_cinder, backends_lvm, backends_storpool
from tests.fixtures.images import host_images

BACKENDS = ('fake', 'file-qcow2', 'file-reflink', 'rbd', 'lvm-thick', 'lvm-thin',
            'storpool', 'cinder-rbd')


@pytest.fixture(params=BACKENDS)
def backend(request: Any, tmp_path: Any, gc_conf: Any) -> Iterator[backends.Backend]:
    kind = request.param
    if kind == 'fake':
        made: Iterator[backends.Backend] = iter([backends.FakeBackend()])
    elif kind.startswith('file-'):
        made = backends.file_backend(kind.split('-', 1)[1], tmp_path)
    elif kind == 'rbd':
        made = backends.rbd_backend()
    elif kind == 'storpool':
        made = backends_storpool.storpool_backend(tmp_path)
    elif kind == 'cinder-rbd':
        made = backends_cinder.cinder_rbd_backend()
    else:
        made = backends_lvm.lvm_backend(kind.split('-', 1)[1], tmp_path)
    for instance in made:
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def images(tmp_path: Any) -> Any:
    """The image store as drivers receive it, allowing files under tmp_path."""
    return host_images(str(tmp_path))
