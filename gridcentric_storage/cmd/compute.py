"""gridcentric-compute: RPC server on topic 'gridcentric', server = [DEFAULT] host."""

from gridcentric_storage.cmd import common
from gridcentric_storage.common import rpc
from gridcentric_storage.compute import service


def main(argv: list[str] | None = None) -> int:
    common.setup(argv)
    rpc.init()
    compute = service.ComputeService()
    compute.start()
    common.wait_for_signal()
    compute.stop()
    rpc.cleanup()
    return 0
