"""Populate the test cloud of tools/nova.sh (run with the Nova venv's python).

  cloud_setup.py identity   projects, users, roles, services and endpoints
                            (after ``keystone-manage bootstrap`` made admin)
  cloud_setup.py image      the test guest's kernel, initrd and root disk in Glance
  cloud_setup.py flavor     the small test flavor in Nova

Settings come from the environment tools/nova.sh exports (GC_NOVA_*).
One process does all Keystone calls so the stack pays the client imports once.
"""

import os
import sys

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

E = os.environ
REGION = 'RegionOne'


def admin_session() -> ks_session.Session:
    auth = v3.Password(auth_url=E['GC_NOVA_KEYSTONE_URL'] + '/v3', username='admin',
                       password=E['GC_NOVA_PASSWORD'], project_name='admin',
                       user_domain_name='Default', project_domain_name='Default')
    return ks_session.Session(auth=auth)


def identity() -> None:
    from keystoneclient.v3 import client

    ks = client.Client(session=admin_session())
    domain = ks.domains.find(name='Default')
    roles = {r.name: r for r in ks.roles.list()}
    service = ks.projects.create('service', domain)
    other = ks.projects.create(E['GC_NOVA_MEMBER_PROJECT'], domain)
    member = ks.users.create(E['GC_NOVA_MEMBER_USER'], domain=domain,
                             password=E['GC_NOVA_PASSWORD'], default_project=other)
    ks.roles.grant(roles['member'], user=member, project=other)
    # the stock policies need the service role too for some internal calls
    service_role = roles.get('service') or ks.roles.create('service')
    # gridcentric: gridcentric-api's token validation and its [nova] calls
    for name in ('nova', 'placement', 'glance', 'neutron', 'gridcentric'):
        user = ks.users.create(name, domain=domain, password=E['GC_NOVA_PASSWORD'],
                               default_project=service)
        ks.roles.grant(roles['admin'], user=user, project=service)
        ks.roles.grant(service_role, user=user, project=service)
    for name, stype, url in (
            ('nova', 'compute', E['GC_NOVA_API_URL'] + '/v2.1'),
            ('placement', 'placement', E['GC_NOVA_PLACEMENT_URL']),
            ('glance', 'image', E['GC_NOVA_GLANCE_URL']),
            ('neutron', 'network', E['GC_NOVA_NEUTRON_URL'])):
        svc = ks.services.create(name, type=stype)
        for interface in ('public', 'internal', 'admin'):
            ks.endpoints.create(svc, url, interface=interface, region=REGION)


def image() -> None:
    """Nova boots the test guest the AMI way: kernel_id/ramdisk_id image
    properties make the libvirt driver fetch both and boot them directly, with
    a tiny raw disk as the root image."""
    from glanceclient import client

    glance = client.Client('2', session=admin_session())
    guest = E['GC_NOVA_GUEST_DIR']

    def upload(name: str, path: str, disk: str, container: str, **props: str) -> str:
        img = glance.images.create(name=name, disk_format=disk, container_format=container,
                                   visibility='public', **props)
        with open(path, 'rb') as f:
            glance.images.upload(img['id'], f)
        return img['id']

    kernel = upload('gc-test-kernel', os.path.join(guest, 'vmlinuz'), 'aki', 'aki')
    ramdisk = upload('gc-test-initrd', os.path.join(guest, 'initrd.img'), 'ari', 'ari')
    root = os.path.join(E['GC_NOVA_DIR'], 'data', 'gc-test-root.raw')
    with open(root, 'wb') as f:
        f.truncate(1 << 20)
    upload(E['GC_NOVA_IMAGE'], root, 'raw', 'bare', kernel_id=kernel, ramdisk_id=ramdisk,
           os_command_line='console=ttyS0 quiet panic=-1')


def flavor() -> None:
    from novaclient import client

    nova = client.Client('2.37', session=admin_session())
    nova.flavors.create(E['GC_NOVA_FLAVOR'], ram=128, vcpus=1, disk=1, is_public=True)


if __name__ == '__main__':
    for step in sys.argv[1:]:
        {'identity': identity, 'image': image, 'flavor': flavor}[step]()
