"""Fixtures and hooks of the virt driver tests (helpers: drivers.py).

The libvirt driver needs a libvirtd: the session-scoped ``libvirtd`` fixture
starts one with tools/libvirtd.sh, once for every module, and stops it again
if it started it. Tests marked ``hypervisor`` need a real VM (a guest
console, a QEMU): the fake driver's runs of them are deselected, not skipped,
since the fake does not claim them.
"""

import subprocess
from collections.abc import Iterator

import pytest

from tests.functional.virt.drivers import LIBVIRTD, libvirt_missing, skip_or_fail


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line('markers', 'hypervisor: needs a real VM; not run on the fake '
                                       'virt driver')


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    dropped = [item for item in items if item.get_closest_marker('hypervisor')
               and getattr(item, 'callspec', None) is not None
               and item.callspec.params.get('driver') == 'fake']
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture(scope='session')
def libvirtd() -> Iterator[None]:
    """A libvirtd answering on qemu:///system for the whole session."""
    reason = libvirt_missing()
    if reason:
        skip_or_fail(reason)
    was_running = subprocess.run(['bash', LIBVIRTD, 'status'], check=False,
                                 timeout=30).returncode == 0
    proc = subprocess.run(['bash', LIBVIRTD, 'start'], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode:
        skip_or_fail('tools/libvirtd.sh start failed: %s' % proc.stderr.strip())
    yield
    if not was_running:
        subprocess.run(['bash', LIBVIRTD, 'stop'], check=False, timeout=60)
