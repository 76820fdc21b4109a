"""compute.api and volume.api over the running host of tests/unit/conftest.py."""

import pytest

from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.volume import api as volume_api


@pytest.fixture
def hypervisor(service):
    """The fake virt driver of the host: the VMs as the hypervisor sees them."""
    return service.manager.servers.driver


@pytest.fixture
def compute():
    return compute_api.ComputeAPI()


@pytest.fixture
def volumes():
    return volume_api.API()
