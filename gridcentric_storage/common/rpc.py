"""oslo.messaging set-up: one transport per process, contexts on the wire.

``[DEFAULT] transport_url`` picks the bus: ``rabbit://...`` between hosts,
``gc-inproc://`` for the all-in-one (API and compute in one process;
``common.inproc_transport``: oslo.messaging's ``fake://`` without its 50 ms
polling, which tests may still use).
"""

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.common import context as gc_context

CONF = cfg.CONF
#: Every error a user can cause is defined in common.exception, so it crosses
#: RPC as itself (with its HTTP code); anything else arrives as
#: oslo.messaging's RemoteError, an opaque 500.
ALLOWED_EXMODS = ['gridcentric_storage.common.exception']

_transport: messaging.Transport | None = None


class RequestContextSerializer(messaging.NoOpSerializer):
    """Carries the caller's RequestContext to the compute service."""

    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        return ctxt.to_dict()  # type: ignore[no-any-return]

    def deserialize_context(self, ctxt: dict[str, Any]) -> gc_context.RequestContext:
        return gc_context.RequestContext.from_dict(ctxt)


def init(conf: cfg.ConfigOpts = CONF) -> None:
    global _transport
    if _transport is None:
        _transport = messaging.get_rpc_transport(conf, allowed_remote_exmods=ALLOWED_EXMODS)


def cleanup() -> None:
    global _transport
    if _transport is not None:
        _transport.cleanup()
        _transport = None


def get_transport() -> messaging.Transport:
    init()
    assert _transport is not None
    return _transport


def get_client(target: messaging.Target, version_cap: str) -> Any:
    return messaging.get_rpc_client(get_transport(), target, version_cap=version_cap,
                                    serializer=RequestContextSerializer())


def get_server(target: messaging.Target, endpoints: list[Any]) -> Any:
    return messaging.get_rpc_server(get_transport(), target, endpoints, executor='threading',
                                    serializer=RequestContextSerializer())


ClientT = TypeVar('ClientT')


class LazyClient(Generic[ClientT]):
    """Class attribute giving each instance an RPC client made on first use.

    API controllers are built when the paste pipeline loads, before the RPC
    transport may be set up; the client is made when a request needs it.
    """

    def __init__(self, factory: Callable[[], ClientT]) -> None:
        self._factory = factory

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = '_lazy_' + name

    def __get__(self, obj: Any, owner: type | None = None) -> ClientT:
        client = obj.__dict__.get(self._attr)
        if client is None:
            client = obj.__dict__[self._attr] = self._factory()
        return client  # type: ignore[no-any-return]


class HostClient:
    """An RPC client whose every message goes to one named host's service.

    Subclasses set ``NAMESPACE`` and ``VERSION`` (their one version constant)
    and pass each method's own version, so a message never claims more than
    it needs.
    """

    NAMESPACE: str | None = None
    VERSION = '1.0'

    def __init__(self) -> None:
        self.target = messaging.Target(topic=CONF.compute.topic, namespace=self.NAMESPACE,
                                       version=self.VERSION)
        self.client = get_client(self.target, version_cap=self.VERSION)

    def _call(self, ctxt: Any, host: str, method: str, version: str, **kwargs: Any) -> Any:
        cctxt = self.client.prepare(server=host, version=version,
                                    timeout=CONF.compute.rpc_call_timeout)
        return cctxt.call(ctxt, method, **kwargs)

    def _cast(self, ctxt: Any, host: str, method: str, version: str, **kwargs: Any) -> None:
        self.client.prepare(server=host, version=version).cast(ctxt, method, **kwargs)
