"""The ``cobalt`` RPC endpoint: Cobalt's actions on Nova's instances (in gridcentric-api).

``gridcentric-api`` serves it on topic ``[nova] cobalt_topic`` when ``[nova]
enabled`` is true; nova-api's paste filter (``nova.api_filter``) calls it
through ``nova.rpcapi``, whose docstring keeps the version history. The
logic is ``nova.api``.
"""

from typing import Any

import oslo_messaging as messaging

from gridcentric_storage.nova import api, rpcapi


class CobaltManager:
    target = messaging.Target(namespace=rpcapi.NAMESPACE, version=rpcapi.RPC_API_VERSION)

    def __init__(self, nova_api: api.API | None = None) -> None:
        self.api = nova_api or api.API()

    def bless(self, ctxt: Any, server_id: str, args: Any, root: str) -> list[dict[str, Any]]:
        return self.api.bless(ctxt, server_id, args, root)

    def launch(self, ctxt: Any, live_image_id: str, args: Any, root: str
               ) -> list[dict[str, Any]]:
        return self.api.launch(ctxt, live_image_id, args, root)

    def discard(self, ctxt: Any, live_image_id: str, args: Any) -> None:
        self.api.discard(ctxt, live_image_id, args)

    def list_launched(self, ctxt: Any, server_id: str, args: Any, root: str
                      ) -> list[dict[str, Any]]:
        return self.api.list_launched(ctxt, server_id, args, root)

    def list_blessed(self, ctxt: Any, server_id: str, args: Any, root: str
                     ) -> list[dict[str, Any]]:
        return self.api.list_blessed(ctxt, server_id, args, root)

    def show(self, ctxt: Any, server_id: str, root: str) -> dict[str, Any] | None:
        return self.api.show(ctxt, server_id, root)

    def find(self, ctxt: Any, name: str, all_tenants: bool, root: str
             ) -> list[dict[str, Any]]:
        return self.api.find(ctxt, name, all_tenants, root)

    def export(self, ctxt: Any, live_image_id: str, args: Any) -> dict[str, Any]:
        return self.api.export(ctxt, live_image_id, args)

    def import_server(self, ctxt: Any, body: Any, root: str) -> dict[str, Any]:
        return self.api.import_server(ctxt, body, root)

    def migrate(self, ctxt: Any, server_id: str, args: Any) -> None:
        self.api.migrate(ctxt, server_id, args)
