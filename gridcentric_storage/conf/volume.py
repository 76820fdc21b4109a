from oslo_config import cfg

volume_group = cfg.OptGroup('volume', title='Volume and backend options')

volume_opts = [
    cfg.ListOpt('enabled_drivers', default=['file', 'fake'],
                help='Backend drivers (entry points in '
                     'gridcentric_storage.volume.drivers) that backends may use.'),
    cfg.BoolOpt('create_default_backend', default=False,
                help='Register a "file" backend named "default" under '
                     '$state_path/volumes on first start (the all-in-one sets this).'),
    cfg.IntOpt('default_volume_size_gb', default=1, min=1,
               help='Size of a volume created without one (GiB).'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(volume_group)
    conf.register_opts(volume_opts, group=volume_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(volume_group, volume_opts)]
