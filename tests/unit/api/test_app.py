"""Pipeline, discovery documents, and the noauth safety rule."""

import jsonschema
import pytest

from gridcentric_storage.api import app


def test_versions_and_openapi_need_no_credentials(cloud):
    import requests

    root = requests.get(cloud.url + '/', timeout=10)
    assert root.status_code == 300
    assert root.json()['versions'][0]['id'] == 'v1.0'
    assert 'X-OpenStack-Request-Id' in root.headers
    document = requests.get(cloud.url + '/v1/openapi.json', timeout=10).json()
    assert document['openapi'].startswith('3.')
    create = document['paths']['/v1/backends']['post']
    schema = create['requestBody']['content']['application/json']['schema']
    jsonschema.validate({'backend': {'name': 'n', 'driver': 'file'}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({'backend': {'name': 'n'}}, schema)
    assert {'/v1/volumes', '/v1/volumes/{id}', '/v1/backends/{id}/action'} <= set(
        document['paths'])


def test_request_id_returned(cloud):
    response = cloud.request('GET', '/v1/backends')
    assert response.headers['X-OpenStack-Request-Id'].startswith('req-')


def test_noauth_refused_on_public_address(gc_conf):
    gc_conf.set_override('listen', '0.0.0.0', group='api')
    try:
        with pytest.raises(SystemExit, match='only allowed when'):
            app.load_app()
        gc_conf.set_override('auth_strategy', 'keystone', group='api')
        app.check_auth_strategy()  # keystone on any address is fine
    finally:
        gc_conf.clear_override('listen', group='api')


def test_keystone_pipeline_rejects_requests_without_token(gc_db):
    """With keystone auth, a request without a token never reaches a controller."""
    import webob
    from keystonemiddleware import opts as ksm_opts
    from oslo_config import cfg

    for group, options in ksm_opts.list_auth_token_opts():
        cfg.CONF.register_opts(options, group=group)
    cfg.CONF.set_override('auth_strategy', 'keystone', group='api')
    cfg.CONF.set_override('www_authenticate_uri', 'http://127.0.0.1:9/identity',
                          group='keystone_authtoken')
    try:
        application = app.load_app()
        response = webob.Request.blank('/v1/backends').get_response(application)
        assert response.status_int == 401
        assert 'http://127.0.0.1:9/identity' in response.headers['WWW-Authenticate']
        public = webob.Request.blank('/').get_response(application)
        assert public.status_int == 300
    finally:
        cfg.CONF.clear_override('www_authenticate_uri', group='keystone_authtoken')
