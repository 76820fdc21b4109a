"""Hostile requests get a 4xx JSON fault, never a 5xx, and change nothing.

Each case here answered a 500 (or acted on a forged verb) before the API
checked media types, JSON documents and the request line itself.
"""

import http.client
import json

import pytest
import webob

from gridcentric_storage.api import app
from tests.fixtures.services import wait_for


def _fault(response, code):
    assert response.status_code == code, response.text
    assert response.headers['Content-Type'].startswith('application/json')
    (envelope,) = response.json().values()
    assert envelope['code'] == code
    return envelope['message']


def _raw(cloud, method, path, body=b'', headers=None):
    """Send bytes exactly as given (requests would re-encode the path)."""
    host, port = cloud.url.rsplit(':', 1)
    conn = http.client.HTTPConnection(host.split('//')[1], int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in dict({'X-Auth-Token': 'admin:admin',
                                'Content-Length': str(len(body))}, **(headers or {})).items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheader('Content-Type'), response.read()
    finally:
        conn.close()


def _volume(cloud, make_backend):
    make_backend()
    response = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}})
    assert response.status_code == 202, response.text
    path = '/v1/volumes/%s' % response.json()['volume']['id']
    return wait_for(lambda: (lambda v: v if v['status'] == 'available' else None)(
        cloud.request('GET', path).json()['volume']), what='an available volume')


# ---- media types
@pytest.mark.parametrize('kwargs', [
    {'files': {'volume': ('v.json', b'{"volume": {"size": 1}}')}},
    {'data': {'volume': 'x'}},
    {'data': b'{"volume": {"size": 1}}', 'headers': {'Content-Type': 'text/plain'}},
    {'data': b'<volume/>', 'headers': {'Content-Type': 'application/xml'}},
])
def test_a_body_that_is_not_json_is_415(cloud, make_backend, kwargs):
    make_backend()
    message = _fault(cloud.request('POST', '/v1/volumes', **kwargs), 415)
    assert 'application/json' in message
    assert cloud.request('GET', '/v1/volumes').json()['volumes'] == []


def test_json_with_a_charset_or_no_content_type_is_accepted(cloud, make_backend):
    make_backend()
    body = json.dumps({'volume': {'size': 1}}).encode()
    status, _, text = _raw(cloud, 'POST', '/v1/volumes', body,
                           {'Content-Type': 'application/json; charset=UTF-8'})
    assert status == 202, text
    # wsgiref reports a missing Content-Type as text/plain: ask the app itself.
    request = webob.Request.blank('/v1/volumes', method='POST', body=body,
                                  headers={'X-Auth-Token': 'admin:admin'})
    assert 'CONTENT_TYPE' not in request.environ
    assert request.get_response(app.load_app()).status_int == 202


def test_only_the_data_stream_takes_octet_stream(cloud, make_backend):
    volume = _volume(cloud, make_backend)
    stream = cloud.request('POST', '/v1/volumes/%s/action' % volume['id'], data=b'\0' * 8,
                           headers={'Content-Type': 'application/octet-stream'})
    _fault(stream, 415)
    as_json = cloud.request('PUT', '/v1/volumes/%s/data' % volume['id'], json={'a': 1})
    _fault(as_json, 415)


# ---- method tunnelling
def test_method_override_is_not_honoured(cloud, make_backend):
    volume = _volume(cloud, make_backend)
    path = '/v1/volumes/%s' % volume['id']
    _fault(cloud.request('POST', path + '?_method=DELETE'), 405)
    _fault(cloud.request('POST', path, data={'_method': 'DELETE'}), 405)
    _fault(cloud.request('POST', path, headers={'X-HTTP-Method-Override': 'DELETE'}), 405)
    shown = cloud.request('GET', path)
    assert shown.status_code == 200 and shown.json()['volume']['status'] != 'deleting'


# ---- JSON documents
@pytest.mark.parametrize('body', [
    b'[' * 50000 + b']' * 50000,     # deep, yet under the 112 KiB body limit
    b'{"volume": {"size": 1, "capabilities": ' + b'{"a": ' * 64 + b'1' + b'}' * 66,
])
def test_deeply_nested_json_is_400(cloud, make_backend, body):
    make_backend()
    message = _fault(cloud.request('POST', '/v1/volumes', data=body,
                                   headers={'Content-Type': 'application/json'}), 400)
    assert 'nest' in message


@pytest.mark.parametrize('text, what', [
    ('"\\ud800"', 'surrogate'),
    ('"a\\udfffb"', 'surrogate'),
    ('"a\\u0000"', 'NUL'),
])
def test_strings_that_cannot_be_stored_are_400(cloud, make_backend, text, what):
    volume = _volume(cloud, make_backend)
    bodies = [
        ('POST', '/v1/volumes', '{"volume": {"size": 1, "name": %s}}' % text),
        ('POST', '/v1/snapshots', '{"snapshot": {"volume_id": "%s", "name": %s}}'
         % (volume['id'], text)),
        ('POST', '/v1/backends', '{"backend": {"name": "b2", "driver": "fake", '
                                 '"availability_zone": %s}}' % text),
        ('POST', '/v1/volumes', '{"volume": {"size": 1, %s: 1}}' % text),
    ]
    for method, path, body in bodies:
        response = cloud.request(method, path, data=body.encode(),
                                 headers={'Content-Type': 'application/json'})
        assert what in _fault(response, 400), (path, body)


@pytest.mark.parametrize('constant', ['NaN', 'Infinity', '-Infinity'])
def test_non_finite_numbers_are_400(cloud, make_backend, constant):
    backend = make_backend()
    body = '{"backend": {"max_over_subscription_ratio": %s}}' % constant
    response = cloud.request('PUT', '/v1/backends/%s' % backend['id'], data=body,
                             headers={'Content-Type': 'application/json'})
    assert constant in _fault(response, 400)


# ---- the request line
@pytest.mark.parametrize('path', [
    '/v1/volumes/%ff',
    '/%C0%AF',
    '/v1/volumes?name=%ff',
    '/v1/volumes?name=%ED%A0%80',
    '/v1/volumes?%ff=1',
    '/v1/volumes/a%00b',
    '/v1/openapi.json?x=%ff',
])
def test_undecodable_path_or_query_is_400_json(cloud, path):
    status, content_type, body = _raw(cloud, 'GET', path)
    assert status == 400, body
    assert content_type.startswith('application/json')
    assert json.loads(body)['badRequest']['code'] == 400


def test_a_failure_while_choosing_the_pipeline_is_a_json_500(gc_db, monkeypatch):
    """The fault wrapper covers the dispatch between public and authenticated paths."""
    from gridcentric_storage.api import router

    class Broken:
        def __contains__(self, path):
            raise RuntimeError('boom')

    monkeypatch.setattr(router, 'PUBLIC_PATHS', Broken())
    response = webob.Request.blank('/v1/volumes', headers={
        'X-Auth-Token': 'admin:admin'}).get_response(app.load_app())
    assert response.status_int == 500
    assert response.json['computeFault']['code'] == 500 and 'boom' not in response.text


def test_an_oversized_json_body_is_413_before_it_is_read(cloud):
    body = json.dumps({'volume': {'size': 1, 'name': 'x' * 200_000}})
    message = _fault(cloud.request('POST', '/v1/volumes', data=body,
                                   headers={'Content-Type': 'application/json'}), 413)
    assert 'limit is 114688' in message
    assert cloud.request('GET', '/v1/volumes').json()['volumes'] == []


def test_a_compute_service_that_does_not_answer_is_a_503(cloud, gc_conf):
    from tests.fixtures.images import store_file

    store_file('disk.raw', b'\0' * 4096)
    cloud.request('POST', '/v1/backends', json={'backend': {'name': 'b', 'driver': 'fake'}})
    gc_conf.set_override('rpc_call_timeout', 1, group='compute')
    cloud.compute.stop()        # its service row still says "up" for a while
    message = _fault(cloud.request('POST', '/v1/volumes', json={'volume': {
        'imageRef': 'disk.raw'}}), 503)
    assert 'did not answer' in message
    assert cloud.request('GET', '/v1/volumes').json()['volumes'] == []
