"""The Nova stack of tools/nova.sh works as the gridcentric-storage lane expects.

Real Keystone tokens, real nova-api/conductor/scheduler/compute with the
libvirt driver: a server boots from the test image, its guest RAM is a shared
file (what live images need), a member of another project cannot see it, and
deleting it through Nova removes the libvirt domain.
"""

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.services import wait_for

if not (os.environ.get('NOVA_URL') and os.environ.get('OS_AUTH_URL')):
    pytest.skip('set by tools/nova.sh start; the Nova lane runs it', allow_module_level=True)

from keystoneauth1 import session as ks_session  # noqa: E402
from keystoneauth1.identity import v3  # noqa: E402
from novaclient import client as nova_client  # noqa: E402
from novaclient import exceptions as nova_exc  # noqa: E402

MICROVERSION = '2.37'       # nics='none' (the API's networks: "none")
BOOT_TIMEOUT = 300          # TCG on two cores, image download included


def _nova(user: str, password: str, project: str) -> Any:
    auth = v3.Password(auth_url=os.environ['OS_AUTH_URL'], username=user, password=password,
                       project_name=project,
                       user_domain_name=os.environ.get('OS_USER_DOMAIN_NAME', 'Default'),
                       project_domain_name=os.environ.get('OS_PROJECT_DOMAIN_NAME', 'Default'))
    return nova_client.Client(MICROVERSION, session=ks_session.Session(auth=auth),
                              endpoint_override=os.environ['NOVA_URL'])


@pytest.fixture(scope='module')
def admin() -> Any:
    return _nova(os.environ['OS_USERNAME'], os.environ['OS_PASSWORD'],
                 os.environ['OS_PROJECT_NAME'])


@pytest.fixture(scope='module')
def member() -> Any:
    return _nova(os.environ['GC_NOVA_MEMBER_USERNAME'], os.environ['GC_NOVA_MEMBER_PASSWORD'],
                 os.environ['GC_NOVA_MEMBER_PROJECT_NAME'])


@pytest.fixture
def libvirt_conn() -> Iterator[Any]:
    libvirt = pytest.importorskip('libvirt')
    conn = libvirt.open('qemu:///system')
    yield conn
    conn.close()


def _image_id(nova: Any, name: str) -> str:
    """The test image's id, from Glance through the Keystone catalog."""
    images = nova.client.session.get('/v2/images', params={'name': name},
                                     endpoint_filter={'service_type': 'image'}).json()['images']
    assert len(images) == 1, images
    return images[0]['id']  # type: ignore[no-any-return]


def _status(nova: Any, server_id: str) -> str | None:
    server = nova.servers.get(server_id)
    if server.status == 'ERROR':
        raise AssertionError('server went to ERROR: %s' % getattr(server, 'fault', None))
    return server.status if server.status == 'ACTIVE' else None


def _gone(nova: Any, server_id: str) -> bool:
    try:
        nova.servers.get(server_id)
    except nova_exc.NotFound:
        return True
    return False


def test_boot_file_backed_isolated_delete(admin: Any, member: Any, libvirt_conn: Any) -> None:
    image = _image_id(admin, os.environ.get('GC_NOVA_IMAGE', 'gc-test-guest'))
    flavor = admin.flavors.find(name=os.environ.get('GC_NOVA_FLAVOR', 'gc-tiny'))
    server = admin.servers.create('gc-stack-smoke', image, flavor, nics='none')
    try:
        wait_for(lambda: _status(admin, server.id), BOOT_TIMEOUT, interval=1,
                 what='the server to become ACTIVE')

        # libvirt names the domain after instance_name_template; its UUID is the server's
        domain = libvirt_conn.lookupByUUIDString(server.id)
        assert domain.name() == 'ci-%s' % server.id
        assert domain.isActive()
        xml = domain.XMLDesc(0)
        assert "<source type='file'/>" in xml and "<access mode='shared'/>" in xml, xml

        assert server.id not in [s.id for s in member.servers.list()]
        with pytest.raises(nova_exc.NotFound):
            member.servers.get(server.id)
        with pytest.raises((nova_exc.NotFound, nova_exc.Forbidden)):
            member.servers.delete(server.id)
        assert _status(admin, server.id) == 'ACTIVE'
    finally:
        admin.servers.delete(server.id)
        wait_for(lambda: _gone(admin, server.id), 120, interval=1,
                 what='the server to be deleted')
    assert 'ci-%s' % server.id not in libvirt_conn.listDefinedDomains()
    assert 'ci-%s' % server.id not in [d.name() for d in libvirt_conn.listAllDomains()]
