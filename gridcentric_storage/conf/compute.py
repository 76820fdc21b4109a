from oslo_config import cfg

compute_group = cfg.OptGroup('compute', title='Compute service options')

compute_opts = [
    cfg.StrOpt('topic', default='gridcentric',
               help='RPC topic compute services listen on (server = [DEFAULT] host).'),
    cfg.IntOpt('report_interval', default=10, min=1,
               help='Seconds between service heartbeats and backend stats reports.'),
    cfg.IntOpt('service_down_time', default=60, min=1,
               help='A service or backend whose last report is older than this '
                    'many seconds is "down" and gets no new volumes.'),
    cfg.IntOpt('rpc_call_timeout', default=60, min=1,
               help='Seconds to wait for short synchronous RPC calls such as '
                    'setting up a new backend.'),
    cfg.HostAddressOpt('data_listen', default='127.0.0.1',
                       help='Address of the volume data server (whole-volume streams '
                            'relayed by the API); the API must reach it.'),
    cfg.PortOpt('data_port', default=0,
                help='Port of the volume data server (0: any free port; the service '
                     'records the URL it got).'),
    cfg.HostAddressOpt('migration_listen', default='127.0.0.1',
                       help='Address of this host on which an incoming live migration of '
                            'a server listens (its QEMU, on a free port); the source '
                            'host must reach it.'),
    cfg.IntOpt('migration_timeout', default=1800, min=1,
               help='Seconds a live migration of a server may take before it is '
                    'cancelled (the guest then stays on its source host).'),
    cfg.IntOpt('transfer_token_ttl', default=60, min=1,
               help='Seconds a prepared volume stream waits to be used.'),
    cfg.StrOpt('virt_driver', default='qemu',
               help='Virt driver (entry point in gridcentric_storage.virt.drivers): qemu '
                    '(QMP, the embedded default), libvirt, or fake (tests).'),
    cfg.StrOpt('hooks_dir', default='/etc/gridcentric-storage/hooks.d',
               help='Directory of pre_/post_ bless|launch|discard hook executables.'),
    cfg.IntOpt('hook_timeout', default=60, min=1,
               help='Seconds a hook may run before it is killed.'),
    cfg.IntOpt('max_servers_per_project', default=100, min=0,
               help='Servers (clones included) a project may have; more is refused with '
                    '413 (0: no limit).'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(compute_group)
    conf.register_opts(compute_opts, group=compute_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(compute_group, compute_opts)]
