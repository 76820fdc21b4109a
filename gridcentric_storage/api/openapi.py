"""Builds the OpenAPI 3.0 document from the route table and the body schemas.

The schemas the API validates with are the ones published, so the
document cannot drift from what the server accepts. They are JSON Schema
draft 7 (what jsonschema checks); :func:`to_openapi` rewrites the few
constructs OpenAPI 3.0 lacks (``"type": [..., "null"]`` becomes
``nullable``; ``propertyNames`` becomes a description). Responses, query
parameters and error codes come from :mod:`gridcentric_storage.api.schemas.responses`.
"""

import copy
import re
from typing import Any

from gridcentric_storage import version
from gridcentric_storage.api import wsgi
from gridcentric_storage.api.schemas import responses

#: Discovery documents: served without a token.
PUBLIC = ('/', '/v1', '/v1/openapi.json')

_ERRORS = {
    '400': 'Invalid input: a body, a query parameter or the path',
    '401': 'No valid token',
    '403': 'Forbidden by policy',
    '404': 'Not found (or not visible to the caller)',
    '409': 'Conflict with the current state',
    '503': 'A compute service did not answer',
}
_EXTRA_ERRORS = {
    # Launches and new servers count against the project's server quota; a
    # Cobalt client reads 413 with Retry-After (and its state conflicts as 400).
    ('live_images', 'action'): {'413': 'Over the project\'s server quota'},
    ('nova', 'action'): {'413': 'Over the project\'s server quota'},
    ('servers', 'create'): {'413': 'Over the project\'s server quota'},
    ('volume_actions', 'upload'): {'411': 'Content-Length is required',
                                   '413': 'The stream does not fit in the volume'},
}


def to_openapi(schema: Any) -> Any:
    """A draft 7 schema rewritten in OpenAPI 3.0's dialect of JSON Schema."""
    if isinstance(schema, list):
        return [to_openapi(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: to_openapi(value) for key, value in schema.items()
              if key not in ('type', 'propertyNames')}
    if 'propertyNames' in schema:
        result['description'] = ('%s Keys match %s.' % (
            schema.get('description', ''), schema['propertyNames'].get('pattern'))).strip()
    types = schema.get('type')
    if isinstance(types, list):
        nullable = 'null' in types
        types = [t for t in types if t != 'null']
        if len(types) == 1:
            result['type'] = types[0]
        else:
            # Several types: one branch each, keywords stay beside them.
            result['anyOf'] = [{'type': t} for t in types]
        if nullable:
            if 'type' in result:
                result['nullable'] = True
            else:
                result['anyOf'] = [dict(branch, nullable=True) for branch in result['anyOf']]
    elif types is not None:
        result['type'] = types
    return result


def _json(schema: dict[str, Any] | None) -> dict[str, Any]:
    return {'application/json': {'schema': to_openapi(copy.deepcopy(schema or {}))}}


def _fault(description: str) -> dict[str, Any]:
    return {'description': description, 'content': _json(responses.FAULT)}


def _operation_id(route: Any, taken: set[str]) -> str:
    name = '%s_%s' % (route.controller, route.action)
    if name in taken:  # the same action under another path (/v2.1/{project_id}/...)
        name += '_' + re.sub(r'[^A-Za-z0-9]+', '_', route.path).strip('_')
    taken.add(name)
    return name


def _success(route: Any) -> dict[str, Any]:
    key = (route.controller, route.action)
    body = responses.RESPONSES.get(key, {})  # a route added without a schema: anything
    if route.status == 204 or body is None:
        return {'description': 'Done; no body'}
    if key == ('volume_actions', 'download'):
        return {'description': 'The volume\'s bytes', 'content': {
            wsgi.OCTET_STREAM: {'schema': {'type': 'string', 'format': 'binary'}}}}
    return {'description': responses.DESCRIPTIONS.get(key, 'Success'),
            'content': _json(body)}


def _operation(route: Any, controllers: dict[str, Any], taken: set[str]) -> dict[str, Any]:
    key = (route.controller, route.action)
    method = getattr(controllers[route.controller], route.action)
    operation: dict[str, Any] = {
        'summary': route.summary,
        'operationId': _operation_id(route, taken),
        'tags': [route.controller],
        'responses': {str(route.status): _success(route)},
    }
    for code, text in responses.EXTRA_SUCCESS.get(key, {}).items():
        operation['responses'][code] = {'description': text}
    parameters = [{'name': p, 'in': 'path', 'required': True, 'schema': {'type': 'string'}}
                  for p in re.findall(r'{(\w+)}', route.path)]
    parameters += copy.deepcopy(responses.QUERY.get(key, []))
    if parameters:
        operation['parameters'] = parameters
    media_type = getattr(route, 'media_type', wsgi.JSON)
    schema = getattr(method, 'request_schema', None)
    if media_type == wsgi.OCTET_STREAM:
        operation['requestBody'] = {'required': True, 'content': {
            wsgi.OCTET_STREAM: {'schema': {'type': 'string', 'format': 'binary'}}}}
    elif schema is not None:
        operation['requestBody'] = {'required': True, 'content': _json(schema)}
    errors = {'400': _ERRORS['400']}
    if route.path not in PUBLIC:
        errors = dict(_ERRORS, **_EXTRA_ERRORS.get(key, {}))
        if key[0] == 'nova':
            errors['400'] += '; Cobalt\'s clients also get state conflicts as 400'
    else:
        operation['security'] = []
    if 'requestBody' in operation:
        errors['415'] = 'The body is not %s' % media_type
    for code, text in sorted(errors.items()):
        operation['responses'][code] = _fault(text)
    return operation


def build(routes: list[Any], controllers: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, controllers, taken)
    return {
        'openapi': '3.0.3',
        'info': {'title': 'gridcentric-storage API', 'version': version.version_string,
                 'description': 'Errors are {"<faultName>": {"code": N, "message": "..."}}.'},
        'paths': paths,
        'components': {'securitySchemes': {'keystone': {
            'type': 'apiKey', 'in': 'header', 'name': 'X-Auth-Token'}}},
        'security': [{'keystone': []}],
    }
