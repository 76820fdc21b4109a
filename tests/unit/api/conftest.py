import pytest


@pytest.fixture
def make_backend(cloud):
    def make(name='b1', driver='fake', expect=201, **fields):
        body = {'backend': dict(name=name, driver=driver, **fields)}
        response = cloud.request('POST', '/v1/backends', json=body)
        assert response.status_code == expect, response.text
        return response.json().get('backend', response.json())
    return make
