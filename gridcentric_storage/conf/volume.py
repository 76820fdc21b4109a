from oslo_config import cfg

volume_group = cfg.OptGroup('volume', title='Volume and backend options')

volume_opts = [
    cfg.ListOpt('enabled_drivers', default=['file', 'rbd', 'lvm', 'storpool'],
                help='Backend drivers (entry points in '
                     'gridcentric_storage.volume.drivers) that backends may use.'),
    cfg.BoolOpt('create_default_backend', default=False,
                help='Register a "file" backend named "default" under '
                     '$state_path/volumes on first start (the all-in-one sets this).'),
    cfg.BoolOpt('image_cache_enabled', default=True,
                help='Keep each image once per backend as a cached snapshot and '
                     'create volumes from it as copy-on-write clones.'),
    cfg.IntOpt('image_cache_max_entries', default=10, min=0,
               help='Cached images per backend before the least recently used is '
                    'evicted (0: no limit).'),
    cfg.IntOpt('image_cache_max_size_gb', default=0, min=0,
               help='GiB of cached images per backend before the least recently '
                    'used are evicted (0: no limit).'),
    cfg.IntOpt('max_snapshots_per_volume', default=64, min=1,
               help='Snapshots one volume may have.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(volume_group)
    conf.register_opts(volume_opts, group=volume_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(volume_group, volume_opts)]
