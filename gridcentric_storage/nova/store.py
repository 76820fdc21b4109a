"""A Nova instance's live image in the live image store (``[live_image_store]``).

``compute.live_image_publish`` publishes every live image's RAM (RBD image
``gc-live-<id>``, snapshot ``published``) and device state (object
``gc-live-<id>.state``). A Nova live image's directory (``nova.bless``) also
holds ``domain.xml``, ``nova.json`` and its disks, each top image with its
backing chain; :func:`publish_files` adds them: the two small files as RADOS
objects ``gc-live-<id>.<name>``, the disk files as RBD images
``gc-live-<id>.<name>`` (an object is capped by ``osd_max_object_size``),
each with its sha256 in the live image's ``publish_location['files']``.

A host whose nova-compute is asked for a clone of a live image it does not
hold asks its gridcentric-compute (compute RPC ``prepare_nova_live_image``):
``compute.live_image_mounts`` mounts the RAM through its supervised
``rbd-fuse`` with the same refusals, and :func:`fetch` puts the other files in
that host's cache, checked, under a ``nova.json`` naming the local copies, which
the virt driver reads as it reads a blessed directory. The store's client
stays in gridcentric-compute: nova-compute never talks to Ceph.
"""

import json
import os
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.compute.live_image_publish import sha256_file, sha256_of
from gridcentric_storage.nova import manifest
from gridcentric_storage.nova.bless import PAUSED_MARKER
from gridcentric_storage.volume.drivers import rbd_client

__all__ = ['OBJECTS', 'PUBLISHED_MANIFEST', 'disk_files', 'fetch', 'publish_files', 'refusal',
           'unpublish_files']

#: the small files of a Nova live image, published as whole objects
OBJECTS = ('domain.xml', manifest.FILENAME)
#: in a host's cache: the blessing host's manifest as published (its paths are
#: that host's); ``nova.json`` beside it names this host's copies
PUBLISHED_MANIFEST = 'published.json'
_NOT_DISKS = {'ram', 'state', PAUSED_MARKER, *OBJECTS}
CHUNK = 4 << 20


def disk_files(directory: str) -> list[str]:
    """The names of a Nova live image's disk files: top images and backing chains."""
    return sorted(name for name in os.listdir(directory)
                  if name not in _NOT_DISKS and not name.endswith('.tmp')
                  and os.path.isfile(os.path.join(directory, name)))


def publish_files(client: Any, directory: str, name: str) -> dict[str, Any]:
    """Publish the files of ``directory`` besides RAM and state under ``name``
    (``gc-live-<id>``); what a host needs to fetch and check them."""
    files: dict[str, dict[str, Any]] = {}
    for small in OBJECTS:
        with open(os.path.join(directory, small), 'rb') as f:
            data = f.read()
        client.put_object('%s.%s' % (name, small), data)
        files[small] = {'object': '%s.%s' % (name, small), 'size': len(data),
                        'sha256': sha256_of(data)}
    for disk in disk_files(directory):
        path = os.path.join(directory, disk)
        client.write_image('%s.%s' % (name, disk), path)
        files[disk] = {'image': '%s.%s' % (name, disk), 'size': os.stat(path).st_size,
                       'sha256': sha256_file(path)}
    return {'files': files}


def unpublish_files(client: Any, name: str) -> None:
    """Remove what :func:`publish_files` wrote under ``name``, a part or all of it."""
    for small in OBJECTS:
        client.remove_object('%s.%s' % (name, small))

    def listed() -> list[str]:
        with client._ioctx() as ioctx:
            return [i for i in rbd_client.rbd.RBD().list(ioctx)
                    if i.startswith(name + '.')]
    for image in client._run('listing the images of %s' % name, listed):
        client.remove_image(image)


def _read_image(client: Any, image: str, path: str, size: int) -> None:
    """The head of RBD image ``image`` into a new sparse file ``path``."""
    def call() -> None:
        with client._ioctx() as ioctx, \
                rbd_client.rbd.Image(ioctx, image, read_only=True) as img, \
                open(path, 'wb') as f:
            if img.size() != size:
                raise exception.LiveImageFilesMissing(
                    id=image, reason='its published image has %d bytes, not %d'
                    % (img.size(), size))
            offset = 0
            while offset < size:
                data = img.read(offset, min(CHUNK, size - offset))
                if data.count(0) != len(data):
                    os.pwrite(f.fileno(), data, offset)
                offset += len(data)
            f.truncate(size)
    client._run('reading %s' % image, call)


def fetch(client: Any, live_image_id: str, location: dict[str, Any], cache: str,
          ram_path: str) -> str:
    """The published files of a Nova live image in ``cache`` (kept when their sha256
    still matches), each checked against the sha256 recorded at publish time, and
    a ``nova.json`` naming them and ``ram_path`` (the mounted RAM); ``cache``."""
    def refuse(reason: str) -> exception.LiveImageFilesMissing:
        return exception.LiveImageFilesMissing(id=live_image_id, reason=reason)

    files = dict(location.get('files') or {})
    if set(OBJECTS) - set(files):
        raise refuse('its published copy is not one of a Nova instance')
    wanted = dict(files, state={'object': location['state_object'],
                                'sha256': location['state_sha256']})
    os.makedirs(cache, exist_ok=True)
    for name, where in wanted.items():
        # the names come from the store: each must be a plain file name
        if os.path.basename(name) != name or name in ('', '.', '..', PUBLISHED_MANIFEST):
            raise refuse('its published copy names a file %r' % name)
        local = PUBLISHED_MANIFEST if name == manifest.FILENAME else name
        path = os.path.join(cache, local)
        if sha256_file(path) == where['sha256']:
            continue
        tmp = path + '.tmp'
        if 'image' in where:
            _read_image(client, where['image'], tmp, int(where['size']))
        else:
            with open(tmp, 'wb') as f:
                f.write(client.get_object(where['object']))
        if sha256_file(tmp) != where['sha256']:
            os.unlink(tmp)
            raise refuse('its published %s does not match the sha256 recorded at publish '
                         'time' % local)
        os.replace(tmp, path)
    with open(os.path.join(cache, PUBLISHED_MANIFEST)) as text:
        published = json.load(text)
    published.pop('version', None)
    blessed = manifest.NovaLiveImage(**published)
    if blessed.live_image_id != live_image_id or blessed.ram_size != int(location['ram_size']):
        raise refuse('its published manifest does not match its published RAM')

    def here(path: str) -> str:
        return os.path.join(cache, os.path.basename(path))
    manifest.write(cache, manifest.NovaLiveImage(
        live_image_id=live_image_id, project_id=blessed.project_id,
        source_instance=blessed.source_instance, ram_path=ram_path,
        ram_size=blessed.ram_size, ram_block=blessed.ram_block,
        state_path=here(blessed.state_path),
        disks={target: here(path) for target, path in blessed.disks.items()},
        domain_xml_path=here(blessed.domain_xml_path), ram_sha256=blessed.ram_sha256))
    return cache


def refusal(live_image_id: str, error: Exception) -> exception.LiveImageFilesMissing:
    """What nova-compute (and the clone's fault) is told when ``error`` stopped a
    preparation here: a reason without this host's paths."""
    from gridcentric_storage.compute.nova_live_images import member_reason

    if isinstance(error, exception.GCException) and error.kwargs.get('reason'):
        reason = str(error.kwargs['reason'])
    elif isinstance(error, OSError):
        reason = 'fetching it failed on this host: %s' % (error.strerror
                                                         or type(error).__name__)
    else:
        reason = exception.describe(error)
    return exception.LiveImageFilesMissing(
        id=live_image_id, reason=member_reason(exception.GCException(reason)))
