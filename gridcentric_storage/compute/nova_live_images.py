"""Live images of Nova's own instances on this host: bless, restart recovery, removal,
export and import.

The API side (the ``cobalt`` endpoint) creates the live image row, status
``blessing``, ``server_id`` the Nova instance UUID, ``host`` this host, and
casts ``bless_nova_instance`` here. :func:`nova.bless.bless_domain` does the
work on the instance's libvirt domain; this module only moves the row
(through ``compute.status``) and keeps its directory in step with it.

A live image's directory is ``<live_images_path>/<id>``, the root being the
virt driver's (``[libvirt]`` or ``[qemu] live_images_path``, by
``[compute] virt_driver``): nova-compute's virt driver reads the same
directories through nova.conf's ``[gridcentric] live_images_path``, so the
two must name one directory. The blessing itself talks to libvirt at
``[libvirt] uri`` whatever this host's own virt driver is.
"""

import errno
import logging
import os
import re
import shutil
from collections.abc import Callable
from typing import Any

from oslo_config import cfg

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.compute import live_image_export
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage
from gridcentric_storage.image.store import ImageStore
from gridcentric_storage.nova import bless as nova_bless
from gridcentric_storage.nova import export as nova_export
from gridcentric_storage.nova import manifest
from gridcentric_storage.virt import base as virt

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

#: ``artifacts['extra']['kind']`` of a Nova instance's live image
KIND = 'nova'
#: an absolute path, not part of a word (``1/2``, ``and/or`` stay)
_HOST_PATH = re.compile(r'(?<![\w.])/[\w.@+%=~-]+(?:/[\w.@+%=~-]*)*')

__all__ = ['KIND', 'NovaLiveImageManager', 'is_nova', 'live_images_root', 'member_reason',
           'remove_directory']


def live_images_root(driver: virt.VirtDriver) -> str:
    """Where live images live on this host: the virt driver's, else the default."""
    path = getattr(driver, 'live_images_path', None)
    return os.path.abspath(path or os.path.join(CONF.state_path, 'live-images'))


def is_nova(live_image: LiveImage) -> bool:
    """A live image of a Nova instance (the API side records the flavor and image
    its clones boot with; a blessed one's artifacts say so too)."""
    if live_image.get('nova_source') is not None:
        return True
    extra = (live_image.get('artifacts') or {}).get('extra') or {}
    return extra.get('kind') == KIND


def remove_directory(root: str, artifacts: virt.LiveImageArtifacts) -> None:
    """Remove a Nova live image's directory; only ``<root>/<its id>``, nothing else."""
    directory = os.path.abspath(artifacts.directory or
                                os.path.join(root, artifacts.live_image_id))
    if (os.path.dirname(directory) != os.path.abspath(root)
            or os.path.basename(directory) != artifacts.live_image_id):
        raise exception.DriverError(reason='live image %s names a directory outside the '
                                    'live images path' % artifacts.live_image_id)
    shutil.rmtree(directory, ignore_errors=True)


def member_reason(error: Exception) -> str:
    """What a failed bless is recorded as: our own message, never a host path (a
    libvirt or QEMU error quoted in one may name a file: it becomes ``<path>``)."""
    if isinstance(error, exception.GCException):
        return _HOST_PATH.sub('<path>', exception.describe(error))
    if isinstance(error, OSError) and error.errno:
        return 'bless failed on the compute host: %s' % (error.strerror
                                                         or errno.errorcode[error.errno])
    return 'bless failed on the compute host (%s); its log has the details' % (
        type(error).__name__)


def _artifacts(made: manifest.NovaLiveImage, directory: str,
               live_image: LiveImage) -> dict[str, Any]:
    """The row's ``artifacts``: a ``virt.LiveImageArtifacts`` whose ``extra`` says
    it is Nova's, so discard removes it without this host's virt driver."""
    return {'live_image_id': made.live_image_id, 'directory': directory,
            'memory_path': made.ram_path, 'state_path': made.state_path,
            'memory_mb': made.ram_size >> 20, 'vcpus': live_image['vcpus'], 'disks': [],
            'extra': {'kind': KIND, 'source_instance': made.source_instance,
                      'ram_block': made.ram_block, 'ram_size': made.ram_size,
                      'ram_sha256': made.ram_sha256, 'disks': dict(made.disks)}}


class NovaLiveImageManager:
    """``bless``, ``resume`` and ``qemu_owner`` are :mod:`nova.bless`'s (tests give
    fakes)."""

    def __init__(self, host: str, driver: virt.VirtDriver, locks: concurrency.KeyedLocks,
                 bless: Callable[..., manifest.NovaLiveImage] = nova_bless.bless_domain,
                 resume: Callable[..., bool] = nova_bless.resume_if_paused_by_us,
                 qemu_owner: Callable[[str, str], tuple[int, int] | None] =
                 nova_bless.qemu_owner) -> None:
        self.host = host
        self.root = live_images_root(driver)
        self.locks = locks
        self._bless, self._resume, self._qemu_owner = bless, resume, qemu_owner

    def directory(self, live_image_id: str) -> str:
        return os.path.join(self.root, live_image_id)

    def bless(self, ctxt: Any, live_image_id: str, instance_uuid: str) -> None:
        with self.locks.get('nova-instance:' + instance_uuid):
            try:
                live_image = db_servers.live_image_get(live_image_id)
            except exception.LiveImageNotFound:
                LOG.warning('Live image %s is gone; not blessing instance %s', live_image_id,
                            instance_uuid)
                return
            if live_image['status'] != L.BLESSING or live_image['host'] != self.host:
                LOG.warning('Live image %s is %s on %s; not blessing it here', live_image_id,
                            live_image['status'], live_image['host'])
                return
            directory = self.directory(live_image_id)
            try:
                if live_image['server_id'] != instance_uuid:
                    raise exception.Invalid(reason='live image %s is of another instance'
                                            % live_image_id)
                made = concurrency.execute(
                    self._bless, instance_uuid, live_image_id,
                    live_image['project_id'] or '', directory,
                    CONF.libvirt.migration_timeout, CONF.libvirt.checksum_ram,
                    CONF.libvirt.uri)
            except Exception as e:
                LOG.exception('Blessing Nova instance %s into live image %s failed',
                              instance_uuid, live_image_id)
                set_live_image(live_image_id, L.ERROR, L.BLESSING,
                               status_reason=member_reason(e))
                return
            try:
                set_live_image(live_image_id, L.BLESSED, L.BLESSING, status_reason=None,
                               artifacts=_artifacts(made, directory, live_image))
            except exception.GCException:
                # Discarded (or failed) meanwhile: nobody will ask for these files.
                shutil.rmtree(directory, ignore_errors=True)
                raise

    def recover_interrupted(self, ctxt: Any) -> None:
        """A bless a stop cut short ends in error: the instance runs again if the
        bless had paused it, its partial directory goes."""
        for live_image in db_servers.live_image_get_all(host=self.host,
                                                        statuses=(L.BLESSING,)):
            if not (is_nova(live_image) or self._not_a_server(live_image)):
                continue
            directory = self.directory(live_image['id'])
            LOG.info('Live image %s of Nova instance %s was being blessed; marking it error',
                     live_image['id'], live_image['server_id'])
            try:
                if self._resume(live_image['server_id'], directory, CONF.libvirt.uri):
                    LOG.info('Resumed Nova instance %s, paused by that bless',
                             live_image['server_id'])
            except Exception:
                LOG.warning('Could not resume Nova instance %s', live_image['server_id'],
                            exc_info=True)
            shutil.rmtree(directory, ignore_errors=True)
            set_live_image(live_image['id'], L.ERROR, L.BLESSING,
                           status_reason='bless interrupted by a restart of the compute '
                                         'service')

    @staticmethod
    def _not_a_server(live_image: LiveImage) -> bool:
        """A bless under way always has its source's row, unless the source is Nova's."""
        try:
            db_servers.server_get(live_image['server_id'])
        except exception.ServerNotFound:
            return True
        return False

    # ---- export and import (compute RPC 2.3, calls; the API side checked the state)
    def export(self, ctxt: Any, images: ImageStore, live_image: LiveImage) -> dict[str, Any]:
        """Pack the live image, without this host's paths, into the caller's image
        store; the image's name, sha256 and size."""
        data = dict(live_image['artifacts'] or {})
        artifacts = virt.LiveImageArtifacts(**dict(data, disks=[]))
        shown, files, replaced = nova_export.export_contents(artifacts)
        return live_image_export.export(ctxt, images, shown, files, replaced)

    def import_(self, ctxt: Any, images: ImageStore, live_image: LiveImage, image: str,
                sha256: str) -> dict[str, Any]:
        """Unpack and check an export into this host's live images; the row's
        artifacts. A refusal leaves no directory."""
        path = images.locate(ctxt, image, 'export image')
        directory = self.directory(live_image['id'])
        if os.path.lexists(directory):
            raise exception.Conflict(reason='live image %s already exists' % live_image['id'])
        os.makedirs(self.root, exist_ok=True)
        unpacked = live_image_export.unpack(
            path, sha256, directory, live_image['id'], live_image['memory_mb'],
            live_image['vcpus'], check=nova_export.check_files)
        try:
            made = nova_export.finish_import(
                unpacked, live_image['project_id'] or '',
                lambda kind: self._qemu_owner(kind, CONF.libvirt.uri))
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return _artifacts(made, directory, live_image)
