"""Paste filters: fault wrapping and the two ways to build a request context."""

import ipaddress
import logging
from typing import Any

import webob
import webob.dec

from gridcentric_storage.api import wsgi
from gridcentric_storage.common import context as gc_context

LOG = logging.getLogger(__name__)


class Middleware:
    def __init__(self, application: Any, **conf: Any) -> None:
        self.application = application

    @classmethod
    def factory(cls, global_conf: dict[str, Any], **local_conf: Any) -> Any:
        def _filter(app: Any) -> 'Middleware':
            return cls(app, **local_conf)
        return _filter


class FaultWrapper(Middleware):
    """Last line of defence: a bug becomes an opaque 500, never a traceback."""

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def __call__(self, req: wsgi.Request) -> Any:
        try:
            return req.get_response(self.application)
        except Exception:
            LOG.exception('Unhandled error serving %s %s', req.method, req.path)
            return wsgi.fault(500, 'The server has either erred or is incapable of '
                                   'performing the requested operation.')


LOCAL_OPERATOR = 'admin:admin'
KEYSTONEAUTH_NOAUTH_TOKEN = 'notused'  # keystoneauth1.noauth.NoAuth.get_token()


class NoAuthMiddleware(Middleware):
    """Trust the caller (loopback-only deployments, tests, the all-in-one).

    ``X-Auth-Token: user:project`` names the caller, as nova's noauth2 does;
    the user "admin" gets the admin role. keystoneauth's NoAuth placeholder
    token (what ``gc-api --os-auth-type none`` sends) is the local operator.

    A request without any token is refused: a web page the operator happens
    to visit can make the browser post a form to a loopback port, but it
    cannot add an ``X-Auth-Token`` header without a CORS preflight, which
    this API never grants.
    """

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def __call__(self, req: wsgi.Request) -> Any:
        token = req.headers.get('X-Auth-Token')
        if not token:
            return wsgi.fault(401, 'Authentication required: noauth takes the caller from '
                                   'the X-Auth-Token header, as "user:project".')
        if token == KEYSTONEAUTH_NOAUTH_TOKEN:
            token = LOCAL_OPERATOR
        user_id, _, project_id = token.partition(':')
        project_id = project_id or user_id
        roles = ['admin', 'member', 'reader'] if user_id == 'admin' else ['member', 'reader']
        req.environ['gridcentric.context'] = gc_context.RequestContext(
            user_id=user_id, project_id=project_id, roles=roles,
            is_admin=user_id == 'admin', request_id=req.environ.get('openstack.request_id'))
        return req.get_response(self.application)


class KeystoneContext(Middleware):
    """Build the context from the headers keystonemiddleware's auth_token set."""

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def __call__(self, req: wsgi.Request) -> Any:
        if req.headers.get('X-Identity-Status', 'Confirmed') != 'Confirmed':
            return wsgi.fault(401, 'Authentication required.')
        ctx = gc_context.RequestContext.from_environ(req.environ)
        ctx.is_admin = 'admin' in [r.lower() for r in ctx.roles]
        req.environ['gridcentric.context'] = ctx
        return req.get_response(self.application)


def is_loopback(address: str) -> bool:
    if address == 'localhost':
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


