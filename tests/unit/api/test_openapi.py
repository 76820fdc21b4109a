"""The published OpenAPI document: valid OpenAPI 3.0, complete, and the schemas served."""

import pytest

from gridcentric_storage.api import openapi, router
from tests.fixtures.services import wait_for


@pytest.fixture(scope='module')
def document():
    return openapi.build(router.ROUTES, router.make_controllers())


def _walk(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def test_it_is_valid_openapi_3_0(document):
    validator = pytest.importorskip('openapi_spec_validator')
    validator.validate(document)
    assert document['openapi'] == '3.0.3'


def test_no_draft_7_constructs_are_left(document):
    for node in _walk(document):
        assert not isinstance(node.get('type'), list), node
        assert 'propertyNames' not in node


def test_operation_ids_are_unique(document):
    ids = [op['operationId'] for item in document['paths'].values() for op in item.values()]
    assert len(ids) == len(set(ids)) == sum(1 for _ in router.ROUTES)


def test_every_error_is_a_fault_envelope_and_success_is_described(document):
    for path, item in document['paths'].items():
        for method, operation in item.items():
            codes = operation['responses']
            assert '400' in codes, (method, path)
            for code, response in codes.items():
                if code.startswith('4') or code.startswith('5'):
                    schema = response['content']['application/json']['schema']
                    assert schema['maxProperties'] == 1, (method, path, code)
            if 'requestBody' in operation:
                assert '415' in codes, (method, path)


def test_query_parameters_are_published(document):
    def names(path, method):
        return {p['name'] for p in document['paths'][path][method].get('parameters', [])}

    assert {'limit', 'marker', 'sort_key', 'sort_dir', 'all_tenants', 'name', 'status',
            'backend_id'} <= names('/v1/volumes', 'get')
    assert {'cascade', 'force', 'id'} <= names('/v1/volumes/{id}', 'delete')
    assert {'tag', 'state', 'status', 'limit'} <= names('/v1/backends', 'get')
    assert {'project_id', 'id'} <= names('/v2.1/{project_id}/servers/{id}/action', 'post')


def test_cobalt_action_bodies_are_one_of_each_verb(document):
    body = document['paths']['/v2.1/servers/{id}/action']['post']['requestBody']
    branches = body['content']['application/json']['schema']['oneOf']
    verbs = {next(iter(branch['required'])) for branch in branches}
    assert verbs == {prefix + verb for prefix in ('co_', 'gc_') for verb in (
        'bless', 'launch', 'discard', 'list_launched', 'list_blessed', 'export',
        'migrate')} | {
        'pause', 'unpause'}
    bless = next(b for b in branches if b['required'] == ['co_bless'])
    name = bless['properties']['co_bless']['properties']['name']
    assert name['nullable'] is True and name['maxLength'] == 255 and '\\x00' in name['pattern']


def test_null_becomes_nullable_and_several_types_any_of():
    assert openapi.to_openapi({'type': ['string', 'null'], 'maxLength': 3}) == {
        'type': 'string', 'nullable': True, 'maxLength': 3}
    assert openapi.to_openapi({'type': 'object', 'additionalProperties': {
        'type': ['string', 'number', 'boolean']}}) == {
        'type': 'object', 'additionalProperties': {
            'anyOf': [{'type': 'string'}, {'type': 'number'}, {'type': 'boolean'}]}}
    converted = openapi.to_openapi({'type': 'object', 'propertyNames': {'pattern': '^a$'}})
    assert converted == {'type': 'object', 'description': 'Keys match ^a$.'}


def test_a_route_added_without_published_schemas_keeps_the_document_valid():
    class Things:
        def index(self, req):
            return {'things': []}

    routes = router.ROUTES + [router.Route('GET', '/v1/things', 'things', 'index',
                                           'A route added later', 200)]
    built = openapi.build(routes, dict(router.make_controllers(), things=Things()))
    success = built['paths']['/v1/things']['get']['responses']['200']
    assert success['content']['application/json']['schema'] == {}
    pytest.importorskip('openapi_spec_validator').validate(built)


def test_responses_without_a_body_claim_no_media_type(cloud, make_backend):
    """Neither application/json (an empty body is no JSON) nor webob's text/html."""
    from tests.fixtures.images import store_file
    from tests.unit.api.test_live_images import _server, _settle_image

    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')
    make_backend()
    volume = cloud.request('POST', '/v1/volumes', json={'volume': {'size': 1}}).json()
    wait_for(lambda: cloud.request('GET', '/v1/volumes/%s' % volume['volume']['id']).json()[
        'volume']['status'] == 'available', what='an available volume')
    deleted = cloud.request('DELETE', '/v1/volumes/%s' % volume['volume']['id'])
    image = cloud.request('POST', '/v2.1/servers/%s/action' % _server(cloud)['id'],
                          json={'co_bless': None}).json()[0]
    _settle_image(cloud, image['id'])
    discarded = cloud.request('POST', '/v2.1/servers/%s/action' % image['id'],
                              json={'co_discard': None})
    assert deleted.status_code == 202, deleted.text
    assert deleted.content == b'' and 'Content-Type' not in deleted.headers
    # Cobalt's discard answers a JSON null, which its clients read as "no body".
    assert discarded.status_code == 200, discarded.text
    assert discarded.content == b'null'
    assert discarded.headers['Content-Type'].startswith('application/json')
