"""The Nova stack of tools/nova.sh works as the gridcentric-storage lane expects.

Real Keystone tokens, real nova-api/conductor/scheduler/compute with
gridcentric's libvirt driver (the stock path, for a server that names no live
image): a server boots from the test image, its guest RAM is a shared file
(what live images need), a member of another project cannot see it, and
deleting it through Nova removes the libvirt domain.
"""

from typing import Any

import pytest

from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.nova.conftest import active, boot, console, delete, domain_name, require_stack

require_stack()


def test_boot_file_backed_isolated_delete(admin: Any, member: Any, libvirt_conn: Any) -> None:
    from novaclient import exceptions as nova_exc

    server = boot(admin, 'gc-stack-smoke')
    try:
        # libvirt names the domain after instance_name_template; its UUID is the server's
        domain = libvirt_conn.lookupByUUIDString(server.id)
        assert domain.name() == domain_name(server.id)
        assert domain.isActive()
        xml = domain.XMLDesc(0)
        assert "<source type='file'/>" in xml and "<access mode='shared'/>" in xml, xml
        # the guest runs: its console (os-getConsoleOutput) shows it counting
        wait_for(lambda: len(guest.counters(console(admin, server.id))) >= 2, 120,
                 interval=0.5, what='the guest to count on its console')

        assert server.id not in [s.id for s in member.servers.list()]
        with pytest.raises(nova_exc.NotFound):
            member.servers.get(server.id)
        with pytest.raises((nova_exc.NotFound, nova_exc.Forbidden)):
            member.servers.delete(server.id)
        assert active(admin, server.id)
    finally:
        delete(admin, server.id)
    assert domain_name(server.id) not in libvirt_conn.listDefinedDomains()
    assert domain_name(server.id) not in [d.name() for d in libvirt_conn.listAllDomains()]
