"""[libvirt]: the virt driver for hosts that run Nova's libvirt driver."""

from oslo_config import cfg

libvirt_group = cfg.OptGroup('libvirt', title='libvirt virt driver options')

libvirt_opts = [
    cfg.StrOpt('uri', default='qemu:///system', help='libvirt connection URI.'),
    cfg.StrOpt('instances_path', default='$state_path/instances',
               help='Directory of VMs (RAM file, console log); QEMU must traverse it.'),
    cfg.StrOpt('live_images_path', default='$state_path/live-images',
               help='Directory of live images (immutable RAM, device state).'),
    cfg.StrOpt('accel', default='auto', choices=['auto', 'kvm', 'tcg'],
               help='Domain type: auto probes whether KVM runs a guest (once per boot of the '
                    'host: the answer is kept in /run/gridcentric-storage).'),
    cfg.StrOpt('emulator', default='qemu-system-x86_64', help='QEMU emulator libvirt runs.'),
    cfg.StrOpt('machine', default='pc', help='Machine type.'),
    cfg.StrOpt('cpu_model', help='CPU model (libvirt\'s default when unset).'),
    cfg.StrOpt('network', help='libvirt network for NICs (user networking when unset).'),
    cfg.StrOpt('probe_kernel', help='Kernel booted by the KVM probe.'),
    cfg.FloatOpt('stop_timeout', default=10.0, min=1, help='Seconds to stop a domain.'),
    cfg.FloatOpt('migration_timeout', default=300.0, min=1,
                 help='Seconds to save or restore a device state.'),
    cfg.BoolOpt('checksum_ram', default=True, help='Record the sha256 of a blessed RAM.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(libvirt_group, libvirt_opts)]
