"""Fuzz every operation of the published OpenAPI document against the real API.

Schemathesis reads ``/v1/openapi.json`` from the in-process cloud and sends
what it generates from it: data that fits the document (positive) and data
that does not (negative), as an administrator and as a project member. Path
ids are drawn from resources made beforehand as well as generated, so the
requests get past the lookups. Every answer must be no 5xx, a documented
status code and content type, and a body that fits the documented schema.

The run is bounded by ``GC_FUZZ_EXAMPLES`` examples per operation and mode
(default 16), each sent as both callers, and is the same on every run;
``GC_FUZZ_RANDOM=1`` draws new examples each time.
"""

import base64
import os
import shutil
import tempfile
import time

import hypothesis
import pytest
import requests
from hypothesis import strategies as st

from tests.fixtures.images import store_file
from tests.fixtures.services import wait_for

schemathesis = pytest.importorskip('schemathesis')
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)


def _unless_empty(check):
    """An empty body without Content-Type has no media type or schema to match.

    Extend, revert and force-detach share the action operation (and its
    202) with os-volume_upload_image, which answers a body; co_discard
    shares the Cobalt action's 200 with co_bless. An empty body that claims
    a media type is still checked.
    """
    def unless_empty(ctx, response, case):
        if not response.content and not response.headers.get('content-type'):
            return None
        return check(ctx, response, case)

    unless_empty.__name__ = check.__name__
    return unless_empty


EXAMPLES = int(os.environ.get('GC_FUZZ_EXAMPLES', '16'))
RANDOM = os.environ.get('GC_FUZZ_RANDOM') == '1'
CHECKS = [not_a_server_error, status_code_conformance,
          _unless_empty(content_type_conformance), _unless_empty(response_schema_conformance)]
ADMIN, MEMBER = 'admin:admin', 'alice:projA'
#: Mutating verbs last, deletes at the very end: the made resources serve
#: the lookups of as many operations as possible.
_ORDER = {'GET': 0, 'PUT': 1, 'POST': 2, 'DELETE': 3}


def _settled(cloud, token, path, key, busy):
    def done():
        item = cloud.request('GET', path, token=token).json()[key]
        return item if item['status'] not in busy and not item.get('task_state') else None
    return wait_for(done, timeout=30, what='%s to settle' % path)


def _make_resources(cloud, token):
    """Volumes, a snapshot, a server, a live image and a clone of the caller's project."""
    def post(path, body, expect=(201, 202)):
        response = cloud.request('POST', path, token=token, json=body)
        assert response.status_code in expect, (path, response.text)
        return next(iter(response.json().values()))

    volume = post('/v1/volumes', {'volume': {'size': 1, 'name': 'fuzz'}})
    _settled(cloud, token, '/v1/volumes/%s' % volume['id'], 'volume', ('creating',))
    snapshot = post('/v1/snapshots', {'snapshot': {'volume_id': volume['id']}})
    spare = post('/v1/volumes', {'volume': {'size': 1}})
    server = post('/v1/servers', {'server': {'name': 'fuzz', 'memory_mb': 64,
                                             'kernel': 'vmlinuz', 'initrd': 'initrd.img'}})
    _settled(cloud, token, '/v1/servers/%s' % server['id'], 'server', ('BUILD',))
    image = post('/v1/live-images', {'live_image': {'server_id': server['id']}})
    _settled(cloud, token, '/v1/live-images/%s' % image['id'], 'live_image', ('blessing',))
    clone = post('/v1/live-images/%s/action' % image['id'], {'launch': {
        'name': 'clone', 'user_data': base64.b64encode(b'hi').decode()}})[0]
    return [volume['id'], snapshot['id'], spare['id'], server['id'], image['id'],
            clone['id']]


@pytest.fixture
def fuzz_cloud(request, gc_conf):
    # Thousands of requests, most of which write: the database goes on a tmpfs,
    # where a commit does not wait for the disk (what is checked is the answers).
    shm = tempfile.mkdtemp(prefix='gc-fuzz-', dir='/dev/shm') if os.path.isdir(
        '/dev/shm') else None
    if shm:
        request.addfinalizer(lambda: shutil.rmtree(shm, ignore_errors=True))
        gc_conf.set_override('connection', 'sqlite:///%s/gc.sqlite' % shm, group='database')
    cloud = request.getfixturevalue('cloud')
    store_file('vmlinuz', b'kernel')
    store_file('initrd.img', b'initrd')
    # A file backend, not the fake one: its volumes stream (upload, download).
    backend = cloud.request('POST', '/v1/backends', json={'backend': {
        'name': 'fuzz', 'driver': 'file'}})
    assert backend.status_code == 201, backend.text
    ids = [backend.json()['backend']['id']]
    for token in (ADMIN, MEMBER):
        ids += _make_resources(cloud, token)
    return cloud, ids


def _document(cloud):
    document = requests.get(cloud.url + '/v1/openapi.json', timeout=10).json()
    from openapi_spec_validator import validate

    validate(document)
    return document


def test_the_document_is_valid_openapi_3_0(cloud):
    document = _document(cloud)
    assert document['openapi'] == '3.0.3'
    ids = [op['operationId'] for item in document['paths'].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def _fuzz(cloud, operation, mode, ids, failures, calls):
    parameters = {p.name for p in operation.path_parameters}
    known = {name: st.sampled_from(ids) for name in parameters if name in ('id', 'server_id')}
    if 'project_id' in parameters:
        known['project_id'] = st.sampled_from(['admin', 'projA', 'nobody'])

    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize=not RANDOM, phases=[hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def run(case, data):
        if mode.is_positive:
            for name, strategy in known.items():
                if data.draw(st.booleans(), label='known %s' % name):
                    case.path_parameters[name] = data.draw(strategy, label=name)
        # one drawn case, sent as each caller: the drawing costs as much as a call
        for token in (MEMBER, ADMIN):
            calls[mode.value] = calls.get(mode.value, 0) + 1
            try:
                case.call_and_validate(base_url=cloud.url, headers={'X-Auth-Token': token},
                                       checks=CHECKS, timeout=60)
            except (Exception, BaseExceptionGroup) as e:  # schemathesis' FailureGroup
                failures.setdefault((operation.label, mode.value, token), (
                    '%s\n%s' % (case.as_curl_command(headers={'X-Auth-Token': token}), e)))

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        assert mode.is_negative  # nothing in this operation can be made invalid


def test_no_operation_answers_5xx_or_off_the_document(fuzz_cloud):
    cloud, ids = fuzz_cloud
    _document(cloud)
    schema = schemathesis.openapi.from_url(cloud.url + '/v1/openapi.json')
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda op: (_ORDER.get(op.method.upper(), 9), op.path))
    failures: dict = {}
    calls: dict = {}
    started = time.monotonic()
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE,
                     schemathesis.GenerationMode.NEGATIVE):
            _fuzz(cloud, operation, mode, ids, failures, calls)
    elapsed = time.monotonic() - started
    print('fuzzed %d operations x 2 modes (at most %d examples each) x 2 callers: '
          '%s requests in %.0f s' % (len(operations), EXAMPLES, calls, elapsed))
    assert not failures, '\n\n'.join('%s %s %s:\n%s' % (*key, text)
                                     for key, text in sorted(failures.items()))
