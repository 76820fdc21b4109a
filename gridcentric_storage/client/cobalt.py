"""Servers and live images as Cobalt's clients see them, on either endpoint.

Cobalt's wire format is the same in two places: the standalone service's
``/v2.1`` dialect and, in a Nova cloud, Nova's own endpoint with the
gridcentric filter in nova-api. A live image is a server in status
``BLESSED``; servers are found as Nova's clients find them, ``GET
/servers/{id}`` and then ``GET /servers/detail?name=``. Which endpoint is
chosen by the catalog service type: ``compute`` (Nova, whose catalog URL
already ends in ``/v2.1``) or ours (the API root, so paths get ``/v2.1``).
"""

from __future__ import annotations

import builtins
import time
import urllib.parse
from typing import Any

from novaclient import base, exceptions

from gridcentric_storage.client import utils

__all__ = ['CobaltServer', 'CobaltServerManager', 'NOVA_SERVICE_TYPE']

NOVA_SERVICE_TYPE = 'compute'


class CobaltServer(base.Resource):
    """A server as Nova renders it; a live image is one in status BLESSED."""

    def __repr__(self) -> str:
        return '<CobaltServer %s>' % (self._info.get('name') or self._info.get('id'))


class CobaltServerManager(utils.GCManager):
    resource_class = CobaltServer
    resource_key = 'server'
    collection_key = 'servers'

    @property
    def on_nova(self) -> bool:
        return getattr(self.api.client, 'service_type', None) == NOVA_SERVICE_TYPE

    @property
    def root(self) -> str:
        return '' if self.on_nova else '/v2.1'

    def _server_url(self, server: Any, suffix: str = '') -> str:
        return '%s/servers/%s%s' % (self.root, urllib.parse.quote(str(base.getid(server)),
                                                                   safe=''), suffix)

    def get(self, server: Any) -> CobaltServer:
        resp, body = self.api.client.get(self._server_url(server))
        return self._make(body['server'], resp)

    def list(self, name: str | None = None) -> builtins.list[CobaltServer]:
        """``GET /servers/detail`` (``?name=`` exactly): servers and live images."""
        query = '?' + urllib.parse.urlencode({'name': name}) if name is not None else ''
        _resp, body = self.api.client.get('%s/servers/detail%s' % (self.root, query))
        return [self._make(s) for s in body.get('servers') or []
                if name is None or s.get('name') == name]

    def find_server(self, name_or_id: str) -> CobaltServer:
        """By ID, else by exact name (``CommandError`` for none or several), as
        Cobalt's clients look servers and live images up."""
        try:
            return self.get(name_or_id)
        except exceptions.NotFound:
            pass
        matches = self.list(name=name_or_id)
        if not matches:
            raise exceptions.CommandError('No server or live image with a name or ID of '
                                          "'%s' exists." % name_or_id)
        if len(matches) > 1:
            raise exceptions.CommandError('Several servers are named %s; use an ID.'
                                          % name_or_id)
        return matches[0]

    def action(self, server: Any, action: str, args: dict[str, Any] | None = None) -> Any:
        _resp, body = self.api.client.post(self._server_url(server, '/action'),
                                           body={action: args or {}})
        return body

    def servers(self, body: Any) -> builtins.list[CobaltServer]:
        # Cobalt's answers are bare lists of server views.
        return [self._make(info) for info in body or []]

    def capabilities(self) -> builtins.list[str]:
        # The real clients ask /gcinfo; the standalone root also answers /cobaltinfo.
        _resp, body = self.api.client.get('%s/gcinfo' % self.root)
        return list(body['capabilities'])

    def wait_settled(self, server: Any, timeout: float | None, deleted: bool = False,
                     action: str = 'waiting for') -> CobaltServer | None:
        """Poll a server (or live image) until it leaves BUILD and has no task (None
        once it is gone, with ``deleted``); ``ResourceInErrorState`` on ERROR."""
        progress = utils.Progress('%s %s' % (action, utils.label(server)))
        started = time.monotonic()
        try:
            while True:
                try:
                    current = self.get(server)
                except exceptions.NotFound:
                    if deleted:
                        return None
                    raise
                info = current.to_dict()
                status = str(info.get('status', ''))
                progress.update(status)
                if status == 'ERROR':
                    fault = (info.get('fault') or {}).get('message') or 'no reason given'
                    raise utils.ResourceInErrorState(
                        current, '%s went to ERROR: %s' % (utils.label(current), fault))
                settled = status != 'BUILD' and not info.get('OS-EXT-STS:task_state')
                if settled and not deleted:
                    return current
                elapsed = time.monotonic() - started
                if timeout and elapsed >= timeout:
                    raise utils.WaitTimeout('Timed out after %.0fs waiting for %s (status: '
                                            '%s)' % (elapsed, utils.label(current), status))
                time.sleep(utils.POLL_INTERVAL)
        finally:
            progress.done()
