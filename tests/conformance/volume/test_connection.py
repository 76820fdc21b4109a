"""initialize_connection on every driver: what it returns is what os-brick's connector
for the driver's protocol takes unchanged, and reads the volume's bytes."""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.compute import brick
from tests.conformance.volume import attach
from tests.conformance.volume.backends import Backend, MiB, new_volume

CONNECTOR = {'host': 'conformance-host', 'initiator': 'iqn.1993-08.org.debian:01:conformance',
             'ip': '127.0.0.1'}


def test_connection_info_is_accepted_by_os_brick(backend: Backend) -> None:
    driver, before = backend.driver, backend.objects()
    kind = type(driver).DRIVER_VOLUME_TYPE
    attach.needs(kind)
    volume = new_volume(1)
    driver.create_volume(volume)
    backend.write(volume, 4 * MiB, b'\x77' * MiB)
    try:
        connection = driver.initialize_connection(volume, CONNECTOR)
        # the type is known before connecting: hosts refuse what they cannot open
        assert connection['driver_volume_type'] == kind
        assert connection['data']['volume_id'] == volume.id
        protocol = brick.PROTOCOLS.get(kind)
        if protocol is None:  # the fake driver: no host can open it, and says so
            with pytest.raises(exception.NotConnectable):
                brick.check_connectable(kind)
        else:
            assert attach.read(protocol, connection['data'], 4 * MiB, 2 * MiB) == (
                b'\x77' * MiB + bytes(MiB))
        assert driver.terminate_connection(volume, CONNECTOR) is None
        assert driver.terminate_connection(volume, None) is None
    finally:
        driver.remove_export(None, volume)
        driver.delete_volume(volume)
    assert backend.objects() == before
