"""QoS specs -> a volume's limits: Cinder's keys, per-GB scaling, what is refused."""

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.volume import qos


def test_fixed_limits_and_cinders_string_values():
    specs = {'total_iops_sec': '500', 'read_bytes_sec': 10 << 20, 'write_bytes_sec': '4096'}
    assert qos.effective_limits(specs, 10) == {
        'total_iops_sec': 500, 'read_bytes_sec': 10 << 20, 'write_bytes_sec': 4096}


def test_per_gb_limits_scale_with_the_size_and_keep_their_floor():
    specs = {'total_iops_sec_per_gb': 30, 'total_iops_sec_per_gb_min': 100,
             'total_bytes_sec_per_gb': '1.5'}
    assert qos.effective_limits(specs, 20) == {'total_iops_sec': 600,
                                               'total_bytes_sec': 30}
    assert qos.effective_limits(specs, 2)['total_iops_sec'] == 100   # the floor
    assert qos.effective_limits(specs, 3)['total_bytes_sec'] == 5    # rounded up


def test_a_burst_comes_with_its_limit_and_vanishes_below_a_grown_one():
    specs = {'total_iops_sec_per_gb': 10, 'total_iops_sec_max': 500}
    assert qos.effective_limits(specs, 10) == {'total_iops_sec': 100,
                                               'total_iops_sec_max': 500}
    assert qos.effective_limits(specs, 100) == {'total_iops_sec': 1000}


@pytest.mark.parametrize('specs, reason', [
    ({'iops': 5}, 'unknown key'),
    ({'total_iops_sec': 0}, 'above 0'),
    ({'total_iops_sec': -3}, 'above 0'),
    ({'total_iops_sec': 'lots'}, 'positive number'),
    ({'total_iops_sec': 1.5}, 'whole number'),
    ({'total_iops_sec': True}, 'positive number'),
    ({'total_iops_sec': 2 ** 60}, 'at most'),
    ({'total_iops_sec': 5, 'total_iops_sec_per_gb': 1}, 'not both'),
    ({'total_iops_sec_per_gb_min': 5}, 'needs total_iops_sec_per_gb'),
    ({'read_iops_sec_max': 5}, 'needs read_iops_sec'),
    ({'total_iops_sec': 50, 'total_iops_sec_max': 10}, 'at least'),
    ({'total_bytes_sec': 5, 'read_bytes_sec': 5}, 'not both'),
    ({'total_iops_sec_per_gb': 5, 'write_iops_sec': 5}, 'not both'),
])
def test_what_no_enforcer_could_take_is_refused(specs, reason):
    with pytest.raises(exception.InvalidQosSpecs, match=reason):
        qos.validate_specs(specs)


def test_iops_and_bytes_are_split_independently():
    # total IOPS with read/write bandwidth: QEMU, libvirt and RBD all take that
    specs = {'total_iops_sec': 100, 'read_bytes_sec': 1, 'write_bytes_sec': 2}
    assert qos.validate_specs(specs) == specs


def test_consumers():
    assert qos.consumer_enforces(None, 'back-end')          # Cinder's default
    assert not qos.consumer_enforces('back-end', 'front-end')
    assert qos.consumer_enforces('both', 'front-end') and qos.consumer_enforces('both',
                                                                                 'back-end')


def test_connection_info_carries_the_front_end_limits_like_cinder():
    info = {'driver_volume_type': 'rbd', 'data': {'name': 'p/v', 'qos_specs': {'x': 1}}}
    carried = qos.connection_with(info, {'total_iops_sec': 5})
    assert carried['data'] == {'name': 'p/v', 'qos_specs': {'total_iops_sec': 5}}
    assert qos.from_connection(carried) == {'total_iops_sec': 5}
    assert 'qos_specs' not in qos.connection_with(carried, {})['data']
    assert info['data']['qos_specs'] == {'x': 1}       # a copy: the input is untouched
