"""The backends this host owns: their loaded drivers and their stats reports."""

import logging
import threading
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db import api as db
from gridcentric_storage.db.records import Backend
from gridcentric_storage.volume import drivers
from gridcentric_storage.volume.drivers import base

LOG = logging.getLogger(__name__)


class LocalPool:
    """Loads, sets up and reports on the drivers of one host's backends."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._drivers: dict[str, base.VolumeDriver] = {}
        self._lock = threading.Lock()

    def get(self, backend_id: str) -> base.VolumeDriver:
        with self._lock:
            driver = self._drivers.get(backend_id)
        if driver is None:
            driver = self.setup(db.backend_get(backend_id))
        return driver

    def setup(self, backend: Backend) -> base.VolumeDriver:
        """Load and set up a backend's driver; raise BackendSetupFailed with why."""
        if backend['host'] != self.host:
            raise exception.BackendSetupFailed(
                name=backend['name'], host=self.host,
                reason='it is owned by host %s' % backend['host'])
        try:
            driver = drivers.load_driver(backend)
            driver.do_setup(None)
            driver.check_for_setup_error()
        except exception.GCException as e:
            raise exception.BackendSetupFailed(name=backend['name'], host=self.host,
                                               reason=e.message)
        except Exception as e:  # a driver bug must not kill the service
            LOG.exception('Setting up backend %s failed', backend['name'])
            raise exception.BackendSetupFailed(name=backend['name'], host=self.host,
                                               reason=str(e) or type(e).__name__)
        with self._lock:
            self._drivers[backend['id']] = driver
        self.report(backend['id'], driver)
        return driver

    def remove(self, backend_id: str) -> None:
        """The backend was deleted: drop its driver and remove what set-up made."""
        with self._lock:
            driver = self._drivers.pop(backend_id, None)
        if driver is not None:
            self._delete_backend(backend_id, driver)

    def _delete_backend(self, backend_id: str, driver: base.VolumeDriver) -> None:
        """Let the driver remove what it created for the backend (e.g. the file
        driver's directory), once the backend's row is really gone: only a
        deleted backend loses its data."""
        try:
            db.backend_get(backend_id)
            return
        except exception.BackendNotFound:
            pass
        try:
            driver.delete_backend()
        except Exception as e:  # a leftover directory must not fail the delete
            LOG.warning('Could not remove what backend %s (%s) left: %s',
                        driver.backend_name, backend_id, e)

    def report(self, backend_id: str, driver: base.VolumeDriver) -> dict[str, Any]:
        stats = driver.get_volume_stats(refresh=True)
        db.backend_update_stats(backend_id, stats)
        return stats

    def sync_and_report(self) -> None:
        """Periodic task: follow the DB's view of this host's backends, report stats.

        Backends added while this service was down get loaded here; a backend
        whose set-up or stats fail stays unreported, so it turns 'down' and
        the scheduler stops choosing it.
        """
        owned = {b['id']: b for b in db.backend_get_all(filters={'host': self.host})}
        with self._lock:
            gone = {b: self._drivers.pop(b) for b in set(self._drivers) - set(owned)}
            loaded = dict(self._drivers)
        for backend_id, dropped in gone.items():  # deleted while the RPC missed us
            self._delete_backend(backend_id, dropped)
        for backend_id, backend in owned.items():
            try:
                driver = loaded.get(backend_id)
                if driver is None:
                    self.setup(backend)
                else:
                    self.report(backend_id, driver)
            except Exception as e:
                LOG.warning('Backend %s (%s) not reporting: %s', backend['name'],
                            backend_id, e)
