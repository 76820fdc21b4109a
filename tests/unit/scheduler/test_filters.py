"""Each filter accepts the right backends and says why it rejects the others."""

import datetime
import random

import pytest

from gridcentric_storage.scheduler import RequestSpec
from gridcentric_storage.scheduler.base import BaseFilter
from gridcentric_storage.scheduler.filters.availability_zone import AvailabilityZoneFilter
from gridcentric_storage.scheduler.filters.capabilities import CapabilitiesFilter
from gridcentric_storage.scheduler.filters.capacity import CapacityFilter
from gridcentric_storage.scheduler.filters.requirements import RequirementsFilter
from gridcentric_storage.scheduler.filters.role import RoleFilter
from gridcentric_storage.scheduler.filters.state import EnabledFilter, UpFilter
from gridcentric_storage.scheduler.filters.tags import TagsFilter

from .conftest import backend, now


def spec(size: int = 10, **fields: object) -> RequestSpec:
    return RequestSpec.from_volume_request({'size': size, **fields})


class TestState:
    def test_enabled_passes(self) -> None:
        assert EnabledFilter().passes(backend(), spec()) is None

    def test_disabled_shows_the_operators_reason(self) -> None:
        disabled = backend(state='disabled', disabled_reason='maintenance')
        assert EnabledFilter().passes(disabled, spec()) == 'disabled: maintenance'

    def test_disabled_without_reason(self) -> None:
        assert EnabledFilter().passes(backend(state='disabled'), spec()) == 'disabled'

    def test_up_passes(self) -> None:
        assert UpFilter().passes(backend(), spec()) is None

    def test_down_says_how_long_it_has_been_silent(self) -> None:
        silent = backend(status='down',
                         stats_updated_at=now() - datetime.timedelta(seconds=90))
        reason = UpFilter().passes(silent, spec())
        assert reason in ('status down (no stats for 90 s)', 'status down (no stats for 91 s)')

    def test_down_never_reported(self) -> None:
        silent = backend(status='down', stats_updated_at=None)
        assert UpFilter().passes(silent, spec()) == 'status down (never reported stats)'


class TestRole:
    def test_matching_role_passes(self) -> None:
        assert RoleFilter().passes(backend(role='san'), spec(role='san')) is None

    def test_other_role_is_rejected(self) -> None:
        reason = RoleFilter().passes(backend(role='repository'), spec(role='san'))
        assert reason == 'role repository != san'

    def test_no_role_requested_takes_any(self) -> None:
        assert not RoleFilter().applies(spec())
        assert RoleFilter().passes(backend(role='repository'), spec()) is None


class TestTags:
    def test_all_requested_tags_present(self) -> None:
        tagged = backend(tags=['ssd', 'replicated', 'rack1'])
        assert TagsFilter().passes(tagged, spec(tags=['ssd', 'replicated'])) is None

    def test_missing_tags_are_listed_in_request_order(self) -> None:
        reason = TagsFilter().passes(backend(tags=['hdd']), spec(tags=['ssd', 'hdd', 'nvme']))
        assert reason == 'missing tags: ssd, nvme'

    def test_null_tags_miss_everything(self) -> None:
        assert TagsFilter().passes(backend(tags=None), spec(tags=['ssd'])) == 'missing tags: ssd'


class TestAvailabilityZone:
    def test_same_zone_passes(self) -> None:
        zoned = backend(availability_zone='az1')
        assert AvailabilityZoneFilter().passes(zoned, spec(availability_zone='az1')) is None

    def test_other_zone_is_rejected(self) -> None:
        reason = AvailabilityZoneFilter().passes(backend(availability_zone='az2'),
                                                 spec(availability_zone='az1'))
        assert reason == 'availability zone az2 != az1'


class TestCapabilities:
    def test_required_boolean(self) -> None:
        request = spec(capabilities={'multiattach': True})
        assert CapabilitiesFilter().passes(
            backend(capabilities={'multiattach': True}), request) is None
        assert CapabilitiesFilter().passes(backend(capabilities={'multiattach': False}),
                                           request) == 'capability multiattach is False, need True'

    def test_missing_capability(self) -> None:
        reason = CapabilitiesFilter().passes(backend(capabilities={}),
                                             spec(capabilities={'QoS_support': True}))
        assert reason == 'capability QoS_support is missing, need True'

    def test_cinder_operators(self) -> None:
        caps = {'multiattach': 'True', 'total_iops': 5000, 'storage_protocol': 'iSCSI',
                'pools': ['gold', 'silver']}
        request = spec(capabilities={'multiattach': '<is> True', 'total_iops': '>= 1000',
                                     'storage_protocol': '<or> rbd <or> iSCSI',
                                     'pools': '<in> gold'})
        assert CapabilitiesFilter().passes(backend(capabilities=caps), request) is None
        slow = dict(caps, total_iops=200)
        assert (CapabilitiesFilter().passes(backend(capabilities=slow), request)
                == 'capability total_iops is 200, need >= 1000')

    def test_first_failing_capability_is_reported(self) -> None:
        request = spec(capabilities={'multiattach': True, 'QoS_support': True})
        reason = CapabilitiesFilter().passes(backend(capabilities={}), request)
        assert reason == 'capability multiattach is missing, need True'


class TestCapacity:
    """Numbers worked out by hand, following Cinder's CapacityFilter."""

    def test_thick_fits_exactly_after_reserved(self) -> None:
        # 180 free - 10% of 1000 reserved = 80 usable.
        thick = backend(total_capacity_gb=1000.0, free_capacity_gb=180.0, reserved_percentage=10)
        assert CapacityFilter().passes(thick, spec(80)) is None
        assert (CapacityFilter().passes(thick, spec(120))
                == 'needs 120 GiB, 80.0 GiB free after 10% reserved')

    def test_thick_without_reserved(self) -> None:
        thick = backend(total_capacity_gb=100.0, free_capacity_gb=50.0)
        assert CapacityFilter().passes(thick, spec(60)) == 'needs 60 GiB, 50.0 GiB free'
        assert CapacityFilter().passes(thick, spec(50)) is None

    def thin(self, **values: object) -> dict:
        fields = {'total_capacity_gb': 100.0, 'free_capacity_gb': 50.0,
                  'max_over_subscription_ratio': 2.0, 'provisioned_capacity_gb': 150.0,
                  'capabilities': {'thin_provisioning_support': True}}
        fields.update(values)
        return backend(**fields)

    def test_thin_over_subscription_limit(self) -> None:
        # (150 + 60) / 100 = 2.1 > 2.0; (150 + 50) / 100 = 2.0 is still allowed.
        assert CapacityFilter().passes(self.thin(), spec(60)) == (
            'needs 60 GiB, 210.0 GiB provisioned would exceed 2 x 100.0 GiB '
            '(max over-subscription)')
        assert CapacityFilter().passes(self.thin(), spec(50)) is None

    def test_thin_allows_more_than_physically_free(self) -> None:
        # 10 GiB free x ratio 10 = 100 virtual GiB >= 50, and 50 / 100 <= 10.
        roomy = self.thin(free_capacity_gb=10.0, max_over_subscription_ratio=10.0,
                          provisioned_capacity_gb=0.0)
        assert CapacityFilter().passes(roomy, spec(50)) is None

    def test_thin_virtual_free_after_reserved(self) -> None:
        # 20 free - 10 reserved = 10, x 2.0 = 20 virtual < 30.
        tight = self.thin(free_capacity_gb=20.0, reserved_percentage=10,
                          provisioned_capacity_gb=0.0)
        assert CapacityFilter().passes(tight, spec(30)) == (
            'needs 30 GiB, 20.0 GiB virtual free (10.0 GiB free after 10% reserved x 2)')

    def test_thin_flag_reported_as_string(self) -> None:
        stringly = self.thin(capabilities={'thin_provisioning_support': '<is> True'})
        assert CapacityFilter().passes(stringly, spec(50)) is None

    def test_ratio_below_one_means_thick(self) -> None:
        # Cinder ignores thin provisioning unless the ratio is >= 1.
        fake_thin = self.thin(max_over_subscription_ratio=0.5, provisioned_capacity_gb=0.0)
        assert CapacityFilter().passes(fake_thin, spec(60)) == 'needs 60 GiB, 50.0 GiB free'

    @pytest.mark.parametrize('total, free', [(None, 10.0), (100.0, None), (None, None),
                                             (float('inf'), 10.0), ('unknown', 'unknown')])
    def test_unknown_capacity_passes(self, total: object, free: object) -> None:
        unknown = backend(total_capacity_gb=total, free_capacity_gb=free)
        assert CapacityFilter().passes(unknown, spec(10_000)) is None


class TestRequirements:
    def test_true_passes_false_is_rejected_with_the_expression(self) -> None:
        request = spec(requirements='free_capacity_gb > 100 and "ssd" in tags')
        assert RequirementsFilter().passes(backend(tags=['ssd']), request) is None
        assert (RequirementsFilter().passes(backend(tags=['hdd']), request)
                == 'requirements false: free_capacity_gb > 100 and "ssd" in tags')

    def test_evaluation_error_rejects_with_the_error(self) -> None:
        request = spec(requirements='free_capacity_gb > 100')
        reason = RequirementsFilter().passes(backend(free_capacity_gb=None), request)
        assert reason == ("requirements could not be evaluated: cannot apply '>' to null and "
                          "number in (free_capacity_gb > 100)")

    def test_without_requirements_everything_passes(self) -> None:
        assert not RequirementsFilter().applies(spec())
        assert RequirementsFilter().passes(backend(), spec()) is None


def odd_pool(size: int) -> list[dict]:
    """Backends with every shape the DB or a sloppy driver might produce."""
    rng = random.Random(7)
    choice = rng.choice
    pool = []
    for i in range(size):
        pool.append(backend(
            'b%03d' % i,
            state=choice(['enabled', 'enabled', 'disabled']),
            status=choice(['up', 'up', 'down']),
            role=choice(['san', 'repository']),
            availability_zone=choice(['az1', 'az2']),
            tags=choice([[], ['ssd'], ['ssd', 'nvme'], ['hdd']]),
            total_capacity_gb=choice([100.0, 1000.0, 0.0, None, float('inf'), 500]),
            free_capacity_gb=choice([0.0, 20.0, 80.0, 400.0, None, float('nan'), 30]),
            reserved_percentage=choice([0, 10, None]),
            max_over_subscription_ratio=choice([1.0, 2.0, 0.5, 0.0, None, 3]),
            provisioned_capacity_gb=choice([0.0, 150.0, 900.0, None]),
            capabilities=choice([{}, {'thin_provisioning_support': True},
                                 {'thin_provisioning_support': 'True', 'multiattach': True},
                                 {'thin_provisioning_support': False, 'multiattach': 'True'},
                                 {'thin_provisioning_support': 'maybe'}]),
            cost=choice([0, 1, 5])))
    return pool


FILTERS = [EnabledFilter(), UpFilter(), RoleFilter(), TagsFilter(), AvailabilityZoneFilter(),
           CapabilitiesFilter(), CapacityFilter(), RequirementsFilter()]


@pytest.mark.parametrize('backend_filter', FILTERS, ids=lambda f: type(f).__name__)
def test_batch_path_agrees_with_passes(backend_filter: object) -> None:
    """The fast whole-list path keeps exactly the backends passes() accepts, same reasons."""
    pool = odd_pool(300)
    request = spec(60, role='san', tags=['ssd'], availability_zone='az1',
                   capabilities={'multiattach': True},
                   requirements='free_capacity_gb > 50 or cost == 0')
    if type(backend_filter).flags is not BaseFilter.flags:   # the fast path really runs
        assert len(backend_filter.flags(pool, request)) == len(pool)  # type: ignore[attr-defined]
    reasons: dict[str, str] = {}
    kept = backend_filter.filter_all(pool, request, reasons)  # type: ignore[attr-defined]
    expected = {b['name']: backend_filter.passes(b, request)  # type: ignore[attr-defined]
                for b in pool}
    assert [b['name'] for b in kept] == [n for n, reason in expected.items() if reason is None]
    assert reasons == {n: reason for n, reason in expected.items() if reason is not None}
    assert 0 < len(kept) < len(pool)
