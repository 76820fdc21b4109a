"""A running compute host with a fake volume backend, driven through compute.api."""

import pytest

from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.volume import api as volume_api
from tests.unit.compute import helpers


@pytest.fixture
def service(gc_db):
    running = helpers.start_service()
    yield running
    running.stop()


@pytest.fixture
def hypervisor(service):
    """The fake virt driver of the host: the VMs as the hypervisor sees them."""
    return service.manager.servers.driver


@pytest.fixture
def backend(service):
    return helpers.add_backend()


@pytest.fixture
def ctxt():
    return helpers.member()


@pytest.fixture
def compute():
    return compute_api.ComputeAPI()


@pytest.fixture
def volumes():
    return volume_api.API()
