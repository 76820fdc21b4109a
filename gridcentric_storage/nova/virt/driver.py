"""Nova's libvirt driver, which resumes an instance from a live image instead of booting it.

Runs inside nova-compute (``[DEFAULT] compute_driver =
gridcentric.LibvirtDriver``; see ``nova.virt_alias``). The first spawn
of an instance whose metadata has ``launched_from`` checks the live image's
manifest and then takes the stock ``spawn`` too, so Nova still makes its
directory, disks, config drive, network and domain XML; one hook changes
what that produces: ``_create_guest`` (called by ``spawn`` through
``_create_guest_with_network``) swaps the disks the live image holds for
qcow2 overlays of them, defines the domain from the clone's XML
(``clone_xml``), checks its devices against the blessed domain's, starts it
paused and loads the saved device state into it. Every other instance, every
later spawn of a clone (rebuild, unshelve...) and every other call of that
hook (reboot, resume, migration) is Nova's own.

A clone placed on a host that does not hold its live image's directory
(the live image is published, and ``[gridcentric] published_live_images`` is
on here) gets it from gridcentric-compute on this host (``nova.compute_client``,
``nova.store``): the RAM mapped through its rbd-fuse mount, the other files
fetched and checked into its cache, with a manifest the same checks read; a
refusal there aborts the build with its reason as the instance's fault.

Nova's cleanup of a clone removes its instance directory, where the overlays
live; the live image's files are only ever read (qcow2 backing files and a
MAP_PRIVATE RAM file), and are outside both the instance directory and Nova's
image cache, so no stock path deletes them.
"""

import dataclasses
import json
import os
import time
from typing import Any

import nova.conf
import oslo_messaging as messaging
from nova import exception as nova_exception
from nova.compute import task_states, vm_states
from nova.virt.libvirt import driver as libvirt_driver
from oslo_concurrency import processutils
from oslo_config import cfg
from oslo_log import log as logging

from gridcentric_storage.common import exception
from gridcentric_storage.nova import compute_client
from gridcentric_storage.nova import manifest as manifest_mod
from gridcentric_storage.nova.virt import clone_xml
from gridcentric_storage.virt import libvirt_live
from gridcentric_storage.virt.qemu_process import check_id

__all__ = ['METADATA_KEY', 'LibvirtDriver', 'list_opts', 'live_image_to_resume']

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: Instance metadata naming the live image a clone resumes (set by gridcentric-api).
METADATA_KEY = 'launched_from'

gridcentric_group = cfg.OptGroup('gridcentric', title='gridcentric-storage live images')
gridcentric_opts = [
    cfg.StrOpt('live_images_path', default='/var/lib/gridcentric-storage/live-images',
               help='Directory holding the live images blessed on this host, one '
                    'directory per live image with its manifest (nova.json); '
                    'gridcentric-compute writes them, this driver resumes clones '
                    'from them.'),
    cfg.IntOpt('resume_timeout', default=300, min=1,
               help='Seconds a clone may take to load the saved device state of its '
                    'live image before its spawn fails.'),
    *compute_client.opts,
]
CONF.register_group(gridcentric_group)
CONF.register_opts(gridcentric_opts, group=gridcentric_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(gridcentric_group, gridcentric_opts)]


def live_image_to_resume(instance: Any) -> str | None:
    """The live image a spawn of ``instance`` resumes: only its first one.

    A clone keeps its metadata for life, but a rebuild, an evacuation, an
    unshelve or a cross-cell resize spawns it again from its own disk or
    image (vm_state is no longer ``building``): resuming the live image then
    would throw away what the instance became.
    """
    live_image_id = (instance.metadata or {}).get(METADATA_KEY)
    if (live_image_id and instance.vm_state == vm_states.BUILDING
            and instance.task_state == task_states.SPAWNING):
        return str(live_image_id)
    return None


@dataclasses.dataclass(frozen=True)
class _Resume:
    live: manifest_mod.NovaLiveImage
    started: float


class LibvirtDriver(libvirt_driver.LibvirtDriver):
    def __init__(self, virtapi: Any, read_only: bool = False) -> None:
        super().__init__(virtapi, read_only)
        #: instance uuid -> the live image its spawn in progress resumes
        self._resuming: dict[str, _Resume] = {}
        self._compute: compute_client.ComputeClient | None = None

    def spawn(self, context: Any, instance: Any, image_meta: Any, injected_files: Any,
              admin_password: Any, allocations: Any, network_info: Any = None,
              block_device_info: Any = None, power_on: bool = True,
              accel_info: Any = None) -> None:
        live_image_id = live_image_to_resume(instance)
        if not live_image_id:
            return super().spawn(context, instance, image_meta, injected_files,
                                 admin_password, allocations, network_info=network_info,
                                 block_device_info=block_device_info, power_on=power_on,
                                 accel_info=accel_info)
        started = time.monotonic()
        live = self._live_image(context, instance, live_image_id)
        self._resuming[instance.uuid] = _Resume(live, started)
        try:
            super().spawn(context, instance, image_meta, injected_files, admin_password,
                          allocations, network_info=network_info,
                          block_device_info=block_device_info, power_on=power_on,
                          accel_info=accel_info)
        finally:
            self._resuming.pop(instance.uuid, None)
        LOG.info('Resumed from live image %s: running %.3f s after spawn started',
                 live_image_id, time.monotonic() - started, instance=instance)

    def _live_image(self, context: Any, instance: Any, live_image_id: str
                    ) -> manifest_mod.NovaLiveImage:
        """The manifest of the live image ``instance`` may resume, or the fault that
        stops its build (rescheduled only when this host holds no copy of it).

        The id comes from metadata the instance's owner can set to anything.
        """
        try:
            check_id('live image', live_image_id)       # it names a directory
        except exception.Invalid as e:
            raise self._abort(instance, live_image_id, 'that is no live image id') from e
        root = CONF.gridcentric.live_images_path
        if not os.path.isdir(os.path.join(root, live_image_id)):
            if not CONF.gridcentric.published_live_images:
                raise nova_exception.RescheduledException(
                    instance_uuid=instance.uuid,
                    reason='live image %s is not on this host' % live_image_id)
            root = self._from_store(context, instance, live_image_id)
        try:
            live = manifest_mod.read(root, live_image_id)
        except exception.LiveImageFilesMissing as e:
            LOG.warning('Cannot resume from live image %s: %s', live_image_id, e,
                        instance=instance)
            raise self._abort(instance, live_image_id, 'its files on this host are '
                              'incomplete') from e
        if live.project_id != instance.project_id:
            # Metadata is the member's to set: never resume another project's memory.
            raise self._abort(instance, live_image_id, 'it is not a live image of this '
                              "instance's project")
        memory = instance.flavor.memory_mb * 2**20
        if memory != live.ram_size:
            raise self._abort(instance, live_image_id, 'its RAM is %d MiB, the flavor %s '
                              'has %d MiB' % (live.ram_size >> 20, instance.flavor.name,
                                              instance.flavor.memory_mb))
        return live

    def _from_store(self, context: Any, instance: Any, live_image_id: str) -> str:
        """The root of the copy of a published live image gridcentric-compute makes
        on this host, or the fault that stops the build."""
        if self._compute is None:
            self._compute = compute_client.ComputeClient(CONF)
        try:
            directory = self._compute.prepare_nova_live_image(
                CONF.host, live_image_id, getattr(context, 'request_id', None),
                instance.project_id)
        except exception.GCException as e:
            # gridcentric-compute said why, in words without its paths
            raise nova_exception.BuildAbortException(
                instance_uuid=instance.uuid, reason=e.message) from e
        except messaging.MessagingException as e:
            LOG.error('gridcentric-compute did not prepare live image %s: %s',
                      live_image_id, e, instance=instance)
            raise self._abort(instance, live_image_id, 'the gridcentric-compute of its '
                              'host did not answer') from e
        if os.path.basename(directory) != live_image_id:
            raise self._abort(instance, live_image_id, 'gridcentric-compute named another '
                              'directory')
        return os.path.dirname(directory)

    @staticmethod
    def _abort(instance: Any, live_image_id: str, reason: str) -> Exception:
        return nova_exception.BuildAbortException(
            instance_uuid=instance.uuid,
            reason='cannot resume live image %s: %s' % (live_image_id, reason))

    def _create_guest(self, context: Any, xml: str, instance: Any, power_on: bool = True,
                      pause: bool = False, post_xml_callback: Any = None) -> Any:
        resume = self._resuming.get(instance.uuid)
        if resume is None or not (power_on or pause):
            return super()._create_guest(context, xml, instance, power_on=power_on,
                                         pause=pause, post_xml_callback=post_xml_callback)
        live = resume.live
        try:
            clone = clone_xml.rewrite(xml, live)
        except exception.Invalid as e:
            raise self._abort(instance, live.live_image_id, e.message) from e
        for path, backing in clone.overlays.items():
            self._make_overlay(path, backing)
        guest = super()._create_guest(context, clone.xml, instance, power_on=False,
                                      pause=False, post_xml_callback=post_xml_callback)
        try:
            with open(live.domain_xml_path) as f:
                blessed_xml = f.read()
        except OSError as e:
            raise self._abort(instance, live.live_image_id, 'its domain XML is gone') from e
        try:
            clone_xml.check_layout(live, blessed_xml, guest.get_xml_desc(dump_migratable=True))
        except exception.Invalid as e:
            raise self._abort(instance, live.live_image_id, e.message) from e
        self.cpu_api.power_up_for_instance(instance)
        try:
            guest.launch(pause=True)
        except Exception as e:              # libvirt's error names host paths: log it only
            LOG.error('QEMU did not start to resume live image %s: %s', live.live_image_id,
                      e, instance=instance)
            raise self._abort(instance, live.live_image_id, 'QEMU could not start with its '
                              'memory and disks') from e
        try:
            loaded = self._load_state(guest._domain, live.state_path, resume=not pause)
        except (exception.GCException, OSError) as e:
            LOG.error('Loading the state of live image %s failed: %s', live.live_image_id,
                      e, instance=instance)
            raise self._abort(instance, live.live_image_id,
                              'QEMU refused its saved state') from e
        LOG.info('Live image %s state loaded %.3f s after spawn started', live.live_image_id,
                 loaded - resume.started, instance=instance)
        return guest

    @staticmethod
    def _make_overlay(path: str, backing: str) -> None:
        """Replace the disk Nova made at ``path`` with a qcow2 overlay of ``backing``.

        ``backing`` is bless's copy of the blessed disk (qcow2 or raw, as that
        was); qemu-img needs its format named, never probed.
        """
        info, _ = processutils.execute('env', 'LC_ALL=C', 'LANG=C', 'qemu-img', 'info', '-U',
                                       '--output=json', backing)
        tmp = path + '.gc-overlay'
        processutils.execute('env', 'LC_ALL=C', 'LANG=C', 'qemu-img', 'create', '-q',
                             '-f', 'qcow2', '-F', json.loads(info)['format'], '-b', backing,
                             tmp)
        os.replace(tmp, path)

    @staticmethod
    def _load_state(dom: Any, state_path: str, resume: bool) -> float:
        """Load the device state into the paused domain; resumes it unless Nova
        still waits for network events (it resumes the guest itself then)."""
        return libvirt_live.restore_state(dom, state_path, CONF.gridcentric.resume_timeout,
                                          resume=resume)
