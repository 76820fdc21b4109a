"""Cobalt's actions on Nova's instances: the API side (runs in gridcentric-api).

Like ``compute.api`` for this service's own servers, it checks state, writes
the live-image rows and casts the work to the compute host; the instances
themselves are Nova's, read and created through ``nova.client`` with the
caller's token. A live image of a Nova instance is a row whose
``nova_source`` names the flavor and image its clones boot with; its
``server_id`` is the Nova instance's UUID.

Nova's instance never carries a task state of ours (Nova's API cannot set
one): a live image row in ``blessing`` is the lock that refuses a second
bless of the same instance.

Every answer that carries servers is a list of Nova detail views: clones are
Nova's own views (as the caller reads them), live images are rendered in the
same shape by :func:`view`, with ``launch_anywhere`` (and, for administrators,
``publish_status`` and ``publish_reason``) as ``GET /v1/live-images`` shows them.

Once gridcentric-compute published a live image to the live image store
(``nova.store``), its clones' scheduler hint names every host whose
gridcentric-compute has the store as well as the blessing host: nova-compute
there gets the files from it (``nova.virt.driver``).
"""

import logging
import re
import uuid
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.api import nova_ext, policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.controllers.servers import scope
from gridcentric_storage.api.schemas import servers as schema
from gridcentric_storage.common import exception, rpc
from gridcentric_storage.common.states import LiveImageStatus as L
from gridcentric_storage.compute import api as compute_api
from gridcentric_storage.compute import rpcapi as compute_rpcapi
from gridcentric_storage.compute.status import set_live_image
from gridcentric_storage.db import api as db
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage
from gridcentric_storage.nova import client, hint

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

#: The scheduler hint that keeps clones on the live image's host
#: (``nova.scheduler_filter.LiveImageHostFilter`` reads it).
HOSTS_HINT = 'gc_live_image_hosts'
#: Metadata naming a clone's live image, and a live image's source instance.
LAUNCHED_FROM = 'launched_from'
BLESSED_FROM = 'blessed_from'
_REGEX_CHARS = re.compile(r'[\\^$.|?*+()\[\]{}]')
#: ``compute.live_image_publish.PUBLISHED`` (that module needs the store's bindings)
PUBLISHED, PUBLISHING = 'published', 'publishing'
#: where the store's plumbing shows, to administrators only
_ADMIN_ONLY = ('publish_status', 'publish_reason')


def view(root: str, live_image: LiveImage) -> dict[str, Any]:
    """A live image as Nova's detail view of a server (status ``BLESSED``)."""
    source = live_image['nova_source'] or {}
    status = {L.BLESSED: 'BLESSED', L.BLESSING: 'BUILD', L.DISCARDING: 'BLESSED',
              L.ERROR: 'ERROR'}[L(live_image['status'])]
    fault = None
    if status == 'ERROR':
        fault = {'code': 500, 'message': live_image['status_reason'] or 'bless failed',
                 'created': common.isotime(live_image['updated_at'])}
    return nova_ext.detail(
        root, id=live_image['id'], name=live_image['name'], status=status,
        task_state=live_image['status'] if status != 'BLESSED' else None,
        project_id=live_image['project_id'], user_id=live_image['user_id'],
        host=live_image['host'], memory_mb=live_image['memory_mb'],
        vcpus=live_image['vcpus'], image_id=source.get('image_id'),
        flavor_id=source.get('flavor_id'),
        metadata={BLESSED_FROM: live_image['server_id']},
        created=live_image['created_at'], updated=live_image['updated_at'],
        fault=fault, key_name=None,
        launch_anywhere=live_image.get('publish_status') == PUBLISHED,
        publish_status=live_image.get('publish_status') or 'none',
        publish_reason=live_image.get('publish_reason'))


def _is_clone_of(server: dict[str, Any], live_image_id: str) -> bool:
    return (server.get('metadata') or {}).get(LAUNCHED_FROM) == live_image_id


def name_matches(pattern: str, name: str) -> bool:
    """Nova's ``?name=`` is a regular expression searched in the name; a literal
    one is matched the same way here, any other only as the exact name (a
    member's pattern is never run by this process's regex engine)."""
    if _REGEX_CHARS.search(pattern):
        return pattern == name
    return pattern in name


class API:
    compute_rpcapi = rpc.LazyClient(compute_rpcapi.ComputeAPI)

    def __init__(self, nova: client.NovaClient | None = None) -> None:
        self.nova = nova or client.NovaClient()
        #: the standalone import's row and host choice, with a Nova source
        self.compute_api = compute_api.ComputeAPI()

    # ---- lookups
    @staticmethod
    def live_image(ctxt: Any, id: str, rule: str = 'live_image:get') -> LiveImage | None:
        """The Nova live image ``id`` if the caller may see it (and do ``rule``)."""
        try:
            live_image = db_servers.live_image_get(id, project_id=scope(ctxt))
        except exception.LiveImageNotFound:
            return None
        if not live_image['nova_source']:
            return None
        policy.authorize(ctxt, rule, {'project_id': live_image['project_id']})
        return live_image

    def _blessed(self, ctxt: Any, id: str, action: str, rule: str) -> LiveImage:
        live_image = self.live_image(ctxt, id, rule)
        if live_image is None:
            self.nova.get_server(ctxt, id)  # 404 when it is nothing the caller sees
            raise exception.InvalidState(resource='Server', id=id, state='ACTIVE',
                                         reason='only a blessed server can be %s' % action)
        return live_image

    @staticmethod
    def _validate(verb: str, args: dict[str, Any] | None) -> dict[str, Any]:
        validation.validate({'co_' + verb: args}, schema.cobalt_actions['co_' + verb])
        return args or {}

    # ---- reads
    def show(self, ctxt: Any, id: str, root: str) -> dict[str, Any] | None:
        live_image = self.live_image(ctxt, id)
        return None if live_image is None else self._for_caller(ctxt, view(root, live_image))

    def find(self, ctxt: Any, name: str, all_tenants: bool, root: str
             ) -> list[dict[str, Any]]:
        """Live images named like ``name`` (Nova's ``?name=``), the caller's
        project's, or every project's for an administrator's ``all_tenants``."""
        policy.authorize(ctxt, 'live_image:get_all')
        # Like Nova, a member's all_tenants shows their own project.
        project = None if all_tenants and policy.check(ctxt, 'server:get_all_tenants') \
            else ctxt.project_id
        found = [i for i in db_servers.live_image_get_all(project_id=project)
                 if i['nova_source'] and name_matches(name, i['name'])]
        return [self._for_caller(ctxt, view(root, i)) for i in found]

    def list_blessed(self, ctxt: Any, id: str, args: dict[str, Any] | None, root: str
                     ) -> list[dict[str, Any]]:
        self._validate('list_blessed', args)
        if self.live_image(ctxt, id) is not None:
            return []  # a live image is not itself blessed
        self.nova.get_server(ctxt, id)
        images = db_servers.live_image_get_all(server_id=id, project_id=scope(ctxt))
        return [self._for_caller(ctxt, view(root, i)) for i in images if i['nova_source']]

    def list_launched(self, ctxt: Any, id: str, args: dict[str, Any] | None, root: str
                      ) -> list[dict[str, Any]]:
        self._validate('list_launched', args)
        live_image = self.live_image(ctxt, id)
        if live_image is None:
            self.nova.get_server(ctxt, id)
            return []  # an instance that is not blessed launched nothing
        return self._clones(ctxt, live_image)

    def _clones(self, ctxt: Any | None, live_image: LiveImage) -> list[dict[str, Any]]:
        """Clones of the live image the caller sees (``ctxt`` None: in every project,
        as this service). Clones boot the source's image, so Nova narrows by it."""
        query: dict[str, Any] = {'image': (live_image['nova_source'] or {}).get('image_id')}
        if ctxt is None or policy.check(ctxt, 'server:get_all_tenants'):
            query['all_tenants'] = 1
        return [s for s in self.nova.list_servers(ctxt, **query)
                if _is_clone_of(s, live_image['id'])]

    # ---- bless
    def bless(self, ctxt: Any, id: str, args: dict[str, Any] | None, root: str
              ) -> list[dict[str, Any]]:
        args = self._validate('bless', args)
        if self.live_image(ctxt, id) is not None:
            raise exception.InvalidState(resource='Server', id=id, state='BLESSED',
                                         reason='a blessed server cannot be blessed again')
        server = self.nova.get_server(ctxt, id)
        policy.authorize(ctxt, 'live_image:bless', {'project_id': server['tenant_id']})
        task = server.get('OS-EXT-STS:task_state')
        if server['status'] != 'ACTIVE' or task:
            raise exception.InvalidState(resource='Server', id=id,
                                         state=task or server['status'],
                                         reason='only an ACTIVE server can be blessed')
        if not isinstance(server.get('image'), dict) or not server['image'].get('id'):
            raise exception.Invalid(reason='server %s boots from a volume; blessing such '
                                    'Nova instances is not supported yet' % id)
        if (server.get('metadata') or {}).get(LAUNCHED_FROM):
            # Its RAM is a private copy-on-write mapping of the live image's file,
            # which libvirt's save path cannot capture (the QEMU driver flattens).
            raise exception.Invalid(reason='server %s is a clone of live image %s; blessing '
                                    'clones is not supported for Nova instances yet'
                                    % (id, server['metadata'][LAUNCHED_FROM]))
        private = self.nova.get_server_private(id)
        host = private.get('OS-EXT-SRV-ATTR:host')
        if not host:
            raise exception.InvalidState(resource='Server', id=id, state=server['status'],
                                         reason='Nova names no host for it')
        if db_servers.live_image_get_all(server_id=id, statuses=(L.BLESSING,)):
            raise exception.InvalidState(resource='Server', id=id, state='blessing',
                                         reason='wait until its bless finishes')
        count = len(db_servers.live_image_get_all(server_id=id))
        live_image = db_servers.live_image_create({
            'id': str(uuid.uuid4()), 'name': args.get('name') or '%s-%d' % (server['name'],
                                                                            count),
            'project_id': server['tenant_id'], 'user_id': ctxt.user_id, 'server_id': id,
            'host': host, 'status': L.BLESSING,
            'memory_mb': private['flavor']['ram'], 'vcpus': private['flavor']['vcpus'],
            'nova_source': {'flavor_id': server['flavor']['id'],
                            'image_id': server['image']['id']}})
        # The row is the lock, so the check follows the write: of two racing
        # blesses each sees the other's row, and neither (never both) goes on.
        others = [i for i in db_servers.live_image_get_all(server_id=id, statuses=(L.BLESSING,))
                  if i['id'] != live_image['id']]
        if others:
            db_servers.live_image_destroy(live_image['id'])
            raise exception.InvalidState(resource='Server', id=id, state='blessing',
                                         reason='another bless of it started meanwhile')
        try:
            self.compute_rpcapi.bless_nova_instance(ctxt, host, live_image['id'], id)
        except Exception as e:
            db_servers.live_image_destroy(live_image['id'])
            if isinstance(e, messaging.MessagingException):
                LOG.warning('Bless of %s could not be sent to %s: %s', id, host, e)
                raise exception.ServiceUnavailable(
                    reason="the instance's gridcentric-compute cannot be reached")
            raise
        return [self._for_caller(ctxt, view(root, live_image))]

    # ---- launch
    def launch(self, ctxt: Any, id: str, args: dict[str, Any] | None, root: str
               ) -> list[dict[str, Any]]:
        params = self._validate('launch', args)
        live_image = self._blessed(ctxt, id, 'launched', 'live_image:launch')
        self._check_blessed(live_image)
        if ctxt.project_id != live_image['project_id']:
            raise exception.Invalid(reason='clones of live image %s are made in its own '
                                    'project; launch it with a token of that project' % id)
        if params.get('guest') or params.get('params'):
            raise exception.Invalid(reason='guest parameters are not supported for Nova '
                                    'instances yet')
        count = params.get('num_instances') or 1
        source = live_image['nova_source'] or {}
        server: dict[str, Any] = {
            'name': params.get('name') or '%s-clone' % live_image['name'],
            'flavorRef': source['flavor_id'], 'imageRef': source['image_id'],
            'metadata': {LAUNCHED_FROM: live_image['id']},
            'networks': [{k: v for k, v in n.items() if v is not None}
                         for n in params['networks']] if params.get('networks') else 'none',
        }
        for key in ('key_name', 'availability_zone', 'user_data'):
            if params.get(key):
                server[key] = params[key]
        if params.get('security_groups'):
            server['security_groups'] = [g if isinstance(g, dict) else {'name': g}
                                         for g in params['security_groups']]
        hints = dict(params.get('scheduler_hints') or {},
                     **{HOSTS_HINT: [self._sealed_hosts(live_image)]})
        # One create per clone: Nova renames the servers of one multi-create
        # (multi_instance_display_name_template, web-1, web-2...), and every
        # clone of a launch carries the launch's name. All or none: a refusal
        # of the k-th (quota) deletes the ones before it.
        created: list[str] = []
        try:
            for _ in range(count):
                created.append(self.nova.create_servers(ctxt, server, hints))
        except Exception:
            for clone_id in created:
                self.nova.delete_server(ctxt, clone_id)
            raise
        first = created[0]
        # Clones first, then the check: a discard marks the image first, then
        # looks for clones, so one of two racing requests always sees the other.
        current = db_servers.live_image_get(live_image['id'])
        if current['status'] != L.BLESSED:
            for clone in self._clones(ctxt, live_image):
                self.nova.delete_server(ctxt, clone['id'])
            self._check_blessed(current)
        return [self.nova.get_server(ctxt, first)]

    def _sealed_hosts(self, live_image: LiveImage) -> str:
        """The hint's value: the hosts sealed for the live image's project (members
        read hints back and may write their own; ``nova.scheduler_filter``)."""
        key = CONF.nova.scheduler_hint_key
        if not key:
            raise exception.Conflict(reason='clones of Nova instances cannot be placed: '
                                     'gridcentric-api has no [nova] scheduler_hint_key')
        return hint.seal(key, live_image['project_id'] or '', self._clone_hosts(live_image))

    @staticmethod
    def _clone_hosts(live_image: LiveImage) -> list[str]:
        """Where clones may run: the blessing host, and once published, every host
        whose gridcentric-compute has the store (it fetches the files there)."""
        hosts = [live_image['host']]
        if live_image.get('publish_status') == PUBLISHED:
            hosts += sorted({s['host'] for s in db.service_get_all(CONF.compute.topic,
                                                                   up_only=True)
                             if (s.get('capabilities') or {}).get('live_image_store')}
                            - set(hosts))
        return hosts

    @staticmethod
    def _check_blessed(live_image: LiveImage) -> None:
        if live_image['status'] != L.BLESSED:
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='only a blessed live image can be launched')

    # ---- discard
    def discard(self, ctxt: Any, id: str, args: dict[str, Any] | None) -> None:
        self._validate('discard', args)
        live_image = self._blessed(ctxt, id, 'discarded', 'live_image:discard')
        if live_image['status'] in (L.BLESSING, L.DISCARDING):
            raise exception.InvalidState(resource='Live image', id=id,
                                         state=live_image['status'],
                                         reason='wait until it settles')
        if live_image.get('publish_status') == PUBLISHING:
            raise exception.InvalidState(resource='Live image', id=id, state='publishing',
                                         reason='wait until its publish finishes')
        self._no_clones(live_image, 'still exist; delete them first')
        set_live_image(id, L.DISCARDING, live_image['status'])
        try:
            self._no_clones(live_image, 'were launched from it meanwhile')
        except exception.GCException:
            set_live_image(id, L(live_image['status']), L.DISCARDING)
            raise
        self.compute_rpcapi.discard_live_image(ctxt, live_image['host'], id)

    def _no_clones(self, live_image: LiveImage, reason: str) -> None:
        # In every project: a clone another project launched (an administrator
        # launching it) still needs the live image's files.
        clones = self._clones(None, live_image)
        if clones:
            raise exception.InvalidState(resource='Live image', id=live_image['id'],
                                         state=live_image['status'],
                                         reason='%d server(s) launched from it %s'
                                         % (len(clones), reason))

    # ---- export and import
    def export(self, ctxt: Any, id: str, args: dict[str, Any] | None) -> dict[str, Any]:
        """Pack the live image into the caller's image store on its host (compute
        RPC); Cobalt's export document, which names the flavor and image too."""
        self._validate('export', args)
        live_image = self._blessed(ctxt, id, 'exported', 'live_image:export')
        if live_image['status'] != L.BLESSED:
            raise exception.InvalidState(resource='Live image', id=id,
                                         state=live_image['status'],
                                         reason='only a blessed live image can be exported')
        exported = self.compute_rpcapi.export_live_image(ctxt, live_image['host'], id)
        source = live_image['nova_source'] or {}
        flavor = self.nova.get_flavor(ctxt, source['flavor_id'])
        return nova_ext.export_document(
            live_image, exported, flavor['name'] if flavor else None,
            flavor_id=source['flavor_id'], image_id=source['image_id'])

    def import_server(self, ctxt: Any, body: Any, root: str) -> dict[str, Any]:
        """``co-import-server``: a new live image of the caller's project whose clones
        boot with a flavor of the export's size and the export's image."""
        validation.validate(body, schema.cobalt_import)
        policy.authorize(ctxt, 'live_image:import', {'project_id': ctxt.project_id})
        data = body['data']
        fields = data['fields']
        if not fields.get('image_id'):
            raise exception.Invalid(reason="the export is not of a Nova instance's live "
                                    'image (it names no image); import it into the '
                                    'service that exported it')
        flavor = self._import_flavor(ctxt, fields, data.get('flavor_name'))
        if not self.nova.image_visible(ctxt, fields['image_id']):
            raise exception.Invalid(reason='image %s of the export is not an image you can '
                                    'boot here' % fields['image_id'])
        live_image = self.compute_api.import_(
            ctxt, fields['name'], fields['memory_mb'], fields['vcpus'], fields['id'],
            data['export_image_id'], data['system_metadata']['export_sha256'],
            nova_source={'flavor_id': flavor['id'], 'image_id': fields['image_id']},
            host=self._import_host())
        return {'server': self._for_caller(ctxt, view(root, live_image))}

    def _import_flavor(self, ctxt: Any, fields: dict[str, Any], name: str | None
                       ) -> dict[str, Any]:
        """The export's flavor if the caller sees it with the same size, else one of
        the same name and size (another cloud's ids differ)."""
        def fits(flavor: dict[str, Any] | None) -> bool:
            return bool(flavor) and (flavor['ram'], flavor['vcpus']) == (  # type: ignore[index]
                fields['memory_mb'], fields['vcpus'])
        flavor = self.nova.get_flavor(ctxt, fields['flavor_id']) \
            if fields.get('flavor_id') else None
        if fits(flavor):
            return flavor  # type: ignore[return-value]
        named = [f for f in self.nova.list_flavors(ctxt) if f['name'] == name and fits(f)]
        if named:
            return named[0]
        raise exception.Invalid(reason='no flavor you can use has %d MiB and %d vCPUs%s'
                                % (fields['memory_mb'], fields['vcpus'],
                                   ' (the export\'s is %s)' % name if name else ''))

    def _import_host(self) -> str:
        """A host where both Nova and this service's compute run: of those, the one
        holding the fewest live images (clones of one run where it is)."""
        ours = {s['host'] for s in db.service_get_all(CONF.compute.topic, up_only=True)}
        both = [h for h in self.nova.compute_hosts() if h in ours]
        if not both:
            raise exception.Conflict(reason='no host runs both an up nova-compute and '
                                     'gridcentric-compute to import onto')
        held = [i['host'] for i in db_servers.live_image_get_all()]
        return min(both, key=held.count)

    # ---- migrate
    def migrate(self, ctxt: Any, id: str, args: dict[str, Any] | None) -> None:
        """Cobalt's co_migrate of a Nova instance: Nova's own live migration (its
        policy, its scheduler with this package's filter, its checks)."""
        params = self._validate('migrate', args)
        if self.live_image(ctxt, id) is not None:
            raise exception.InvalidState(resource='Server', id=id, state='BLESSED',
                                         reason='a live image does not run; only an '
                                         'ACTIVE server can be migrated')
        server = self.nova.get_server(ctxt, id)
        task = server.get('OS-EXT-STS:task_state')
        if server['status'] != 'ACTIVE' or task:
            raise exception.InvalidState(resource='Server', id=id,
                                         state=task or server['status'],
                                         reason='only an ACTIVE server can be migrated')
        if (server.get('metadata') or {}).get(LAUNCHED_FROM):
            # Its RAM maps the live image's file and its disks sit on the live
            # image's: Nova's migration would start a destination QEMU without them.
            raise exception.Invalid(reason='server %s was launched from a live image; '
                                    'migrating clones is not supported yet' % id)
        self.nova.live_migrate(ctxt, id, params.get('dest') or None)

    @staticmethod
    def _for_caller(ctxt: Any, server: dict[str, Any]) -> dict[str, Any]:
        if not ctxt.is_admin:
            for key in _ADMIN_ONLY:
                server.pop(key, None)
        return nova_ext.for_caller(ctxt, [server])[0]  # type: ignore[no-any-return]
