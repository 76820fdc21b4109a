"""The reference virt driver: QEMU processes driven over QMP, live images included.

Why QEMU directly (not libvirt): live images need three things libvirt does
not expose together: guest RAM in a ``memory-backend-file`` that can be
mapped ``share=on`` by the blessed VM and ``share=off`` (private, lazy,
copy-on-write) by every clone, the ``x-ignore-shared`` migration capability
that leaves that RAM out of the saved state, and ``-incoming defer`` so a
clone resumes from the state in milliseconds (RECIPES.md, "QEMU: bless and
clone").

Everything about a VM lives in its instance directory, so the compute
service can restart and find its VMs again (``qemu_process.py`` starts,
finds again and stops their QEMU processes)::

    <instances_path>/<id>/vm.json      the Layout (devices, RAM, boot)
                         /pid          QEMU's pid (checked against its cmdline)
                         /qmp.sock     QMP (qemu.qmp through virt/qmp.py)
                         /console.log  serial console
                         /qemu.log     QEMU's stderr
                         /ram          guest RAM of a spawned VM (share=on)
                         /started-as   a warm clone's: the pool slot its QEMU started in
    <live_images_path>/<live image id>/ram         read-only, never written again
                                       /state      device state (x-ignore-shared)
                                       /layout.json

Bless pauses the VM, saves its device state, reflinks (or sparse-copies) the
RAM file into the live image while still paused, and resumes the VM in the
run state it was found in. A clone can be blessed too: its RAM is a private
mapping, so it is flattened into the new live image (``qemu_flatten.py``),
which then stands alone. A caller that wants disk snapshots consistent
with memory pauses the VM (:meth:`QemuDriver.pause`), snapshots the disks,
blesses, then unpauses. Clones get their guest parameters and user data as
fw_cfg files ``opt/com.gridcentric/{guest,user_data,instance}``, which a
guest agent reads from ``/sys/firmware/qemu_fw_cfg`` after the vmgenid
change (see tools/build-test-guest.sh)::

    driver = QemuDriver(instances_path='/tmp/vms', live_images_path='/tmp/li')
    driver.spawn(base.InstanceSpec(id='vm1', name='vm1', memory_mb=256,
                                   kernel='/boot/vmlinuz', initrd='/tmp/initrd.img'))
    art = driver.bless('vm1', 'li1', [])
    driver.launch(art, base.CloneSpec(id='c1', name='c1', guest={'role': 'web'}))
"""

import functools
import json
import logging
import os
import shutil
import time
import uuid
from typing import Any

from gridcentric_storage.common import concurrency, exception
from gridcentric_storage.virt import accel as accel_mod
from gridcentric_storage.virt import base, qemu_identity, qemu_pool, qemu_process, qemu_qos
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qemu_flatten as flatten
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt.qemu_migrate import MigrationMixin
from gridcentric_storage.virt.qemu_pool_slots import PoolSlots
from gridcentric_storage.virt.qemu_process import check_id
from gridcentric_storage.volume import qos

LOG = logging.getLogger(__name__)

__all__ = ['QemuDriver', 'check_id']

_STATES = {'running': 'running', 'shutdown': 'stopped', **dict.fromkeys(
    ('paused', 'postmigrate', 'prelaunch', 'inmigrate', 'finish-migrate', 'suspended',
     'save-vm', 'restore-vm', 'debug'), 'paused')}


class QemuDriver(MigrationMixin, base.VirtDriver):
    """QEMU on this host. Options (all plain constructor arguments):

    ``instances_path``, ``live_images_path``: where VMs and live images live
    (the same file system lets bless reflink the RAM); ``qemu_binary``;
    ``accel``: 'auto' (probe KVM, fall back to TCG), 'kvm' or 'tcg';
    ``machine``, ``cpu_model`` (None: QEMU's default), ``netdev`` (backend of
    the NIC a ``mac`` asks for, e.g. 'user' or 'tap,ifname=tap0,script=no');
    ``probe_kernel`` (kernel the KVM probe boots; default newest /boot/vmlinuz-*);
    timeouts in seconds; ``checksum_ram``: record the live image RAM's sha256;
    ``warm_pool_size``: QEMU processes kept started per live image for fast
    launches (0: none; see ``qemu_pool.py``), with the state loaded too when
    ``warm_pool_restore_ahead``. Live migration is ``qemu_migrate.py``'s.
    """

    def __init__(self, instances_path: str = '/var/lib/gridcentric-storage/instances',
                 live_images_path: str = '/var/lib/gridcentric-storage/live-images',
                 qemu_binary: str = 'qemu-system-x86_64', accel: str = 'auto',
                 machine: str = 'pc', cpu_model: str | None = None, netdev: str = 'user',
                 probe_kernel: str | None = None, start_timeout: float = 30.0,
                 stop_timeout: float = 10.0, migration_timeout: float = 300.0,
                 qmp_timeout: float = 30.0, checksum_ram: bool = True,
                 warm_pool_size: int = 0, warm_pool_restore_ahead: bool = False) -> None:
        if accel not in accel_mod.MODES:
            raise exception.InvalidDriverOptions(driver='qemu', reason='accel %r' % accel)
        self.instances_path = os.path.abspath(instances_path)
        self.live_images_path = os.path.abspath(live_images_path)
        self.qemu_binary = qemu_binary
        #: Why VMs cannot run here (None: they can); published for the API's placement.
        self.hypervisor_error = None if shutil.which(qemu_binary) else '%s not found' % qemu_binary
        self.accel_mode = accel
        self.machine = machine
        self.cpu_model = cpu_model
        self.netdev = netdev
        self.probe_kernel = probe_kernel
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.migration_timeout = migration_timeout
        self.qmp_timeout = qmp_timeout
        self.checksum_ram = checksum_ram
        self._probe: accel_mod.Probe | None = None
        self._vms = qemu_process.Processes(self.instances_path, start_timeout, stop_timeout,
                                           qmp_timeout)
        self._locks = concurrency.KeyedLocks()
        self.warm_pool_size = max(warm_pool_size, 0)
        self._slots = PoolSlots(self._vms, self.live_images_path, qemu_binary,
                                lambda: self.accel, self.warm_pool_size, migration_timeout,
                                warm_pool_restore_ahead)
        self._pool = self._slots.pool

    @classmethod
    def from_config(cls, conf: Any) -> 'QemuDriver':
        """Build from oslo.config: options of a ``[qemu]`` group named like the
        constructor's arguments, when registered; paths default under ``state_path``."""
        kwargs = base.constructor_options(cls, conf, 'qemu')
        return cls(**kwargs)

    # ---- host

    def init_host(self, host: str) -> None:
        os.makedirs(self.instances_path, exist_ok=True)
        os.makedirs(self.live_images_path, exist_ok=True)
        if self.hypervisor_error:
            LOG.warning('QEMU driver on %s: no hypervisor (%s); servers will not run here '
                        '(Debian: apt install qemu-system-x86, then restart)', host,
                        self.hypervisor_error)
            return
        LOG.info('QEMU driver on %s: accel %s (%s)', host, self.accel, self.accel_reason)
        for slot_id in qemu_pool.unclaimed(self.instances_path):
            LOG.info('Removing pooled QEMU %s of a previous run', slot_id)
            self._slots.kill(slot_id)
        self._pool.start()

    def cleanup_host(self) -> None:
        """At service stop: stop the warm pool and kill its processes."""
        self._slots.stop()

    def warm_processes(self, live_image_id: str) -> int:
        """How many pooled QEMU processes of the live image are ready to launch."""
        return self._pool.ready(live_image_id)

    @property
    def accel(self) -> str:
        """'kvm' or 'tcg': configured, or probed once (cached per process)."""
        if self._probe is None:
            self._probe = accel_mod.choose(self.accel_mode, self.qemu_binary, self.probe_kernel)
        return self._probe.accel

    @property
    def accel_reason(self) -> str:
        self.accel  # noqa: B018 (resolves the probe)
        assert self._probe is not None
        return self._probe.reason

    # ---- instance files

    def _load_layout(self, instance_id: str) -> cmdline.Layout:
        try:
            with open(self._vms.file(instance_id, 'vm.json')) as f:
                return cmdline.Layout.from_json(json.load(f))
        except FileNotFoundError:
            raise exception.NotFound('Instance %s is not on this host.' % instance_id)

    def _save_layout(self, layout: cmdline.Layout) -> None:
        live.write_file(self._vms.file(layout.id, 'vm.json'),
                        json.dumps(layout.to_json(), indent=1))

    def _write_secrets(self, layout: cmdline.Layout) -> dict[str, str]:
        return live.write_secrets(self._vms.dir(layout.id), layout)

    def _layout_disks(self, disks: list[base.Disk]) -> list[cmdline.DiskSlot]:
        return [cmdline.DiskSlot(volume_id=d.volume_id, index=i,
                                 slot=cmdline.FIRST_DISK_SLOT + i,
                                 connection_info=d.connection_info, read_only=d.read_only)
                for i, d in enumerate(disks)]

    def _info(self, layout: cmdline.Layout, pid: int | None, state: str,
              **extra: Any) -> base.InstanceInfo:
        extra.setdefault('accel', layout.accel)
        if layout.live_image_id:
            extra.setdefault('live_image_id', layout.live_image_id)
        return base.InstanceInfo(id=layout.id, state=state, pid=pid,
                                 instance_dir=self._vms.dir(layout.id),
                                 console_path=self._vms.file(layout.id, 'console.log'),
                                 extra=extra)

    # ---- VirtDriver: instances

    def spawn(self, instance: base.InstanceSpec) -> base.InstanceInfo:
        with self._locks.get(instance.id):
            directory = self._vms.new_dir(instance.id)
            try:
                layout = cmdline.Layout(
                    id=instance.id, name=instance.name, memory_mb=instance.memory_mb,
                    vcpus=instance.vcpus, accel=self.accel, machine=self.machine,
                    cpu=self.cpu_model, disks=self._layout_disks(instance.disks),
                    mac=instance.mac, netdev=self.netdev, kernel=instance.kernel,
                    initrd=instance.initrd, cmdline=instance.cmdline, identity_port=True)
                self._save_layout(layout)
                argv = cmdline.build_argv(
                    self.qemu_binary, layout, ram_path=os.path.join(directory, 'ram'),
                    share=True, qmp_path=os.path.join(directory, 'qmp.sock'),
                    console_path=os.path.join(directory, 'console.log'),
                    vmgenid=instance.vmgenid, secret_files=self._write_secrets(layout))
                with self._vms.start(layout.id, argv) as mon:
                    for slot in layout.disks:
                        qemu_qos.apply(mon, slot)
                    pid = self._vms.pid(instance.id)
            except BaseException:
                self._vms.kill(instance.id)
                shutil.rmtree(directory, ignore_errors=True)
                raise
            return self._info(layout, pid, 'running')

    def destroy(self, instance_id: str) -> None:
        with self._locks.get(instance_id):
            self._vms.kill(instance_id)
            shutil.rmtree(self._vms.dir(instance_id), ignore_errors=True)

    def get_info(self, instance_id: str) -> base.InstanceInfo:
        try:
            layout = self._load_layout(instance_id)
        except exception.NotFound:
            return base.InstanceInfo(id=instance_id, state='stopped')
        pid = self._vms.pid(instance_id)
        if pid is None:
            return self._info(layout, None, 'stopped', reason=self._vms.log_tail(instance_id))
        try:
            with self._vms.monitor(instance_id) as mon:
                status = mon.cmd('query-status')['status']
        except exception.QmpError as e:
            return self._info(layout, pid, 'running', qmp_error=e.message)
        return self._info(layout, pid, _STATES.get(status, 'crashed'), qemu_status=status)

    def list_instances(self) -> list[str]:
        try:
            names = os.listdir(self.instances_path)
        except FileNotFoundError:
            return []
        return sorted(n for n in names
                      if os.path.exists(os.path.join(self.instances_path, n, 'vm.json')))

    def get_console_output(self, instance_id: str, length: int | None = None) -> str:
        path = self._vms.file(instance_id, 'console.log')
        if not os.path.exists(path):
            raise exception.NotFound('Instance %s is not on this host.' % instance_id)
        return live.tail_lines(path, length)

    def pause(self, instance_id: str) -> None:
        """QMP ``stop`` (e.g. to snapshot disks consistently before :meth:`bless`)."""
        with self._locks.get(instance_id), self._vms.monitor(instance_id) as mon:
            mon.cmd('stop')

    def unpause(self, instance_id: str) -> None:
        with self._locks.get(instance_id), self._vms.monitor(instance_id) as mon:
            mon.cmd('cont')

    # ---- live images

    #: A clone's bless flattens it (qemu_flatten.py); it takes ``resume_after_capture``.
    flattens_clones = True

    def bless(self, instance_id: str, live_image_id: str, snapshot_disks: list[base.Disk],
              resume_after_capture: bool = False) -> base.LiveImageArtifacts:
        """``resume_after_capture``: a caller that paused a clone to snapshot its
        disks lets it run again as soon as its memory is captured, not after the
        whole flatten (a VM's bless captures and returns at once: no change)."""
        check_id('live image', live_image_id)
        with self._locks.get(instance_id), self._locks.get('live-image:' + live_image_id):
            layout = self._load_layout(instance_id)
            if len(snapshot_disks) != len(layout.disks):
                raise exception.DriverError(
                    reason='instance %s has %d disk(s) but %d snapshot(s) were given'
                    % (instance_id, len(layout.disks), len(snapshot_disks)))
            if self._vms.pid(instance_id) is None:
                raise exception.InvalidState(resource='Instance', id=instance_id,
                                             state='stopped', reason='only a running VM '
                                             'can be blessed')
            final = os.path.join(self.live_images_path, live_image_id)
            if os.path.exists(final):
                raise exception.Conflict(reason='live image %s already exists' % live_image_id)
            os.makedirs(self.live_images_path, exist_ok=True)
            work = final + '.blessing'
            shutil.rmtree(work, ignore_errors=True)
            os.mkdir(work, 0o750)
            try:
                with self._vms.monitor(instance_id) as mon:
                    if layout.live_image_id:    # a clone: its RAM is a private mapping
                        timing = flatten.save_clone_state(
                            mon, layout, work, qemu_binary=self.qemu_binary,
                            timeout=self.migration_timeout, start_timeout=self.start_timeout,
                            stop_timeout=self.stop_timeout, qmp_timeout=self.qmp_timeout,
                            resume_after_capture=resume_after_capture)
                    else:
                        timing = live.save_state(mon, self._vms.file(instance_id, 'ram'),
                                                 work, self.migration_timeout)
                extra: dict[str, Any] = dict(timing, accel=layout.accel, machine=layout.machine,
                                             source_instance=instance_id)
                if layout.live_image_id:
                    extra['flattened_from'] = layout.live_image_id
                ram = os.path.join(work, 'ram')
                os.chmod(ram, live.frozen_ram_mode())
                extra['ram_size'] = os.stat(ram).st_size
                if self.checksum_ram:
                    extra['ram_sha256'] = live.sha256(ram)
                image_layout = cmdline.Layout.from_json(layout.to_json())
                for slot, disk in zip(image_layout.disks, snapshot_disks, strict=True):
                    slot.volume_id = disk.volume_id
                    slot.connection_info = disk.connection_info
                    slot.read_only = disk.read_only
                image_layout.kernel = image_layout.initrd = image_layout.cmdline = None
                image_layout.live_image_id = None    # a flattened clone's needs no parent
                meta = {'layout': image_layout.to_json(), 'extra': extra}
                live.write_file(os.path.join(work, 'layout.json'), json.dumps(meta, indent=1))
                os.rename(work, final)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
        return base.LiveImageArtifacts(
            live_image_id=live_image_id, directory=final,
            memory_path=os.path.join(final, 'ram'), state_path=os.path.join(final, 'state'),
            memory_mb=layout.memory_mb, vcpus=layout.vcpus, disks=list(snapshot_disks),
            extra=extra)

    def launch(self, artifacts: base.LiveImageArtifacts,
               clone: base.CloneSpec) -> base.InstanceInfo:
        start = time.monotonic()
        image = live.image_layout(artifacts)
        if len(clone.disks) != len(image.disks):
            raise exception.DriverError(
                reason='live image %s has %d disk(s); the clone needs as many copy-on-write '
                'disks, got %d' % (artifacts.live_image_id, len(image.disks), len(clone.disks)))
        if image.accel == 'kvm' and self.accel != 'kvm':
            raise exception.DriverError(reason='live image %s was blessed under KVM, which '
                                        'does not work here' % artifacts.live_image_id)
        layout = cmdline.Layout.from_json(image.to_json())
        layout.id, layout.name = clone.id, clone.name
        layout.live_image_id = artifacts.live_image_id
        if layout.mac:
            layout.mac = clone.mac or '52:54:00:%02x:%02x:%02x' % tuple(os.urandom(3))
        for slot, disk in zip(layout.disks, clone.disks, strict=True):
            slot.volume_id, slot.read_only = disk.volume_id, disk.read_only
            slot.connection_info = disk.connection_info
        with self._locks.get(clone.id):
            # A pooled QEMU has its own vmgenid: only a clone that asks for none
            claimed = None if clone.vmgenid or not self.warm_pool_size else \
                self._slots.claim(artifacts, layout, clone, lambda: self._save_layout(layout))
            if claimed is not None:
                end = time.monotonic()
                return self._info(layout, self._vms.pid(clone.id), 'running',
                                  launch_seconds=round(end - start, 4),
                                  process_seconds=round(claimed.built - start, 4),
                                  restore_seconds=round(claimed.loaded - claimed.built, 4),
                                  warm=True, restored_ahead=claimed.ahead,
                                  vmgenid=qemu_pool.slot_vmgenid(claimed.slot_id))
            vmgenid = clone.vmgenid or str(uuid.uuid4())
            directory = self._vms.new_dir(clone.id)
            try:
                self._save_layout(layout)
                identity = live.guest_file_contents(clone, layout.mac)
                with self._vms.start(layout.id, cmdline.build_argv(
                        self.qemu_binary, layout, ram_path=artifacts.memory_path,
                        share=False, qmp_path=os.path.join(directory, 'qmp.sock'),
                        console_path=os.path.join(directory, 'console.log'),
                        vmgenid=vmgenid, incoming=True,
                        secret_files=self._write_secrets(layout),
                        fw_cfg_files=live.write_guest_files(directory, identity))) as mon:
                    started = time.monotonic()
                    for slot in layout.disks:    # still stopped (-S): before any I/O
                        qemu_qos.apply(mon, slot)
                    loaded = live.restore_state(mon, artifacts.state_path,
                                                self.migration_timeout)
                if layout.identity_port:       # after cont: the guest reads it when it runs
                    qemu_identity.tell(directory, identity)
                pid = self._vms.pid(clone.id)
            except BaseException as e:
                tail = self._vms.log_tail(clone.id)
                self._vms.kill(clone.id)
                shutil.rmtree(directory, ignore_errors=True)
                if isinstance(e, exception.DriverError) and tail and tail not in e.message:
                    raise exception.DriverError(reason='%s (QEMU: %s)' % (e.message, tail))
                raise
            end = time.monotonic()
        return self._info(layout, pid, 'running', launch_seconds=round(end - start, 4),
                          process_seconds=round(started - start, 4),
                          restore_seconds=round(loaded - started, 4), warm=False,
                          vmgenid=vmgenid)

    def discard(self, artifacts: base.LiveImageArtifacts) -> None:
        check_id('live image', artifacts.live_image_id)
        with self._locks.get('live-image:' + artifacts.live_image_id):
            self._pool.drain(artifacts.live_image_id)    # no process maps its RAM now
            # A clone's bless cut short by a stop may have left its helper QEMU.
            flatten.kill_helper(os.path.join(self.live_images_path,
                                             artifacts.live_image_id + '.blessing'))
            live.remove_live_image(self.live_images_path, artifacts)

    # ---- volumes

    def attach_volume(self, instance_id: str, disk: base.Disk) -> None:
        """Hot-plug a volume as a virtio disk; a no-op when it is attached already."""
        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            if layout.disk_of(disk.volume_id) is not None:
                return
            slot = cmdline.DiskSlot(volume_id=disk.volume_id,
                                    index=max((d.index for d in layout.disks), default=-1) + 1,
                                    slot=cmdline.free_pci_slot(layout),
                                    connection_info=disk.connection_info,
                                    read_only=disk.read_only)
            with self._vms.monitor(instance_id) as mon:
                live.plug_disk(mon, slot)
                qemu_qos.apply(mon, slot)
            layout.disks.append(slot)
            self._save_layout(layout)

    def detach_volume(self, instance_id: str, volume_id: str) -> None:
        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            slot = layout.disk_of(volume_id)
            if slot is None:
                return
            with self._vms.monitor(instance_id) as mon:
                live.unplug_disk(mon, slot, self.qmp_timeout)
            layout.disks.remove(slot)
            self._save_layout(layout)

    def extend_volume(self, instance_id: str, volume_id: str, new_size: int) -> None:
        """``block_resize`` to the size the backend gave the volume: QEMU re-reads it
        and the guest gets a capacity-change notice (virtio-blk config interrupt)."""
        with self._locks.get(instance_id):
            slot = self._load_layout(instance_id).disk_of(volume_id)
            if slot is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            with self._vms.monitor(instance_id) as mon:
                try:
                    mon.cmd('block_resize', **{'node-name': slot.node, 'size': new_size})
                except exception.QmpError as e:
                    raise exception.DriverError(reason='QEMU did not resize %s: %s'
                                                % (volume_id, e.message)) from e

    def set_volume_qos(self, instance_id: str, volume_id: str,
                       limits: dict[str, int]) -> None:
        """``block_set_io_throttle`` on the running disk; the layout keeps the limits."""
        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            slot = layout.disk_of(volume_id)
            if slot is None:
                raise exception.DriverError(reason='volume %s is not attached to %s'
                                            % (volume_id, instance_id))
            with self._vms.monitor(instance_id) as mon:
                qemu_qos.apply(mon, slot, limits, always=True)
            slot.connection_info = qos.connection_with(slot.connection_info, limits)
            self._save_layout(layout)

    def migrate_volume(self, instance_id: str, volume_id: str, disk: base.Disk) -> None:
        """Mirror the volume's disk onto ``disk``'s connection and pivot, the guest
        running throughout (``qemu_mirror``); the layout then names the new connection."""
        from gridcentric_storage.virt import qemu_mirror

        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            qemu_mirror.migrate(lambda: self._vms.monitor(instance_id), layout, volume_id,
                                disk, self.qmp_timeout)
            self._save_layout(layout)

    def cancel_volume_mirrors(self) -> list[str]:
        from gridcentric_storage.virt import qemu_mirror

        cancelled: list[str] = []
        for instance_id in self.list_instances() if not self.hypervisor_error else []:
            if self._vms.pid(instance_id) is None:
                continue
            try:
                with self._locks.get(instance_id):
                    cancelled += qemu_mirror.cancel_leftovers(
                        functools.partial(self._vms.monitor, instance_id),
                        self._load_layout(instance_id), self.qmp_timeout)
            except Exception:       # a guest we cannot reach must not stop the service
                LOG.exception('Could not look for an interrupted volume migration in %s',
                              instance_id)
        return cancelled
