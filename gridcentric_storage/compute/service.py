"""A running gridcentric-compute service: one RPC server for two managers.

The volume manager (namespace ``volume``) owns this host's backends; the
compute manager runs its servers and live images. One heartbeat, with the
host's capabilities, says both are up.
"""

import logging
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage import virt
from gridcentric_storage.common import concurrency, rpc
from gridcentric_storage.compute.manager import ComputeManager
from gridcentric_storage.db import api as db
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.virt import base as virt_base
from gridcentric_storage.volume.manager import VolumeManager

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def capabilities(driver: Any) -> dict[str, Any]:
    """What this host can do, as the API reads it from the service row.

    A host without a hypervisor (QEMU not installed, the virt driver not
    loadable) still serves volumes; the API places no server there.
    ``volume_mirror`` (only when true): its virt driver moves an attached volume
    of a running guest (``migrate_volume``), so such a migration may be asked.
    ``server_migration`` (only when true): it sends and receives running servers.
    """
    if isinstance(driver, virt.UnavailableDriver):
        reason: str | None = driver.reason
    else:
        reason = getattr(driver, 'hypervisor_error', None)
    caps: dict[str, Any] = {'hypervisor': reason is None, 'hypervisor_reason': reason}
    if reason is None and type(driver).migrate_volume is not virt_base.VirtDriver.migrate_volume:
        caps['volume_mirror'] = True        # absent: no (as on hosts older than it)
    if reason is None and type(driver).migrate_out is not virt_base.VirtDriver.migrate_out:
        caps['server_migration'] = True     # live migration of a whole server
    return caps


class ComputeService:
    def __init__(self, host: str | None = None) -> None:
        self.host = host or CONF.host
        images = ImageStore()
        self.volumes = VolumeManager(self.host, images)
        self.manager = ComputeManager(self.host, images)
        target = messaging.Target(topic=CONF.compute.topic, server=self.host)
        self.rpc_server = rpc.get_server(target, [self.manager, self.volumes])
        self.periodic = concurrency.Periodic(self.periodic_tasks,
                                             CONF.compute.report_interval,
                                             name='gc-compute-report')

    def start(self) -> None:
        LOG.info('Starting compute service on host %s (topic %s)', self.host,
                 CONF.compute.topic)
        self.manager.init_host()
        self.volumes.init_host()
        self.volumes.transfers.start()
        self.rpc_server.start()
        # Only now is the host "up": a call sent to it before its RPC server
        # consumes would be dropped by the broker (no queue bound yet). The
        # capabilities go with this first heartbeat; later ones keep them.
        db.service_heartbeat(self.host, CONF.compute.topic, 'gridcentric-compute',
                             capabilities=capabilities(self.manager.servers.driver))
        self.periodic.start()
        self.manager.after_start()

    def stop(self) -> None:
        self.periodic.stop()
        self.rpc_server.stop()
        self.rpc_server.wait()
        self.volumes.transfers.stop()
        self.manager.stop()

    def periodic_tasks(self) -> None:
        try:
            db.service_heartbeat(self.host, CONF.compute.topic, 'gridcentric-compute')
            self.volumes.report()
        except Exception:
            LOG.exception('Periodic report failed; will retry')
