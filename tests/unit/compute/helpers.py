"""A compute host in this process, driven through its Python APIs (no WSGI).

The service is the real one (``compute.service.ComputeService``: the compute
and volume managers behind one RPC server on oslo.messaging's ``fake://``
transport), with the fake virt driver and SQLite, as ``tests/conftest.py``
configures them. The helpers here wait for what a user would wait for.
"""

import uuid
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import context, exception
from gridcentric_storage.common import states as st
from gridcentric_storage.compute import service as compute_service
from gridcentric_storage.db import api as db
from gridcentric_storage.db import attachments as db_attachments
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db import snapshots as db_snapshots
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import drivers
from gridcentric_storage.volume import rpcapi as volume_rpcapi
from tests.fixtures.services import wait_for

CONF = cfg.CONF
HOST = 'test-host'


def member(project: str = 'demo') -> context.RequestContext:
    """A member's request context (what the REST controllers pass after policy)."""
    return context.RequestContext(user_id='%s-user' % project, project_id=project,
                                  is_admin=False, overwrite=False)


def start_service(host: str = HOST) -> compute_service.ComputeService:
    service = compute_service.ComputeService(host)
    service.start()
    return service


def add_backend(name: str = 'b1', driver: str = 'fake', host: str = HOST,
                **options: Any) -> dict[str, Any]:
    """Register a backend on ``host`` as POST /v1/backends does: the row, then a
    call to the owner host that sets its driver up."""
    backend_id = str(uuid.uuid4())
    merged = dict(drivers.get_driver_class(driver).default_options(backend_id,
                                                                   CONF.state_path),
                  **options)
    db.backend_create({
        'id': backend_id, 'name': name, 'driver': driver, 'options': merged,
        'state': 'enabled', 'role': 'san', 'cost': 0, 'tags': [],
        'availability_zone': CONF.default_availability_zone, 'host': host,
        'reserved_percentage': 0, 'capabilities': {}})
    volume_rpcapi.VolumeAPI().setup_backend(context.get_admin_context(), host, backend_id)
    return db.backend_get(backend_id)


def volume_or_none(volume_id: str) -> dict[str, Any] | None:
    try:
        return db.volume_get(volume_id)
    except exception.VolumeNotFound:
        return None


def settled_volume(volume_id: str, timeout: float = 20) -> dict[str, Any] | None:
    """The volume once no work runs on it; None once it is gone."""
    def done() -> Any:
        volume = volume_or_none(volume_id)
        if volume is None:
            return {'gone': True}
        return volume if volume['status'] not in st.VOLUME_BUSY else None
    found = wait_for(done, timeout=timeout, what='volume %s to settle' % volume_id)
    return None if found.get('gone') else found


def settled_snapshot(snapshot_id: str, timeout: float = 20) -> dict[str, Any] | None:
    def done() -> Any:
        try:
            snapshot = db_snapshots.snapshot_get(snapshot_id)
        except exception.NotFound:
            return {'gone': True}
        return snapshot if snapshot['status'] not in ('creating', 'restoring', 'deleting') \
            else None
    found = wait_for(done, timeout=timeout, what='snapshot %s to settle' % snapshot_id)
    return None if found.get('gone') else found


def make_volume(volumes: volume_api.API, ctxt: Any, backend: dict[str, Any],
                size: int = 1, **data: Any) -> dict[str, Any]:
    """A new volume on ``backend``, returned once available."""
    volume = volumes.create(ctxt, dict(data, size=size, backend_id=backend['id']), {},
                            None, details=True)
    settled = settled_volume(volume['id'])
    assert settled is not None and settled['status'] == 'available', settled
    return settled


def settled_server(server_id: str, timeout: float = 20) -> dict[str, Any] | None:
    """The server once it has left BUILD and has no task; None once it is gone."""
    def done() -> Any:
        try:
            server = db_servers.server_get(server_id)
        except exception.ServerNotFound:
            return {'gone': True}
        return server if server['status'] != 'BUILD' and not server['task_state'] else None
    found = wait_for(done, timeout=timeout, what='server %s to settle' % server_id)
    return None if found.get('gone') else found


def boot(compute: Any, ctxt: context.RequestContext, volume: dict[str, Any],
         name: str = 'vm') -> dict[str, Any]:
    """A 128 MiB server booted from ``volume``, once ACTIVE (asserted)."""
    server = compute.create_server(ctxt, {'name': name, 'memory_mb': 128,
                                          'volume_id': volume['id']})
    settled = settled_server(server['id'])
    assert settled is not None and settled['status'] == 'ACTIVE', settled
    return settled


def settled_live_image(live_image_id: str, timeout: float = 20) -> dict[str, Any] | None:
    def done() -> Any:
        try:
            image = db_servers.live_image_get(live_image_id)
        except exception.LiveImageNotFound:
            return {'gone': True}
        return image if image['status'] not in ('blessing', 'discarding') else None
    found = wait_for(done, timeout=timeout, what='live image %s to settle' % live_image_id)
    return None if found.get('gone') else found


def attachments_of_volume(volume_id: str) -> list[dict[str, Any]]:
    return db_attachments.attachment_get_all(volume_id=volume_id)
