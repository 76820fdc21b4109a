"""SQLAlchemy models; alembic migrations under ``migrations/`` must match them.

Written in the SQLAlchemy 1.4/2.x common dialect (``declarative_base``,
``Column``) because Debian 12 ships SQLAlchemy 1.4.46.
"""

import datetime

import sqlalchemy as sa
from sqlalchemy import orm

BASE = orm.declarative_base()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class TimestampMixin:
    created_at = sa.Column(sa.DateTime, nullable=False, default=_now)
    updated_at = sa.Column(sa.DateTime, nullable=True, onupdate=_now)


class Service(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """A running gridcentric-compute (one per host and topic); its heartbeat."""

    __tablename__ = 'services'
    __table_args__ = (sa.UniqueConstraint('host', 'topic', name='uniq_services0host0topic'),)

    id = sa.Column(sa.Integer, primary_key=True)
    host = sa.Column(sa.String(255), nullable=False)
    topic = sa.Column(sa.String(255), nullable=False)
    binary = sa.Column(sa.String(255), nullable=False)
    last_seen_at = sa.Column(sa.DateTime, nullable=True)
    #: What the host can do, published at service start, e.g. ``{"hypervisor":
    #: false, "hypervisor_reason": "qemu-system-x86_64 not found"}``; NULL from
    #: services older than this column (they had to have a hypervisor).
    capabilities = sa.Column(sa.JSON, nullable=True)


class Backend(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """A storage backend of the pool, owned (driven) by one compute host."""

    __tablename__ = 'backends'
    __table_args__ = (sa.UniqueConstraint('name', name='uniq_backends0name'),
                      sa.Index('backends_host_idx', 'host'))

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=False)
    driver = sa.Column(sa.String(64), nullable=False)
    options = sa.Column(sa.JSON, nullable=False, default=dict)
    state = sa.Column(sa.String(16), nullable=False, default='enabled')
    disabled_reason = sa.Column(sa.String(255), nullable=True)
    role = sa.Column(sa.String(16), nullable=False, default='san')
    cost = sa.Column(sa.Integer, nullable=False, default=0)
    tags = sa.Column(sa.JSON, nullable=False, default=list)
    availability_zone = sa.Column(sa.String(255), nullable=False)
    host = sa.Column(sa.String(255), nullable=False)
    total_capacity_gb = sa.Column(sa.Float, nullable=True)
    free_capacity_gb = sa.Column(sa.Float, nullable=True)
    # None: use the ratio the driver reports (Cinder's default behaviour)
    max_over_subscription_ratio = sa.Column(sa.Float, nullable=True)
    reserved_percentage = sa.Column(sa.Integer, nullable=False, default=0)
    capabilities = sa.Column(sa.JSON, nullable=False, default=dict)
    stats_updated_at = sa.Column(sa.DateTime, nullable=True)
    #: QoS specs of the volumes on this backend that have none of their own.
    qos_specs_id = sa.Column(sa.String(36), nullable=True)


class Volume(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    __tablename__ = 'volumes'
    __table_args__ = (sa.Index('volumes_project_idx', 'project_id'),
                      sa.Index('volumes_backend_idx', 'backend_id'))

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=True)
    project_id = sa.Column(sa.String(255), nullable=True)
    user_id = sa.Column(sa.String(255), nullable=True)
    size = sa.Column(sa.Integer, nullable=False)
    status = sa.Column(sa.String(32), nullable=False)
    status_reason = sa.Column(sa.Text, nullable=True)
    backend_id = sa.Column(sa.String(36), sa.ForeignKey('backends.id'), nullable=False)
    host = sa.Column(sa.String(255), nullable=False)
    tags = sa.Column(sa.JSON, nullable=False, default=list)
    provider_location = sa.Column(sa.String(1024), nullable=True)
    # where the data came from (Cinder's names); at most one is set
    source_volid = sa.Column(sa.String(36), nullable=True)
    snapshot_id = sa.Column(sa.String(36), nullable=True)
    image_id = sa.Column(sa.String(1024), nullable=True)
    multiattach = sa.Column(sa.Boolean, nullable=False, default=False,
                            server_default=sa.false())
    # CHAP credentials of an export ('CHAP user secret'), as Cinder keeps them
    provider_auth = sa.Column(sa.String(1024), nullable=True)
    #: The volume's own QoS specs (None: its backend's, if any).
    qos_specs_id = sa.Column(sa.String(36), nullable=True)
    #: Cinder's migration states (starting migrating completing success error,
    #: ``target:<source id>`` on a migration's temporary destination row).
    migration_status = sa.Column(sa.String(255), nullable=True)
    migration_progress = sa.Column(sa.Integer, nullable=True)  # percent
    #: The id the backend names the data by, when not ``id`` (after a migration).
    name_id = sa.Column(sa.String(36), nullable=True)


class Snapshot(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    __tablename__ = 'snapshots'
    __table_args__ = (sa.Index('snapshots_volume_idx', 'volume_id'),
                      sa.Index('snapshots_project_idx', 'project_id'))

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=True)
    project_id = sa.Column(sa.String(255), nullable=True)
    user_id = sa.Column(sa.String(255), nullable=True)
    volume_id = sa.Column(sa.String(36), sa.ForeignKey('volumes.id'), nullable=False)
    volume_size = sa.Column(sa.Integer, nullable=False)
    status = sa.Column(sa.String(32), nullable=False)
    status_reason = sa.Column(sa.Text, nullable=True)
    backend_id = sa.Column(sa.String(36), sa.ForeignKey('backends.id'), nullable=False)
    host = sa.Column(sa.String(255), nullable=False)
    provider_location = sa.Column(sa.String(1024), nullable=True)


class Attachment(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """A volume connected to a host through os-brick (``host`` is the attacher)."""

    __tablename__ = 'attachments'
    __table_args__ = (sa.Index('attachments_volume_idx', 'volume_id'),)

    id = sa.Column(sa.String(36), primary_key=True)
    volume_id = sa.Column(sa.String(36), sa.ForeignKey('volumes.id'), nullable=False)
    project_id = sa.Column(sa.String(255), nullable=True)
    host = sa.Column(sa.String(255), nullable=False)
    instance_uuid = sa.Column(sa.String(36), nullable=True)
    mode = sa.Column(sa.String(2), nullable=False, default='rw')
    status = sa.Column(sa.String(32), nullable=False)
    status_reason = sa.Column(sa.Text, nullable=True)
    connector = sa.Column(sa.JSON, nullable=True)
    connection_info = sa.Column(sa.JSON, nullable=True)
    device_path = sa.Column(sa.String(1024), nullable=True)


class ImageCacheEntry(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """An image stored once on a backend as a cached snapshot (template cache).

    On the backend the entry is a volume ``volume-<id>`` with a snapshot
    ``snapshot-<id>``; volumes from the image are clones of that snapshot.
    """

    __tablename__ = 'image_cache'
    __table_args__ = (sa.UniqueConstraint('backend_id', 'image_key',
                                          name='uniq_image_cache0backend0key'),)

    id = sa.Column(sa.String(36), primary_key=True)
    backend_id = sa.Column(sa.String(36), sa.ForeignKey('backends.id'), nullable=False)
    host = sa.Column(sa.String(255), nullable=False)
    image_id = sa.Column(sa.String(1024), nullable=False)
    image_key = sa.Column(sa.String(64), nullable=False)
    size = sa.Column(sa.Integer, nullable=False)
    status = sa.Column(sa.String(32), nullable=False)
    hits = sa.Column(sa.Integer, nullable=False, default=0)
    last_used_at = sa.Column(sa.DateTime, nullable=True)


class Server(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """A VM on a compute host (its UUID may be a Nova instance's)."""

    __tablename__ = 'servers'
    __table_args__ = (sa.Index('servers_project_idx', 'project_id'),
                      sa.Index('servers_host_idx', 'host'),
                      sa.Index('servers_live_image_idx', 'live_image_id'))

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=False)
    project_id = sa.Column(sa.String(255), nullable=True)
    user_id = sa.Column(sa.String(255), nullable=True)
    host = sa.Column(sa.String(255), nullable=True)
    availability_zone = sa.Column(sa.String(255), nullable=True)
    status = sa.Column(sa.String(16), nullable=False)  # BUILD ACTIVE ERROR DELETED
    task_state = sa.Column(sa.String(32), nullable=True)
    fault = sa.Column(sa.Text, nullable=True)
    memory_mb = sa.Column(sa.Integer, nullable=False)
    vcpus = sa.Column(sa.Integer, nullable=False)
    kernel = sa.Column(sa.String(1024), nullable=True)
    initrd = sa.Column(sa.String(1024), nullable=True)
    cmdline = sa.Column(sa.String(2048), nullable=True)
    volume_id = sa.Column(sa.String(36), nullable=True)
    mac = sa.Column(sa.String(17), nullable=True)
    vmgenid = sa.Column(sa.String(36), nullable=True)
    live_image_id = sa.Column(sa.String(36), nullable=True)  # launched from
    launch_index = sa.Column(sa.Integer, nullable=True)
    key_name = sa.Column(sa.String(255), nullable=True)
    user_data = sa.Column(sa.Text, nullable=True)
    guest = sa.Column(sa.JSON, nullable=False, default=dict)
    extra = sa.Column(sa.JSON, nullable=False, default=dict)  # driver's InstanceInfo


class LiveImage(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """A blessed server: frozen RAM, device state and disk snapshots on one host."""

    __tablename__ = 'live_images'
    __table_args__ = (sa.Index('live_images_server_idx', 'server_id'),)

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=False)
    project_id = sa.Column(sa.String(255), nullable=True)
    user_id = sa.Column(sa.String(255), nullable=True)
    server_id = sa.Column(sa.String(36), nullable=False)
    host = sa.Column(sa.String(255), nullable=False)
    status = sa.Column(sa.String(16), nullable=False)  # blessing blessed discarding error
    status_reason = sa.Column(sa.Text, nullable=True)
    memory_mb = sa.Column(sa.Integer, nullable=False)
    vcpus = sa.Column(sa.Integer, nullable=False)
    artifacts = sa.Column(sa.JSON, nullable=True)
    #: Set for a live image of a Nova instance (``gridcentric_storage.nova``): the
    #: instance's ``flavor_id`` and ``image_id``, which its clones are booted
    #: with through Nova; NULL for live images of this service's own servers.
    nova_source = sa.Column(sa.JSON, nullable=True)
    #: Published to the shared store (``compute.live_image_publish``): none
    #: publishing published error; the copy's location and checksums.
    publish_status = sa.Column(sa.String(16), nullable=True)
    publish_reason = sa.Column(sa.Text, nullable=True)
    publish_location = sa.Column(sa.JSON, nullable=True)


class QosSpecs(BASE, TimestampMixin):  # type: ignore[misc,valid-type]
    """Named I/O limits (Cinder's qos-specs); ``consumer`` says who enforces them."""

    __tablename__ = 'qos_specs'
    __table_args__ = (sa.UniqueConstraint('name', name='uniq_qos_specs0name'),)

    id = sa.Column(sa.String(36), primary_key=True)
    name = sa.Column(sa.String(255), nullable=False)
    consumer = sa.Column(sa.String(16), nullable=False)  # back-end front-end both
    specs = sa.Column(sa.JSON, nullable=False, default=dict)
