"""volume.api.API, as the REST controllers and the compute host call it (the running
host and its backend are tests/unit/conftest.py's)."""

import pytest

from gridcentric_storage.volume import api as volume_api


@pytest.fixture
def api():
    return volume_api.API()
