"""Fixtures of the Nova-side unit tests: a stand-in Nova API and a compute host that
records the casts it gets."""

import oslo_messaging as messaging
import pytest
from oslo_config import cfg

from gridcentric_storage.common import rpc
from tests.unit.nova import nova_stub

CONF = cfg.CONF


@pytest.fixture
def nova():
    stub = nova_stub.StubNova()
    yield stub
    stub.stop()


@pytest.fixture
def compute(gc_db):
    recorder = nova_stub.ComputeRecorder()
    server = rpc.get_server(messaging.Target(topic=CONF.compute.topic, server='nova-host-1'),
                            [recorder])
    server.start()
    yield recorder
    server.stop()
    server.wait()
