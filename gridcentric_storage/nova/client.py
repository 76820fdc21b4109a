"""Nova's public REST API, as the caller or as this service (runs in gridcentric-api).

Everything a caller asks for is done with the caller's own token, so Nova
decides what they may see and do (visibility, policy, quotas, placement).
The service's ``[nova]`` credentials are used only for what Nova shows
administrators alone: an instance's host and, before a discard, the clones
of a live image in every project. Nova's endpoint comes from the catalog
those credentials see (or ``[nova] endpoint_override``).

Nova's errors become this package's exceptions: 404 ``NotFound``, a quota
403 ``QuotaExceeded``, anything else Nova refuses ``Invalid`` with Nova's
message; an unreachable Nova is ``ServiceUnavailable``.
"""

import logging
import threading
from typing import Any

from keystoneauth1 import adapter, token_endpoint
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from gridcentric_storage.common import exception

CONF = cfg.CONF
LOG = logging.getLogger(__name__)
GROUP = 'nova'

#: 2.47: the server view embeds the flavor's vcpus and ram (the flavor itself
#: may be private or gone).
DETAIL_MICROVERSION = '2.47'
#: 2.37: a boot may ask for no network at all ("none").
BOOT_MICROVERSION = '2.37'
#: 2.25: live migration picks block or shared itself ("auto"); before 2.34 its
#: checks (no valid host, the instance's own host) answer synchronously.
LIVE_MIGRATE_MICROVERSION = '2.25'


def _fault_message(response: Any) -> str:
    """Nova's fault text: ``{"badRequest": {"code": 400, "message": ...}}``."""
    try:
        body = response.json()
        fault = next(iter(body.values()))
        return str(fault['message'])
    except Exception:
        return (response.text or response.reason or '').strip()[:500]


class NovaClient:
    def __init__(self, conf: cfg.ConfigOpts = CONF) -> None:
        self.conf = conf
        self._lock = threading.Lock()
        self._service: adapter.Adapter | None = None
        self._endpoint: str | None = None

    # ---- sessions
    def _service_adapter(self) -> adapter.Adapter:
        with self._lock:
            if self._service is None:
                auth = ks_loading.load_auth_from_conf_options(self.conf, GROUP)
                if auth is None:
                    raise exception.ServiceUnavailable(
                        reason='[nova] has no credentials (auth_type) to read Nova with')
                session = ks_loading.load_session_from_conf_options(self.conf, GROUP,
                                                                    auth=auth)
                self._service = ks_loading.load_adapter_from_conf_options(
                    self.conf, GROUP, session=session, auth=auth, raise_exc=False)
            return self._service

    def _endpoint_url(self) -> str:
        if self._endpoint is None:
            service = self._service_adapter()
            try:
                endpoint = service.get_endpoint()
            except ks_exceptions.ClientException as e:
                raise exception.ServiceUnavailable(
                    reason='the compute endpoint could not be found: %s' % e)
            if not endpoint:
                raise exception.ServiceUnavailable(
                    reason='the catalog has no compute endpoint for [nova]')
            self._endpoint = endpoint
        return self._endpoint

    def _as_caller(self, ctxt: Any) -> adapter.Adapter:
        if not getattr(ctxt, 'auth_token', None):
            raise exception.NotAuthorized()
        endpoint = self._endpoint_url().rstrip('/')
        # A catalog URL that still ends in a project id (Nova's legacy
        # /v2.1/{project_id}) names the service's project; Nova refuses a
        # token of another project there.
        service_project = self._service_adapter().get_project_id()
        if service_project and endpoint.endswith('/' + service_project):
            endpoint = endpoint[:-len(service_project)] + ctxt.project_id
        auth = token_endpoint.Token(endpoint, ctxt.auth_token)
        return adapter.Adapter(self._service_adapter().session, auth=auth,
                               service_type='compute', raise_exc=False)

    def _request(self, ctxt: Any | None, method: str, path: str,
                 microversion: str | None = None, **kwargs: Any) -> Any:
        """JSON body of Nova's answer; ``ctxt`` None: as this service."""
        client = self._service_adapter() if ctxt is None else self._as_caller(ctxt)
        headers = {'Accept': 'application/json'}
        try:
            response = client.request(path, method, microversion=microversion,
                                      headers=headers, **kwargs)
        except ks_exceptions.ClientException as e:
            LOG.warning('Nova could not be reached for %s %s: %s', method, path, e)
            raise exception.ServiceUnavailable(reason='Nova could not be reached: %s'
                                               % type(e).__name__)
        if response.status_code < 400:
            return response.json() if response.content else None
        message = _fault_message(response)
        if response.status_code == 404:
            raise exception.NotFound(message)
        if response.status_code in (403, 413) and 'quota' in message.lower():
            raise exception.QuotaExceeded(reason=message)
        if response.status_code == 401:
            raise exception.NotAuthorized(message)
        if response.status_code == 403:
            raise exception.Forbidden(message)
        raise exception.Invalid(reason='Nova answered %d: %s'
                                % (response.status_code, message))

    # ---- as the caller
    def get_server(self, ctxt: Any, server_id: str) -> dict[str, Any]:
        """The caller's view of an instance (Nova's 2.1 detail view); 404 if hidden."""
        try:
            body = self._request(ctxt, 'GET', '/servers/%s' % server_id)
        except exception.NotFound:
            raise exception.ServerNotFound(id=server_id)
        return body['server']  # type: ignore[no-any-return]

    def create_servers(self, ctxt: Any, server: dict[str, Any],
                       hints: dict[str, Any]) -> str:
        """Boot one instance (``min_count`` of them if given); the first one's id."""
        body = self._request(ctxt, 'POST', '/servers', microversion=BOOT_MICROVERSION,
                             json={'server': server, 'os:scheduler_hints': hints})
        return body['server']['id']  # type: ignore[no-any-return]

    def delete_server(self, ctxt: Any, server_id: str) -> None:
        try:
            self._request(ctxt, 'DELETE', '/servers/%s' % server_id)
        except exception.NotFound:
            pass

    def list_servers(self, ctxt: Any | None, **query: Any) -> list[dict[str, Any]]:
        """Every page of ``GET /servers/detail`` with ``query`` (as the caller, or as
        this service when ``ctxt`` is None)."""
        servers: list[dict[str, Any]] = []
        params = dict(query)
        while True:
            body = self._request(ctxt, 'GET', '/servers/detail', params=params)
            page = body.get('servers') or []
            servers.extend(page)
            if not page or not body.get('servers_links'):
                return servers
            params['marker'] = page[-1]['id']

    def live_migrate(self, ctxt: Any, server_id: str, host: str | None) -> None:
        """Nova's live migration, to ``host`` or where Nova's scheduler says."""
        self._request(ctxt, 'POST', '/servers/%s/action' % server_id,
                      microversion=LIVE_MIGRATE_MICROVERSION,
                      json={'os-migrateLive': {'host': host, 'block_migration': 'auto'}})

    def get_flavor(self, ctxt: Any, flavor_id: str) -> dict[str, Any] | None:
        try:
            return self._request(ctxt, 'GET', '/flavors/%s' % flavor_id)[  # type: ignore[no-any-return]
                'flavor']
        except exception.NotFound:
            return None

    def list_flavors(self, ctxt: Any) -> list[dict[str, Any]]:
        return self._request(ctxt, 'GET', '/flavors/detail')[  # type: ignore[no-any-return]
            'flavors']

    def image_visible(self, ctxt: Any, image_id: str) -> bool:
        """Whether the caller sees the image (Nova's image proxy: 2.1, without a
        microversion, because 2.36 removed it)."""
        try:
            self._request(ctxt, 'GET', '/images/%s' % image_id)
        except exception.NotFound:
            return False
        return True

    # ---- as this service
    def get_server_private(self, server_id: str) -> dict[str, Any]:
        """The administrator's view: host and the flavor's size."""
        try:
            body = self._request(None, 'GET', '/servers/%s' % server_id,
                                 microversion=DETAIL_MICROVERSION)
        except exception.NotFound:
            raise exception.ServerNotFound(id=server_id)
        return body['server']  # type: ignore[no-any-return]

    def compute_hosts(self) -> list[str]:
        """The hosts whose nova-compute is up and enabled."""
        body = self._request(None, 'GET', '/os-services', params={'binary': 'nova-compute'})
        return sorted(s['host'] for s in body.get('services') or []
                      if s.get('state') == 'up' and s.get('status') == 'enabled')
