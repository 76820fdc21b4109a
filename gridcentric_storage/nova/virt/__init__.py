"""The virt driver nova-compute loads as ``compute_driver = gridcentric.LibvirtDriver``.

``LibvirtDriver`` (``driver.py``) is Nova's libvirt driver and imports only
inside Nova's environment, so it is resolved on first use: ``clone_xml``,
which is not Nova's, stays importable (and unit-testable) without Nova.
"""

from typing import Any

__all__ = ['LibvirtDriver']


def __getattr__(name: str) -> Any:
    if name == 'LibvirtDriver':
        from gridcentric_storage.nova.virt.driver import LibvirtDriver
        return LibvirtDriver
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
