"""Minimal WSGI plumbing: JSON in, JSON out, errors as Cinder-style faults.

A controller method takes ``(req, **route_args)`` and returns a body dict
(200), ``(status, body)`` or ``None`` (204). Raising a GCException gives
``{"<faultName>": {"code": N, "message": "..."}}``, the envelope
python-novaclient parses.

Hostile input ends here as a 4xx: :class:`InputGuard` (outermost) refuses a
path or query string that is not UTF-8, :class:`Resource` a body that is
not of its route's media type (415), and :meth:`Request.json_body_or_400`
a document that json.loads accepts but nothing after it could store.
"""

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import oslo_messaging as messaging
import webob
import webob.dec
import webob.exc
from oslo_config import cfg

from gridcentric_storage.api import validation
from gridcentric_storage.common import exception

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

JSON = 'application/json'
OCTET_STREAM = 'application/octet-stream'
#: Content-Type values a route of each media type accepts; '' is none given.
#: wsgiref reports a missing Content-Type as text/plain: that is still a 415
#: for JSON (it is what a cross-site form with enctype=text/plain sends), but
#: a byte stream only comes with PUT, which no form can send cross-site.
_ACCEPTED = {OCTET_STREAM: (OCTET_STREAM, '', 'text/plain')}

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


def empty_response(status: int) -> webob.Response:
    """A response without a body, and so without a Content-Type.

    webob would call it text/html and json_response application/json; an
    empty body is neither (a client that trusts the header fails to parse it).
    """
    response = webob.Response(status=status)
    del response.content_type
    return response


def fault(code: int, message: str) -> webob.Response:
    name = _FAULT_NAMES.get(code, 'computeFault')
    return json_response(code, {name: {'code': code, 'message': message}})


def _not_a_number(name: str) -> Any:
    raise ValueError('%s is not a JSON number' % name)


class Request(webob.Request):
    @property
    def context(self) -> Any:
        return self.environ['gridcentric.context']

    @property
    def carries_body(self) -> bool:
        chunked = 'chunked' in self.headers.get('Transfer-Encoding', '').lower()
        return bool(self.content_length) or chunked

    def media_type_fault(self, accepted: str) -> webob.Response | None:
        """415 unless a body is ``accepted`` (a body without Content-Type counts as it).

        Refusing form encodings before anything reads the body also keeps a
        cross-site HTML form from reaching a controller (browsers cannot send
        application/json cross-origin without a CORS preflight).
        """
        if (not self.carries_body
                or self.content_type.lower() in _ACCEPTED.get(accepted, (accepted, ''))):
            return None
        return fault(415, 'The request body must be %s, not %s.'
                     % (accepted, self.content_type))

    def json_body_or_400(self) -> Any:
        limit = CONF.api.max_json_body_size
        if (self.content_length or 0) > limit:
            raise exception.RequestTooLarge(size=self.content_length, limit=limit)
        if not self.body:
            raise exception.Invalid(reason='the request needs a JSON body')
        try:
            document = json.loads(self.body, parse_constant=_not_a_number)
        except RecursionError:
            raise exception.Invalid(reason='the JSON body nests too deeply')
        except ValueError as e:
            raise exception.Invalid(reason='malformed JSON body: %s' % e)
        validation.check_document(document)
        return document


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
        refused = req.media_type_fault(args.pop('media_type', JSON))
        if refused is not None:
            return refused
        method: Callable[..., Any] = getattr(self.controller, action)
        try:
            result = method(req, **args)
        except exception.GCException as e:
            if e.code >= 500:
                LOG.error('%s %s failed: %s', req.method, req.path, e.message)
            return fault(e.code if e.code != 500 else 500, e.message)
        except messaging.MessagingTimeout:
            LOG.warning('%s %s: a compute service did not answer in time',
                        req.method, req.path)
            return fault(503, 'A compute service did not answer in time; try again later.')
        if isinstance(result, webob.Response):
            return result
        if result is None:
            return empty_response(204)
        if isinstance(result, tuple):
            status, body = result
            return empty_response(status) if body is None else json_response(status, body)
        return json_response(200, result)


def _undecodable(environ: dict[str, Any]) -> str | None:
    """Why webob could not decode this request line, or None.

    WSGI hands the path over as latin-1 characters of the raw (unquoted)
    bytes and the query still quoted; webob decodes both as UTF-8 at first
    use, which would raise deep inside routing or a controller.
    """
    try:
        for key in ('SCRIPT_NAME', 'PATH_INFO'):
            if '\0' in environ.get(key, '').encode('latin-1').decode('utf-8'):
                return 'The path holds a NUL character.'
    except UnicodeError:
        return 'The path is not valid UTF-8.'
    query = environ.get('QUERY_STRING', '')
    try:
        raw = urllib.parse.unquote_to_bytes(query.encode('latin-1').replace(b'+', b' '))
        if '\0' in raw.decode('utf-8'):
            return 'The query string holds a NUL character.'
    except UnicodeError:
        return 'The query string is not valid UTF-8.'
    return None


class InputGuard:
    """Outermost filter: a 400 JSON fault for a request line nothing can decode.

    It runs before the fault wrapper because that wrapper (and its log line)
    reads the path itself.
    """

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        problem = _undecodable(environ)
        if problem is not None:
            return fault(400, problem)(environ, start_response)
        return self.application(environ, start_response)  # type: ignore[no-any-return]
