"""/v1/images: the images a caller may name (its project's and the public ones).

Images are files of each compute host's image store
(:mod:`gridcentric_storage.image.store`), so a listing asks every compute
host that is up and merges the answers by name; a project's own image shadows
a public one of the same name, as it does when a volume is created from it::

    GET /v1/images
    {"images": [{"name": "debian.qcow2", "size": 412090368, "visibility": "public"},
                {"name": "backup", "size": 1073741824, "visibility": "private"}]}

``DELETE /v1/images/{name}`` deletes the project's image of that name on every
host that has it (public images are the operator's). Hosts that are down are
not asked, and one that does not answer in ``[compute] rpc_call_timeout`` is
left out (logged) rather than failing the whole request.
"""

import logging
from collections.abc import Callable, Iterator
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.api import policy
from gridcentric_storage.common import exception, rpc
from gridcentric_storage.db import api as db
from gridcentric_storage.image import store as image_store
from gridcentric_storage.volume import rpcapi as volume_rpcapi

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def _answers(ask: Callable[[str], Any]) -> Iterator[tuple[str, Any]]:
    """(host, answer) of each compute host that is up and answers in time."""
    for host in sorted(s['host'] for s in db.service_get_all(CONF.compute.topic,
                                                            up_only=True)):
        try:
            yield host, ask(host)
        except messaging.MessagingTimeout:
            LOG.warning('Compute host %s did not answer about images; left out', host)


class ImagesController:
    rpcapi = rpc.LazyClient(volume_rpcapi.VolumeAPI)

    def index(self, req: Any) -> dict[str, Any]:
        ctxt = req.context
        policy.authorize(ctxt, 'image:get_all')
        found: dict[str, dict[str, Any]] = {}
        for host, answer in _answers(lambda host: self.rpcapi.list_images(ctxt, host)):
            for image in answer:
                entry = found.setdefault(image['name'], dict(image, hosts=[]))
                if image['visibility'] == 'private' and entry['visibility'] == 'public':
                    found[image['name']] = entry = dict(image, hosts=[])
                if image['visibility'] == entry['visibility']:
                    entry['hosts'].append(host)
        images = sorted(found.values(), key=lambda i: i['name'])
        if not ctxt.is_admin:  # members see no hosts
            images = [{k: v for k, v in i.items() if k != 'hosts'} for i in images]
        return {'images': images}

    def delete(self, req: Any, name: str) -> None:
        ctxt = req.context
        policy.authorize(ctxt, 'image:delete')
        image_store.check_name(name)

        def delete(host: str) -> bool:
            try:
                self.rpcapi.delete_image(ctxt, host, name)
            except exception.NotFound:
                return False
            return True

        if not any([deleted for _, deleted in _answers(delete)]):
            raise exception.NotFound('Project %s has no image named %s'
                                     % (ctxt.project_id, name))
