"""nova-compute's client of its own host's gridcentric-compute (compute RPC 2.8).

A clone that nova-scheduler placed on a host without its live image's
directory (the live image is published, ``nova.store``) needs it there before
the driver resumes it: gridcentric-compute on that host owns the store's
client and the supervised ``rbd-fuse`` mounts, so the driver asks it.

It runs inside nova-compute, whose ``CONF`` is Nova's: the transport is
Nova's own ``transport_url`` (gridcentric-compute must listen on that bus) and
the target names gridcentric-compute's exchange and topic itself, since Nova
changes the default exchange to ``nova``. The context goes as a plain dict,
the keys gridcentric-compute's ``RequestContext.from_dict`` reads.
"""

from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

__all__ = ['VERSION', 'ComputeClient', 'opts']

#: compute RPC's version that has ``prepare_nova_live_image``
VERSION = '2.8'
ALLOWED_EXMODS = ['gridcentric_storage.common.exception']

opts = [
    cfg.BoolOpt('published_live_images', default=False,
                help='Resume clones of live images this host does not hold from the '
                     'live image store: gridcentric-compute on this host (with '
                     '[live_image_store] enabled) mounts and fetches them.'),
    cfg.StrOpt('compute_exchange', default='openstack',
               help="gridcentric-compute's RPC exchange (its control_exchange)."),
    cfg.StrOpt('compute_topic', default='gridcentric',
               help="gridcentric-compute's RPC topic (its [compute] topic)."),
    cfg.IntOpt('prepare_timeout', default=600, min=1,
               help='Seconds gridcentric-compute may take to mount a published live '
                    'image and fetch its files (disks included) for a clone.'),
]


class _DictContextSerializer(messaging.NoOpSerializer):
    def serialize_context(self, ctxt: Any) -> dict[str, Any]:
        return dict(ctxt)


class ComputeClient:
    def __init__(self, conf: cfg.ConfigOpts, group: str = 'gridcentric',
                 transport: messaging.Transport | None = None) -> None:
        options = conf[group]
        self.transport = transport or messaging.get_rpc_transport(
            conf, allowed_remote_exmods=ALLOWED_EXMODS)
        target = messaging.Target(exchange=options.compute_exchange,
                                  topic=options.compute_topic, version=VERSION)
        self.client = messaging.get_rpc_client(
            self.transport, target, version_cap=VERSION,
            serializer=_DictContextSerializer(), timeout=options.prepare_timeout)

    def prepare_nova_live_image(self, host: str, live_image_id: str,
                                request_id: str | None, project_id: str | None) -> str:
        """The directory on ``host`` (this one) holding the live image's files and
        manifest; gridcentric's LiveImageFilesMissing (or another of its errors)
        when it cannot, MessagingTimeout when gridcentric-compute does not answer."""
        ctxt: dict[str, Any] = {'request_id': request_id, 'project_id': project_id,
                                'user_id': None, 'is_admin': False, 'roles': []}
        return self.client.prepare(server=host).call(  # type: ignore[no-any-return]
            ctxt, 'prepare_nova_live_image', live_image_id=live_image_id)
