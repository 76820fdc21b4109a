"""gc-inproc://, the all-in-one's bus: RPC through rpc.get_client/get_server, with
the listener woken by each delivery rather than looking every 50 ms."""

import threading
import time
import types

import oslo_messaging
import pytest
from oslo_messaging._drivers import impl_fake

from gridcentric_storage.common import context, exception, inproc_transport, rpc


class _Endpoint:
    target = oslo_messaging.Target(version='1.0')

    def __init__(self) -> None:
        self.cast_seen = threading.Event()
        self.cast_values: list[int] = []

    def double(self, ctxt, value):
        return {'value': value * 2, 'project': ctxt.project_id}

    def refuse(self, ctxt):
        raise exception.Invalid(reason='no')

    def note(self, ctxt, value):
        self.cast_values.append(value)
        self.cast_seen.set()


@pytest.fixture
def sleeps(monkeypatch):
    """Every time.sleep of oslo.messaging's fake driver (its 50 ms poll)."""
    calls: list[float] = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(impl_fake, 'time', types.SimpleNamespace(time=time.time, sleep=sleep))
    return calls


@pytest.fixture
def endpoint(gc_conf, sleeps):
    gc_conf.set_override('transport_url', 'gc-inproc://')
    rpc.cleanup()
    endpoint = _Endpoint()
    server = rpc.get_server(oslo_messaging.Target(topic='gc-inproc-test', server='host-1'),
                            [endpoint])
    server.start()
    yield endpoint
    # A stopped listener must wake up to leave (nothing will be delivered).
    server.stop()
    server.wait()
    rpc.cleanup()


def _client():
    return rpc.get_client(oslo_messaging.Target(topic='gc-inproc-test', version='1.0'),
                          version_cap='1.0').prepare(server='host-1', timeout=30)


def _ctxt():
    return context.RequestContext(user_id='u', project_id='p', is_admin=False,
                                  overwrite=False)


def test_the_url_selects_the_in_process_driver(endpoint):
    assert isinstance(rpc.get_transport()._driver, inproc_transport.InprocDriver)


def test_a_call_is_answered_without_polling(endpoint, sleeps):
    assert _client().call(_ctxt(), 'double', value=21) == {'value': 42, 'project': 'p'}
    assert sleeps == []


def test_a_cast_is_delivered_without_polling(endpoint, sleeps):
    _client().cast(_ctxt(), 'note', value=7)
    assert endpoint.cast_seen.wait(30)
    assert endpoint.cast_values == [7]
    assert sleeps == []


def test_a_remote_error_keeps_its_class(endpoint):
    with pytest.raises(exception.Invalid):
        _client().call(_ctxt(), 'refuse')


def test_the_fake_driver_still_works_and_polls(gc_conf, sleeps):
    # Tests keep fake://; what makes it slow in a service is its poll.
    rpc.cleanup()
    endpoint = _Endpoint()
    server = rpc.get_server(oslo_messaging.Target(topic='gc-fake-test', server='host-1'),
                            [endpoint])
    server.start()
    try:
        client = rpc.get_client(oslo_messaging.Target(topic='gc-fake-test', version='1.0'),
                                version_cap='1.0').prepare(server='host-1', timeout=30)
        client.cast(_ctxt(), 'note', value=3)
        assert endpoint.cast_seen.wait(30)
        assert not isinstance(rpc.get_transport()._driver, inproc_transport.InprocDriver)
        assert sleeps != []
    finally:
        server.stop()
        server.wait()
        rpc.cleanup()
