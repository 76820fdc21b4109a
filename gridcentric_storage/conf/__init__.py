"""Option registration: every group lives in its own module; ``CONF`` is global.

Services call :func:`parse_args` once; tests may call :func:`register_all`
and override options through ``CONF.set_override``.
"""

from oslo_config import cfg
from oslo_log import log as logging
from oslo_messaging import opts as messaging_opts

from gridcentric_storage.conf import (
    api,
    compute,
    database,
    default,
    image,
    libvirt,
    live_image_store,
    nova,
    qemu,
    scheduler,
    volume,
)

CONF = cfg.CONF

_MODULES = (default, api, compute, scheduler, volume, image, qemu, libvirt, nova, database,
            live_image_store)
_registered = False


def register_all(conf: cfg.ConfigOpts = CONF) -> None:
    global _registered
    if _registered and conf is CONF:
        return
    for module in _MODULES:
        module.register_opts(conf)
    if conf is CONF:
        logging.register_options(conf)
        # Messaging options (transport_url, ...) are registered up front so
        # services can set defaults, e.g. the all-in-one's fake:// transport.
        for group, opts in messaging_opts.list_opts():
            conf.register_opts(opts, group=group)
        _registered = True


def parse_args(argv: list[str], default_config_files: list[str] | None = None) -> None:
    """Parse the command line; no config file at all is a valid setup."""
    from gridcentric_storage import version

    register_all()
    logging.set_defaults(default_log_levels=logging.get_default_log_levels() + [
        'alembic.runtime.migration=WARN', 'stevedore=WARN'])
    CONF(argv, project='gridcentric-storage', version=version.version_string,
         default_config_files=default_config_files or [])
    logging.setup(CONF, 'gridcentric-storage')


register_all()
