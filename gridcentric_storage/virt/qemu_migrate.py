"""Live migration of a running VM of the QEMU driver to the QEMU of another host.

The destination starts the same machine (one :class:`Layout`, the same vmgenid
and fw_cfg files, its own connections of the disks) with ``-incoming defer``,
listens with ``migrate-incoming tcp:<addr>:0`` and answers the port QEMU got;
the source sends with ``migrate`` and the destination runs the guest with
``cont`` once it is all there.

Every page goes, whatever the RAM's backing: ``x-ignore-shared`` (which a bless
or a clone's launch turned on in this QEMU, and which would leave out a
spawned VM's ``share=on`` RAM) is turned off first. A clone's destination maps
its live image's RAM file ``share=off`` as its source does, so the machine is
the same, but the pages come from the stream.

The migration runs in QEMU, not in this process: a restart of the compute
service finds it going on (or done) and :meth:`MigrationMixin.cancel_outgoing`
stops it. Polls open a short QMP session each time, so the VM's other QMP users
are not locked out for the length of a migration.
"""

import base64
import os
import shutil
import time
from typing import TYPE_CHECKING, Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_qos, qmp
from gridcentric_storage.virt import qemu_cmdline as cmdline
from gridcentric_storage.virt import qemu_live as live

__all__ = ['MigrationMixin']

ALL_PAGES = [{'capability': 'x-ignore-shared', 'state': False},
             # A busy guest dirties pages faster than TCG sends them: slow its vCPUs.
             {'capability': 'auto-converge', 'state': True}]
#: The end of the source's console log the destination's starts with (bytes).
CONSOLE_CARRIED = 1 << 20
_ACTIVE = ('setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'cancelling')


def _argv_of(pid: int) -> list[str]:
    with open('/proc/%d/cmdline' % pid, 'rb') as f:
        return [a.decode(errors='replace') for a in f.read().split(b'\0') if a]


def _machine_files(argv: list[str]) -> tuple[str | None, dict[str, str]]:
    """The vmgenid and the fw_cfg files (name under the prefix -> file name) of a
    running QEMU, from its command line: what the guest already saw."""
    vmgenid, files = None, {}
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag == '-device' and value.startswith('vmgenid,'):
            for option in value.split(',')[1:]:
                if option.startswith('guid='):
                    vmgenid = option[len('guid='):]
        elif flag == '-fw_cfg' and value.startswith('name=' + cmdline.FW_CFG_PREFIX):
            name_part, _, file_part = value.partition(',file=')
            files[name_part[len('name=' + cmdline.FW_CFG_PREFIX):]] = \
                os.path.basename(file_part.replace(',,', ','))
    return vmgenid, files


def _tcp_uri(host: str, port: int) -> str:
    return 'tcp:%s:%d' % ('[%s]' % host if ':' in host else host, port)


class MigrationMixin:
    """The four migration methods of the virt contract, for ``QemuDriver``."""

    if TYPE_CHECKING:    # QemuDriver's
        _vms: Any
        _locks: Any
        qemu_binary: str
        qmp_timeout: float
        migration_timeout: float

        @property
        def accel(self) -> str: ...

        def _load_layout(self, instance_id: str) -> cmdline.Layout: ...
        def _save_layout(self, layout: cmdline.Layout) -> None: ...
        def _write_secrets(self, layout: cmdline.Layout) -> dict[str, str]: ...
        def _info(self, layout: cmdline.Layout, pid: int | None, state: str,
                  **extra: Any) -> base.InstanceInfo: ...

    # ---- source
    def describe_outgoing(self, instance_id: str) -> dict[str, Any]:
        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            pid = self._vms.pid(instance_id)
            if pid is None:
                raise exception.InvalidState(resource='Instance', id=instance_id,
                                             state='stopped',
                                             reason='only a running VM can be migrated')
            vmgenid, names = _machine_files(_argv_of(pid))
            files = {}
            for name, file_name in names.items():
                with open(self._vms.file(instance_id, file_name), 'rb') as f:
                    files[name] = {'file': file_name,
                                   'data': base64.b64encode(f.read()).decode()}
            # What the guest printed so far: the console reads on where it was.
            with open(self._vms.file(instance_id, 'console.log'), 'rb') as f:
                f.seek(max(os.fstat(f.fileno()).st_size - CONSOLE_CARRIED, 0))
                console = base64.b64encode(f.read()).decode()
            return {'layout': layout.to_json(), 'vmgenid': vmgenid, 'fw_cfg': files,
                    'console': console}

    def migrate_out(self, instance_id: str, uri: str, timeout: float) -> dict[str, Any]:
        with self._locks.get(instance_id):
            with self._vms.monitor(instance_id) as mon:
                mon.cmd('migrate-set-capabilities', capabilities=ALL_PAGES)
                mon.cmd('migrate', uri=uri)
            deadline = time.monotonic() + timeout
            while True:
                info = self._query(instance_id)
                status = info.get('status')
                if status == 'completed' and self._sent(instance_id):
                    ram = info.get('ram') or {}
                    return {'total_seconds': round(info.get('total-time', 0) / 1000, 3),
                            'downtime_ms': info.get('downtime'),
                            'transferred_mb': round(ram.get('transferred', 0) / 2**20, 1)}
                if status in ('failed', 'cancelled'):
                    raise exception.DriverError(
                        reason='live migration of %s %s: %s' % (
                            instance_id, status, info.get('error-desc', 'no details')))
                if time.monotonic() > deadline:
                    self._cancel(instance_id)
                    raise exception.DriverError(reason='live migration of %s did not end '
                                                'within %.0f s' % (instance_id, timeout))
                time.sleep(0.05)

    def _sent(self, instance_id: str) -> bool:
        """Whether this QEMU sent its guest for good (run state ``postmigrate``).

        ``completed`` alone does not say so: a QEMU that arrived by migration
        reports its incoming migration's ``completed`` until its outgoing one
        has connected, which ``migrate`` does not wait for."""
        with self._vms.monitor(instance_id) as mon:
            return mon.cmd('query-status').get('status') == 'postmigrate'  # type: ignore[no-any-return]

    def _query(self, instance_id: str) -> dict[str, Any]:
        with self._vms.monitor(instance_id) as mon:
            return mon.cmd('query-migrate')  # type: ignore[no-any-return]

    def _cancel(self, instance_id: str) -> None:
        """``migrate_cancel`` and wait until QEMU gave up (it then runs the guest on,
        if the guest ran); a migration that completed meanwhile stays completed."""
        with self._vms.monitor(instance_id) as mon:
            mon.cmd('migrate_cancel')
        deadline = time.monotonic() + self.qmp_timeout
        while self._query(instance_id).get('status') in _ACTIVE:
            if time.monotonic() > deadline:
                raise exception.DriverError(reason='the migration of %s did not stop'
                                            % instance_id)
            time.sleep(0.02)

    def cancel_outgoing(self, instance_id: str) -> None:
        with self._locks.get(instance_id):
            if self._vms.pid(instance_id) is not None and \
                    self._query(instance_id).get('status') in _ACTIVE:
                self._cancel(instance_id)

    # ---- destination
    def prepare_incoming(self, incoming: base.IncomingSpec) -> str:
        described = incoming.description
        layout = cmdline.Layout.from_json(described['layout'])
        if layout.id != incoming.id:
            raise exception.DriverError(reason='the description is of %s, not %s'
                                        % (layout.id, incoming.id))
        if layout.accel != self.accel:
            raise exception.ServerMigrationRefused(
                id=incoming.id, reason='it runs under %s, which this host does not use'
                % layout.accel)
        connections = {d.volume_id: d for d in incoming.disks}
        for slot in layout.disks:
            disk = connections.get(slot.volume_id)
            if disk is None:
                raise exception.DriverError(reason='volume %s of %s is not connected here'
                                            % (slot.volume_id, incoming.id))
            slot.connection_info, slot.read_only = disk.connection_info, disk.read_only
            slot.node_name = None    # a mirror's target node name: its own on this host
        if layout.live_image_id and not incoming.memory_path:
            raise exception.DriverError(reason='clone %s needs the RAM of live image %s'
                                        % (incoming.id, layout.live_image_id))
        with self._locks.get(incoming.id):
            directory = self._vms.new_dir(incoming.id)
            try:
                return self._start_incoming(incoming, layout, directory)
            except BaseException:
                self._vms.kill(incoming.id)
                shutil.rmtree(directory, ignore_errors=True)
                raise

    def _start_incoming(self, incoming: base.IncomingSpec, layout: cmdline.Layout,
                        directory: str) -> str:
        described = incoming.description
        fw_cfg = {}
        for name, entry in (described.get('fw_cfg') or {}).items():
            path = os.path.join(directory, os.path.basename(entry['file']))
            live.write_file(path, base64.b64decode(entry['data']),
                            0o600 if name == 'user_data' else 0o644)
            fw_cfg[name] = path
        console = os.path.join(directory, 'console.log')
        live.write_file(console, base64.b64decode(described.get('console') or ''))
        self._save_layout(layout)
        clone = bool(layout.live_image_id)
        argv = cmdline.build_argv(
            self.qemu_binary, layout,
            ram_path=incoming.memory_path if clone and incoming.memory_path
            else os.path.join(directory, 'ram'),
            share=not clone, qmp_path=os.path.join(directory, 'qmp.sock'),
            console_path=console, vmgenid=described.get('vmgenid'), incoming=True,
            secret_files=self._write_secrets(layout), fw_cfg_files=fw_cfg)
        # Append to the console the source's lines were copied into.
        argv = [a + ',append=on' if a.startswith('file,id=console0,') else a for a in argv]
        with self._vms.start(layout.id, argv) as mon:
            for slot in layout.disks:        # still stopped (-S): before any I/O
                qemu_qos.apply(mon, slot)
            mon.cmd('migrate-set-capabilities', capabilities=ALL_PAGES[:1])
            mon.cmd('migrate-incoming', uri=_tcp_uri(incoming.listen, 0))
            addresses = mon.cmd('query-migrate').get('socket-address') or []
        ports = [int(a['port']) for a in addresses if a.get('type') == 'inet']
        if not ports:
            raise exception.DriverError(reason='QEMU of %s reported no listening port'
                                        % incoming.id)
        return _tcp_uri(incoming.listen, ports[0])

    def finish_incoming(self, instance_id: str) -> base.InstanceInfo:
        with self._locks.get(instance_id):
            layout = self._load_layout(instance_id)
            with self._vms.monitor(instance_id) as mon:
                if mon.cmd('query-status')['status'] != 'running':
                    # The source is done sending; the last bytes may still be loading.
                    qmp.wait_for_migration(mon, self.migration_timeout)
                    mon.cmd('cont')
            return self._info(layout, self._vms.pid(instance_id), 'running', migrated=True)
