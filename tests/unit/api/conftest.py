import pytest

from tests.fixtures.services import InProcessCloud


@pytest.fixture
def cloud(gc_db):
    """The real paste-deployed API and a compute service over fake:// RPC."""
    instance = InProcessCloud()
    yield instance
    instance.stop()


@pytest.fixture
def make_backend(cloud):
    def make(name='b1', driver='fake', expect=201, **fields):
        body = {'backend': dict(name=name, driver=driver, **fields)}
        response = cloud.request('POST', '/v1/backends', json=body)
        assert response.status_code == expect, response.text
        return response.json().get('backend', response.json())
    return make
