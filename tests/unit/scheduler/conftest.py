"""Shared fixtures: a backend factory shaped like ``db.api.backend_get_all`` rows."""

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from gridcentric_storage.conf import CONF
from gridcentric_storage.conf import scheduler as scheduler_conf

Backend = dict[str, Any]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def backend(name: str = 'b1', **values: Any) -> Backend:
    """A healthy, empty 1000 GiB thick SAN backend; override any column by keyword."""
    row: Backend = {
        'id': 'id-' + name, 'name': name, 'driver': 'fake',
        'options': {'password': 'secret'}, 'state': 'enabled', 'disabled_reason': None,
        'role': 'san', 'cost': 0, 'tags': [], 'availability_zone': 'nova', 'host': 'host1',
        'total_capacity_gb': 1000.0, 'free_capacity_gb': 1000.0,
        'max_over_subscription_ratio': 1.0, 'reserved_percentage': 0,
        'capabilities': {'thin_provisioning_support': False, 'multiattach': False,
                         'storage_protocol': 'iSCSI'},
        'stats_updated_at': now(), 'status': 'up', 'volume_count': 0,
        'provisioned_capacity_gb': 0.0, 'created_at': now(), 'updated_at': None}
    row.update(values)
    return row


@pytest.fixture
def make_backend() -> Callable[..., Backend]:
    return backend


@pytest.fixture(autouse=True)
def scheduler_options() -> Iterator[None]:
    """Tests override ``[scheduler]`` options freely; every override is undone."""
    yield
    for opt in scheduler_conf.scheduler_opts:
        CONF.clear_override(opt.name, group='scheduler')
