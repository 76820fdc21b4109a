"""Typed records: the rows the DB layer hands to every other layer.

Rows cross layers (DB to API views, managers, drivers' references, RPC
answers) as these ``TypedDict`` records rather than ORM objects or
``dict[str, Any]``: mypy checks every key a caller reads, and a record is
still a plain dict, so it goes into a JSON view or an oslo.messaging payload
as it is. ``doc/architecture.md`` says why this was chosen over dataclasses.
"""

import datetime
from typing import Any, TypedDict


class _Timestamps(TypedDict):
    created_at: datetime.datetime
    updated_at: datetime.datetime | None


class Service(_Timestamps):
    id: int
    host: str
    topic: str
    binary: str
    last_seen_at: datetime.datetime | None
    capabilities: dict[str, Any] | None


class Backend(_Timestamps):
    id: str
    name: str
    driver: str
    options: dict[str, Any]
    state: str
    disabled_reason: str | None
    role: str
    cost: int
    tags: list[str]
    availability_zone: str
    host: str
    total_capacity_gb: float | None
    free_capacity_gb: float | None
    max_over_subscription_ratio: float | None
    reserved_percentage: int
    capabilities: dict[str, Any]
    stats_updated_at: datetime.datetime | None
    qos_specs_id: str | None
    # Derived from the volumes table on every read, never stored.
    volume_count: int
    provisioned_capacity_gb: float
    status: str


class Volume(_Timestamps):
    id: str
    name: str | None
    project_id: str | None
    user_id: str | None
    size: int
    status: str
    status_reason: str | None
    backend_id: str
    host: str
    tags: list[str]
    provider_location: str | None
    provider_auth: str | None
    source_volid: str | None
    snapshot_id: str | None
    image_id: str | None
    multiattach: bool
    qos_specs_id: str | None
    migration_status: str | None
    migration_progress: int | None
    name_id: str | None


class Snapshot(_Timestamps):
    id: str
    name: str | None
    project_id: str | None
    user_id: str | None
    volume_id: str
    volume_size: int
    status: str
    status_reason: str | None
    backend_id: str
    host: str
    provider_location: str | None


class Attachment(_Timestamps):
    id: str
    volume_id: str
    project_id: str | None
    host: str
    instance_uuid: str | None
    mode: str
    status: str
    status_reason: str | None
    connector: dict[str, Any] | None
    connection_info: dict[str, Any] | None
    device_path: str | None


class ImageCacheEntry(_Timestamps):
    id: str
    backend_id: str
    host: str
    image_id: str
    image_key: str
    size: int
    status: str
    hits: int
    last_used_at: datetime.datetime | None


class Server(_Timestamps):
    id: str
    name: str
    project_id: str | None
    user_id: str | None
    host: str                      # placed before the row is written
    availability_zone: str | None
    status: str
    task_state: str | None
    fault: str | None
    memory_mb: int
    vcpus: int
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    volume_id: str | None
    mac: str | None
    vmgenid: str | None
    live_image_id: str | None
    launch_index: int | None
    key_name: str | None
    user_data: str | None
    guest: dict[str, Any]
    extra: dict[str, Any]


class LiveImage(_Timestamps):
    id: str
    name: str
    project_id: str | None
    user_id: str | None
    server_id: str
    host: str
    status: str
    status_reason: str | None
    memory_mb: int
    vcpus: int
    artifacts: dict[str, Any] | None
    nova_source: dict[str, Any] | None  # a Nova instance's: flavor_id, image_id
    publish_status: str | None     # none publishing published error (NULL: none)
    publish_reason: str | None
    publish_location: dict[str, Any] | None  # pool, image, snapshot, ram_size, sha256s


class QosSpecs(_Timestamps):
    id: str
    name: str
    consumer: str                  # back-end, front-end or both
    specs: dict[str, int | float]  # volume.qos.SPEC_KEYS
