"""Builds the OpenAPI 3 document from the route table and the body schemas.

The schemas the API validates with are the ones published, so the
document cannot drift from what the server accepts.
"""

import re
from typing import Any

from gridcentric_storage import version

_ERROR = {'type': 'object', 'additionalProperties': {
    'type': 'object', 'properties': {'code': {'type': 'integer'},
                                     'message': {'type': 'string'}}}}


def _operation(route: Any, controllers: dict[str, Any]) -> dict[str, Any]:
    method = getattr(controllers[route.controller], route.action)
    operation: dict[str, Any] = {
        'summary': route.summary,
        'operationId': '%s_%s' % (route.controller, route.action),
        'tags': [route.controller],
        'responses': {str(route.status): {'description': 'Success'}},
    }
    params = re.findall(r'{(\w+)}', route.path)
    if params:
        operation['parameters'] = [{'name': p, 'in': 'path', 'required': True,
                                    'schema': {'type': 'string'}} for p in params]
    schema = getattr(method, 'request_schema', None)
    if schema is not None:
        operation['requestBody'] = {'required': True, 'content': {
            'application/json': {'schema': schema}}}
    if route.path not in ('/', '/v1', '/v1/openapi.json'):
        for code, text in (('400', 'Invalid input'), ('403', 'Forbidden by policy'),
                           ('404', 'Not found'), ('409', 'Conflict with current state')):
            operation['responses'][code] = {'description': text, 'content': {
                'application/json': {'schema': _ERROR}}}
    return operation


def build(routes: list[Any], controllers: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route,
                                                                           controllers)
    return {
        'openapi': '3.0.3',
        'info': {'title': 'gridcentric-storage API', 'version': version.version_string},
        'paths': paths,
        'components': {'securitySchemes': {'keystone': {
            'type': 'apiKey', 'in': 'header', 'name': 'X-Auth-Token'}}},
        'security': [{'keystone': []}],
    }
