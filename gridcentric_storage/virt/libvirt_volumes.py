"""Volumes of the libvirt driver's running domains: hot-plug, unplug, resize,
front-end QoS and live migration (``libvirt_mirror``).

Apart from ``libvirt.py`` (domains, instance directories, live images) because
these act on one ``<disk>`` of a running domain through libvirt's block API;
:class:`VolumesMixin` is a mixin of ``LibvirtDriver``, whose ``__init__`` sets
what it declares, so ``driver.attach_volume`` and the others work as before.
Each call holds the instance's lock and keeps ``meta.json``'s volume id ->
target dev map in step with the live domain.
"""

import contextlib
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.virt import base, libvirt_mirror
from gridcentric_storage.virt.libvirt_xml import PREFIX
from gridcentric_storage.volume import qos

try:
    import libvirt
except ImportError:                    # the libvirt driver does not load then
    libvirt = None

__all__ = ['VolumesMixin']


class VolumesMixin:
    # set by LibvirtDriver.__init__
    stop_timeout: float
    _locks: concurrency.KeyedLocks

    if TYPE_CHECKING:   # LibvirtDriver's
        def _meta(self, instance_id: str) -> dict[str, Any]: ...

        def _save_meta(self, instance_id: str, meta: dict[str, Any]) -> None: ...

        def _domain(self, instance_id: str) -> Any: ...

        def _connection(self) -> Any: ...

        def _disk(self, instance_id: str, disk: base.Disk, dev: str) -> ET.Element: ...

    def attach_volume(self, instance_id: str, disk: base.Disk) -> None:
        """Hot-plug a virtio disk (live); a no-op when it is attached already."""
        with self._locks.get(instance_id):
            meta = self._meta(instance_id)
            if disk.volume_id in meta['disks']:
                return
            dom = self._domain(instance_id)
            used = {t.get('dev') for t in ET.fromstring(dom.XMLDesc(0)).iterfind(
                'devices/disk/target')} | set(meta['disks'].values())
            dev = next(d for d in ('vd' + c for c in 'abcdefghijklmnopqrstuvwxyz')
                       if d not in used)
            xml = ET.tostring(self._disk(instance_id, disk, dev), encoding='unicode')
            try:
                dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError as e:
                raise exception.DriverError(reason='cannot attach %s to %s: %s'
                                            % (disk.volume_id, instance_id, e))
            meta['disks'][disk.volume_id] = dev
            self._save_meta(instance_id, meta)

    def detach_volume(self, instance_id: str, volume_id: str) -> None:
        with self._locks.get(instance_id):
            meta = self._meta(instance_id)
            dev = meta['disks'].get(volume_id)
            if dev is None:
                return
            dom = self._domain(instance_id)
            query = "devices/disk/target[@dev='%s'].." % dev
            el = ET.fromstring(dom.XMLDesc(0)).find(query)
            if el is not None:
                try:
                    dom.detachDeviceFlags(ET.tostring(el, encoding='unicode'),
                                          libvirt.VIR_DOMAIN_AFFECT_LIVE)
                except libvirt.libvirtError as e:
                    raise exception.DriverError(reason='cannot detach %s from %s: %s'
                                                % (volume_id, instance_id, e))
                deadline = time.monotonic() + self.stop_timeout * 3
                while ET.fromstring(dom.XMLDesc(0)).find(query) is not None:
                    if time.monotonic() > deadline:     # the guest releases it (ACPI)
                        raise exception.DriverError(reason='the guest did not release %s'
                                                    % volume_id)
                    time.sleep(0.05)
            del meta['disks'][volume_id]
            self._save_meta(instance_id, meta)
            with contextlib.suppress(libvirt.libvirtError):
                self._connection().secretLookupByUsage(
                    libvirt.VIR_SECRET_USAGE_TYPE_ISCSI,
                    '%s%s-%s' % (PREFIX, instance_id, dev)).undefine()

    def extend_volume(self, instance_id: str, volume_id: str, new_size: int) -> None:
        """virDomainBlockResize, as Nova's libvirt driver does after a Cinder extend."""
        with self._locks.get(instance_id):
            dev = self._meta(instance_id)['disks'].get(volume_id)
            if dev is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            try:
                self._domain(instance_id).blockResize(
                    dev, new_size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            except libvirt.libvirtError as e:
                raise exception.DriverError(reason='libvirt did not resize %s: %s'
                                            % (volume_id, e)) from e

    def set_volume_qos(self, instance_id: str, volume_id: str,
                       limits: dict[str, int]) -> None:
        """virDomainSetBlockIoTune on the live disk, as Nova's libvirt driver does;
        every key is sent, so limits left out are lifted (0: unlimited)."""
        with self._locks.get(instance_id):
            dev = self._meta(instance_id)['disks'].get(volume_id)
            if dev is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            params = {key: int(limits.get(key, 0)) for key in qos.LIMIT_KEYS + qos.BURST_KEYS}
            try:
                self._domain(instance_id).setBlockIoTune(dev, params,
                                                         libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError as e:
                raise exception.DriverError(reason='libvirt did not throttle %s: %s'
                                            % (volume_id, e)) from e

    def migrate_volume(self, instance_id: str, volume_id: str, disk: base.Disk) -> None:
        """virDomainBlockCopy onto ``disk``'s connection, then pivot (libvirt_mirror);
        the live domain XML then names the destination."""
        with self._locks.get(instance_id):
            dev = self._meta(instance_id)['disks'].get(volume_id)
            if dev is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            libvirt_mirror.copy(self._domain(instance_id), dev, volume_id,
                                self._disk(instance_id, disk, dev), self.stop_timeout * 3)

    def cancel_volume_mirrors(self) -> list[str]:
        """At start-up: abort the block copies an interrupted live migration left in
        the running domains (``libvirt_mirror.abort_leftovers``); their volumes."""
        aborted: list[str] = []
        for dom in self._connection().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            if not dom.name().startswith(PREFIX):
                continue
            instance_id = dom.name()[len(PREFIX):]
            try:
                with self._locks.get(instance_id):
                    aborted += libvirt_mirror.abort_leftovers(
                        dom, self._meta(instance_id)['disks'])
            except (exception.NotFound, exception.Invalid):  # not this service's domain
                continue
        return aborted
