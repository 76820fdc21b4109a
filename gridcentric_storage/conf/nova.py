"""``[nova]``: live images of Nova's own instances (``gridcentric_storage.nova``).

Two kinds of options share the group. Ours (below) say whether
``gridcentric-api`` serves the ``cobalt`` RPC endpoint and on which topic
nova-api's paste filter finds it. keystoneauth's auth, session and adapter
options (``auth_type``, ``auth_url``, ``username``, ..., ``cafile``,
``region_name``, ``valid_interfaces``, ``endpoint_override``) are the
service's own credentials for Nova, as in Cinder's ``[nova]`` section; they
are registered at run time and left out of the generated sample, which
depends on no library's release.
"""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

from gridcentric_storage.nova import rpcapi

nova_group = cfg.OptGroup('nova', title="Live images of Nova's instances")

nova_opts = [
    cfg.BoolOpt('enabled', default=False,
                help="Serve Cobalt's co_* actions on Nova's own instances: "
                     'gridcentric-api starts the cobalt RPC endpoint on [nova] '
                     'cobalt_topic. It reads and writes Nova through its REST API with '
                     "the caller's token, and with this section's keystoneauth "
                     'credentials (a user Nova lets read instances\' hosts and every '
                     "project's servers, e.g. an admin) only for what members may not "
                     'read.'),
    cfg.StrOpt('scheduler_hint_key', secret=True, default=None,
               help="The secret shared with nova-scheduler's nova.conf [gridcentric] "
                    'scheduler_hint_key: the hint that places clones names their hosts '
                    'sealed under it (nova.scheduler_filter); unset, clones of Nova '
                    'instances cannot be launched.'),
] + rpcapi.rpc_opts

DEFAULT_SERVICE_TYPE = 'compute'


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(nova_group)
    conf.register_opts(nova_opts, group=nova_group)
    ks_loading.register_session_conf_options(conf, nova_group.name)
    ks_loading.register_auth_conf_options(conf, nova_group.name)
    ks_loading.register_adapter_conf_options(conf, nova_group.name, include_deprecated=False)
    conf.set_default('service_type', DEFAULT_SERVICE_TYPE, group=nova_group.name)
    conf.set_default('valid_interfaces', ['internal', 'public'], group=nova_group.name)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(nova_group, nova_opts)]
