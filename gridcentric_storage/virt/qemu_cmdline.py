"""QEMU argv and block-device options, built from plain data (no processes here).

Why a module of its own: a clone's QEMU must present exactly the devices of
the VM that was blessed (migration restores device state by device id and
PCI slot), so the spawned VM, every clone and every hot-plugged volume are
all described by one :class:`Layout` and turned into argv by one function.
Devices carry explicit ids and PCI addresses; RAM is always the
``memory-backend-file`` named ``mem`` (``share=on`` for a VM that may be
blessed, ``share=off`` for a clone: a private, lazy, copy-on-write mapping
of the live image's RAM file).

Disks come from os-brick style connection info and become ``-blockdev``
JSON (the same dict feeds QMP ``blockdev-add`` for hot-plug)::

    blockdev_options({'driver_volume_type': 'local',
                      'data': {'device_path': '/v/volume-1', 'format': 'qcow2'}}, 'drive0')
    # ({'driver': 'qcow2', 'node-name': 'drive0', 'read-only': False,
    #   'file': {'driver': 'file', 'filename': '/v/volume-1'}}, {})

``rbd`` gives the protocol node of ``rbd:pool/image:id=user:conf=...`` and
``iscsi`` the one of ``iscsi://user%pass@portal/iqn/lun``, but structured, so
no value needs ':'/',' escaping and a CHAP password travels as a QEMU
``secret`` object read from a 0600 file instead of sitting in ``ps`` output.
"""

import dataclasses
import json
import os
from typing import Any

from gridcentric_storage.common import exception

__all__ = ['FW_CFG_PREFIX', 'IDENTITY_PORT', 'IDENTITY_SOCKET', 'VMGENID_PATH', 'DiskSlot',
           'Layout', 'blockdev_options', 'build_argv', 'disk_device', 'free_pci_slot', 'nic_device']

#: fw_cfg names the guest reads (QEMU asks for "opt/<reverse domain>/...").
FW_CFG_PREFIX = 'opt/com.gridcentric/'
#: The virtio-serial controller of the identity port (:data:`IDENTITY_PORT`).
IDENTITY_SLOT = 2
NIC_SLOT = 3
FIRST_DISK_SLOT = 4
#: The virtio-serial port a clone's guest agent reads its identity from
#: (``qemu_identity.py``); its chardev is the socket ``identity.sock``.
IDENTITY_PORT = 'com.gridcentric.identity.0'
IDENTITY_SOCKET = 'identity.sock'
#: QOM path of the vmgenid device of a pooled process (its guid is set at claim).
VMGENID_PATH = '/machine/peripheral/vmgenid0'
LAST_PCI_SLOT = 31


@dataclasses.dataclass
class DiskSlot:
    """One virtio-blk disk: ``index`` names its nodes, ``slot`` is its PCI slot."""

    volume_id: str
    index: int
    slot: int
    connection_info: dict[str, Any]
    read_only: bool = False
    #: The node QEMU runs the disk on when not ``drive<index>`` (a live migration's target).
    node_name: str | None = None

    @property
    def node(self) -> str:
        return self.node_name or 'drive%d' % self.index

    @property
    def device_id(self) -> str:
        return 'disk%d' % self.index


@dataclasses.dataclass
class Layout:
    """Everything that must match between a blessed VM and its clones, plus boot."""

    id: str
    name: str
    memory_mb: int
    vcpus: int
    accel: str
    machine: str = 'pc'
    cpu: str | None = None
    disks: list[DiskSlot] = dataclasses.field(default_factory=list)
    mac: str | None = None
    netdev: str = 'user'
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    live_image_id: str | None = None
    #: The VM has the identity port: set for every VM spawned since it exists,
    #: absent (False) in the layouts of older VMs and their live images.
    identity_port: bool = False

    def disk_of(self, volume_id: str) -> DiskSlot | None:
        return next((d for d in self.disks if d.volume_id == volume_id), None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> 'Layout':
        data = dict(data)
        data['disks'] = [DiskSlot(**d) for d in data.get('disks', [])]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _opt(value: str) -> str:
    """Escape a value for QEMU's key=value,... option syntax."""
    return value.replace(',', ',,')


def blockdev_options(connection_info: dict[str, Any], node: str,
                     read_only: bool = False) -> tuple[dict[str, Any], dict[str, str]]:
    """``-blockdev`` / ``blockdev-add`` options, and secrets (id -> value) they name."""
    kind = connection_info.get('driver_volume_type')
    data = connection_info.get('data') or {}
    secrets: dict[str, str] = {}
    try:
        if kind == 'local':
            path = data['device_path']
            fmt = data.get('format', 'raw')
            if fmt not in ('raw', 'qcow2'):
                raise ValueError('format must be raw or qcow2, not %r' % fmt)
            proto = 'host_device' if path.startswith('/dev/') else 'file'
            protocol: dict[str, Any] = {'driver': proto, 'filename': path}
        elif kind == 'rbd':
            fmt = 'raw'
            pool, _, image = data['name'].partition('/')
            if not image:
                raise ValueError('name must be pool/image, not %r' % data['name'])
            protocol = {'driver': 'rbd', 'pool': pool, 'image': image}
            if data.get('auth_username'):
                protocol['user'] = data['auth_username']
            conf = data.get('conf') or '/etc/ceph/%s.conf' % data.get('cluster_name', 'ceph')
            if os.path.exists(conf) or data.get('conf'):
                protocol['conf'] = conf
            hosts, ports = data.get('hosts') or [], data.get('ports') or []
            if hosts:
                protocol['server'] = [{'host': h, 'port': str(p)}
                                      for h, p in zip(hosts, ports or ['6789'] * len(hosts),
                                                      strict=False)]
        elif kind == 'iscsi':
            fmt = 'raw'
            protocol = {'driver': 'iscsi', 'transport': 'tcp', 'portal': data['target_portal'],
                        'target': data['target_iqn'], 'lun': int(data.get('target_lun', 0))}
            if data.get('auth_method', 'CHAP') == 'CHAP' and data.get('auth_username'):
                protocol['user'] = data['auth_username']
                secret_id = 'sec-' + node
                secrets[secret_id] = data['auth_password']
                protocol['password-secret'] = secret_id
        else:
            raise ValueError('unsupported driver_volume_type %r' % kind)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise exception.DriverError(reason='cannot build a QEMU drive from %s connection '
                                    'info: %s' % (kind, e))
    options: dict[str, Any] = {'driver': fmt, 'node-name': node, 'read-only': read_only,
                               'file': protocol}
    if data.get('discard'):
        options['discard'] = 'unmap'
    return options, secrets


def disk_device(disk: DiskSlot, bootindex: int | None = None) -> dict[str, Any]:
    """``-device`` / ``device_add`` options of a disk."""
    device: dict[str, Any] = {'driver': 'virtio-blk-pci', 'id': disk.device_id,
                              'drive': disk.node, 'bus': 'pci.0', 'addr': hex(disk.slot)}
    if bootindex is not None:
        device['bootindex'] = bootindex
    return device


def nic_device(mac: str) -> dict[str, Any]:
    """``-device`` / ``device_add`` options of the NIC (backend ``net0``)."""
    return {'driver': 'virtio-net-pci', 'id': 'nic0', 'netdev': 'net0', 'mac': mac,
            'bus': 'pci.0', 'addr': hex(NIC_SLOT)}


def free_pci_slot(layout: Layout) -> int:
    used = {d.slot for d in layout.disks}
    for slot in range(FIRST_DISK_SLOT, LAST_PCI_SLOT + 1):
        if slot not in used:
            return slot
    raise exception.DriverError(reason='instance %s has no free PCI slot' % layout.id)


def build_argv(qemu: str, layout: Layout, *, ram_path: str, share: bool, qmp_path: str,
               console_path: str, vmgenid: str | None = None, incoming: bool = False,
               secret_files: dict[str, str] | None = None,
               fw_cfg_files: dict[str, str] | None = None, pooled: bool = False) -> list[str]:
    """The argv of a VM (``incoming=False``) or a clone waiting for its state.

    ``secret_files`` maps the ids named by :func:`blockdev_options` to files
    holding the secrets; ``fw_cfg_files`` maps names under
    :data:`FW_CFG_PREFIX` to files the guest can read.

    ``pooled``: a warm-pool process, started before its clone exists. It
    waits in ``--preconfig`` (before the machine is built, so it reads the
    fw_cfg files only when told to go on, once they hold the clone's); it
    gets the disks' nodes by ``blockdev-add`` then, and the NIC (whose MAC is
    the clone's) by ``device_add`` after; its vmgenid is :data:`VMGENID_PATH`.
    """
    argv = [qemu, '-name', _opt('guest=%s' % layout.id),
            '-accel', layout.accel,
            '-machine', '%s,memory-backend=mem' % layout.machine,
            '-m', '%dM' % layout.memory_mb, '-smp', str(layout.vcpus),
            '-object', 'memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s'
            % (layout.memory_mb, _opt(ram_path), 'on' if share else 'off'),
            '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
            '-device', 'vmgenid,guid=%s%s' % (vmgenid or 'auto',
                                              ',id=vmgenid0' if pooled else ''),
            '-chardev', 'file,id=console0,path=%s' % _opt(console_path),
            '-serial', 'chardev:console0',
            '-chardev', 'socket,id=qmp0,path=%s,server=on,wait=off' % _opt(qmp_path),
            '-mon', 'chardev=qmp0,mode=control']
    if layout.identity_port:
        # The host connects when it has something to say; QEMU never waits for it.
        argv += ['-device', 'virtio-serial-pci,id=vser0,bus=pci.0,addr=%s' % hex(IDENTITY_SLOT),
                 '-chardev', 'socket,id=identity0,path=%s,server=on,wait=off'
                 % _opt(os.path.join(os.path.dirname(qmp_path), IDENTITY_SOCKET)),
                 '-device', 'virtserialport,bus=vser0.0,nr=1,chardev=identity0,'
                 'id=identity0port,name=%s' % IDENTITY_PORT]
    if layout.cpu:
        argv += ['-cpu', layout.cpu]
    for secret_id, path in sorted((secret_files or {}).items()):
        argv += ['-object', 'secret,id=%s,file=%s,format=raw' % (secret_id, _opt(path))]
    for disk in layout.disks:
        boot = 0 if (disk.index == 0 and not layout.kernel) else None
        if not pooled:
            options, _ = blockdev_options(disk.connection_info, disk.node, disk.read_only)
            argv += ['-blockdev', json.dumps(options, sort_keys=True)]
        argv += ['-device', json.dumps(disk_device(disk, boot), sort_keys=True)]
    if layout.mac:
        argv += ['-netdev', '%s,id=net0' % layout.netdev]
        if not pooled:
            argv += ['-device', json.dumps(nic_device(layout.mac))]
    for name, path in sorted((fw_cfg_files or {}).items()):
        argv += ['-fw_cfg', 'name=%s%s,file=%s' % (FW_CFG_PREFIX, name, _opt(path))]
    if incoming:
        argv += ['-incoming', 'defer', '-S'] + (['--preconfig'] if pooled else [])
    elif layout.kernel:
        argv += ['-kernel', layout.kernel]
        if layout.initrd:
            argv += ['-initrd', layout.initrd]
        argv += ['-append', layout.cmdline or 'console=ttyS0']
    return argv
