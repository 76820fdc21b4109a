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
    cfg.IntOpt('max_json_body_size', default=114688, min=1024,
               help='Largest JSON request body in bytes (a larger one is a 413 before '
                    'it is read); the default is oslo.middleware\'s and Nova\'s. Volume '
                    'data streams are not JSON and have no such limit.'),
    cfg.IntOpt('threads', default=64, min=1,
               # 'workers' once named these threads but was never read.
               deprecated_opts=[cfg.DeprecatedOpt('workers', group='api')],
               help='Requests the built-in WSGI server (gridcentric-api, '
                    'gridcentric-all-in-one) serves at once; further connections wait '
                    'in the listen backlog until a thread is free.'),
    cfg.IntOpt('backlog', default=4096, min=1,
               help='Listen backlog of the API socket: connections the kernel queues '
                    'while every thread is busy (capped by net.core.somaxconn).'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(api_group)
    conf.register_opts(api_opts, group=api_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(api_group, api_opts)]
