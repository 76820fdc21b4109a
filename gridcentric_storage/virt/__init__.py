"""Virt drivers, loaded by name from ``gridcentric_storage.virt.drivers``."""

import logging
from typing import Any

from oslo_config import cfg
from stevedore import driver as stevedore_driver

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base

LOG = logging.getLogger(__name__)

NAMESPACE = 'gridcentric_storage.virt.drivers'
CONF = cfg.CONF


class UnavailableDriver(base.VirtDriver):
    """Stands in when the configured driver cannot load, so volumes keep working.

    Every server call fails with the load error, which is what the operator
    needs to read in the server's fault.
    """

    def __init__(self, name: str, error: Exception) -> None:
        self.reason = 'virt driver %s is unavailable: %s' % (name, error)

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise exception.DriverError(reason=self.reason)

    spawn = destroy = get_console_output = bless = launch = discard = _fail  # type: ignore
    pause = unpause = attach_volume = detach_volume = _fail  # type: ignore

    def get_info(self, instance_id: str) -> base.InstanceInfo:
        return base.InstanceInfo(id=instance_id, state='stopped')

    def list_instances(self) -> list[str]:
        return []


def load_driver(name: str | None = None) -> base.VirtDriver:
    """The configured driver; a class may build itself from config (``from_config``)."""
    name = name or CONF.compute.virt_driver
    try:
        manager: Any = stevedore_driver.DriverManager(NAMESPACE, name, invoke_on_load=False)
        cls = manager.driver
        factory = getattr(cls, 'from_config', None)
        driver: base.VirtDriver = factory(CONF) if factory else cls()
    except Exception as e:
        LOG.error('Virt driver %s cannot be loaded: %s; servers will fail', name, e)
        return UnavailableDriver(name, e)
    return driver
