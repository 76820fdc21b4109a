"""gridcentric-compute: RPC server on topic 'gridcentric', server = [DEFAULT] host."""

import sys

from oslo_config import cfg

from gridcentric_storage.cmd import common
from gridcentric_storage.common import rpc
from gridcentric_storage.compute import service


def main(argv: list[str] | None = None) -> int:
    common.setup(argv)
    try:
        lock = common.lock_state_path(cfg.CONF.state_path)
    except (common.StatePathBusy, OSError) as e:
        print('gridcentric-compute: %s' % e, file=sys.stderr)
        return 1
    rpc.init()
    compute = service.ComputeService()
    compute.start()
    common.wait_for_signal()
    compute.stop()
    rpc.cleanup()
    lock.close()
    return 0
