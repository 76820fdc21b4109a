"""Clients of the tools/nova.sh stack: real Keystone tokens, Nova's own endpoint.

Every test here skips unless ``tools/nova.sh start``'s exports are set (the
Nova lane of tools/run-tests.sh sets them and GC_REQUIRE_SERVICES=1, which
turns the skip into a failure).
"""

import configparser
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures.services import wait_for

MICROVERSION = '2.37'       # nics='none' (the API's networks: "none")
BOOT_TIMEOUT = 300          # TCG on two cores, image download included
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
NOVA_SH = os.path.join(ROOT, 'tools', 'nova.sh')


def stack_missing(*names: str) -> str | None:
    """Why the stack's exports are not there (plain words), or None."""
    unset = [n for n in ('NOVA_URL', 'OS_AUTH_URL') + names if not os.environ.get(n)]
    if unset:
        return '%s unset: run `eval "$(tools/nova.sh start)"` (the Nova lane does)' % (
            ', '.join(unset))
    return None


def require_stack(*names: str) -> None:
    reason = stack_missing(*names)
    if reason and os.environ.get('GC_REQUIRE_SERVICES') == '1':
        pytest.fail(reason)
    if reason:
        pytest.skip(reason, allow_module_level=True)


def nova(user: str, password: str, project: str) -> Any:
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3
    from novaclient import client as nova_client

    auth = v3.Password(auth_url=os.environ['OS_AUTH_URL'], username=user, password=password,
                       project_name=project,
                       user_domain_name=os.environ.get('OS_USER_DOMAIN_NAME', 'Default'),
                       project_domain_name=os.environ.get('OS_PROJECT_DOMAIN_NAME', 'Default'))
    return nova_client.Client(MICROVERSION, session=ks_session.Session(auth=auth),
                              endpoint_override=os.environ['NOVA_URL'])


@pytest.fixture(scope='module')
def admin() -> Any:
    require_stack()
    return nova(os.environ['OS_USERNAME'], os.environ['OS_PASSWORD'],
                os.environ['OS_PROJECT_NAME'])


@pytest.fixture(scope='module')
def member() -> Any:
    require_stack('GC_NOVA_MEMBER_USERNAME')
    return nova(os.environ['GC_NOVA_MEMBER_USERNAME'], os.environ['GC_NOVA_MEMBER_PASSWORD'],
                os.environ['GC_NOVA_MEMBER_PROJECT_NAME'])


@pytest.fixture(scope='module')
def libvirt_conn() -> Iterator[Any]:
    libvirt = pytest.importorskip('libvirt')
    conn = libvirt.open('qemu:///system')
    yield conn
    conn.close()


def image_id(client: Any, name: str | None = None) -> str:
    """The test image's id, from Glance through the Keystone catalog."""
    name = name or os.environ.get('GC_NOVA_IMAGE', 'gc-test-guest')
    images = client.client.session.get('/v2/images', params={'name': name},
                                       endpoint_filter={'service_type': 'image'}
                                       ).json()['images']
    assert len(images) == 1, images
    return images[0]['id']  # type: ignore[no-any-return]


def flavor(client: Any) -> Any:
    return client.flavors.find(name=os.environ.get('GC_NOVA_FLAVOR', 'gc-tiny'))


def active(client: Any, server_id: str) -> Any:
    """The server once ACTIVE (None before); AssertionError when it went to ERROR."""
    server = client.servers.get(server_id)
    if server.status == 'ERROR':
        raise AssertionError('server went to ERROR: %s' % getattr(server, 'fault', None))
    return server if server.status == 'ACTIVE' else None


def gone(client: Any, server_id: str) -> bool:
    from novaclient import exceptions as nova_exc

    try:
        client.servers.get(server_id)
    except nova_exc.NotFound:
        return True
    return False


def boot(client: Any, name: str) -> Any:
    server = client.servers.create(name, image_id(client), flavor(client), nics='none')
    return wait_for(lambda: active(client, server.id), BOOT_TIMEOUT, interval=1,
                    what='%s to become ACTIVE' % name)


def delete(client: Any, server_id: str) -> None:
    client.servers.delete(server_id)
    wait_for(lambda: gone(client, server_id), 120, interval=0.5,
             what='server %s to be deleted' % server_id)


def console(client: Any, server_id: str) -> str:
    """What the guest printed on its serial console, through os-getConsoleOutput."""
    return client.servers.get_console_output(server_id) or ''  # type: ignore[no-any-return]


def domain_name(server_id: str) -> str:
    """libvirt's name of a server's domain (tools/nova.sh's instance_name_template)."""
    return 'ci-%s' % server_id


def live_images_path() -> str:
    """Where bless writes live images on the stack's one host (its gridcentric config)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.environ['GC_NOVA_GC_CONFIG'])
    return parser['libvirt']['live_images_path']


def nova_sh(*args: str) -> None:
    """tools/nova.sh with the stack's environment (e.g. restart a killed service)."""
    subprocess.run(['bash', NOVA_SH, *args], check=True, timeout=300)


def pidfile(service: str) -> str:
    return os.path.join(os.environ['GC_NOVA_DIR'], 'run', '%s.pid' % service)
