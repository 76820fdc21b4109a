"""A running compute host in this process (fake:// RPC, the fake virt driver) with a
fake volume backend: what the compute and volume unit tests drive."""

import pytest

from tests.unit.compute import helpers


@pytest.fixture
def service(gc_db):
    running = helpers.start_service()
    yield running
    running.stop()


@pytest.fixture
def backend(service):
    return helpers.add_backend()


@pytest.fixture
def ctxt():
    """A member of a project (not an administrator)."""
    return helpers.member()
