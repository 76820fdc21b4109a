"""Scheduler.select: which backend wins, and what the user reads when none fits."""

import configparser
import os

import pytest
from stevedore import extension

from gridcentric_storage.common import exception
from gridcentric_storage.conf import CONF
from gridcentric_storage.scheduler import RequestSpec, Scheduler, UnknownPlugin
from gridcentric_storage.scheduler import scheduler as scheduler_module
from gridcentric_storage.scheduler.base import BaseFilter
from gridcentric_storage.scheduler.scheduler import normalise

from .conftest import backend


def spec(size: int = 10, **fields: object) -> RequestSpec:
    return RequestSpec.from_volume_request({'size': size, **fields})


def chosen(backends: list[dict], **fields: object) -> str:
    return Scheduler().select(spec(**fields), backends).backend['name']  # type: ignore[arg-type]


class TestWeighing:
    def test_lower_cost_beats_more_free_space(self) -> None:
        pool = [backend('cheap', cost=1, free_capacity_gb=100.0),
                backend('roomy', cost=5, free_capacity_gb=900.0)]
        assert chosen(pool) == 'cheap'

    def test_equal_cost_more_free_space_wins(self) -> None:
        pool = [backend('small', cost=2, free_capacity_gb=100.0),
                backend('big', cost=2, free_capacity_gb=900.0)]
        assert chosen(pool) == 'big'

    def test_equal_space_fewer_volumes_wins(self) -> None:
        pool = [backend('busy', volume_count=40), backend('quiet', volume_count=3)]
        assert chosen(pool) == 'quiet'

    def test_rank_expression_changes_the_winner(self) -> None:
        pool = [backend('big', free_capacity_gb=900.0, tags=['hdd']),
                backend('small', free_capacity_gb=100.0, tags=['nvme'])]
        assert chosen(pool) == 'big'
        assert chosen(pool, rank='"nvme" in tags') == 'small'
        assert chosen(pool, rank='-free_capacity_gb') == 'small'

    def test_rank_errors_count_as_zero(self) -> None:
        pool = [backend('a', free_capacity_gb=None), backend('b', free_capacity_gb=10.0)]
        assert chosen(pool, rank='free_capacity_gb * 1000') == 'b'

    def test_unknown_free_space_ranks_last_when_spreading_and_packing(self) -> None:
        pool = [backend('unknown', free_capacity_gb=None),
                backend('full', free_capacity_gb=10.0), backend('empty', free_capacity_gb=900.0)]
        assert chosen(pool) == 'empty'
        CONF.set_override('free_capacity_weight_multiplier', -1.0, group='scheduler')
        assert chosen(pool) == 'full'

    def test_ties_go_to_the_first_name(self) -> None:
        assert chosen([backend('zeta'), backend('alpha'), backend('mid')]) == 'alpha'

    def test_multiplier_zero_disables_a_weigher(self) -> None:
        pool = [backend('cheap', cost=1, free_capacity_gb=100.0),
                backend('roomy', cost=5, free_capacity_gb=900.0)]
        CONF.set_override('cost_weight_multiplier', 0.0, group='scheduler')
        assert chosen(pool) == 'roomy'

    def test_explain(self) -> None:
        pool = [backend('cheap', cost=1, free_capacity_gb=100.0),
                backend('roomy', cost=5, free_capacity_gb=900.0),
                backend('off', state='disabled')]
        placement = Scheduler().select(spec(), pool)
        assert placement.explain() == {
            'backend': 'cheap', 'backend_id': 'id-cheap', 'weight': 1000.0,
            'weights': {'cost': 1000.0, 'free_capacity': 0.0, 'volume_count': 0.0,
                        'rank': 0.0},
            'candidates': 2, 'filtered_out': 1, 'rejected_by': {'enabled': 1}}
        assert placement.weight == 1000.0

    def test_normalise(self) -> None:
        assert normalise([10.0, 20.0, 15.0], 2.0) == [0.0, 2.0, 1.0]
        assert normalise([5.0, 5.0], 1000.0) is None
        # Unknown: one unit below the worst known value when spreading...
        assert normalise([float('-inf'), 0.0, 1.0], 1.0) == [0.0, 0.5, 1.0]
        # ...and one unit above it when packing, so it is still the least preferred.
        assert normalise([float('-inf'), 0.0, 1.0], -1.0) == [-1.0, -0.0, -0.5]
        assert normalise([None, None], 1.0) is None  # type: ignore[list-item]


class TestNoValidBackend:
    def test_message_names_each_backend_and_why(self) -> None:
        pool = [backend('maint', state='disabled', disabled_reason='maintenance'),
                backend('repo', role='repository'),
                backend('full', free_capacity_gb=80.0, total_capacity_gb=1000.0,
                        reserved_percentage=0),
                backend('far', availability_zone='az2')]
        with pytest.raises(exception.NoValidBackend) as caught:
            Scheduler().select(spec(120, role='san', availability_zone='nova'), pool)
        assert caught.value.code == 400
        assert str(caught.value) == (
            'No valid backend was found. All 4 backends were rejected: '
            'maint: disabled: maintenance; repo: role repository != san; '
            'full: needs 120 GiB, 80.0 GiB free; far: availability zone az2 != nova.')
        assert caught.value.reasons == {  # type: ignore[attr-defined]
            'maint': 'disabled: maintenance', 'repo': 'role repository != san',
            'full': 'needs 120 GiB, 80.0 GiB free', 'far': 'availability zone az2 != nova'}

    def test_first_failing_filter_is_the_reason(self) -> None:
        both = backend('both', state='disabled', role='repository')
        with pytest.raises(exception.NoValidBackend) as caught:
            Scheduler().select(spec(role='san'), [both])
        assert str(caught.value) == ('No valid backend was found. '
                                     'The only backend was rejected: both: disabled.')

    def test_empty_pool(self) -> None:
        with pytest.raises(exception.NoValidBackend, match='no backends are registered'):
            Scheduler().select(spec(), [])

    def test_huge_pool_listing_is_capped_and_grouped(self) -> None:
        pool = [backend('off%02d' % i, state='disabled') for i in range(15)]
        pool += [backend('repo%02d' % i, role='repository') for i in range(10)]
        with pytest.raises(exception.NoValidBackend) as caught:
            Scheduler().select(spec(role='san'), pool)
        message = str(caught.value)
        assert message.startswith('No valid backend was found. All 25 backends were rejected: '
                                  'off00: disabled; off01: disabled;')
        assert 'repo04: role repository != san; ... and 5 more' in message
        assert 'repo05' not in message
        assert message.endswith('(by filter: enabled 15, role 10).')
        assert len(caught.value.reasons) == 25  # type: ignore[attr-defined]

    def test_requirements_are_explained(self) -> None:
        pool = [backend('a', free_capacity_gb=50.0), backend('b', free_capacity_gb=None)]
        with pytest.raises(exception.NoValidBackend) as caught:
            Scheduler().select(spec(requirements='free_capacity_gb > 100'), pool)
        assert caught.value.reasons == {  # type: ignore[attr-defined]
            'a': 'requirements false: free_capacity_gb > 100',
            'b': "requirements could not be evaluated: cannot apply '>' to null and number "
                 "in (free_capacity_gb > 100)"}


class TestBackendId:
    def test_only_that_backend_is_considered(self) -> None:
        pool = [backend('best', cost=0), backend('pinned', cost=9)]
        assert chosen(pool, backend_id='id-pinned') == 'pinned'

    def test_filters_still_apply_and_say_why(self) -> None:
        pool = [backend('fine'), backend('pinned', state='disabled', disabled_reason='RMA')]
        with pytest.raises(exception.NoValidBackend) as caught:
            Scheduler().select(spec(backend_id='id-pinned'), pool)
        assert 'pinned: disabled: RMA' in str(caught.value)
        assert caught.value.reasons == {'pinned': 'disabled: RMA'}  # type: ignore[attr-defined]

    def test_unknown_backend_id(self) -> None:
        with pytest.raises(exception.NoValidBackend, match='backend nope is not registered'):
            Scheduler().select(spec(backend_id='nope'), [backend()])


class TestPlugins:
    def test_unknown_names_fail_at_construction(self) -> None:
        CONF.set_override('enabled_filters', ['enabled', 'colour'], group='scheduler')
        with pytest.raises(UnknownPlugin) as caught:
            Scheduler()
        assert "Unknown scheduler filter 'colour' in [scheduler] enabled_filters" in str(
            caught.value)
        assert 'availability_zone, capabilities, capacity' in str(caught.value)
        CONF.clear_override('enabled_filters', group='scheduler')
        CONF.set_override('enabled_weighers', ['cost', 'luck'], group='scheduler')
        with pytest.raises(UnknownPlugin, match="weigher 'luck'"):
            Scheduler()

    def test_only_enabled_filters_run_in_order(self) -> None:
        CONF.set_override('enabled_filters', ['role'], group='scheduler')
        placement = Scheduler().select(spec(role='san'),
                                       [backend('off', state='disabled'),
                                        backend('repo', role='repository')])
        assert placement.backend['name'] == 'off'
        assert placement.rejected_by == {'role': 1}

    def test_third_party_plugins_come_from_stevedore(self, monkeypatch) -> None:  # type: ignore
        class EvenCostFilter(BaseFilter):
            def passes(self, backend, request):  # type: ignore[no-untyped-def]
                return None if backend['cost'] % 2 == 0 else 'odd cost'

        real = extension.ExtensionManager

        def manager(namespace: str, **kwargs: object) -> extension.ExtensionManager:
            plugins = [extension.Extension('even', None, EvenCostFilter, None)]
            return real.make_test_instance(
                plugins if namespace == scheduler_module.FILTERS_NAMESPACE else [])

        monkeypatch.setattr(scheduler_module.extension, 'ExtensionManager', manager)
        CONF.set_override('enabled_filters', ['enabled', 'even'], group='scheduler')
        pool = [backend('one', cost=1), backend('two', cost=2)]
        assert chosen(pool) == 'two'

    def test_builtin_table_matches_setup_cfg_entry_points(self) -> None:
        setup_cfg = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'setup.cfg')
        parser = configparser.ConfigParser()
        parser.read(setup_cfg)
        for namespace, builtin in scheduler_module.BUILTIN_PLUGINS.items():
            lines = parser['entry_points'][namespace].strip().splitlines()
            declared = dict(line.replace(' ', '').split('=') for line in lines)
            assert declared == builtin
