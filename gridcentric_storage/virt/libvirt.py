"""The virt driver through libvirt: the QEMU driver's live images, as libvirt domains.

Domains are named ``gc-<instance id>`` and are *transient* (``createXML``): a
domain exists exactly while its QEMU runs, so a clone never lingers as a
definition that would replay ``-incoming`` against a discarded live image.
``<instances_path>/<id>/`` holds ``domain.xml`` (what the domain was created
from), ``meta.json`` (live image, accel, volume id -> target dev),
``console.log`` (``<serial type='file'>``), ``ram`` (RAM of a spawned VM,
``share=on``) and a clone's ``fw-*`` files (``<sysinfo type='fwcfg'>``); a
live image adds the blessed VM's migratable XML to the QEMU driver's files.

The domain XML is built in ``libvirt_xml.py`` (which says why guest RAM is
given by ``<qemu:commandline>``); volumes of a running domain (hot-plug,
resize, QoS, live migration) are ``libvirt_volumes.py``'s; bless and launch
move device state through QMP passthrough and ``fd:`` URIs in
``libvirt_live.py``. A clone is created with ``VIR_DOMAIN_START_PAUSED`` and
``-incoming defer`` and resumed once its state is loaded.

QEMU runs as libvirt's DAC base label (``libvirt-qemu`` on Debian): instance
directories are chowned to it, and ``instances_path``/``live_images_path`` and
their parents must be searchable by it (a live image's RAM is group QEMU's:
see ``libvirt_live.seal_ram``).
"""

import contextlib
import json
import logging
import os
import shutil
import time
import xml.etree.ElementTree as ET
from functools import partial
from typing import Any, cast

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.virt import accel as accel_mod
from gridcentric_storage.virt import base, libvirt_live, libvirt_xml
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt.libvirt_volumes import VolumesMixin
from gridcentric_storage.virt.libvirt_xml import PREFIX, disk_xml
from gridcentric_storage.virt.qemu_process import check_id, make_instance_dir

try:
    import libvirt
    import libvirt_qemu
except ImportError:                    # the driver then fails to load, with this reason
    # (libvirt_qemu is only used by libvirt_live, but the driver needs it all the same)
    libvirt = libvirt_qemu = None

LOG = logging.getLogger(__name__)

__all__ = ['LibvirtDriver', 'disk_xml']

_STATES = {1: 'running', 2: 'running', 3: 'paused', 4: 'stopped', 5: 'stopped',
           6: 'crashed', 7: 'paused'}  # virDomainState -> InstanceInfo.state


class LibvirtDriver(VolumesMixin, base.VirtDriver):
    """QEMU through libvirt. Options (plain constructor arguments, or ``[libvirt]``):

    ``uri``; ``instances_path``, ``live_images_path``; ``accel``: 'auto' (probe
    KVM, fall back to TCG; the domain type follows), 'kvm' or 'tcg';
    ``emulator`` (QEMU binary), ``machine``, ``cpu_model``; ``network``: the
    libvirt network of the NIC a ``mac`` asks for (None: user networking);
    ``probe_kernel``; timeouts in seconds; ``checksum_ram``.
    """

    def __init__(self, uri: str = 'qemu:///system',
                 instances_path: str = '/var/lib/gridcentric-storage/instances',
                 live_images_path: str = '/var/lib/gridcentric-storage/live-images',
                 accel: str = 'auto', emulator: str = 'qemu-system-x86_64',
                 machine: str = 'pc', cpu_model: str | None = None,
                 network: str | None = None, probe_kernel: str | None = None,
                 stop_timeout: float = 10.0, migration_timeout: float = 300.0,
                 checksum_ram: bool = True) -> None:
        if libvirt is None:
            raise exception.InvalidDriverOptions(driver='libvirt', reason='the libvirt Python '
                                                 'bindings are missing (python3-libvirt)')
        if accel not in accel_mod.MODES:
            raise exception.InvalidDriverOptions(driver='libvirt', reason='accel %r' % accel)
        self.uri = uri
        self.instances_path = os.path.abspath(instances_path)
        self.live_images_path = os.path.abspath(live_images_path)
        self.accel_mode = accel
        self.emulator = shutil.which(emulator) or emulator
        #: Why this host cannot run VMs (None: it can); see QemuDriver.
        self.hypervisor_error = (None if os.path.isabs(self.emulator)
                                 and os.access(self.emulator, os.X_OK)
                                 else '%s not found' % emulator)
        self.machine, self.cpu_model, self.network = machine, cpu_model, network
        self.probe_kernel = probe_kernel
        self.stop_timeout, self.migration_timeout = stop_timeout, migration_timeout
        self.checksum_ram = checksum_ram
        self._probe: accel_mod.Probe | None = None
        self._conn: Any = None
        self._locks = concurrency.KeyedLocks()

    @classmethod
    def from_config(cls, conf: Any) -> 'LibvirtDriver':
        """Options of a ``[libvirt]`` group named like the constructor's arguments."""
        kwargs = base.constructor_options(cls, conf, 'libvirt')
        return cls(**kwargs)

    # ---- host and connection

    def init_host(self, host: str) -> None:
        os.makedirs(self.instances_path, exist_ok=True)
        os.makedirs(self.live_images_path, exist_ok=True)
        self._connection()
        if self.hypervisor_error:
            LOG.warning('libvirt driver on %s: no hypervisor (%s); servers and live images '
                        'will not run here', host, self.hypervisor_error)
            return
        probe = self._accel_probe()
        LOG.info('libvirt driver on %s (%s): accel %s (%s)', host, self.uri, probe.accel,
                 probe.reason)

    def _accel_probe(self) -> accel_mod.Probe:
        if self._probe is None:
            self._probe = accel_mod.choose(self.accel_mode, self.emulator, self.probe_kernel)
        return self._probe

    @property
    def accel(self) -> str:
        return self._accel_probe().accel

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None or not conn.isAlive():
            libvirt.registerErrorHandler(lambda *_: None, None)  # errors raise; no stderr
            try:
                conn = self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as e:
                raise exception.DriverError(reason='cannot connect to libvirt at %s: %s'
                                            % (self.uri, e))
        return conn

    def _qemu_owner(self, domain_type: str) -> tuple[int, int] | None:
        """uid, gid QEMU runs as (libvirt's DAC base label), when we may chown."""
        if os.geteuid() != 0:
            return None
        caps = ET.fromstring(self._connection().getCapabilities())
        for label in caps.iterfind("host/secmodel[model='dac']/baselabel"):
            if label.get('type') == domain_type and label.text:
                uid, _, gid = label.text.replace('+', '').partition(':')
                return int(uid), int(gid)
        return None

    def _lookup(self, instance_id: str) -> Any:
        try:
            return self._connection().lookupByName(PREFIX + check_id('instance', instance_id))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise exception.DriverError(reason='libvirt: %s' % e)

    def _domain(self, instance_id: str) -> Any:
        dom = self._lookup(instance_id)
        if dom is None:
            raise exception.InvalidState(resource='Instance', id=instance_id, state='stopped',
                                         reason='its domain %s%s is not running'
                                         % (PREFIX, instance_id))
        return dom

    # ---- instance directories

    def _dir(self, instance_id: str) -> str:
        return os.path.join(self.instances_path, check_id('instance', instance_id))

    def _file(self, instance_id: str, name: str) -> str:
        return os.path.join(self._dir(instance_id), name)

    def _meta(self, instance_id: str) -> dict[str, Any]:
        try:
            with open(self._file(instance_id, 'meta.json')) as f:
                return cast(dict[str, Any], json.load(f))
        except FileNotFoundError:
            raise exception.NotFound('Instance %s is not on this host.' % instance_id)

    def _save_meta(self, instance_id: str, meta: dict[str, Any]) -> None:
        live.write_file(self._file(instance_id, 'meta.json'), json.dumps(meta, indent=1))

    def _new_instance_dir(self, instance_id: str, domain_type: str) -> str:
        directory = self._dir(instance_id)
        make_instance_dir(self.instances_path, directory, instance_id)
        owner = self._qemu_owner(domain_type)
        if owner:
            os.chown(directory, *owner)             # QEMU creates the RAM file here
        return directory

    def _info(self, instance_id: str, state: str, dom: Any = None,
              **extra: Any) -> base.InstanceInfo:
        meta = self._meta(instance_id)
        extra.setdefault('accel', meta['accel'])
        extra['domain'] = PREFIX + instance_id
        if meta.get('live_image_id'):
            extra.setdefault('live_image_id', meta['live_image_id'])
        pid = None
        if dom is not None:
            with contextlib.suppress(OSError, ValueError):
                with open('/run/libvirt/qemu/%s.pid' % dom.name()) as f:
                    pid = int(f.read().strip())
        return base.InstanceInfo(id=instance_id, state=state, pid=pid,
                                 instance_dir=self._dir(instance_id),
                                 console_path=self._file(instance_id, 'console.log'),
                                 extra=extra)

    # ---- domain XML

    def _new_secret(self, instance_id: str, dev: str, password: str) -> str:
        xml = ("<secret ephemeral='yes' private='yes'><usage type='iscsi'><target>%s%s-%s"
               "</target></usage></secret>" % (PREFIX, instance_id, dev))
        secret = self._connection().secretDefineXML(xml, 0)
        secret.setValue(password.encode(), 0)
        return cast(str, secret.UUIDString())

    def _drop_secrets(self, instance_id: str) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            for secret in self._connection().listAllSecrets(0):
                if (secret.usageID() or '').startswith('%s%s-' % (PREFIX, instance_id)):
                    secret.undefine()

    def _disk(self, instance_id: str, disk: base.Disk, dev: str) -> ET.Element:
        data = disk.connection_info.get('data') or {}
        secret = None
        if (disk.connection_info.get('driver_volume_type') == 'iscsi'
                and data.get('auth_username') and data.get('auth_password')):
            secret = self._new_secret(instance_id, dev, data['auth_password'])
        return disk_xml(disk.connection_info, dev, disk.read_only, secret)

    def spawn_xml(self, instance: base.InstanceSpec, directory: str, domain_type: str
                  ) -> ET.Element:
        return libvirt_xml.spawn_xml(
            instance, directory, domain_type, machine=self.machine, emulator=self.emulator,
            cpu_model=self.cpu_model, network=self.network,
            disk=partial(self._disk, instance.id))

    def _create(self, instance_id: str, root: ET.Element, paused: bool) -> Any:
        xml = ET.tostring(root, encoding='unicode')
        live.write_file(self._file(instance_id, 'domain.xml'), xml)
        flags = libvirt.VIR_DOMAIN_START_PAUSED if paused else 0
        try:
            return self._connection().createXML(xml, flags)
        except libvirt.libvirtError as e:
            raise exception.DriverError(reason='libvirt cannot start %s%s: %s'
                                        % (PREFIX, instance_id, e))

    # ---- VirtDriver: instances

    def spawn(self, instance: base.InstanceSpec) -> base.InstanceInfo:
        domain_type = 'kvm' if self.accel == 'kvm' else 'qemu'
        with self._locks.get(instance.id):
            directory = self._new_instance_dir(instance.id, domain_type)
            try:
                self._save_meta(instance.id, {
                    'id': instance.id, 'name': instance.name, 'accel': self.accel,
                    'memory_mb': instance.memory_mb, 'vcpus': instance.vcpus,
                    'disks': {d.volume_id: 'vd' + chr(ord('a') + i)
                              for i, d in enumerate(instance.disks)}})
                dom = self._create(instance.id, self.spawn_xml(instance, directory,
                                                               domain_type), False)
            except BaseException:
                self._teardown(instance.id)
                raise
            return self._info(instance.id, 'running', dom)

    def _teardown(self, instance_id: str) -> None:
        dom = self._lookup(instance_id)
        if dom is not None:
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isPersistent():
                    dom.undefine()
        self._drop_secrets(instance_id)
        shutil.rmtree(self._dir(instance_id), ignore_errors=True)

    def destroy(self, instance_id: str) -> None:
        with self._locks.get(instance_id):
            self._teardown(instance_id)

    def get_info(self, instance_id: str) -> base.InstanceInfo:
        try:
            self._meta(instance_id)
        except exception.NotFound:
            return base.InstanceInfo(id=instance_id, state='stopped')
        dom = self._lookup(instance_id)
        if dom is None:
            return self._info(instance_id, 'stopped')
        state, reason = dom.state()
        return self._info(instance_id, _STATES.get(state, 'stopped'), dom,
                          libvirt_state=[state, reason])

    def list_instances(self) -> list[str]:
        names = {d.name()[len(PREFIX):] for d in self._connection().listAllDomains(0)
                 if d.name().startswith(PREFIX)}
        with contextlib.suppress(FileNotFoundError):
            names.update(n for n in os.listdir(self.instances_path)
                         if os.path.exists(os.path.join(self.instances_path, n, 'meta.json')))
        return sorted(names)

    def get_console_output(self, instance_id: str, length: int | None = None) -> str:
        path = self._file(instance_id, 'console.log')
        if not os.path.exists(path):
            raise exception.NotFound('Instance %s is not on this host.' % instance_id)
        return live.tail_lines(path, length)

    def pause(self, instance_id: str) -> None:
        with self._locks.get(instance_id):
            self._domain(instance_id).suspend()

    def unpause(self, instance_id: str) -> None:
        with self._locks.get(instance_id):
            dom = self._domain(instance_id)
            if dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                dom.resume()

    # ---- live images

    def bless(self, instance_id: str, live_image_id: str,
              snapshot_disks: list[base.Disk]) -> base.LiveImageArtifacts:
        check_id('live image', live_image_id)
        with self._locks.get(instance_id), self._locks.get('live-image:' + live_image_id):
            meta = self._meta(instance_id)
            if meta.get('live_image_id'):
                raise exception.DriverError(
                    reason='instance %s is a clone of live image %s: its RAM is a private '
                    'copy-on-write mapping and cannot be blessed' % (instance_id,
                                                                     meta['live_image_id']))
            if len(snapshot_disks) != len(meta['disks']):
                raise exception.DriverError(
                    reason='instance %s has %d disk(s) but %d snapshot(s) were given'
                    % (instance_id, len(meta['disks']), len(snapshot_disks)))
            dom = self._domain(instance_id)
            final = os.path.join(self.live_images_path, live_image_id)
            if os.path.exists(final):
                raise exception.Conflict(reason='live image %s already exists' % live_image_id)
            os.makedirs(self.live_images_path, exist_ok=True)
            work = final + '.blessing'
            shutil.rmtree(work, ignore_errors=True)
            os.mkdir(work, 0o755)                   # QEMU of clones reads ram and state
            try:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE)
                extra: dict[str, Any] = dict(
                    libvirt_live.save_state(dom, self._file(instance_id, 'ram'), work,
                                            self.migration_timeout),
                    accel=meta['accel'], source_instance=instance_id)
                extra.update(libvirt_live.seal_ram(
                    os.path.join(work, 'ram'),
                    self._qemu_owner('kvm' if meta['accel'] == 'kvm' else 'qemu'),
                    self.checksum_ram))
                live.write_file(os.path.join(work, 'domain.xml'), xml)
                layout = {'id': instance_id, 'name': meta['name'], 'accel': meta['accel'],
                          'memory_mb': meta['memory_mb'], 'vcpus': meta['vcpus'],
                          'disks': [], 'driver': 'libvirt'}
                live.write_file(os.path.join(work, 'layout.json'),
                                json.dumps({'layout': layout, 'extra': extra}, indent=1))
                os.rename(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        return base.LiveImageArtifacts(
            live_image_id=live_image_id, directory=final,
            memory_path=os.path.join(final, 'ram'), state_path=os.path.join(final, 'state'),
            memory_mb=meta['memory_mb'], vcpus=meta['vcpus'], disks=list(snapshot_disks),
            extra=extra)

    def launch(self, artifacts: base.LiveImageArtifacts,
               clone: base.CloneSpec) -> base.InstanceInfo:
        start = time.monotonic()
        root, disks = libvirt_xml.blessed_xml(artifacts)
        if len(clone.disks) != len(disks):
            raise exception.DriverError(
                reason='live image %s has %d disk(s); the clone needs as many copy-on-write '
                'disks, got %d' % (artifacts.live_image_id, len(disks), len(clone.disks)))
        accel = artifacts.extra.get('accel', 'tcg')
        if accel == 'kvm' and self.accel != 'kvm':
            raise exception.DriverError(reason='live image %s was blessed under KVM, which '
                                        'does not work here' % artifacts.live_image_id)
        with self._locks.get(clone.id):
            directory = self._new_instance_dir(clone.id, root.get('type', 'qemu'))
            try:
                libvirt_xml.clone_xml(root, artifacts, clone, directory, disks,
                                      partial(self._disk, clone.id))
                targets = [d.find('target') for d in disks]
                self._save_meta(clone.id, {
                    'id': clone.id, 'name': clone.name, 'accel': accel,
                    'live_image_id': artifacts.live_image_id,
                    'memory_mb': artifacts.memory_mb, 'vcpus': artifacts.vcpus,
                    'disks': {d.volume_id: t.get('dev') for d, t in zip(
                        clone.disks, targets, strict=True) if t is not None}})
                dom = self._create(clone.id, root, True)
                started = time.monotonic()
                loaded = libvirt_live.restore_state(dom, artifacts.state_path,
                                                    self.migration_timeout)
            except libvirt.libvirtError as e:
                self._teardown(clone.id)
                raise exception.DriverError(reason='clone %s of live image %s failed to '
                                            'resume: %s' % (clone.id, artifacts.live_image_id, e))
            except BaseException:
                self._teardown(clone.id)
                raise
            end = time.monotonic()
        return self._info(clone.id, 'running', dom, launch_seconds=round(end - start, 4),
                          process_seconds=round(started - start, 4),
                          restore_seconds=round(loaded - started, 4))

    def discard(self, artifacts: base.LiveImageArtifacts) -> None:
        check_id('live image', artifacts.live_image_id)
        with self._locks.get('live-image:' + artifacts.live_image_id):
            live.remove_live_image(self.live_images_path, artifacts)
