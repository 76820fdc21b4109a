"""RequestSpec: what the volume API hands the scheduler, validated before anything is written."""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.scheduler import RequestSpec
from gridcentric_storage.scheduler.request import compile_capability


def test_from_volume_request_compiles_once() -> None:
    spec = RequestSpec.from_volume_request({
        'size': 10, 'role': 'san', 'tags': ['ssd'], 'availability_zone': 'az1',
        'capabilities': {'multiattach': True}, 'requirements': 'cost <= 3',
        'rank': '-cost', 'backend_id': 'abc', 'name': 'ignored', 'description': 'x'})
    assert (spec.size, spec.role, spec.tags, spec.backend_id) == (10, 'san', ['ssd'], 'abc')
    assert spec.requirements_expr is not None and spec.rank_expr is not None
    assert spec.requirements_expr.evaluate({'cost': 2}) is True
    assert len(spec.capability_checks) == 1


def test_defaults() -> None:
    spec = RequestSpec.from_volume_request({'size': 1})
    assert (spec.role, spec.tags, spec.capabilities, spec.requirements_expr,
            spec.rank_expr) == (None, [], {}, None, None)


def test_bad_expression_is_a_400_before_anything_is_written() -> None:
    with pytest.raises(exception.InvalidExpression) as caught:
        RequestSpec.from_volume_request({'size': 1, 'requirements': 'cost >'})
    assert caught.value.code == 400
    assert 'column 7' in str(caught.value)
    with pytest.raises(exception.InvalidExpression):
        RequestSpec.from_volume_request({'size': 1, 'rank': 'secret_key'})


@pytest.mark.parametrize('body, field', [
    ({}, 'size'), ({'size': 0}, 'size'), ({'size': '10'}, 'size'), ({'size': True}, 'size'),
    ({'size': 1, 'tags': 'ssd'}, 'tags'), ({'size': 1, 'tags': [1]}, 'tags'),
    ({'size': 1, 'capabilities': ['multiattach']}, 'capabilities'),
    ({'size': 1, 'role': 3}, 'role'), ({'size': 1, 'requirements': True}, 'requirements'),
])
def test_malformed_fields(body: dict, field: str) -> None:
    with pytest.raises(exception.ValidationError) as caught:
        RequestSpec.from_volume_request(body)
    assert caught.value.code == 400
    assert 'field %s' % field in str(caught.value)


@pytest.mark.parametrize('wanted, value, passes', [
    (True, True, True), (True, 'True', True), (True, '<is> True', True), (True, False, False),
    (True, None, False), (False, False, True), ('<is> True', True, True),
    ('<is> False', 'false', True), ('<is> True', 'yes', False),
    (10, 10.0, True), (10, '10', True), (10, 11, False),
    ('>= 10', 10, True), ('>= 10', 9.5, False), ('<= 10', 11, False), ('== 5', '5', True),
    ('!= 5', 6, True), ('!= 5', None, False), ('>= 10', 'fast', False),
    ('<in> ssd', 'ssd,nvme', True), ('<in> ssd', ['ssd', 'hdd'], True),
    ('<in> ssd', ['hdd'], False), ('<in> ssd', None, False),
    ('<or> rbd <or> iSCSI', 'iSCSI', True), ('<or> rbd <or> iSCSI', 'NFS', False),
    ('iSCSI', 'iSCSI', True), ('iSCSI', 'iscsi', False),
])
def test_capability_specs(wanted: object, value: object, passes: bool) -> None:
    check = compile_capability('cap', wanted)
    assert check.test(value) is passes
    assert (check.reason({'cap': value}) is None) is passes


def test_capability_reason_text() -> None:
    assert (compile_capability('total_iops', '>= 1000').reason({'total_iops': 200})
            == 'capability total_iops is 200, need >= 1000')


@pytest.mark.parametrize('wanted', ['<is> maybe', '>= fast', '<in>', '<or> a <or>',
                                    None, {'a': 1}, [1]])
def test_invalid_capability_specs(wanted: object) -> None:
    with pytest.raises(exception.InvalidExpression) as caught:
        RequestSpec.from_volume_request({'size': 1, 'capabilities': {'cap': wanted}})
    assert caught.value.code == 400
