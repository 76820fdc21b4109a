import socket

from oslo_config import cfg

default_opts = [
    cfg.StrOpt('state_path',
               default='/var/lib/gridcentric-storage',
               help='Top-level directory for state: the all-in-one SQLite '
                    'database and the default file backend live here.'),
    cfg.StrOpt('host',
               default=socket.gethostname(),
               sample_default='<hostname>',
               help='Name of this node; compute services use it as their RPC '
                    'server name and as the owner of their backends.'),
    cfg.StrOpt('default_availability_zone',
               default='nova',
               help='Availability zone of backends created without one.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(default_opts)


def list_opts() -> list[tuple[str | None, list[cfg.Opt]]]:
    return [(None, list(default_opts))]


