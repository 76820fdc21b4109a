"""Client side of the ``cobalt`` RPC endpoint (``nova.manager``), used by nova-api's filter.

It runs inside nova-api, which owns the global ``cfg.CONF``: it is built from
a private ``ConfigOpts`` (``transport_url``, ``[nova] cobalt_topic`` and
``rpc_timeout``, defined here so that nova-api never imports
``gridcentric_storage.conf``, which registers this service's options on the
global ``CONF``) and sends the caller's context as a plain dict, the keys
``oslo_context.RequestContext.from_dict`` reads.

Every method is a call (the caller waits for its answer); a server-carrying
answer is a list of Nova detail views built under ``root``, the URL above
``/v2.1``.

Version history:

* 1.0 - bless, launch, discard, list_launched, list_blessed, show, find.
* 1.1 - export, import_server, migrate.
"""

import importlib
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

RPC_API_VERSION = '1.1'
NAMESPACE = 'cobalt'
#: Named on both sides: in nova-api, Nova's set_transport_defaults changes the
#: default control_exchange of every ConfigOpts (to ``nova``), the filter's too.
EXCHANGE = 'gridcentric'
#: A read the filter makes after Nova answered 404 waits at most this long:
#: when the service is down, Nova's own answer goes out instead, soon.
READ_TIMEOUT = 10
#: An export or import packs or unpacks the whole RAM and disks on the host.
TRANSFER_TIMEOUT = 1860  # the compute host's own limit (1800 s), and a margin
#: Errors a user can cause cross RPC as themselves (with their HTTP code).
ALLOWED_EXMODS = ['gridcentric_storage.common.exception']


GROUP = 'nova'
#: The ``[nova]`` options both sides read (``conf.nova`` adds the service's).
rpc_opts = [
    cfg.StrOpt('cobalt_topic', default='gridcentric-cobalt',
               help='RPC topic of the cobalt endpoint: gridcentric-api serves it when '
                    '[nova] enabled is true, nova-api\'s gridcentric paste filter calls '
                    'it.'),
    cfg.IntOpt('rpc_timeout', default=60, min=1,
               help='Seconds the nova-api filter waits for the cobalt endpoint before '
                    'answering 503.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(rpc_opts, group=GROUP)
    # oslo.messaging reads its metrics (and, from 18, tracing) options from
    # the transport's ConfigOpts on every send, but registers them on the
    # global CONF only: they are registered here as well.
    for module, group in (('_metrics', 'oslo_messaging_metrics'),
                          ('_tracing', 'oslo_messaging_tracing')):
        try:
            opts = getattr(importlib.import_module('oslo_messaging.%s.client' % module),
                           group)
        except (ImportError, AttributeError):  # a release without them
            continue
        conf.register_opts(opts, group=group)


class _DictContextSerializer(messaging.NoOpSerializer):
    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        return dict(ctxt)


class CobaltAPI:
    def __init__(self, conf: cfg.ConfigOpts,
                 transport: messaging.Transport | None = None) -> None:
        register_opts(conf)
        self.transport = transport or messaging.get_rpc_transport(
            conf, allowed_remote_exmods=ALLOWED_EXMODS)
        target = messaging.Target(exchange=EXCHANGE, topic=conf.nova.cobalt_topic,
                                  namespace=NAMESPACE, version=RPC_API_VERSION)
        self.client = messaging.get_rpc_client(
            self.transport, target, version_cap=RPC_API_VERSION,
            serializer=_DictContextSerializer(), timeout=conf.nova.rpc_timeout)
        self.read_timeout = min(READ_TIMEOUT, conf.nova.rpc_timeout)

    def _call(self, ctxt: dict[str, Any], method: str, **kwargs: Any) -> Any:
        return self.client.prepare(version='1.0').call(ctxt, method, **kwargs)

    def _transfer(self, ctxt: dict[str, Any], method: str, **kwargs: Any) -> Any:
        return self.client.prepare(
            version='1.1', timeout=max(TRANSFER_TIMEOUT, self.client.timeout or 0)).call(
            ctxt, method, **kwargs)

    def _read(self, ctxt: dict[str, Any], method: str, **kwargs: Any) -> Any:
        return self.client.prepare(version='1.0', timeout=self.read_timeout).call(
            ctxt, method, **kwargs)

    def bless(self, ctxt: dict[str, Any], server_id: str, args: Any, root: str
              ) -> list[dict[str, Any]]:
        return self._call(ctxt, 'bless', server_id=server_id,  # type: ignore[no-any-return]
                          args=args, root=root)

    def launch(self, ctxt: dict[str, Any], live_image_id: str, args: Any, root: str
               ) -> list[dict[str, Any]]:
        return self._call(ctxt, 'launch',  # type: ignore[no-any-return]
                          live_image_id=live_image_id, args=args, root=root)

    def discard(self, ctxt: dict[str, Any], live_image_id: str, args: Any) -> None:
        self._call(ctxt, 'discard', live_image_id=live_image_id, args=args)

    def list_launched(self, ctxt: dict[str, Any], server_id: str, args: Any, root: str
                      ) -> list[dict[str, Any]]:
        return self._call(ctxt, 'list_launched',  # type: ignore[no-any-return]
                          server_id=server_id, args=args, root=root)

    def list_blessed(self, ctxt: dict[str, Any], server_id: str, args: Any, root: str
                     ) -> list[dict[str, Any]]:
        return self._call(ctxt, 'list_blessed',  # type: ignore[no-any-return]
                          server_id=server_id, args=args, root=root)

    def show(self, ctxt: dict[str, Any], server_id: str, root: str
             ) -> dict[str, Any] | None:
        """A live image as a server, or None when ``server_id`` is no live image
        the caller sees."""
        return self._read(ctxt, 'show',  # type: ignore[no-any-return]
                          server_id=server_id, root=root)

    def find(self, ctxt: dict[str, Any], name: str, all_tenants: bool, root: str
             ) -> list[dict[str, Any]]:
        return self._read(ctxt, 'find', name=name,  # type: ignore[no-any-return]
                          all_tenants=all_tenants, root=root)

    def export(self, ctxt: dict[str, Any], live_image_id: str, args: Any) -> dict[str, Any]:
        """Cobalt's export document (``co_export``)."""
        return self._transfer(ctxt, 'export',  # type: ignore[no-any-return]
                              live_image_id=live_image_id, args=args)

    def import_server(self, ctxt: dict[str, Any], body: Any, root: str) -> dict[str, Any]:
        """``{"server": <the imported live image>}`` (``co-import-server``)."""
        return self._transfer(ctxt, 'import_server',  # type: ignore[no-any-return]
                              body=body, root=root)

    def migrate(self, ctxt: dict[str, Any], server_id: str, args: Any) -> None:
        self.client.prepare(version='1.1').call(ctxt, 'migrate', server_id=server_id,
                                                args=args)
