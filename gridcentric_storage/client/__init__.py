"""Python API and ``gc-api`` CLI for gridcentric-storage, as a python-novaclient extension.

Each extension module holds one ``novaclient.base.Manager`` subclass, which
``novaclient.client.Client(..., extensions=...)`` attaches under the extension's
name, plus the ``do_*`` functions that become ``gc-api`` commands. The endpoint is
the API root (``http://host:8779``); managers use absolute paths like
``/v1/backends``. With keystone auth it comes from the catalog entry of service
type ``gridcentric``; with no auth (the all-in-one) from the session or
``endpoint_override``::

    from keystoneauth1 import noauth, session
    from gridcentric_storage import client

    gc = client.get_client(session.Session(
        auth=noauth.NoAuth(endpoint='http://127.0.0.1:8779')))
    gc.gc_backends.create(name='fast', driver='file', options={'path': '/srv/fast'},
                          tags=['ssd'], cost=1)
    vol = gc.gc_volumes.wait(gc.gc_volumes.create(size=1, name='v1', tags=['ssd']))
    snap = gc.gc_snapshots.wait(gc.gc_snapshots.create(vol, name='before'))
    gc.gc_volumes.extend(vol, 2)
    att = gc.gc_attachments.wait(gc.gc_attachments.create(vol))

Managers are novaclient ``ManagerWithFind``s: ``gc.gc_volumes.find(name='v1')``, or
``novaclient.utils.find_resource(gc.gc_volumes, name_or_id)`` for an ID or a name
(``novaclient.exceptions.CommandError`` when nothing or several match).

API errors are novaclient's exceptions (``novaclient.exceptions.Conflict`` etc.,
with ``.code`` and the API's ``.message``); the client's own (waiting, transfers)
are in :mod:`gridcentric_storage.client.utils`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from novaclient import client as nova_client
from novaclient import extension

from gridcentric_storage.client import (
    attachments,
    backends,
    cobalt,
    image_cache,
    images,
    live_images,
    qos,
    servers,
    snapshots,
    volumes,
)

__all__ = ['API_VERSION', 'EXTENSIONS', 'SERVICE_TYPE', 'get_client', 'get_extensions']

# novaclient's client class is chosen by major version; "2" (= 2.0) sends no
# microversion headers.
API_VERSION = '2'
SERVICE_TYPE = 'gridcentric'

# (client attribute, module). Not ``volumes``: novaclient already has that one.
# ``gridcentric`` is the live-image manager's name in Gridcentric's own client.
EXTENSIONS: list[tuple[str, ModuleType]] = [
    ('gc_backends', backends),
    ('gc_volumes', volumes),
    ('gc_snapshots', snapshots),
    ('gc_attachments', attachments),
    ('gc_image_cache', image_cache),
    ('gc_images', images),
    ('gc_servers', servers),
    ('gridcentric', live_images),
    ('gc_cobalt', cobalt),
    ('gc_qos', qos),
]


def get_extensions() -> list[extension.Extension]:
    return [extension.Extension(name, module) for name, module in EXTENSIONS]


def get_client(session: Any, endpoint_override: str | None = None,
               service_type: str = SERVICE_TYPE, **kwargs: Any) -> Any:
    """A novaclient ``Client`` with our managers (``gc_backends``, ``gc_volumes``,
    ``gc_snapshots``, ``gc_attachments``, ``gc_image_cache``).

    :param session: a keystoneauth1 session (its auth plugin finds the endpoint).
    :param endpoint_override: the API root, instead of the catalog's endpoint.
    :param service_type: catalog service type.
    :param kwargs: passed to ``novaclient.client.Client``: ``region_name``,
        ``service_name``, ``endpoint_type`` (``interface`` is accepted as a synonym),
        ``timings``, ``logger``...
    """
    interface = kwargs.pop('interface', None)
    if interface and 'endpoint_type' not in kwargs:
        kwargs['endpoint_type'] = interface
    return nova_client.Client(API_VERSION, session=session,
                              endpoint_override=endpoint_override,
                              service_type=service_type,
                              extensions=get_extensions(), **kwargs)
