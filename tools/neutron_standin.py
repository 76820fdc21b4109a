"""A minimal Neutron stand-in for the test Nova stack of tools/nova.sh.

This is the one fake in that stack: everything else (Keystone, Placement,
Glance, Nova with the libvirt driver) is the real service. Servers there are
booted with ``networks='none'``, yet nova-api still lists a server's ports on
show/list and nova-compute asks Neutron for ports, security groups and
extensions on build and delete. This WSGI app answers every such list with an
empty collection and everything else with 404, without checking tokens.

Run it with ``gunicorn tools.neutron_standin:application`` (or any WSGI server).
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

#: Collections Nova may list; each answers ``{"<name>": []}``.
COLLECTIONS = frozenset({
    'ports', 'networks', 'subnets', 'security_groups', 'security_group_rules',
    'floatingips', 'extensions', 'qos_policies', 'trunks', 'routers',
    'network_ip_availabilities', 'segments', 'address_scopes', 'subnetpools',
})

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(data)))])
    return [data]


def _versions(environ: dict[str, Any]) -> dict[str, Any]:
    host = environ.get('HTTP_HOST') or '%s:%s' % (environ['SERVER_NAME'], environ['SERVER_PORT'])
    href = '%s://%s/v2.0/' % (environ.get('wsgi.url_scheme', 'http'), host)
    return {'versions': [{'id': 'v2.0', 'status': 'CURRENT',
                          'links': [{'rel': 'self', 'href': href}]}]}


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    method = environ.get('REQUEST_METHOD', 'GET')
    path = environ.get('PATH_INFO', '/').rstrip('/')
    if path.endswith('.json'):          # python-neutronclient's historic suffix
        path = path[:-len('.json')]
    parts = [p for p in path.split('/') if p]
    if method == 'GET' and not parts:
        return _reply(start_response, '200 OK', _versions(environ))
    if method == 'GET' and parts == ['v2.0']:
        return _reply(start_response, '200 OK', {'resources': []})
    if method == 'GET' and len(parts) == 2 and parts[0] == 'v2.0':
        name = parts[1].replace('-', '_')
        if name in COLLECTIONS:
            return _reply(start_response, '200 OK', {name: []})
    return _reply(start_response, '404 Not Found',
                  {'NeutronError': {'type': 'NotFound', 'detail': '',
                                    'message': 'The Neutron stand-in has no %s' % path}})
