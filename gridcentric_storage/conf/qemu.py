"""[qemu]: the embedded QEMU virt driver (names match QemuDriver's arguments)."""

from oslo_config import cfg

qemu_group = cfg.OptGroup('qemu', title='QEMU virt driver options')

qemu_opts = [
    cfg.StrOpt('instances_path', default='$state_path/instances',
               help='Directory of running VMs (RAM file, QMP socket, console log).'),
    cfg.StrOpt('live_images_path', default='$state_path/live-images',
               help='Directory of live images (immutable RAM, device state). On the same '
                    'filesystem as instances_path, the RAM is reflinked where possible.'),
    cfg.StrOpt('qemu_binary', default='qemu-system-x86_64', help='QEMU system emulator.'),
    cfg.StrOpt('accel', default='auto', choices=['auto', 'kvm', 'tcg'],
               help='auto probes whether KVM runs a guest, else uses TCG (once per boot of '
                    'the host: the answer is kept in /run/gridcentric-storage).'),
    cfg.StrOpt('machine', default='pc', help='QEMU machine type.'),
    cfg.StrOpt('cpu_model', help='QEMU -cpu model (QEMU\'s default when unset).'),
    cfg.StrOpt('netdev', default='user',
               help='Network backend of a VM\'s NIC when it has a MAC address.'),
    cfg.StrOpt('probe_kernel',
               help='Kernel booted by the KVM probe (newest /boot/vmlinuz-* when unset).'),
    cfg.FloatOpt('start_timeout', default=30.0, min=1, help='Seconds for QEMU to start.'),
    cfg.FloatOpt('stop_timeout', default=10.0, min=1,
                 help='Seconds for QEMU to quit before it is killed.'),
    cfg.FloatOpt('migration_timeout', default=300.0, min=1,
                 help='Seconds to save or restore a device state.'),
    cfg.FloatOpt('qmp_timeout', default=30.0, min=1, help='Seconds per QMP command.'),
    cfg.BoolOpt('checksum_ram', default=True,
                help='Record the sha256 of a blessed RAM file (proves it never changes; '
                     'costs a read of the RAM at bless).'),
    cfg.IntOpt('warm_pool_size', default=0, min=0,
               help='QEMU processes kept started, waiting, for each live image on this '
                    'host, so a launch loads the state into one instead of starting QEMU '
                    '(0: none; a launch with none ready starts QEMU as without a pool). '
                    'Each maps the live image\'s RAM copy-on-write but has touched none '
                    'of it: it costs its own QEMU memory (tens of MB) and a process per '
                    'live image and slot, whether or not clones are launched.'),
    cfg.BoolOpt('warm_pool_restore_ahead', default=False,
                help='Pooled QEMU processes of live images that have the identity port '
                     '(VMs spawned by this version) and no disks also build the machine '
                     'and load the state ahead, so a launch only sends the clone its '
                     'identity and resumes it. The clone\'s guest agent must then read its '
                     'identity from the virtio-serial port com.gridcentric.identity.0 '
                     '(the fw_cfg files of such a process hold no clone\'s): leave it '
                     'off for guests whose agent reads only fw_cfg.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(qemu_group)
    conf.register_opts(qemu_opts, group=qemu_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(qemu_group, qemu_opts)]
