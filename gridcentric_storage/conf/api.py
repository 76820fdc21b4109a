from oslo_config import cfg

api_group = cfg.OptGroup('api', title='REST API options')

api_opts = [
    cfg.HostAddressOpt('listen', default='127.0.0.1',
                       help='Address the API listens on.'),
    cfg.PortOpt('port', default=8779, help='Port the API listens on.'),
    cfg.StrOpt('auth_strategy', default='keystone', choices=['keystone', 'noauth'],
               help='keystone: validate tokens with keystonemiddleware. noauth: '
                    'trust the X-Auth-Token "user:project" (admin when the user is '
                    '"admin"); refused unless the API listens on a loopback address.'),
    cfg.StrOpt('api_paste_config', default='api-paste.ini',
               help='Paste deploy file; a relative path is searched next to the '
                    'config files, then in /etc/gridcentric-storage, then in the '
                    'installed package.'),
    cfg.IntOpt('max_limit', default=1000, min=1,
               help='Largest number of items a list call returns at once.'),
    cfg.IntOpt('workers', default=1, min=1,
               help='Number of API worker threads serving requests.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(api_group)
    conf.register_opts(api_opts, group=api_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(api_group, api_opts)]
