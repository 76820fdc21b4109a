from oslo_config import cfg

image_group = cfg.OptGroup('image', title='Image store options')

image_opts = [
    cfg.StrOpt('store_path', default='$state_path/images',
               deprecated_opts=[cfg.DeprecatedOpt('image_export_dir', group='volume')],
               help='Image store on each compute host: <store_path>/public/<name> are '
                    'images every project may use (the operator puts them there), '
                    '<store_path>/projects/<project id>/<name> a project\'s own '
                    '(os-volume_upload_image writes them). Users name images, '
                    'kernels and initrds by <name>, never by host path.'),
    cfg.ListOpt('allowed_paths', default=[],
                help='Host directories from which administrators (only they) may '
                     'name images, kernels and initrds by absolute path; the path '
                     'with symlinks resolved must lie under one of them or under '
                     'store_path. Empty: administrators use the store too.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(image_group)
    conf.register_opts(image_opts, group=image_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(image_group, image_opts)]
