"""A running compute service: RPC server, heartbeat and stats reporting."""

import logging

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.common import concurrency, rpc
from gridcentric_storage.compute.manager import ComputeManager

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


class ComputeService:
    def __init__(self, host: str | None = None) -> None:
        self.host = host or CONF.host
        self.manager = ComputeManager(self.host)
        target = messaging.Target(topic=CONF.compute.topic, server=self.host)
        self.rpc_server = rpc.get_server(target, [self.manager])
        self.periodic = concurrency.Periodic(self.manager.periodic_tasks,
                                             CONF.compute.report_interval,
                                             name='gc-compute-report')

    def start(self) -> None:
        LOG.info('Starting compute service on host %s (topic %s)', self.host,
                 CONF.compute.topic)
        self.manager.init_host()
        self.manager.transfers.start()
        self.rpc_server.start()
        self.periodic.start()
        self.manager.after_start()

    def stop(self) -> None:
        self.periodic.stop()
        self.rpc_server.stop()
        self.rpc_server.wait()
        self.manager.transfers.stop()
