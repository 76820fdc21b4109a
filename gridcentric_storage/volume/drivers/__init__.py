"""Volume drivers, loaded by name from ``gridcentric_storage.volume.drivers``."""

from typing import Any

from oslo_config import cfg
from stevedore import driver as stevedore_driver
from stevedore import extension as stevedore_extension

from gridcentric_storage.common import exception
from gridcentric_storage.db.records import Backend
from gridcentric_storage.volume.drivers import base

NAMESPACE = 'gridcentric_storage.volume.drivers'
CONF = cfg.CONF


def available_drivers() -> list[str]:
    installed = set(stevedore_extension.ExtensionManager(NAMESPACE).names())
    return sorted(name for name in CONF.volume.enabled_drivers if name in installed)


def get_driver_class(name: str) -> type[base.VolumeDriver]:
    """Return the class for an enabled driver name, or raise UnknownDriver."""
    if name not in CONF.volume.enabled_drivers:
        raise exception.UnknownDriver(driver=name, available=', '.join(available_drivers()))
    try:
        manager: Any = stevedore_driver.DriverManager(NAMESPACE, name, invoke_on_load=False)
    except Exception:
        raise exception.UnknownDriver(driver=name, available=', '.join(available_drivers()))
    driver_class: type[base.VolumeDriver] = manager.driver
    return driver_class


def load_driver(backend: Backend) -> base.VolumeDriver:
    cls = get_driver_class(backend['driver'])
    return cls(backend_id=backend['id'], backend_name=backend['name'],
               options=backend['options'])
