"""Minimal WSGI plumbing: JSON in, JSON out, errors as Cinder-style faults.

A controller method takes ``(req, **route_args)`` and returns a body dict
(200), ``(status, body)`` or ``None`` (204). Raising a GCException gives
``{"<faultName>": {"code": N, "message": "..."}}``, the envelope
python-novaclient parses.
"""

import json
import logging
from collections.abc import Callable
from typing import Any

import webob
import webob.dec
import webob.exc

from gridcentric_storage.common import exception

LOG = logging.getLogger(__name__)

_FAULT_NAMES = {400: 'badRequest', 401: 'unauthorized', 403: 'forbidden',
                404: 'itemNotFound', 405: 'badMethod', 409: 'conflict', 411: 'lengthRequired',
                413: 'overLimit', 415: 'badMediaType', 503: 'serviceUnavailable'}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None
                  ) -> webob.Response:
    response = webob.Response(status=status, content_type='application/json',
                              charset='utf-8')
    if body is not None:
        response.text = json.dumps(body, default=str)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def fault(code: int, message: str) -> webob.Response:
    name = _FAULT_NAMES.get(code, 'computeFault')
    return json_response(code, {name: {'code': code, 'message': message}})


class Request(webob.Request):
    @property
    def context(self) -> Any:
        return self.environ['gridcentric.context']

    def json_body_or_400(self) -> Any:
        if not self.body:
            raise exception.Invalid(reason='the request needs a JSON body')
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise exception.Invalid(reason='malformed JSON body: %s' % e)


class Resource:
    """Dispatches a routed request to ``controller.<action>``."""

    def __init__(self, controller: Any) -> None:
        self.controller = controller

    @webob.dec.wsgify(RequestClass=Request)
    def __call__(self, req: Request) -> webob.Response:
        args = dict(req.environ['wsgiorg.routing_args'][1])
        action = args.pop('action')
        args.pop('controller', None)
        args.pop('format', None)
        method: Callable[..., Any] = getattr(self.controller, action)
        try:
            result = method(req, **args)
        except exception.GCException as e:
            if e.code >= 500:
                LOG.error('%s %s failed: %s', req.method, req.path, e.message)
            return fault(e.code if e.code != 500 else 500, e.message)
        if isinstance(result, webob.Response):
            return result
        if result is None:
            return webob.Response(status=204)
        if isinstance(result, tuple):
            status, body = result
            return json_response(status, body)
        return json_response(200, result)
